"""Interoperable image import: import info, glance-direct (stage, then import), the tasks
that record an import, web-download confined to this cloud's object store, tenancy."""

from __future__ import annotations

import hashlib
from typing import Any

from souverain.common.context import RequestContext
from souverain.image.imports import ImportRequest

from .support import Cloud
from .test_images import OCTETS, Glance, glance_error, stored_files, tenant

DATA = b"souverain image data " * 200


def _stage(g: Glance, image_id: str, data: bytes = DATA) -> Any:
    return g.put(f"/v2/images/{image_id}/stage", content=data, headers=OCTETS)


def _import(g: Glance, image_id: str, method: dict[str, Any]) -> Any:
    return g.post(f"/v2/images/{image_id}/import", {"method": method})


def _tasks_of(g: Glance, image_id: str) -> list[dict[str, Any]]:
    response = g.get(f"/v2/images/{image_id}/tasks")
    assert response.status_code == 200, response.text
    tasks: list[dict[str, Any]] = response.json()["tasks"]
    return tasks


def test_import_info_and_create_header_offer_both_methods(shared_cloud: Cloud) -> None:
    g = tenant(shared_cloud)
    info = g.get("/v2/info/import").json()
    assert info["import-methods"]["value"] == ["glance-direct", "web-download"]
    response = g.post("/v2/images", {"name": "x", "disk_format": "raw", "container_format": "bare"})
    assert response.headers["OpenStack-image-import-methods"] == "glance-direct,web-download"


def test_glance_direct_stages_then_imports_into_an_active_image(shared_cloud: Cloud) -> None:
    g = tenant(shared_cloud)
    image = g.create(name="imported")
    assert _stage(g, image["id"]).status_code == 204
    staged = g.get(f"/v2/images/{image['id']}").json()
    assert staged["status"] == "uploading" and staged["size"] is None
    response = _import(g, image["id"], {"name": "glance-direct"})
    assert response.status_code == 202, response.text
    shown = g.get(f"/v2/images/{image['id']}").json()
    assert shown["status"] == "active" and shown["size"] == len(DATA)
    assert shown["checksum"] == hashlib.md5(DATA, usedforsecurity=False).hexdigest()
    assert shown["os_hash_value"] == hashlib.sha512(DATA).hexdigest()
    assert g.get(f"/v2/images/{image['id']}/file").content == DATA
    [task] = _tasks_of(g, image["id"])
    assert task["status"] == "success" and task["type"] == "api_image_import"
    assert task["result"] == {"image_id": image["id"]} and task["expires_at"]
    assert task["input"]["import_req"]["method"]["name"] == "glance-direct"
    assert g.get(f"/v2/tasks/{task['id']}").json()["id"] == task["id"]
    assert "self" not in task and task["deleted"] is False  # Glance's stored task, unlinked
    [stub] = [t for t in g.get("/v2/tasks").json()["tasks"] if t["id"] == task["id"]]
    assert stub["self"] == f"/v2/tasks/{task['id']}" and stub["expires_at"]
    assert not {"input", "result", "message"} & set(stub)  # Glance lists stubs


def test_import_without_staged_data_or_twice_is_409(shared_cloud: Cloud) -> None:
    g = tenant(shared_cloud)
    image = g.create()
    assert "stage it first" in glance_error(_import(g, image["id"], {"name": "glance-direct"}), 409)
    assert _stage(g, image["id"]).status_code == 204
    glance_error(_stage(g, image["id"]), 409)
    assert _import(g, image["id"], {"name": "glance-direct"}).status_code == 202
    glance_error(_import(g, image["id"], {"name": "glance-direct"}), 409)
    assert _tasks_of(g, image["id"])[0]["status"] == "success"


def test_import_of_data_not_in_the_declared_format_fails_its_task_and_keeps_nothing(
    shared_cloud: Cloud,
) -> None:
    g = tenant(shared_cloud)
    image = g.create(disk_format="qcow2")
    before = set(stored_files(shared_cloud))
    assert _stage(g, image["id"], b"not a qcow2 at all" * 100).status_code == 204
    assert _import(g, image["id"], {"name": "glance-direct"}).status_code == 202
    [task] = _tasks_of(g, image["id"])
    assert task["status"] == "failure" and "qcow2" in task["message"]
    shown = g.get(f"/v2/images/{image['id']}").json()
    assert shown["status"] == "queued" and shown["checksum"] is None
    assert set(stored_files(shared_cloud)) <= before
    # the owner can stage again, and this time the data is right
    g.patch(
        f"/v2/images/{image['id']}", [{"op": "replace", "path": "/disk_format", "value": "raw"}]
    )
    assert _stage(g, image["id"]).status_code == 204


