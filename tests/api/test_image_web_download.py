"""web-download with an object source linked: the object's bytes become the image, and a
URL outside this cloud's object store is still refused before anything is read."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from typing import Any
from urllib.parse import quote

import pytest

from souverain.common.context import RequestContext
from souverain.common.errors import BadRequest
from souverain.image.imports import ImageImports, ImportRequest

from .support import Cloud, Member
from .test_images import Glance, glance_error, stored_files, tenant
from .test_swift_api import Swift

ORIGIN = "http://cloud.example"
DATA = b"object bytes " * 1000


class ObjectsOfOneBucket:
    """This cloud's object store as the seam shows it, holding one object; it records
    what was read, so a refused URL can be shown to read nothing."""

    def __init__(self) -> None:
        self.read: list[str] = []

    def read_object(self, ctx: RequestContext, path: str) -> Iterator[bytes]:
        self.read.append(path)
        if path != "/object-storage/v1/AUTH_p/images/disk.raw":
            raise BadRequest("No such object.")
        yield DATA[:5000]
        yield DATA[5000:]


def _linked(cloud: Cloud, source: ObjectsOfOneBucket) -> ImageImports:
    service = cloud.platform.image
    return ImageImports(service.db, service.store, service.clock, service._record_data, source)


def _ctx(project_id: str) -> RequestContext:
    return RequestContext(
        user_id="u", user_domain_id="default", roles=frozenset({"member"}), project_id=project_id
    )


def test_web_download_imports_an_object_of_this_cloud(shared_cloud: Cloud) -> None:
    g = tenant(shared_cloud)
    image = g.create()
    source = ObjectsOfOneBucket()
    imports = _linked(shared_cloud, source)
    assert imports.methods() == ["glance-direct", "web-download"]
    uri = f"{ORIGIN}/object-storage/v1/AUTH_p/images/disk.raw"
    req = ImportRequest("web-download", uri)
    task = imports.start(_ctx(g.project_id), image["id"], req, ORIGIN)
    imports.run(_ctx(g.project_id), task.id, req)
    shown = g.get(f"/v2/images/{image['id']}").json()
    assert shown["status"] == "active" and shown["size"] == len(DATA)
    assert shown["checksum"] == hashlib.md5(DATA, usedforsecurity=False).hexdigest()
    assert g.get(f"/v2/images/{image['id']}/file").content == DATA
    assert g.get(f"/v2/tasks/{task.id}").json()["status"] == "success"


def test_a_missing_object_fails_the_task_and_keeps_the_image_queued(shared_cloud: Cloud) -> None:
    g = tenant(shared_cloud)
    image = g.create()
    imports = _linked(shared_cloud, ObjectsOfOneBucket())
    req = ImportRequest("web-download", f"{ORIGIN}/object-storage/v1/AUTH_p/images/none")
    task = imports.start(_ctx(g.project_id), image["id"], req, ORIGIN)
    imports.run(_ctx(g.project_id), task.id, req)
    body = g.get(f"/v2/tasks/{task.id}").json()
    assert body["status"] == "failure" and "No such object" in body["message"]
    assert g.get(f"/v2/images/{image['id']}").json()["status"] == "queued"


def test_urls_outside_the_object_store_are_refused_unread(shared_cloud: Cloud) -> None:
    g = tenant(shared_cloud)
    image = g.create()
    source = ObjectsOfOneBucket()
    imports = _linked(shared_cloud, source)
    for uri in (
        "http://elsewhere.example/object-storage/v1/AUTH_p/images/disk.raw",
        f"{ORIGIN}/image/v2/images",
        f"{ORIGIN}/object-storage/../identity/v3",
        "https://cloud.example/object-storage/v1/AUTH_p/images/disk.raw",
    ):
        with pytest.raises(BadRequest):
            imports.start(
                _ctx(g.project_id), image["id"], ImportRequest("web-download", uri), ORIGIN
            )
    assert source.read == []
    assert g.get(f"/v2/images/{image['id']}").json()["status"] == "queued"


def test_without_an_object_store_web_download_is_said_unavailable(shared_cloud: Cloud) -> None:
    g = tenant(shared_cloud)
    image = g.create()
    service = shared_cloud.platform.image
    imports = ImageImports(service.db, service.store, service.clock, service._record_data)
    assert imports.methods() == ["glance-direct"]
    uri = f"{ORIGIN}/object-storage/v1/AUTH_p/images/disk.raw"
    with pytest.raises(BadRequest, match="not available"):
        imports.start(_ctx(g.project_id), image["id"], ImportRequest("web-download", uri), ORIGIN)
    assert g.get(f"/v2/images/{image['id']}").json()["status"] == "queued"


# ------------------------------------------- through the API, from this cloud's own Swift

BIG = bytes(range(256)) * 1200  # larger than an inline object: read from its blob, in chunks


def _owner_with_object(
    cloud: Cloud, data: bytes = BIG, name: str = "disk image.raw", acl: str = ""
) -> tuple[Member, str]:
    """A member whose project holds `data` in a new container; the object's URL."""
    owner = cloud.member("member")
    swift = Swift(cloud, owner)
    container = cloud.unique("images")
    headers = {"X-Container-Read": acl} if acl else {}
    assert swift("PUT", container, headers=headers).status_code == 201
    assert swift("PUT", f"{container}/{name}", data).status_code == 201
    return owner, f"http://testserver{swift.base}/{container}/{quote(name)}"


