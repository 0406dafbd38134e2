"""Implied roles: the fixed rules (admin implies member, member implies reader) readable as
Keystone's role inferences, and shown in role assignment listings with include_implied."""

from __future__ import annotations

from typing import Any

from .support import Cloud, assert_keystone_error


def _ids(cloud: Cloud) -> tuple[str, str, str]:
    return cloud.role_ids["admin"], cloud.role_ids["member"], cloud.role_ids["reader"]


def test_role_inferences_list_the_direct_rules(cloud: Cloud) -> None:
    admin, member, reader = _ids(cloud)
    body = cloud.get("/v3/role_inferences").json()
    rules = {
        r["prior_role"]["id"]: [i["id"] for i in r["implies"]] for r in body["role_inferences"]
    }
    assert rules == {admin: [member], member: [reader]}
    assert list(body) == ["role_inferences"]  # Keystone adds no collection links
    listed = cloud.get(f"/v3/roles/{member}/implies").json()
    assert listed["links"]["self"].endswith(f"/v3/roles/{member}/implies")
    one = listed["role_inference"]
    assert one["prior_role"]["name"] == "member" and [i["name"] for i in one["implies"]] == [
        "reader"
    ]
    assert one["implies"][0]["links"]["self"].endswith(f"/v3/roles/{reader}")
    got = cloud.get(f"/v3/roles/{admin}/implies/{member}").json()
    assert got["links"]["self"].endswith(f"/v3/roles/{admin}/implies/{member}")
    pair = got["role_inference"]
    assert pair["implies"]["id"] == member
    assert cloud.head(f"/v3/roles/{admin}/implies/{member}").status_code == 200
    assert_keystone_error(cloud.get(f"/v3/roles/{admin}/implies/{reader}"), 404)
    assert_keystone_error(cloud.get(f"/v3/roles/{reader}/implies"), 404)
    assert_keystone_error(cloud.get("/v3/roles/nothing/implies"), 404)


def test_include_implied_adds_each_implied_assignment_with_its_prior_role(cloud: Cloud) -> None:
    _, member, reader = _ids(cloud)
    person = cloud.member()
    query = f"/v3/role_assignments?user.id={person.id}&effective&include_implied"
    listed: list[dict[str, Any]] = cloud.get(query).json()["role_assignments"]
    assert [a["role"]["id"] for a in listed] == [member, reader]
    assert "prior_role" not in listed[0]["links"]
    assert listed[1]["links"]["prior_role"].endswith(f"/v3/roles/{member}")
    assert listed[1]["scope"] == {"project": {"id": person.project_id}}
    only_reader = cloud.get(f"{query}&role.id={reader}").json()["role_assignments"]
    assert [a["role"]["id"] for a in only_reader] == [reader]
    plain = cloud.get(f"/v3/role_assignments?user.id={person.id}").json()["role_assignments"]
    assert [a["role"]["id"] for a in plain] == [member]


def test_a_project_reader_sees_implied_roles_only_of_its_own(cloud: Cloud) -> None:
    person = cloud.member(role="reader")
    query = "/v3/role_assignments?effective&include_implied"
    listed = cloud.get(query, token=person.token).json()["role_assignments"]
    assert {a["user"]["id"] for a in listed if "user" in a} <= {person.id}
    assert_keystone_error(cloud.get("/v3/role_inferences", token=""), 401)


