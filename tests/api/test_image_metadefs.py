"""Metadata definitions: namespaces read by projects, written by cloud administrators only;
the objects, properties, tags and resource type associations they hold."""

from __future__ import annotations

from typing import Any

from .support import Cloud
from .test_images import Glance, admin, glance_error, tenant

NS = "/v2/metadefs/namespaces"


def _namespace(cloud: Cloud, **fields: Any) -> dict[str, Any]:
    body = {
        "namespace": cloud.unique("OS::Compute::Test"),
        "display_name": "Test",
        "description": "What a test namespace means",
        "visibility": "public",
        "properties": {"hw_rng": {"title": "RNG", "type": "boolean"}},
        "objects": [
            {
                "name": "CPU Limits",
                "required": [],
                "properties": {"quota:cpu_shares": {"title": "Shares", "type": "integer"}},
            }
        ],
        "tags": [{"name": "fast"}],
        "resource_type_associations": [{"name": "OS::Glance::Image", "prefix": "hw_"}],
        **fields,
    }
    response = admin(cloud).post(NS, body)
    assert response.status_code == 201, response.text
    created: dict[str, Any] = response.json()
    return created


def test_admin_creates_and_everyone_reads_a_public_namespace(shared_cloud: Cloud) -> None:
    created = _namespace(shared_cloud)
    name = created["namespace"]
    assert created["visibility"] == "public" and created["protected"] is False
    assert created["self"] == f"{NS}/{name}"
    g = tenant(shared_cloud)
    assert name in [n["namespace"] for n in g.get(NS).json()["namespaces"]]
    shown = g.get(f"{NS}/{name}").json()
    assert shown["properties"]["hw_rng"]["type"] == "boolean"
    assert [o["name"] for o in shown["objects"]] == ["CPU Limits"]
    assert [t["name"] for t in shown["tags"]] == ["fast"]
    assert g.get(f"{NS}/{name}/properties/hw_rng").json()["title"] == "RNG"
    assert g.get(f"{NS}/{name}/objects/CPU Limits").json()["name"] == "CPU Limits"
    assert g.get(f"{NS}/{name}/tags/fast").json()["name"] == "fast"
    assert g.get(f"{NS}/{name}/objects").json()["objects"][0]["properties"]
    assert list(g.get(f"{NS}/{name}/properties").json()["properties"]) == ["hw_rng"]
    [assoc] = g.get(f"{NS}/{name}/resource_types").json()["resource_type_associations"]
    assert assoc["name"] == "OS::Glance::Image" and assoc["prefix"] == "hw_"
    types = g.get("/v2/metadefs/resource_types").json()["resource_types"]
    assert "OS::Glance::Image" in [t["name"] for t in types]
    by_type = g.get(NS, params={"resource_types": "OS::Glance::Image"}).json()["namespaces"]
    assert name in [n["namespace"] for n in by_type]
    glance_error(g.get(f"{NS}/{name}/tags/slow"), 404)
    glance_error(g.get(f"{NS}/{name}/objects/nothing"), 404)
    glance_error(g.get(f"{NS}/{name}/properties/nothing"), 404)


def test_private_namespace_is_hidden_from_other_projects(shared_cloud: Cloud) -> None:
    created = _namespace(shared_cloud, visibility="private")
    g = tenant(shared_cloud)
    glance_error(g.get(f"{NS}/{created['namespace']}"), 404)
    glance_error(g.get(f"{NS}/{created['namespace']}/tags"), 404)
    assert created["namespace"] not in [n["namespace"] for n in g.get(NS).json()["namespaces"]]
    a = admin(shared_cloud)
    assert a.get(f"{NS}/{created['namespace']}").status_code == 200


def test_projects_cannot_write_namespaces(shared_cloud: Cloud) -> None:
    created = _namespace(shared_cloud)
    g = tenant(shared_cloud)
    glance_error(g.post(NS, {"namespace": shared_cloud.unique("mine")}), 403)
    name = created["namespace"]
    response = g.client.put(
        f"/image{NS}/{name}", json={"namespace": name}, headers={"X-Auth-Token": g.token}
    )
    glance_error(response, 403)
    glance_error(g.delete(f"{NS}/{name}"), 403)
    assert g.get(f"{NS}/{name}").json()["display_name"] == "Test"


def test_replace_and_protected_delete(shared_cloud: Cloud) -> None:
    created = _namespace(shared_cloud, protected=True)
    name = created["namespace"]
    a = admin(shared_cloud)
    glance_error(a.delete(f"{NS}/{name}"), 403)
    body = {"namespace": name, "display_name": "Renamed", "visibility": "public"}
    response = a.client.put(f"/image{NS}/{name}", json=body, headers={"X-Auth-Token": a.token})
    assert response.status_code == 200, response.text
    shown = response.json()
    assert shown["display_name"] == "Renamed" and shown["protected"] is False
    assert shown["properties"]["hw_rng"]  # definitions not sent are kept
    renamed = {"namespace": "Other", "visibility": "public"}
    response = a.client.put(f"/image{NS}/{name}", json=renamed, headers={"X-Auth-Token": a.token})
    glance_error(response, 400)
    assert a.delete(f"{NS}/{name}").status_code == 204
    glance_error(a.get(f"{NS}/{name}"), 404)


def test_bad_namespace_bodies_are_400_and_duplicates_409(shared_cloud: Cloud) -> None:
    a = admin(shared_cloud)
    for body in (
        {},
        {"namespace": ""},
        {"namespace": "bad/name"},
        {"namespace": "ok", "visibility": "everyone"},
        {"namespace": "ok", "protected": "yes"},
        {"namespace": "ok", "properties": {"p": {"type": "string"}}},
        {"namespace": "ok", "properties": {"p": {"title": "P", "type": "weird"}}},
        {"namespace": "ok", "objects": [{"description": "no name"}]},
        {"namespace": "ok", "tags": ["not-an-object"]},
        {"namespace": "ok", "resource_type_associations": "OS::Glance::Image"},
    ):
        glance_error(a.post(NS, body), 400)
    assert "ok" not in [n["namespace"] for n in a.get(NS).json()["namespaces"]]
    created = _namespace(shared_cloud)
    glance_error(a.post(NS, {"namespace": created["namespace"]}), 409)


def test_reader_reads_namespaces(shared_cloud: Cloud) -> None:
    created = _namespace(shared_cloud)
    reader = shared_cloud.member(role="reader")
    g = Glance(shared_cloud, reader.token, reader.project_id)
    assert g.get(f"{NS}/{created['namespace']}").status_code == 200
    glance_error(g.post(NS, {"namespace": shared_cloud.unique("r")}), 403)
