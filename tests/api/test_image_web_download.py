"""web-download with an object source linked: the object's bytes become the image, and a
URL outside this cloud's object store is still refused before anything is read."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator

import pytest

from souverain.common.context import RequestContext
from souverain.common.errors import BadRequest
from souverain.image.imports import ImageImports, ImportRequest

from .support import Cloud
from .test_images import tenant

ORIGIN = "http://cloud.example"
DATA = b"object bytes " * 1000


class ObjectsOfOneBucket:
    """This cloud's object store as the seam shows it, holding one object; it records
    what was read, so a refused URL can be shown to read nothing."""

    def __init__(self) -> None:
        self.read: list[str] = []

    def read_object(self, ctx: RequestContext, path: str) -> Iterator[bytes]:
        self.read.append(path)
        if path != "/object-store/v1/AUTH_p/images/disk.raw":
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
    uri = f"{ORIGIN}/object-store/v1/AUTH_p/images/disk.raw"
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
    req = ImportRequest("web-download", f"{ORIGIN}/object-store/v1/AUTH_p/images/none")
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
        "http://elsewhere.example/object-store/v1/AUTH_p/images/disk.raw",
        f"{ORIGIN}/image/v2/images",
        f"{ORIGIN}/object-store/../identity/v3",
        "https://cloud.example/object-store/v1/AUTH_p/images/disk.raw",
    ):
        with pytest.raises(BadRequest):
            imports.start(
                _ctx(g.project_id), image["id"], ImportRequest("web-download", uri), ORIGIN
            )
    assert source.read == []
    assert g.get(f"/v2/images/{image['id']}").json()["status"] == "queued"
