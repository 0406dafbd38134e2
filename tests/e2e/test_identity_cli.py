"""The identity service as an operator and a customer meet it: through the `openstack` CLI."""

from __future__ import annotations

import pytest

from tests.e2e.conftest import REGION, Cloud, unique

pytestmark = pytest.mark.e2e


def test_token_issue_gives_a_project_scoped_token_the_server_validates(cloud: Cloud) -> None:
    issued = cloud.cli_json("token", "issue")
    admin_project = cloud.admin.identity.find_project("admin", ignore_missing=False)
    assert issued["project_id"] == admin_project.id
    validated = cloud.validate(issued["id"])
    assert validated.status_code == 200
    token = validated.json()["token"]
    assert token["user"]["name"] == "admin"
    assert token["project"]["id"] == admin_project.id
    assert {r["name"] for r in token["roles"]} >= {"admin", "member", "reader"}


def test_project_user_group_and_role_are_created_listed_and_deleted_with_the_cli(
    cloud: Cloud,
) -> None:
    name = unique("crud")
    password = f"{name}-Passw0rd"
    cloud.secrets.add(password)

    project = cloud.cli_json("project", "create", f"{name}-p", "--description", "e2e")
    user = cloud.cli_json(
        "user", "create", f"{name}-u", "--password", password, "--project", project["id"]
    )
    group = cloud.cli_json("group", "create", f"{name}-g")
    role = cloud.cli_json("role", "create", f"{name}-r")
    assert project["name"] == f"{name}-p" and project["enabled"] is True
    assert user["default_project_id"] == project["id"]
    assert "password" not in user

    listed = {
        kind: {row["Name"]: row["ID"] for row in cloud.cli_json(kind, "list")}
        for kind in ("project", "user", "group", "role")
    }
    assert listed["project"][f"{name}-p"] == project["id"]
    assert listed["user"][f"{name}-u"] == user["id"]
    assert listed["group"][f"{name}-g"] == group["id"]
    assert listed["role"][f"{name}-r"] == role["id"]

    cloud.cli_ok("group", "add", "user", group["id"], user["id"])
    assert "in group" in cloud.cli_ok("group", "contains", "user", group["id"], user["id"])
    cloud.cli_ok("role", "add", "--project", project["id"], "--user", user["id"], role["id"])
    cloud.cli_ok("role", "add", "--project", project["id"], "--group", group["id"], "reader")

    rows = cloud.cli_json("role", "assignment", "list", "--names", "--project", project["id"])
    assert sorted((r["Role"], r["User"], r["Group"], r["Project"]) for r in rows) == sorted(
        [
            (f"{name}-r", f"{name}-u@Default", "", f"{name}-p@Default"),
            ("reader", "", f"{name}-g@Default", f"{name}-p@Default"),
        ]
    )

    cloud.cli_ok("user", "delete", user["id"])
    cloud.cli_ok("group", "delete", group["id"])
    cloud.cli_ok("role", "delete", role["id"])
    cloud.cli_ok("project", "delete", project["id"])
    identity = cloud.admin.identity
    assert identity.find_project(project["id"]) is None
    assert identity.find_user(user["id"]) is None
    assert identity.find_group(group["id"]) is None
    assert identity.find_role(role["id"]) is None
    assert list(identity.role_assignments(scope_project_id=project["id"])) == []


def test_new_user_logs_in_scoped_to_its_project_with_clouds_yaml_and_with_flags(
    cloud: Cloud,
) -> None:
    tenant = cloud.make_tenant("login")

    from_clouds_yaml = cloud.cli_json("token", "issue", cloud=tenant.cloud_name)
    assert from_clouds_yaml["project_id"] == tenant.project_id
    assert from_clouds_yaml["user_id"] == tenant.user_id

    flags = cloud.user_flags(tenant.user_name, tenant.password, tenant.project_name)
    from_flags = cloud.cli_json(*flags, "token", "issue", cloud=None)
    assert from_flags["project_id"] == tenant.project_id
    assert from_flags["user_id"] == tenant.user_id

    projects = cloud.cli_json("project", "list", cloud=tenant.cloud_name)
    assert [p["ID"] for p in projects] == [tenant.project_id]


def test_catalog_list_shows_identity_in_region_fr_1(cloud: Cloud) -> None:
    tenant = cloud.make_tenant("catalog")
    catalog = cloud.cli_json("catalog", "list", cloud=tenant.cloud_name)
    identity = [entry for entry in catalog if entry["Type"] == "identity"]
    assert len(identity) == 1
    assert identity[0]["Name"] == "keystone"
    endpoints = identity[0]["Endpoints"]
    assert {e["interface"] for e in endpoints} == {"public", "internal", "admin"}
    assert {e["region"] for e in endpoints} == {REGION}
    assert {e["url"] for e in endpoints} == {cloud.auth_url}


def test_revoked_token_is_refused_with_401(cloud: Cloud) -> None:
    tenant = cloud.make_tenant("revoke")
    token = cloud.cli_json("token", "issue", cloud=tenant.cloud_name)["id"]
    assert cloud.token_status(token) == 200

    cloud.cli_ok("token", "revoke", token, cloud=tenant.cloud_name)

    assert cloud.token_status(token) == 401
    assert cloud.validate(token).status_code == 404
    error = cloud.cli_fails(
        "--os-auth-type",
        "token",
        "--os-auth-url",
        cloud.auth_url,
        "--os-token",
        token,
        "--os-project-id",
        tenant.project_id,
        "project",
        "list",
        cloud=None,
    )
    assert "HTTP 401" in error


def test_a_user_cannot_revoke_another_users_token(cloud: Cloud) -> None:
    owner, other = cloud.make_tenant("victim"), cloud.make_tenant("revoker")
    victim_token = cloud.token_for(owner)
    response = cloud.http(
        "DELETE",
        "/v3/auth/tokens",
        token=cloud.token_for(other),
        headers={"X-Subject-Token": victim_token},
    )
    assert response.status_code == 404
    assert cloud.token_status(victim_token) == 200
