"""Trusts (OS-TRUST): a trustor delegates some of its roles on a project to a trustee, who
gets tokens scoped to the trust, as itself or (impersonation) as the trustor."""

from __future__ import annotations

import datetime as dt
from typing import Any

from .support import Cloud, Member, assert_keystone_error, password_auth

TRUSTS = "/v3/OS-TRUST/trusts"


def _pair(cloud: Cloud) -> tuple[Member, Member]:
    """A trustor holding member (so reader too) on a project, and a trustee with no role."""
    trustor = cloud.member()
    trustee = cloud.member(role=None)
    return trustor, trustee


def _trust(cloud: Cloud, trustor: Member, trustee: Member, status: int = 201, **fields: Any) -> Any:
    body = {
        "trustor_user_id": trustor.id,
        "trustee_user_id": trustee.id,
        "project_id": trustor.project_id,
        "impersonation": False,
        "roles": [{"name": "reader"}],
        **fields,
    }
    response = cloud.post(TRUSTS, {"trust": body}, token=trustor.token)
    assert response.status_code == status, response.text
    return response.json()


def _trust_token(cloud: Cloud, trustee: Member, trust_id: str) -> Any:
    scope = {"OS-TRUST:trust": {"id": trust_id}}
    return cloud.issue(password_auth(trustee.password, user_id=trustee.id, scope=scope))


def test_trustee_gets_a_token_with_only_the_delegated_roles(cloud: Cloud) -> None:
    trustor, trustee = _pair(cloud)
    trust = _trust(cloud, trustor, trustee)["trust"]
    assert trust["trustor_user_id"] == trustor.id and trust["impersonation"] is False
    assert [r["name"] for r in trust["roles"]] == ["reader"]
    assert trust["links"]["self"].endswith(f"{TRUSTS}/{trust['id']}")
    issued = _trust_token(cloud, trustee, trust["id"])
    assert issued.status_code == 201, issued.text
    token = issued.json()["token"]
    assert token["user"]["id"] == trustee.id
    assert token["project"]["id"] == trustor.project_id
    assert [r["name"] for r in token["roles"]] == ["reader"]
    assert token["OS-TRUST:trust"] == {
        "id": trust["id"],
        "impersonation": False,
        "trustee_user": {"id": trustee.id},
        "trustor_user": {"id": trustor.id},
    }
    # the token works as a project reader, not a member
    subject = issued.headers["X-Subject-Token"]
    assert (
        cloud.client.get("/image/v2/images", headers={"X-Auth-Token": subject}).status_code == 200
    )
    made = cloud.client.post(
        "/image/v2/images", json={"name": "no"}, headers={"X-Auth-Token": subject}
    )
    assert made.status_code == 403


def test_impersonation_acts_as_the_trustor(cloud: Cloud) -> None:
    trustor, trustee = _pair(cloud)
    trust = _trust(cloud, trustor, trustee, impersonation=True, roles=[{"name": "member"}])
    issued = _trust_token(cloud, trustee, trust["trust"]["id"])
    assert issued.status_code == 201, issued.text
    token = issued.json()["token"]
    assert token["user"]["id"] == trustor.id
    assert {"member", "reader"} <= {r["name"] for r in token["roles"]}
    assert token["OS-TRUST:trust"]["impersonation"] is True


def test_only_the_trustor_creates_and_only_roles_it_holds(cloud: Cloud) -> None:
    trustor, trustee = _pair(cloud)
    assert_keystone_error(_trust_response(cloud, trustee, trustor, trustee), 403)
    denied = _trust(cloud, trustor, trustee, 403, roles=[{"name": "admin"}])
    assert "admin" in denied["error"]["message"]
    _trust(cloud, trustor, trustee, 400, roles=[])
    _trust(cloud, trustor, trustee, 404, roles=[{"name": "no-such-role"}])
    _trust(cloud, trustor, trustee, 400, allow_redelegation=True)
    _trust(cloud, trustor, trustee, 400, expires_at="2000-01-01T00:00:00Z")
    _trust(cloud, trustor, trustee, 400, remaining_uses=0)
    _trust(cloud, trustor, trustee, 400, impersonation="yes")
    assert cloud.get(TRUSTS, token=trustor.token).json()["trusts"] == []


