"""Admin actions in the audit log (`target_project`, `admin_action`) and the account owners'
read API (`/billing/v1/accounts/{id}/audit`)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from .support import Cloud


def audit_lines(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def billing(cloud: Cloud, method: str, path: str, token: str, body: Any = None, **kw: Any) -> Any:
    headers = {"X-Auth-Token": token}
    return cloud.client.request(method, f"/billing/v1{path}", json=body, headers=headers, **kw)


def owned_account(cloud: Cloud) -> tuple[str, str, str, Any]:
    """A new owner with an account and one project of it: (account, project, token, owner)."""
    owner = cloud.member(role=None)
    body = {"account": {"name": "ACME", "country": "FR", "owner_user_id": owner.id}}
    account = billing(cloud, "POST", "/accounts", cloud.admin_token, body).json()["account"]["id"]
    token = cloud.token_for(owner.id, owner.password, None)
    made = billing(cloud, "POST", f"/accounts/{account}/projects", token,
                   {"project": {"name": cloud.unique("p")}})  # fmt: skip
    assert made.status_code == 201, made.text
    project = made.json()["project"]["id"]
    return account, project, cloud.token_for(owner.id, owner.password, project), owner


def test_owners_read_their_projects_records_with_admin_actions(cloud: Cloud) -> None:
    account, project, owner_token, owner = owned_account(cloud)
    other_account, other_project, other_token, _ = owned_account(cloud)
    # the owner acts from its project; the admin acts on it from the admin project
    creds = f"/v3/users/{owner.id}/application_credentials"
    assert cloud.post(creds, {"application_credential": {"name": "ci"}},
                      token=owner_token).status_code == 201  # fmt: skip
    patched = cloud.patch(f"/v3/projects/{project}", {"project": {"description": "by admin"}})
    assert patched.status_code == 200
    missing = cloud.client.delete(f"/compute/v2.1/{project}/servers/{'0' * 32}",
                                  headers={"X-Auth-Token": cloud.admin_token})  # fmt: skip
    assert missing.status_code == 404
    # the other owner's own call stays out of this account's trail
    assert cloud.patch(f"/v3/projects/{other_project}", {"project": {"description": "x"}},
                       token=other_token).status_code in (403, 404)  # fmt: skip
    lines = audit_lines(cloud.platform.paths.audit_log)
    admin_lines = [r for r in lines if r.get("target_project") == project]
    assert {r["action"] for r in admin_lines} >= {"identity.project.update"}
    assert all(r["admin_action"] is True for r in admin_lines)
    assert "compute.server.delete" in {r["action"] for r in admin_lines}  # Nova's path
    own = [r for r in lines if r.get("target_project") == other_project]
    assert own and not any(r.get("admin_action") for r in own)  # its owner is no admin action
    # the owner reads: its own call and both admin actions, nothing of the other account
    trail = billing(cloud, "GET", f"/accounts/{account}/audit", owner_token)
    assert trail.status_code == 200, trail.text
    records = trail.json()["audit"]
    assert trail.json()["links"]["next"] is None
    assert {r["seq"] for r in admin_lines} <= {r["seq"] for r in records}
    assert any(r["initiator"].get("project_id") == project for r in records)
    assert not any(other_project in (r.get("target_project"), r["initiator"].get("project_id"))
                   for r in records)  # fmt: skip
    # pages of one, following links.next, give the same records in the same order
    seen, url = [], f"/accounts/{account}/audit?limit=1"
    while url:
        page = billing(cloud, "GET", url, owner_token).json()
        seen += page["audit"]
        nxt = page["links"]["next"]
        url = nxt[nxt.index("/accounts/") :] if nxt else ""
    assert [r["seq"] for r in seen] == [r["seq"] for r in records]
    future = billing(cloud, "GET", f"/accounts/{account}/audit?since=2999-01-01T00:00:00Z",
                     owner_token)  # fmt: skip
    assert future.json()["audit"] == []
    # another account's owner: 404; a viewer of the account: 403; an admin reads it
    assert billing(cloud, "GET", f"/accounts/{account}/audit", other_token).status_code == 404
    viewer = cloud.member(role=None)
    granted = billing(cloud, "PUT", f"/accounts/{account}/roles/{viewer.id}/viewer", owner_token)
    assert granted.status_code == 204
    viewer_token = cloud.token_for(viewer.id, viewer.password, None)
    assert billing(cloud, "GET", f"/accounts/{account}/audit", viewer_token).status_code == 403
    assert billing(cloud, "GET", f"/accounts/{account}/audit", cloud.admin_token).status_code == 200
    for query in ("limit=0", "limit=abc", "limit=1001", "marker=-1", "since=yesterday", "x=1"):
        bad = billing(cloud, "GET", f"/accounts/{account}/audit?{query}", owner_token)
        assert bad.status_code == 400 and set(bad.json()) == {"error"}, bad.text
    assert billing(cloud, "GET", f"/accounts/{other_account}/audit", owner_token).status_code == 404