def test_bad_import_requests_are_refused_before_anything_changes(shared_cloud: Cloud) -> None:
    g = tenant(shared_cloud)
    image = g.create()
    glance_error(g.post(f"/v2/images/{image['id']}/import", {"method": "glance-direct"}), 400)
    glance_error(_import(g, image["id"], {"name": "ftp-grab"}), 400)
    assert "one image store" in glance_error(_import(g, image["id"], {"name": "copy-image"}), 501)
    glance_error(_import(g, image["id"], {"name": "web-download"}), 400)
    assert g.get(f"/v2/images/{image['id']}").json()["status"] == "queued"
    assert _tasks_of(g, image["id"]) == []


def test_web_download_never_fetches_from_outside_this_cloud(shared_cloud: Cloud) -> None:
    g = tenant(shared_cloud)
    image = g.create()
    for uri in (
        "http://example.com/disk.img",
        "http://169.254.169.254/latest/meta-data",
        "file:///etc/passwd",
        "http://testserver.evil.com/object-storage/v1/AUTH_x/c/o",
        "http://testserver/image/v2/images",
        "http://testserver:8080/object-storage/v1/AUTH_x/c/o",
    ):
        message = glance_error(_import(g, image["id"], {"name": "web-download", "uri": uri}), 400)
        assert "own object store" in message, uri
    assert g.get(f"/v2/images/{image['id']}").json()["status"] == "queued"
    assert _tasks_of(g, image["id"]) == []


def test_staging_is_for_owners_and_tasks_are_the_owner_projects(shared_cloud: Cloud) -> None:
    owner, other = tenant(shared_cloud), tenant(shared_cloud)
    image = owner.create(visibility="shared")
    glance_error(_stage(other, image["id"]), 404)
    glance_error(_import(other, image["id"], {"name": "glance-direct"}), 404)
    reader = shared_cloud.member(role="reader", project_id=owner.project_id)
    as_reader = Glance(shared_cloud, reader.token, reader.project_id)
    glance_error(_stage(as_reader, image["id"]), 403)
    assert _stage(owner, image["id"]).status_code == 204
    assert _import(owner, image["id"], {"name": "glance-direct"}).status_code == 202
    [task] = _tasks_of(owner, image["id"])
    assert [t["id"] for t in _tasks_of(as_reader, image["id"])] == [task["id"]]
    glance_error(other.get(f"/v2/tasks/{task['id']}"), 404)
    assert task["id"] not in [t["id"] for t in other.get("/v2/tasks").json()["tasks"]]
    glance_error(other.get(f"/v2/images/{image['id']}/tasks"), 404)
    glance_error(owner.get("/v2/tasks/not-a-task"), 404)


def test_staging_needs_octet_stream(shared_cloud: Cloud) -> None:
    g = tenant(shared_cloud)
    image = g.create()
    response = g.put(
        f"/v2/images/{image['id']}/stage", content=b"x", headers={"Content-Type": "text/plain"}
    )
    glance_error(response, 415)
    assert g.get(f"/v2/images/{image['id']}").json()["status"] == "queued"


def test_sweep_fails_an_import_cut_short_and_returns_its_image(shared_cloud: Cloud) -> None:
    g = tenant(shared_cloud)
    image = g.create()
    assert _stage(g, image["id"]).status_code == 204
    service = shared_cloud.platform.image
    ctx = RequestContext(
        user_id="u", user_domain_id="default", roles=frozenset({"member"}), project_id=g.project_id
    )
    task = service.imports.start(ctx, image["id"], ImportRequest("glance-direct"), "http://x")
    assert g.get(f"/v2/images/{image['id']}").json()["status"] == "importing"
    service.sweep()
    assert g.get(f"/v2/tasks/{task.id}").json()["status"] == "failure"
    assert g.get(f"/v2/images/{image['id']}").json()["status"] == "queued"


def test_a_project_reader_can_neither_stage_nor_import(shared_cloud: Cloud) -> None:
    owner = tenant(shared_cloud)
    image = owner.create()
    reader = shared_cloud.member(role="reader", project_id=owner.project_id)
    as_reader = Glance(shared_cloud, reader.token, reader.project_id)
    glance_error(_import(as_reader, image["id"], {"name": "glance-direct"}), 403)
    glance_error(_stage(as_reader, image["id"]), 403)
    assert owner.get(f"/v2/images/{image['id']}").json()["status"] == "queued"