def _trust_response(cloud: Cloud, caller: Member, trustor: Member, trustee: Member) -> Any:
    body = {
        "trustor_user_id": trustor.id,
        "trustee_user_id": trustee.id,
        "project_id": trustor.project_id,
        "impersonation": False,
        "roles": [{"name": "reader"}],
    }
    return cloud.post(TRUSTS, {"trust": body}, token=caller.token or cloud.admin_token)


def test_trusts_are_seen_by_their_parties_only(cloud: Cloud) -> None:
    trustor, trustee = _pair(cloud)
    trust = _trust(cloud, trustor, trustee)["trust"]
    outsider = cloud.member()
    trustee_token = cloud.token_for(trustee.id, trustee.password, None)
    for token in (trustor.token, trustee_token, cloud.admin_token):
        assert cloud.get(f"{TRUSTS}/{trust['id']}", token=token).status_code == 200
        listed = cloud.get(TRUSTS, token=token).json()["trusts"]
        assert trust["id"] in [t["id"] for t in listed]
        # Keystone lists trusts without their roles; GET on one trust shows them
        assert all("roles" not in t and "roles_links" not in t for t in listed)
    assert_keystone_error(cloud.get(f"{TRUSTS}/{trust['id']}", token=outsider.token), 404)
    assert cloud.get(TRUSTS, token=outsider.token).json()["trusts"] == []
    query = f"{TRUSTS}?trustor_user_id={trustor.id}"
    assert_keystone_error(cloud.get(query, token=outsider.token), 403)
    assert len(cloud.get(query, token=trustor.token).json()["trusts"]) == 1
    roles = cloud.get(f"{TRUSTS}/{trust['id']}/roles", token=trustee_token).json()["roles"]
    reader = cloud.role_ids["reader"]
    assert [r["id"] for r in roles] == [reader]
    one = cloud.get(f"{TRUSTS}/{trust['id']}/roles/{reader}", token=trustor.token)
    assert one.json()["role"]["name"] == "reader"
    assert (
        cloud.head(f"{TRUSTS}/{trust['id']}/roles/{reader}", token=trustor.token).status_code == 200
    )
    member_role = cloud.role_ids["member"]
    assert_keystone_error(
        cloud.get(f"{TRUSTS}/{trust['id']}/roles/{member_role}", token=trustor.token), 404
    )
    assert_keystone_error(cloud.delete(f"{TRUSTS}/{trust['id']}", token=trustee_token), 403)
    assert_keystone_error(cloud.delete(f"{TRUSTS}/{trust['id']}", token=outsider.token), 404)


def test_only_the_trustee_uses_a_trust(cloud: Cloud) -> None:
    trustor, trustee = _pair(cloud)
    trust = _trust(cloud, trustor, trustee)["trust"]
    outsider = cloud.member()
    assert_keystone_error(_trust_token(cloud, outsider, trust["id"]), 401)
    assert_keystone_error(_trust_token(cloud, trustee, "no-such-trust"), 401)


def test_deleting_a_trust_ends_its_tokens(cloud: Cloud) -> None:
    trustor, trustee = _pair(cloud)
    trust = _trust(cloud, trustor, trustee)["trust"]
    subject = _trust_token(cloud, trustee, trust["id"]).headers["X-Subject-Token"]
    check = {"X-Subject-Token": subject}
    assert cloud.get("/v3/auth/tokens", headers=check).status_code == 200
    assert cloud.delete(f"{TRUSTS}/{trust['id']}", token=trustor.token).status_code == 204
    assert_keystone_error(cloud.get("/v3/auth/tokens", headers=check), 404)
    assert_keystone_error(_trust_token(cloud, trustee, trust["id"]), 401)


