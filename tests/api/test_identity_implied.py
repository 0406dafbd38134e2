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
    one = cloud.get(f"/v3/roles/{member}/implies").json()["role_inference"]
    assert one["prior_role"]["name"] == "member" and [i["name"] for i in one["implies"]] == [
        "reader"
    ]
    assert one["implies"][0]["links"]["self"].endswith(f"/v3/roles/{reader}")
    pair = cloud.get(f"/v3/roles/{admin}/implies/{member}").json()["role_inference"]
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