def _web_download(g: Glance, image_id: str, uri: str) -> Any:
    return g.post(f"/v2/images/{image_id}/import", {"method": {"name": "web-download", "uri": uri}})


def _tasks(g: Glance, image_id: str) -> list[dict[str, Any]]:
    tasks: list[dict[str, Any]] = g.get(f"/v2/images/{image_id}/tasks").json()["tasks"]
    return tasks


def _assert_imported(g: Glance, image_id: str, data: bytes) -> None:
    shown = g.get(f"/v2/images/{image_id}").json()
    assert shown["status"] == "active" and shown["size"] == len(data), shown
    assert shown["checksum"] == hashlib.md5(data, usedforsecurity=False).hexdigest()
    assert shown["os_hash_value"] == hashlib.sha512(data).hexdigest()
    assert g.get(f"/v2/images/{image_id}/file").content == data
    [task] = _tasks(g, image_id)
    assert task["status"] == "success", task


def test_web_download_of_an_object_of_ones_own_project(shared_cloud: Cloud) -> None:
    owner, uri = _owner_with_object(shared_cloud)
    g = Glance(shared_cloud, owner.token, owner.project_id)
    image = g.create(name="from-swift")
    response = _web_download(g, image["id"], uri)
    assert response.status_code == 202, response.text
    _assert_imported(g, image["id"], BIG)


def test_another_projects_private_object_fails_the_import(shared_cloud: Cloud) -> None:
    _, uri = _owner_with_object(shared_cloud)
    g = tenant(shared_cloud)
    image = g.create()
    files = stored_files(shared_cloud)
    assert _web_download(g, image["id"], uri).status_code == 202
    [task] = _tasks(g, image["id"])
    assert task["status"] == "failure" and "may not read" in task["message"], task
    shown = g.get(f"/v2/images/{image['id']}").json()
    assert shown["status"] == "queued" and shown["size"] is None
    assert stored_files(shared_cloud) == files  # no bytes kept


def test_a_missing_object_fails_the_import_and_says_so(shared_cloud: Cloud) -> None:
    owner, uri = _owner_with_object(shared_cloud)
    g = Glance(shared_cloud, owner.token, owner.project_id)
    image = g.create()
    assert _web_download(g, image["id"], uri + "-gone").status_code == 202
    [task] = _tasks(g, image["id"])
    assert task["status"] == "failure" and "does not exist" in task["message"], task
    assert g.get(f"/v2/images/{image['id']}").json()["status"] == "queued"


@pytest.mark.parametrize("acl", [".r:*", "{project}:*"])
def test_a_container_whose_read_acl_admits_the_caller_can_be_imported(
    shared_cloud: Cloud, acl: str
) -> None:
    g = tenant(shared_cloud)
    _, uri = _owner_with_object(shared_cloud, acl=acl.format(project=g.project_id))
    image = g.create()
    assert _web_download(g, image["id"], uri).status_code == 202
    _assert_imported(g, image["id"], BIG)


def test_a_dynamic_large_object_is_imported_whole(shared_cloud: Cloud) -> None:
    owner, uri = _owner_with_object(shared_cloud, data=b"", name="manifest")
    swift = Swift(shared_cloud, owner)
    container = uri.rsplit("/", 2)[1]
    for i, part in enumerate((BIG, b"tail")):
        assert swift("PUT", f"{container}/seg/{i:03d}", part).status_code == 201
    manifest = {"X-Object-Manifest": f"{container}/seg/"}
    assert swift("PUT", f"{container}/manifest", headers=manifest).status_code == 201
    g = Glance(shared_cloud, owner.token, owner.project_id)
    image = g.create()
    assert _web_download(g, image["id"], uri).status_code == 202
    _assert_imported(g, image["id"], BIG + b"tail")


def test_urls_elsewhere_or_not_naming_an_object_are_refused_unread(shared_cloud: Cloud) -> None:
    owner, uri = _owner_with_object(shared_cloud)
    g = Glance(shared_cloud, owner.token, owner.project_id)
    image = g.create()
    base = f"http://testserver/object-storage/v1/AUTH_{owner.project_id}"
    container = uri.rsplit("/", 2)[1]
    for bad in (
        uri.replace("testserver", "testserver.evil.com"),
        uri.replace("testserver", "testserver:8080"),
        uri.replace("testserver", "testserver:port"),
        uri.replace("http:", "https:"),
        uri.replace("/object-storage/v1/", "/object-store/v1/"),
        uri.replace("/object-storage/v1/", "/object-storage/v2/"),
        f"{base}/{container}",
        f"{base}/{container}/",
        f"{base}//disk",
        f"{base}/{container}/%2e%2e/x",
        "http://testserver/object-storage/v1/AUTH_/c/o",
        "http://testserver/object-storage/v1/acct/c/o",
    ):
        message = glance_error(_web_download(g, image["id"], bad), 400)
        assert "own object store" in message, bad
    assert g.get(f"/v2/images/{image['id']}").json()["status"] == "queued"
    assert _tasks(g, image["id"]) == []
