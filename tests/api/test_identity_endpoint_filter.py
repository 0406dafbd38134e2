"""Endpoint filters (OS-EP-FILTER): endpoint groups and project associations, managed by
admins, narrow what a project-scoped token's catalog shows."""

from __future__ import annotations

from typing import Any

from .support import Cloud, assert_keystone_error

EP = "/v3/OS-EP-FILTER"


def _endpoint(cloud: Cloud, interface: str = "public") -> tuple[dict[str, Any], dict[str, Any]]:
    service = cloud.create("services", "service", type=cloud.unique("kind"), name="svc")
    endpoint = cloud.create(
        "endpoints",
        "endpoint",
        service_id=service["id"],
        interface=interface,
        url=f"http://example.test/{cloud.unique('ep')}",
    )
    return service, endpoint


def _catalog_ids(cloud: Cloud, token: str) -> set[str]:
    catalog = cloud.get("/v3/auth/catalog", token=token).json()["catalog"]
    return {e["id"] for sv in catalog for e in sv["endpoints"]}


def test_a_project_without_associations_sees_the_whole_catalog(cloud: Cloud) -> None:
    _, endpoint = _endpoint(cloud)
    person = cloud.member()
    assert endpoint["id"] in _catalog_ids(cloud, person.token)


def test_an_associated_endpoint_narrows_the_project_catalog(cloud: Cloud) -> None:
    _, wanted = _endpoint(cloud)
    _, other = _endpoint(cloud)
    person = cloud.member()
    path = f"{EP}/projects/{person.project_id}/endpoints/{wanted['id']}"
    assert cloud.put(path).status_code == 204
    assert cloud.get(path).status_code == 204
    assert _catalog_ids(cloud, person.token) == {wanted["id"]}
    token = cloud.token_for(person.id, person.password, person.project_id)
    issued = cloud.get("/v3/auth/tokens", headers={"X-Subject-Token": token}).json()["token"]
    assert {e["id"] for sv in issued["catalog"] for e in sv["endpoints"]} == {wanted["id"]}
    listed = cloud.get(f"{EP}/projects/{person.project_id}/endpoints").json()["endpoints"]
    assert [e["id"] for e in listed] == [wanted["id"]]
    projects = cloud.get(f"{EP}/endpoints/{wanted['id']}/projects").json()["projects"]
    assert [p["id"] for p in projects] == [person.project_id]
    assert cloud.delete(path).status_code == 204
    assert {wanted["id"], other["id"]} <= _catalog_ids(cloud, person.token)
    assert_keystone_error(cloud.delete(path), 404)


def test_an_endpoint_group_picks_endpoints_by_filters(cloud: Cloud) -> None:
    service, public = _endpoint(cloud, "public")
    internal = cloud.create(
        "endpoints", "endpoint", service_id=service["id"], interface="internal", url="http://i/"
    )
    body = {"name": "pub", "filters": {"service_id": service["id"], "interface": "public"}}
    made = cloud.post(f"{EP}/endpoint_groups", {"endpoint_group": body})
    assert made.status_code == 201, made.text
    group = made.json()["endpoint_group"]
    assert group["links"]["self"].endswith(f"{EP}/endpoint_groups/{group['id']}")
    picked = cloud.get(f"{EP}/endpoint_groups/{group['id']}/endpoints").json()["endpoints"]
    assert [e["id"] for e in picked] == [public["id"]]
    person = cloud.member()
    assoc = f"{EP}/endpoint_groups/{group['id']}/projects/{person.project_id}"
    assert cloud.put(assoc).status_code == 204
    assert _catalog_ids(cloud, person.token) == {public["id"]}
    groups = cloud.get(f"{EP}/projects/{person.project_id}/endpoint_groups").json()
    assert [g["id"] for g in groups["endpoint_groups"]] == [group["id"]]
    patched = cloud.patch(
        f"{EP}/endpoint_groups/{group['id']}",
        {"endpoint_group": {"filters": {"service_id": service["id"], "interface": "internal"}}},
    )
    assert patched.status_code == 200, patched.text
    assert _catalog_ids(cloud, person.token) == {internal["id"]}
    assert cloud.delete(f"{EP}/endpoint_groups/{group['id']}").status_code == 204
    assert internal["id"] in _catalog_ids(cloud, person.token)
    assert public["id"] in _catalog_ids(cloud, person.token)


def test_bad_groups_are_400_and_only_admins_manage_filters(cloud: Cloud) -> None:
    groups = f"{EP}/endpoint_groups"
    for body in (
        {"name": "x"},
        {"name": "x", "filters": {}},
        {"name": "x", "filters": {"color": "red"}},
        {"name": "x", "filters": {"interface": "sideways"}},
        {"filters": {"interface": "public"}},
    ):
        assert_keystone_error(cloud.post(groups, {"endpoint_group": body}), 400)
    person = cloud.member()
    body = {"name": "x", "filters": {"interface": "public"}}
    assert_keystone_error(cloud.post(groups, {"endpoint_group": body}, token=person.token), 403)
    assert_keystone_error(cloud.get(groups, token=person.token), 403)
    _, endpoint = _endpoint(cloud)
    path = f"{EP}/projects/{person.project_id}/endpoints/{endpoint['id']}"
    assert_keystone_error(cloud.put(path, token=person.token), 403)
    assert_keystone_error(cloud.put(f"{EP}/projects/nothing/endpoints/{endpoint['id']}"), 404)
    assert_keystone_error(cloud.put(f"{EP}/projects/{person.project_id}/endpoints/none"), 404)
    assert cloud.get(groups).json()["endpoint_groups"] == []
