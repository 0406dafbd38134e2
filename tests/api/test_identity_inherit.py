"""OS-INHERIT: a role granted on a domain or a project "inherited to projects" is held on
every project under it (a project's subtree, not the project itself), in tokens, in the
projects a user may scope to and in effective role assignments."""

from __future__ import annotations

from .support import Cloud, assert_keystone_error, password_auth

INHERIT = "/v3/OS-INHERIT"


def _user(cloud: Cloud) -> tuple[str, str]:
    password = f"pw-{cloud.unique('p')}-Long"
    return cloud.user(password=password)["id"], password


def _scope(cloud: Cloud, user_id: str, password: str, project_id: str) -> int:
    auth = password_auth(password, user_id=user_id, scope={"project": {"id": project_id}})
    return int(cloud.issue(auth).status_code)


def test_domain_grant_inherited_to_projects_scopes_every_project(cloud: Cloud) -> None:
    domain = cloud.create("domains", "domain", name=cloud.unique("dom"))
    project = cloud.project(domain_id=domain["id"])
    user_id, password = _user(cloud)
    member = cloud.role_ids["member"]
    assert _scope(cloud, user_id, password, project["id"]) == 401
    path = f"{INHERIT}/domains/{domain['id']}/users/{user_id}/roles/{member}/inherited_to_projects"
    assert cloud.put(path).status_code == 204
    assert cloud.head(path).status_code == 204
    assert _scope(cloud, user_id, password, project["id"]) == 201
    later = cloud.project(domain_id=domain["id"])  # a project made afterwards inherits too
    assert _scope(cloud, user_id, password, later["id"]) == 201
    token = cloud.token_for(user_id, password, None)
    mine = cloud.get("/v3/auth/projects", token=token).json()["projects"]
    assert {project["id"], later["id"]} <= {p["id"] for p in mine}
    # the domain itself is not granted
    domain_scope = {"domain": {"id": domain["id"]}}
    assert_keystone_error(
        cloud.issue(password_auth(password, user_id=user_id, scope=domain_scope)), 401
    )
    listed = cloud.get(
        f"{INHERIT}/domains/{domain['id']}/users/{user_id}/roles/inherited_to_projects"
    ).json()["roles"]
    assert [r["id"] for r in listed] == [member]
    assert cloud.delete(path).status_code == 204
    assert _scope(cloud, user_id, password, project["id"]) == 401
    assert cloud.head(path).status_code == 404


def test_project_grant_inherited_to_its_subtree_not_itself(cloud: Cloud) -> None:
    parent = cloud.project()
    child = cloud.project(parent_id=parent["id"])
    grandchild = cloud.project(parent_id=child["id"])
    user_id, password = _user(cloud)
    reader = cloud.role_ids["reader"]
    path = f"{INHERIT}/projects/{parent['id']}/users/{user_id}/roles/{reader}/inherited_to_projects"
    assert cloud.put(path).status_code == 204
    assert _scope(cloud, user_id, password, parent["id"]) == 401
    assert _scope(cloud, user_id, password, child["id"]) == 201
    assert _scope(cloud, user_id, password, grandchild["id"]) == 201


def test_group_grant_inherited_reaches_its_members(cloud: Cloud) -> None:
    domain = cloud.create("domains", "domain", name=cloud.unique("dom"))
    project = cloud.project(domain_id=domain["id"])
    group = cloud.create("groups", "group", name=cloud.unique("grp"))
    user_id, password = _user(cloud)
    assert cloud.put(f"/v3/groups/{group['id']}/users/{user_id}").status_code == 204
    member = cloud.role_ids["member"]
    path = (
        f"{INHERIT}/domains/{domain['id']}/groups/{group['id']}/roles/{member}"
        "/inherited_to_projects"
    )
    assert cloud.put(path).status_code == 204
    assert _scope(cloud, user_id, password, project["id"]) == 201


def test_role_assignments_show_inherited_grants_and_expand_them_when_effective(
    cloud: Cloud,
) -> None:
    domain = cloud.create("domains", "domain", name=cloud.unique("dom"))
    project = cloud.project(domain_id=domain["id"])
    user_id, _ = _user(cloud)
    member = cloud.role_ids["member"]
    path = f"{INHERIT}/domains/{domain['id']}/users/{user_id}/roles/{member}/inherited_to_projects"
    assert cloud.put(path).status_code == 204
    plain = cloud.get(f"/v3/role_assignments?user.id={user_id}").json()["role_assignments"]
    assert [a["scope"] for a in plain] == [
        {"domain": {"id": domain["id"]}, "OS-INHERIT:inherited_to": "projects"}
    ]
    assert plain[0]["links"]["assignment"].endswith(path)
    effective = cloud.get(f"/v3/role_assignments?user.id={user_id}&effective").json()
    assert [(a["role"]["id"], a["scope"]) for a in effective["role_assignments"]] == [
        (member, {"project": {"id": project["id"]}}),
        (cloud.role_ids["reader"], {"project": {"id": project["id"]}}),  # member implies it
    ]
    by_project = cloud.get(
        f"/v3/role_assignments?scope.project.id={project['id']}&effective"
    ).json()["role_assignments"]
    assert user_id in [a["user"]["id"] for a in by_project]


def test_only_admins_grant_inherited_roles_and_parts_must_exist(cloud: Cloud) -> None:
    domain = cloud.create("domains", "domain", name=cloud.unique("dom"))
    user_id, _ = _user(cloud)
    member = cloud.role_ids["member"]
    path = f"{INHERIT}/domains/{domain['id']}/users/{user_id}/roles/{member}/inherited_to_projects"
    someone = cloud.member()
    assert_keystone_error(cloud.put(path, token=someone.token), 403)
    missing = f"{INHERIT}/domains/nowhere/users/{user_id}/roles/{member}/inherited_to_projects"
    assert_keystone_error(cloud.put(missing), 404)
    no_role = (
        f"{INHERIT}/domains/{domain['id']}/users/{user_id}/roles/nothing/inherited_to_projects"
    )
    assert_keystone_error(cloud.put(no_role), 404)
    assert cloud.get(f"/v3/role_assignments?user.id={user_id}").json()["role_assignments"] == []
