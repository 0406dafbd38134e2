"""Grants on projects, domains and the system, for users and groups; /v3/role_assignments."""

from __future__ import annotations

from typing import Any

import pytest

from .support import Cloud, assert_keystone_error, password_auth

MISSING = "0123456789abcdef0123456789abcdef"


def role_names(response: Any) -> set[str]:
    assert response.status_code == 200, response.text
    return {r["name"] for r in response.json()["roles"]}


@pytest.mark.parametrize("target", ["projects", "domains"])
@pytest.mark.parametrize("actor", ["users", "groups"])
def test_grant_check_list_and_revoke(cloud: Cloud, target: str, actor: str) -> None:
    target_id = cloud.project()["id"] if target == "projects" else "default"
    if actor == "users":
        actor_id = cloud.user()["id"]
    else:
        actor_id = cloud.create("groups", "group", name=cloud.unique("g"))["id"]
    role = cloud.role_ids["reader"]
    base = f"/v3/{target}/{target_id}/{actor}/{actor_id}/roles"
    assert_keystone_error(cloud.get(f"{base}/{role}"), 404)
    assert cloud.head(f"{base}/{role}").status_code == 404
    assert cloud.put(f"{base}/{role}").status_code == 204
    assert cloud.put(f"{base}/{role}").status_code == 204  # idempotent
    assert cloud.head(f"{base}/{role}").status_code == 204
    assert cloud.get(f"{base}/{role}").status_code == 204
    assert role_names(cloud.get(base)) == {"reader"}
    assert cloud.delete(f"{base}/{role}").status_code == 204
    assert role_names(cloud.get(base)) == set()
    assert_keystone_error(cloud.delete(f"{base}/{role}"), 404)


@pytest.mark.parametrize(
    "path",
    [
        "/v3/projects/{missing}/users/{user}/roles/{role}",
        "/v3/projects/{project}/users/{missing}/roles/{role}",
        "/v3/projects/{project}/users/{user}/roles/{missing}",
        "/v3/projects/{project}/groups/{missing}/roles/{role}",
        "/v3/domains/{missing}/users/{user}/roles/{role}",
    ],
)
def test_grant_with_unknown_part_is_404(shared_cloud: Cloud, path: str) -> None:
    cloud = shared_cloud
    url = path.format(
        missing=MISSING,
        user=cloud.user()["id"],
        project=cloud.project()["id"],
        role=cloud.role_ids["member"],
    )
    assert_keystone_error(cloud.put(url), 404)


def test_group_grant_gives_members_the_role(cloud: Cloud) -> None:
    project = cloud.project()
    group = cloud.create("groups", "group", name="team")
    alice = cloud.member(role=None)
    cloud.grant(group["id"], project["id"], "member", actor="groups")
    scoped = password_auth(
        alice.password, user_id=alice.id, scope={"project": {"id": project["id"]}}
    )
    assert_keystone_error(cloud.issue(scoped), 401)
    assert cloud.put(f"/v3/groups/{group['id']}/users/{alice.id}").status_code == 204
    response = cloud.issue(scoped)
    assert response.status_code == 201
    assert {r["name"] for r in response.json()["token"]["roles"]} == {"member", "reader"}


def test_system_grants(cloud: Cloud) -> None:
    user = cloud.user()
    role = cloud.role_ids["reader"]
    base = f"/v3/system/users/{user['id']}/roles"
    assert cloud.put(f"{base}/{role}").status_code == 204
    assert role_names(cloud.get(base)) == {"reader"}
    assignments = cloud.get(f"/v3/role_assignments?user.id={user['id']}&scope.system=all")
    assert [a["scope"] for a in assignments.json()["role_assignments"]] == [
        {"system": {"all": True}}
    ]
    assert cloud.delete(f"{base}/{role}").status_code == 204