def test_admin_adds_and_removes_an_implied_role_rule(cloud: Cloud) -> None:
    prior = cloud.create("roles", "role", name=cloud.unique("prior"))
    implied = cloud.create("roles", "role", name=cloud.unique("implied"))
    rule = f"/v3/roles/{prior['id']}/implies/{implied['id']}"
    made = cloud.put(rule)
    assert made.status_code == 201, made.text
    assert made.json()["role_inference"]["implies"]["id"] == implied["id"]
    person = cloud.member(role=None)
    project = cloud.project()
    cloud.grant(person.id, project["id"], "member")
    grant = f"/v3/projects/{project['id']}/users/{person.id}/roles/{prior['id']}"
    assert cloud.put(grant).status_code == 204
    token = cloud.token_for(person.id, person.password, project["id"])
    shown = cloud.get("/v3/auth/tokens", headers={"X-Subject-Token": token}).json()["token"]
    assert implied["name"] in {r["name"] for r in shown["roles"]}
    query = f"/v3/role_assignments?user.id={person.id}&scope.project.id={project['id']}&effective"
    roles = {a["role"]["id"] for a in cloud.get(query).json()["role_assignments"]}
    assert {prior["id"], implied["id"]} <= roles
    inferences = cloud.get("/v3/role_inferences").json()["role_inferences"]
    assert implied["id"] in [
        i["id"] for r in inferences if r["prior_role"]["id"] == prior["id"] for i in r["implies"]
    ]
    assert cloud.delete(rule).status_code == 204
    assert_keystone_error(cloud.get(rule), 404)
    roles = {a["role"]["id"] for a in cloud.get(query).json()["role_assignments"]}
    assert implied["id"] not in roles
    shown = cloud.get("/v3/auth/tokens", headers={"X-Subject-Token": token}).json()["token"]
    assert implied["name"] not in {r["name"] for r in shown["roles"]}


def test_implied_role_rules_refuse_cycles_admin_and_non_admins(cloud: Cloud) -> None:
    a = cloud.create("roles", "role", name=cloud.unique("a"))
    b = cloud.create("roles", "role", name=cloud.unique("b"))
    assert cloud.put(f"/v3/roles/{a['id']}/implies/{b['id']}").status_code == 201
    assert_keystone_error(cloud.put(f"/v3/roles/{b['id']}/implies/{a['id']}"), 400)
    assert_keystone_error(cloud.put(f"/v3/roles/{a['id']}/implies/{a['id']}"), 400)
    admin_id, member_id, _ = _ids(cloud)
    assert_keystone_error(cloud.put(f"/v3/roles/{a['id']}/implies/{admin_id}"), 403)
    assert_keystone_error(cloud.delete(f"/v3/roles/{admin_id}/implies/{member_id}"), 403)
    assert_keystone_error(cloud.put(f"/v3/roles/{a['id']}/implies/nothing"), 404)
    person = cloud.member()
    c = cloud.create("roles", "role", name=cloud.unique("c"))
    assert_keystone_error(
        cloud.put(f"/v3/roles/{a['id']}/implies/{c['id']}", token=person.token), 403
    )
    assert_keystone_error(
        cloud.delete(f"/v3/roles/{a['id']}/implies/{b['id']}", token=person.token), 403
    )
    assert cloud.get(f"/v3/roles/{a['id']}/implies/{b['id']}").status_code == 200


def test_domain_roles_imply_global_ones_and_never_show_themselves(cloud: Cloud) -> None:
    domain = cloud.create("domains", "domain", name=cloud.unique("dom"))
    domain_role = cloud.create("roles", "role", name=cloud.unique("dr"), domain_id=domain["id"])
    global_role = cloud.create("roles", "role", name=cloud.unique("gr"))
    assert (
        cloud.put(f"/v3/roles/{domain_role['id']}/implies/{global_role['id']}").status_code == 201
    )
    assert_keystone_error(
        cloud.put(f"/v3/roles/{global_role['id']}/implies/{domain_role['id']}"), 403
    )
    person = cloud.member()
    grant = f"/v3/projects/{person.project_id}/users/{person.id}/roles/{domain_role['id']}"
    assert cloud.put(grant).status_code == 204
    query = f"/v3/role_assignments?user.id={person.id}&scope.project.id={person.project_id}"
    effective = {
        a["role"]["id"] for a in cloud.get(f"{query}&effective").json()["role_assignments"]
    }
    assert global_role["id"] in effective and domain_role["id"] not in effective
    token = cloud.token_for(person.id, person.password, person.project_id)
    shown = cloud.get("/v3/auth/tokens", headers={"X-Subject-Token": token}).json()["token"]
    names = {r["name"] for r in shown["roles"]}
    assert global_role["name"] in names and domain_role["name"] not in names
