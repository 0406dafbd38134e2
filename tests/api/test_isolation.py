"""Tenancy: another project's things are not found; a reader changes nothing."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import pytest

from .support import Cloud, Member, assert_keystone_error


@dataclass
class TwoTenants:
    alice: Member  # member of project A
    bob: Member  # member of project B
    bob_cred_id: str
    bob_app_cred_id: str
    bob_ec2_access: str
    bob_group_id: str


@pytest.fixture
def tenants(cloud: Cloud) -> TwoTenants:
    alice, bob = cloud.member("member"), cloud.member("member")
    ec2 = cloud.post(
        f"/v3/users/{bob.id}/credentials/OS-EC2", {"tenant_id": bob.project_id}, token=bob.token
    ).json()["credential"]
    blob = json.dumps({"access": "bob-access", "secret": "bob-secret-value"})
    cred = cloud.post(
        "/v3/credentials",
        {
            "credential": {
                "type": "ec2",
                "user_id": bob.id,
                "project_id": bob.project_id,
                "blob": blob,
            }
        },
        token=bob.token,
    ).json()["credential"]
    app = cloud.post(
        f"/v3/users/{bob.id}/application_credentials",
        {"application_credential": {"name": "bobs"}},
        token=bob.token,
    ).json()["application_credential"]
    group = cloud.create("groups", "group", name="bobs-team")
    cloud.put(f"/v3/groups/{group['id']}/users/{bob.id}")
    return TwoTenants(alice, bob, cred["id"], app["id"], ec2["access"], group["id"])


def test_other_projects_things_are_not_found(cloud: Cloud, tenants: TwoTenants) -> None:
    alice, bob = tenants.alice, tenants.bob
    paths = [
        f"/v3/projects/{bob.project_id}",
        f"/v3/users/{bob.id}",
        f"/v3/credentials/{tenants.bob_cred_id}",
        f"/v3/users/{bob.id}/application_credentials",
        f"/v3/users/{bob.id}/application_credentials/{tenants.bob_app_cred_id}",
        f"/v3/users/{bob.id}/credentials/OS-EC2",
        f"/v3/users/{bob.id}/credentials/OS-EC2/{tenants.bob_ec2_access}",
        f"/v3/projects/{bob.project_id}/users/{bob.id}/roles",
        f"/v3/groups/{tenants.bob_group_id}",
        f"/v3/groups/{tenants.bob_group_id}/users",
    ]
    for path in paths:
        assert cloud.get(path).status_code == 200, path  # the admin sees it
        assert_keystone_error(cloud.get(path, token=alice.token), 404)


def test_other_projects_things_cannot_be_changed_or_deleted(
    cloud: Cloud, tenants: TwoTenants
) -> None:
    alice, bob = tenants.alice, tenants.bob
    changes = [
        ("DELETE", f"/v3/credentials/{tenants.bob_cred_id}", None),
        (
            "PATCH",
            f"/v3/credentials/{tenants.bob_cred_id}",
            {"credential": {"project_id": alice.project_id}},
        ),
        ("DELETE", f"/v3/users/{bob.id}/application_credentials/{tenants.bob_app_cred_id}", None),
        ("DELETE", f"/v3/users/{bob.id}/credentials/OS-EC2/{tenants.bob_ec2_access}", None),
        ("POST", f"/v3/users/{bob.id}/credentials/OS-EC2", {"tenant_id": bob.project_id}),
        (
            "POST",
            f"/v3/users/{bob.id}/application_credentials",
            {"application_credential": {"name": "x"}},
        ),
        (
            "POST",
            "/v3/credentials",
            {"credential": {"type": "totp", "user_id": bob.id, "blob": "x"}},
        ),
    ]
    for method, path, body in changes:
        headers = {"X-Auth-Token": alice.token}
        response = cloud.client.request(method, "/identity" + path, json=body, headers=headers)
        assert_keystone_error(response, 404)
    assert cloud.get(f"/v3/credentials/{tenants.bob_cred_id}").status_code == 200
    assert (
        cloud.get(f"/v3/users/{bob.id}/credentials/OS-EC2/{tenants.bob_ec2_access}").status_code
        == 200
    )


def test_own_credential_cannot_be_attached_to_another_project(
    cloud: Cloud, tenants: TwoTenants
) -> None:
    alice, bob = tenants.alice, tenants.bob
    body = {
        "credential": {
            "type": "totp",
            "user_id": alice.id,
            "blob": "x",
            "project_id": bob.project_id,
        }
    }
    assert_keystone_error(cloud.post("/v3/credentials", body, token=alice.token), 404)
    mine = cloud.post(
        "/v3/credentials",
        {"credential": {"type": "totp", "user_id": alice.id, "blob": "x"}},
        token=alice.token,
    ).json()["credential"]
    move = {"credential": {"project_id": bob.project_id}}
    assert_keystone_error(
        cloud.patch(f"/v3/credentials/{mine['id']}", move, token=alice.token), 404
    )
    ec2 = {"tenant_id": bob.project_id}
    response = cloud.post(f"/v3/users/{alice.id}/credentials/OS-EC2", ec2, token=alice.token)
    assert_keystone_error(response, 404)


def test_lists_show_only_the_callers_tenant(cloud: Cloud, tenants: TwoTenants) -> None:
    alice, bob = tenants.alice, tenants.bob

    def listed(path: str, collection: str) -> set[str]:
        response = cloud.get(path, token=alice.token)
        assert response.status_code == 200, response.text
        return {item["id"] for item in response.json()[collection]}

    assert listed("/v3/projects", "projects") == {alice.project_id}
    assert listed("/v3/users", "users") == {alice.id}
    assert listed(f"/v3/users?name={bob.name}", "users") == set()
    assert listed("/v3/credentials", "credentials") == set()
    assert listed(f"/v3/credentials?user_id={bob.id}", "credentials") == set()
    assert listed("/v3/groups", "groups") == set()
    assert listed("/v3/domains", "domains") == {"default"}
    for query in ("", f"?user.id={bob.id}", f"?scope.project.id={bob.project_id}", "?effective"):
        response = cloud.get(f"/v3/role_assignments{query}", token=alice.token)
        assert response.status_code == 200
        for item in response.json()["role_assignments"]:
            assert item["user"]["id"] == alice.id, query
            assert item["scope"] == {"project": {"id": alice.project_id}}, query


def test_members_of_the_same_project_see_each_other(cloud: Cloud) -> None:
    alice = cloud.member("member")
    carol = cloud.member("reader", project_id=alice.project_id)
    users = cloud.get("/v3/users", token=carol.token).json()["users"]
    assert {u["id"] for u in users} == {alice.id, carol.id}
    assert cloud.get(f"/v3/users/{alice.id}", token=carol.token).status_code == 200
    listed = cloud.get(
        f"/v3/role_assignments?scope.project.id={alice.project_id}", token=carol.token
    ).json()["role_assignments"]
    assert {a["user"]["id"] for a in listed} == {alice.id, carol.id}


def test_others_projects_and_groups_lists_look_absent(cloud: Cloud, tenants: TwoTenants) -> None:
    alice, bob = tenants.alice, tenants.bob
    for path in (f"/v3/users/{bob.id}/projects", f"/v3/users/{bob.id}/groups"):
        response = cloud.get(path, token=alice.token)
        assert response.status_code == 404, path
        assert_keystone_error(response, 404)


def test_member_cannot_administer(cloud: Cloud, tenants: TwoTenants) -> None:
    alice, bob = tenants.alice, tenants.bob
    role = cloud.role_ids["admin"]
    attempts = [
        ("POST", "/v3/projects", {"project": {"name": "mine"}}),
        ("PATCH", f"/v3/projects/{alice.project_id}", {"project": {"name": "renamed"}}),
        ("POST", "/v3/users", {"user": {"name": "sneaky"}}),
        ("PATCH", f"/v3/users/{alice.id}", {"user": {"enabled": True}}),
        ("PUT", f"/v3/projects/{alice.project_id}/users/{alice.id}/roles/{role}", None),
        ("PUT", f"/v3/system/users/{alice.id}/roles/{role}", None),
        ("PUT", f"/v3/domains/default/users/{alice.id}/roles/{role}", None),
        ("GET", "/v3/services", None),
        ("GET", "/v3/endpoints", None),
    ]
    for method, path, body in attempts:
        headers = {"X-Auth-Token": alice.token}
        response = cloud.client.request(method, "/identity" + path, json=body, headers=headers)
        assert_keystone_error(response, 403)
    assert cloud.get(f"/v3/projects/{alice.project_id}").json()["project"]["name"] != "renamed"
    assert cloud.get("/v3/regions", token=alice.token).status_code == 200
    assert bob.token


# ---------------------------------------------------------------- readers


def reader_attempts(cloud: Cloud, reader: Member) -> list[tuple[str, str, Any]]:
    """Every create, update and delete the API has, aimed at things the reader can see."""
    project = reader.project_id
    role = cloud.role_ids["reader"]
    group = cloud.create("groups", "group", name=cloud.unique("g"))["id"]
    service = cloud.create("services", "service", type=cloud.unique("t"))["id"]
    endpoint = cloud.create(
        "endpoints", "endpoint", service_id=service, interface="public", url="http://x.test"
    )["id"]
    cred = cloud.post(
        "/v3/credentials", {"credential": {"type": "totp", "user_id": reader.id, "blob": "x"}}
    ).json()["credential"]["id"]
    ec2 = cloud.post(f"/v3/users/{reader.id}/credentials/OS-EC2", {"tenant_id": project})
    access = ec2.json()["credential"]["access"] if ec2.status_code == 201 else "none"
    name = {"name": "x"}
    endpoint_body = {"service_id": service, "interface": "public"}
    totp = {"type": "totp", "user_id": reader.id, "blob": "x"}
    app_creds = f"/v3/users/{reader.id}/application_credentials"
    return [
        ("POST", "/v3/domains", {"domain": name}),
        ("PATCH", "/v3/domains/default", {"domain": {"description": "x"}}),
        ("DELETE", "/v3/domains/default", None),
        ("POST", "/v3/projects", {"project": name}),
        ("PATCH", f"/v3/projects/{project}", {"project": {"description": "x"}}),
        ("DELETE", f"/v3/projects/{project}", None),
        ("POST", "/v3/users", {"user": name}),
        ("PATCH", f"/v3/users/{reader.id}", {"user": {"email": "x@example.com"}}),
        ("DELETE", f"/v3/users/{reader.id}", None),
        ("POST", "/v3/groups", {"group": name}),
        ("PATCH", f"/v3/groups/{group}", {"group": {"description": "x"}}),
        ("DELETE", f"/v3/groups/{group}", None),
        ("PUT", f"/v3/groups/{group}/users/{reader.id}", None),
        ("DELETE", f"/v3/groups/{group}/users/{reader.id}", None),
        ("POST", "/v3/roles", {"role": name}),
        ("PATCH", f"/v3/roles/{role}", {"role": {"description": "x"}}),
        ("DELETE", f"/v3/roles/{role}", None),
        ("PUT", f"/v3/projects/{project}/users/{reader.id}/roles/{role}", None),
        ("DELETE", f"/v3/projects/{project}/users/{reader.id}/roles/{role}", None),
        ("PUT", f"/v3/projects/{project}/groups/{group}/roles/{role}", None),
        ("PUT", f"/v3/domains/default/users/{reader.id}/roles/{role}", None),
        ("PUT", f"/v3/system/users/{reader.id}/roles/{role}", None),
        ("POST", "/v3/regions", {"region": {"id": "x"}}),
        ("PATCH", "/v3/regions/fr-1", {"region": {"description": "x"}}),
        ("DELETE", "/v3/regions/fr-1", None),
        ("POST", "/v3/services", {"service": {"type": "x"}}),
        ("PATCH", f"/v3/services/{service}", {"service": {"name": "x"}}),
        ("DELETE", f"/v3/services/{service}", None),
        ("POST", "/v3/endpoints", {"endpoint": {**endpoint_body, "url": "http://y.test"}}),
        ("PATCH", f"/v3/endpoints/{endpoint}", {"endpoint": {"url": "http://z.test"}}),
        ("DELETE", f"/v3/endpoints/{endpoint}", None),
        ("POST", app_creds, {"application_credential": name}),
        ("POST", "/v3/credentials", {"credential": totp}),
        ("PATCH", f"/v3/credentials/{cred}", {"credential": {"blob": "y"}}),
        ("DELETE", f"/v3/credentials/{cred}", None),
        ("POST", f"/v3/users/{reader.id}/credentials/OS-EC2", {"tenant_id": project}),
        ("DELETE", f"/v3/users/{reader.id}/credentials/OS-EC2/{access}", None),
    ]  # fmt: skip


def test_reader_cannot_create_update_or_delete_anything(cloud: Cloud) -> None:
    reader = cloud.member("reader")
    attempts = reader_attempts(cloud, reader)
    before = snapshot(cloud)
    for method, path, body in attempts:
        headers = {"X-Auth-Token": reader.token}
        response = cloud.client.request(method, "/identity" + path, json=body, headers=headers)
        assert response.status_code == 403, (method, path, response.text)
        assert_keystone_error(response, 403)
    assert snapshot(cloud) == before
    assert cloud.get("/v3/projects", token=reader.token).status_code == 200


def test_reader_cannot_delete_its_own_app_cred(cloud: Cloud) -> None:
    alice = cloud.member("member")
    cred = cloud.post(
        f"/v3/users/{alice.id}/application_credentials",
        {"application_credential": {"name": "mine"}},
        token=alice.token,
    ).json()["application_credential"]
    role = cloud.role_ids["member"]
    cloud.delete(f"/v3/projects/{alice.project_id}/users/{alice.id}/roles/{role}")
    cloud.grant(alice.id, alice.project_id, "reader")
    as_reader = cloud.token_for(alice.id, alice.password, alice.project_id)
    path = f"/v3/users/{alice.id}/application_credentials/{cred['id']}"
    assert_keystone_error(cloud.delete(path, token=as_reader), 403)
    assert cloud.get(path, token=as_reader).status_code == 200


COLLECTIONS = (
    "domains",
    "projects",
    "users",
    "groups",
    "roles",
    "regions",
    "services",
    "endpoints",
    "credentials",
)


def snapshot(cloud: Cloud) -> dict[str, Any]:
    """Every admin-visible collection, and every assignment: what a reader must not change."""
    out: dict[str, Any] = {}
    for collection in COLLECTIONS:
        out[collection] = cloud.get(f"/v3/{collection}").json()[collection]
    out["assignments"] = cloud.get("/v3/role_assignments").json()["role_assignments"]
    return out