def test_role_assignments_filters_and_links(cloud: Cloud) -> None:
    project = cloud.project()
    alice = cloud.member("member", project_id=project["id"])
    bob = cloud.member("reader", project_id=project["id"])
    response = cloud.get(f"/v3/role_assignments?scope.project.id={project['id']}")
    assert response.status_code == 200
    items = response.json()["role_assignments"]
    assert {(a["user"]["id"], a["role"]["id"]) for a in items} == {
        (alice.id, cloud.role_ids["member"]),
        (bob.id, cloud.role_ids["reader"]),
    }
    for item in items:
        assert item["scope"] == {"project": {"id": project["id"]}}
        assert item["links"]["assignment"].endswith(
            f"/v3/projects/{project['id']}/users/{item['user']['id']}/roles/{item['role']['id']}"
        )
    by_user = cloud.get(f"/v3/role_assignments?user.id={alice.id}").json()["role_assignments"]
    assert [a["role"]["id"] for a in by_user] == [cloud.role_ids["member"]]
    by_role = cloud.get(
        f"/v3/role_assignments?role.id={cloud.role_ids['reader']}&scope.project.id={project['id']}"
    )
    assert [a["user"]["id"] for a in by_role.json()["role_assignments"]] == [bob.id]
    on_domain = cloud.get("/v3/role_assignments?scope.domain.id=default").json()
    assert on_domain["role_assignments"] == []


def test_role_assignments_effective_expands_groups(cloud: Cloud) -> None:
    project = cloud.project()
    group = cloud.create("groups", "group", name="team")
    users = [cloud.user()["id"] for _ in range(2)]
    for user_id in users:
        cloud.put(f"/v3/groups/{group['id']}/users/{user_id}")
    cloud.grant(group["id"], project["id"], "member", actor="groups")
    direct = cloud.get(f"/v3/role_assignments?scope.project.id={project['id']}").json()
    assert [a["group"]["id"] for a in direct["role_assignments"]] == [group["id"]]
    effective = cloud.get(
        f"/v3/role_assignments?scope.project.id={project['id']}&effective"
    ).json()["role_assignments"]
    # an effective listing holds the implied roles too (member implies reader), as Keystone's
    member = cloud.role_ids["member"]
    assert sorted(a["user"]["id"] for a in effective if a["role"]["id"] == member) == sorted(users)
    assert {a["role"]["id"] for a in effective} == {member, cloud.role_ids["reader"]}
    assert all("group" not in a for a in effective)
    for item in effective:
        assert item["links"]["membership"].endswith(
            f"/v3/groups/{group['id']}/users/{item['user']['id']}"
        )
    one = cloud.get(f"/v3/role_assignments?effective&user.id={users[0]}").json()
    assert {a["scope"]["project"]["id"] for a in one["role_assignments"]} == {project["id"]}


def test_role_assignments_include_names(cloud: Cloud) -> None:
    project = cloud.project("named")
    alice = cloud.member("member", project_id=project["id"])
    response = cloud.get(f"/v3/role_assignments?user.id={alice.id}&include_names=true")
    (item,) = response.json()["role_assignments"]
    assert item["role"] == {"id": cloud.role_ids["member"], "name": "member"}
    assert item["user"]["name"] == alice.name
    assert item["user"]["domain"] == {"id": "default", "name": "Default"}
    assert item["scope"]["project"]["name"] == "named"
    assert item["scope"]["project"]["domain"] == {"id": "default", "name": "Default"}
    plain = cloud.get(f"/v3/role_assignments?user.id={alice.id}").json()["role_assignments"][0]
    assert "name" not in plain["role"] and "name" not in plain["user"]


def test_user_project_list(cloud: Cloud) -> None:
    alice = cloud.member("member")
    other = cloud.project()
    cloud.grant(alice.id, other["id"], "reader")
    listed = cloud.get(f"/v3/users/{alice.id}/projects").json()["projects"]
    assert {p["id"] for p in listed} == {alice.project_id, other["id"]}
    own = cloud.get(f"/v3/users/{alice.id}/projects", token=alice.token).json()["projects"]
    assert {p["id"] for p in own} == {alice.project_id, other["id"]}