def test_trustor_losing_the_role_ends_the_trust_tokens(cloud: Cloud) -> None:
    trustor, trustee = _pair(cloud)
    trust = _trust(cloud, trustor, trustee, roles=[{"name": "member"}])["trust"]
    subject = _trust_token(cloud, trustee, trust["id"]).headers["X-Subject-Token"]
    member_role = cloud.role_ids["member"]
    revoked = cloud.delete(
        f"/v3/projects/{trustor.project_id}/users/{trustor.id}/roles/{member_role}"
    )
    assert revoked.status_code == 204
    assert_keystone_error(cloud.get("/v3/auth/tokens", headers={"X-Subject-Token": subject}), 404)


def test_remaining_uses_and_expiry_bound_the_tokens(cloud: Cloud) -> None:
    trustor, trustee = _pair(cloud)
    trust = _trust(cloud, trustor, trustee, remaining_uses=1)["trust"]
    assert _trust_token(cloud, trustee, trust["id"]).status_code == 201
    assert_keystone_error(_trust_token(cloud, trustee, trust["id"]), 401)
    soon = (dt.datetime.now(dt.UTC) + dt.timedelta(minutes=5)).strftime("%Y-%m-%dT%H:%M:%SZ")
    timed = _trust(cloud, trustor, trustee, expires_at=soon)["trust"]
    token = _trust_token(cloud, trustee, timed["id"]).json()["token"]
    assert token["expires_at"] <= soon.replace("Z", ".000000Z")


def test_a_trust_token_cannot_rescope_delegate_or_make_credentials(cloud: Cloud) -> None:
    trustor, trustee = _pair(cloud)
    trust = _trust(cloud, trustor, trustee, impersonation=True)["trust"]
    subject = _trust_token(cloud, trustee, trust["id"]).headers["X-Subject-Token"]
    rescope = {
        "auth": {
            "identity": {"methods": ["token"], "token": {"id": subject}},
            "scope": {"project": {"id": trustor.project_id}},
        }
    }
    assert_keystone_error(cloud.issue(rescope), 403)
    again = {
        "trustor_user_id": trustor.id,
        "trustee_user_id": trustee.id,
        "project_id": trustor.project_id,
        "impersonation": False,
        "roles": [{"name": "reader"}],
    }
    assert_keystone_error(cloud.post(TRUSTS, {"trust": again}, token=subject), 403)
    app = cloud.post(
        f"/v3/users/{trustor.id}/application_credentials",
        {"application_credential": {"name": "escape"}},
        token=subject,
    )
    assert_keystone_error(app, 403)
    ec2 = cloud.post(
        f"/v3/users/{trustor.id}/credentials/OS-EC2",
        {"tenant_id": trustor.project_id},
        token=subject,
    )
    assert_keystone_error(ec2, 403)


def _app_cred_token(cloud: Cloud, person: Member, roles: list[str]) -> str:
    made = cloud.post(
        f"/v3/users/{person.id}/application_credentials",
        {
            "application_credential": {
                "name": cloud.unique("ac"),
                "roles": [{"name": r} for r in roles],
            }
        },
        token=person.token,
    )
    assert made.status_code == 201, made.text
    cred = made.json()["application_credential"]
    auth = {
        "auth": {
            "identity": {
                "methods": ["application_credential"],
                "application_credential": {"id": cred["id"], "secret": cred["secret"]},
            }
        }
    }
    issued = cloud.issue(auth)
    assert issued.status_code == 201, issued.text
    token: str = issued.headers["X-Subject-Token"]
    return token


def test_an_application_credential_cannot_create_or_use_trusts(cloud: Cloud) -> None:
    trustor, trustee = _pair(cloud)
    token = _app_cred_token(cloud, trustor, ["member"])
    body = {
        "trustor_user_id": trustor.id,
        "trustee_user_id": trustee.id,
        "project_id": trustor.project_id,
        "impersonation": False,
        "roles": [{"name": "reader"}],
    }
    assert_keystone_error(cloud.post(TRUSTS, {"trust": body}, token=token), 403)
    assert cloud.get(TRUSTS, token=trustor.token).json()["trusts"] == []
