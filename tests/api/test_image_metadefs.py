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


def test_metadef_schemas_describe_each_kind(shared_cloud: Cloud) -> None:
    g = tenant(shared_cloud)
    names = {
        "namespace": "namespace",
        "namespaces": "namespaces",
        "resource_type": "resource_type_association",
        "resource_types": "resource_type_associations",
        "object": "object",
        "objects": "objects",
        "property": "property",
        "properties": "properties",
        "tag": "tag",
        "tags": "tags",
    }
    for path, name in names.items():
        assert g.get(f"/v2/schemas/metadefs/{path}").json()["name"] == name
    glance_error(g.get("/v2/schemas/metadefs/nothing"), 404)


def test_admin_manages_objects_properties_tags_and_associations(shared_cloud: Cloud) -> None:
    created = _namespace(shared_cloud)
    ns = f"{NS}/{created['namespace']}"
    a = admin(shared_cloud)
    h = {"X-Auth-Token": a.token}

    def put(path: str, body: Any) -> Any:
        return a.client.put(f"/image{path}", json=body, headers=h)

    made = a.post(f"{ns}/objects", {"name": "Disk", "properties": {}})
    assert made.status_code == 201 and made.json()["name"] == "Disk", made.text
    glance_error(a.post(f"{ns}/objects", {"name": "Disk"}), 409)
    renamed = put(f"{ns}/objects/Disk", {"name": "Disks", "description": "d"})
    assert renamed.status_code == 200 and renamed.json()["description"] == "d"
    glance_error(a.get(f"{ns}/objects/Disk"), 404)
    assert a.delete(f"{ns}/objects/Disks").status_code == 204

    prop = a.post(f"{ns}/properties", {"name": "hw_x", "title": "X", "type": "string"})
    assert prop.status_code == 201 and prop.json()["title"] == "X", prop.text
    glance_error(a.post(f"{ns}/properties", {"name": "hw_y", "type": "string"}), 400)
    assert (
        put(f"{ns}/properties/hw_x", {"name": "hw_x", "title": "Y", "type": "string"}).json()[
            "title"
        ]
        == "Y"
    )
    assert a.delete(f"{ns}/properties/hw_x").status_code == 204

    assert a.post(f"{ns}/tags/extra").status_code == 201
    assert put(f"{ns}/tags/extra", {"name": "renamed"}).json()["name"] == "renamed"
    replaced = a.post(f"{ns}/tags", {"tags": [{"name": "t1"}, {"name": "t2"}]})
    assert replaced.status_code == 201
    assert [t["name"] for t in a.get(f"{ns}/tags").json()["tags"]] == ["t1", "t2"]
    assert a.delete(f"{ns}/tags").status_code == 204
    assert a.get(f"{ns}/tags").json()["tags"] == []

    assoc = a.post(f"{ns}/resource_types", {"name": "OS::Nova::Flavor", "prefix": "hw:"})
    assert assoc.status_code == 201, assoc.text
    names = [r["name"] for r in a.get(f"{ns}/resource_types").json()["resource_type_associations"]]
    assert "OS::Nova::Flavor" in names
    assert a.delete(f"{ns}/resource_types/OS::Nova::Flavor").status_code == 204
    glance_error(a.delete(f"{ns}/resource_types/OS::Nova::Flavor"), 404)

    g = tenant(shared_cloud)
    glance_error(g.post(f"{ns}/objects", {"name": "Mine"}), 403)
    glance_error(g.post(f"{ns}/tags/mine"), 403)
    glance_error(g.delete(f"{ns}/tags/fast"), 403)


def test_resource_types_list_this_clouds_services(shared_cloud: Cloud) -> None:
    types = tenant(shared_cloud).get("/v2/metadefs/resource_types").json()["resource_types"]
    assert {"OS::Glance::Image", "OS::Cinder::Volume", "OS::Nova::Flavor"} <= {
        t["name"] for t in types
    }
    assert all(t["created_at"].endswith("Z") for t in types)
