"""HEAD is a read everywhere: it answers as GET does and never changes anything.

Starlette sends HEAD to every GET route and the handlers branch on the method, so
before the edge read HEAD as GET a HEAD fell into the branch after GET's: a HEAD
on a billing account deleted it, one on a keypair or a network too, with only
the rights of whoever may read them.
"""

from __future__ import annotations

from typing import Any

from .support import Cloud


def _ok(response: Any, status: int = 200) -> Any:
    assert response.status_code == status, response.text
    return response.json() if response.content else None


def _head_then_get(cloud: Cloud, path: str, token: str) -> None:
    headers = {"X-Auth-Token": token}
    assert cloud.client.head(path, headers=headers).status_code == 200
    assert cloud.client.get(path, headers=headers).status_code == 200, f"{path} went on HEAD"


def test_head_on_a_resource_of_every_api_leaves_it_in_place(cloud: Cloud) -> None:
    member = cloud.member()
    token, project = member.token, member.project_id
    client, admin = cloud.client, {"X-Auth-Token": cloud.admin_token}
    mine = {"X-Auth-Token": token}

    owner = cloud.member(role=None)
    account = _ok(
        client.post(
            "/billing/v1/accounts",
            json={"account": {"name": "ACME", "country": "FR", "owner_user_id": owner.id}},
            headers=admin,
        ),
        201,
    )["account"]
    _head_then_get(cloud, f"/billing/v1/accounts/{account['id']}", cloud.admin_token)

    keypair = {"keypair": {"name": "head-key", "type": "ssh"}}
    _ok(client.post("/compute/v2.1/os-keypairs", json=keypair, headers=mine))
    _head_then_get(cloud, "/compute/v2.1/os-keypairs/head-key", token)

    network = _ok(
        client.post("/network/v2.0/networks", json={"network": {"name": "n"}}, headers=mine), 201
    )["network"]
    _head_then_get(cloud, f"/network/v2.0/networks/{network['id']}", token)

    volume = _ok(
        client.post(f"/volume/v3/{project}/volumes", json={"volume": {"size": 1}}, headers=mine),
        202,
    )["volume"]
    _head_then_get(cloud, f"/volume/v3/{project}/volumes/{volume['id']}", token)

    image = _ok(
        client.post(
            "/image/v2/images",
            json={"name": "i", "disk_format": "raw", "container_format": "bare"},
            headers=mine,
        ),
        201,
    )
    _head_then_get(cloud, f"/image/v2/images/{image['id']}", token)

    _head_then_get(cloud, f"/identity/v3/projects/{project}", cloud.admin_token)


def test_head_on_a_collection_lists_and_creates_nothing(cloud: Cloud) -> None:
    admin = {"X-Auth-Token": cloud.admin_token}
    before = _ok(cloud.client.get("/identity/v3/users", headers=admin))["users"]
    assert cloud.client.head("/identity/v3/users", headers=admin).status_code == 200
    assert _ok(cloud.client.get("/identity/v3/users", headers=admin))["users"] == before
