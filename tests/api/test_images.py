"""The image service (Glance v2) in-process: records, listing, data, members, tenancy."""

from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from souverain import server
from souverain.common.clock import Clock
from souverain.common.context import RequestContext
from souverain.common.errors import BadRequest, NotFound

from .conftest import _fast_tmp_root
from .support import ADMIN_PASSWORD, Cloud, SteppingClock, TestClient, settings_for

MAX_IMAGE_BYTES = 4 * 1024 * 1024
PATCH = {"Content-Type": "application/openstack-images-v2.1-json-patch"}
OCTETS = {"Content-Type": "application/octet-stream"}


@pytest.fixture(scope="module")
def cloud(database_backend: str) -> Iterator[Cloud]:
    """One platform for the module, with a small image size limit; tests use fresh projects."""
    root = Path(tempfile.mkdtemp(prefix="souverain-img-", dir=_fast_tmp_root()))
    settings = settings_for(root / "data")
    settings.image.max_image_bytes = MAX_IMAGE_BYTES
    try:
        with pytest.MonkeyPatch.context() as patch:
            patch.setenv("SOUVERAIN_ADMIN_PASSWORD", ADMIN_PASSWORD)
            built = server.prepare(settings, clock=Clock(SteppingClock().now))
        try:
            with TestClient(built.app, base_url="http://testserver") as client:
                yield Cloud(client, built)
        finally:
            built.close()
    finally:
        shutil.rmtree(root, ignore_errors=True)


class Glance:
    """One caller of the image API: a token and the HTTP verbs under /image."""

    def __init__(self, cloud: Cloud, token: str, project_id: str) -> None:
        self.client = cloud.client
        self.token = token
        self.project_id = project_id

    def _h(self, extra: dict[str, str] | None = None) -> dict[str, str]:
        return {"X-Auth-Token": self.token, **(extra or {})}

    def get(self, path: str, **kw: Any) -> Any:
        return self.client.get("/image" + path, headers=self._h(kw.pop("headers", None)), **kw)

    def post(self, path: str, body: Any = None, **kw: Any) -> Any:
        return self.client.post(
            "/image" + path, json=body, headers=self._h(kw.pop("headers", None)), **kw
        )

    def patch(self, path: str, ops: Any, headers: dict[str, str] | None = None) -> Any:
        return self.client.patch(
            "/image" + path, content=json.dumps(ops), headers=self._h(headers or PATCH)
        )

    def put(self, path: str, **kw: Any) -> Any:
        return self.client.put("/image" + path, headers=self._h(kw.pop("headers", None)), **kw)

    def delete(self, path: str) -> Any:
        return self.client.delete("/image" + path, headers=self._h())

    def create(self, **fields: Any) -> dict[str, Any]:
        fields.setdefault("disk_format", "raw")
        fields.setdefault("container_format", "bare")
        response = self.post("/v2/images", fields)
        assert response.status_code == 201, response.text
        body: dict[str, Any] = response.json()
        return body

    def upload(self, image_id: str, data: bytes) -> Any:
        return self.put(f"/v2/images/{image_id}/file", content=data, headers=OCTETS)


def glance_error(response: Any, status: int) -> str:
    assert response.status_code == status, response.text
    body = response.json()
    assert body["code"] == status and body["title"], body
    message: str = body["message"]
    return message


def tenant(cloud: Cloud) -> Glance:
    member = cloud.member()
    return Glance(cloud, member.token, member.project_id)


def admin(cloud: Cloud) -> Glance:
    return Glance(cloud, cloud.admin_token, cloud.admin_project_id)


def qcow2(tmp_path: Path, name: str = "disk", backing: str | None = None) -> bytes:
    """A small qcow2 made by qemu-img, with some data written into it."""
    raw = tmp_path / f"{name}.raw"
    raw.write_bytes(b"souverain" * 10000 + bytes(200_000))
    out = tmp_path / f"{name}.qcow2"
    if backing is None:
        argv = ["qemu-img", "convert", "-f", "raw", "-O", "qcow2", str(raw), str(out)]
    else:
        argv = ["qemu-img", "create", "-f", "qcow2", "-b", backing, "-F", "raw", str(out)]
    subprocess.run(argv, check=True, capture_output=True)
    return out.read_bytes()


def stored_files(cloud: Cloud) -> list[Path]:
    root = cloud.platform.paths.root / "images"
    return [p for p in root.rglob("*") if p.is_file()]


# ---------------------------------------------------------------------- discovery


def test_version_discovery_lists_v2_current(cloud: Cloud) -> None:
    for path in ("/image", "/image/", "/image/versions"):
        response = cloud.client.get(path)
        assert response.status_code in (200, 300), path
        versions = response.json()["versions"]
        current = [v for v in versions if v["status"] == "CURRENT"]
        assert [v["id"] for v in current] == ["v2.9"]
        assert current[0]["links"][0]["href"] == "http://testserver/image/v2/"


def test_schemas_describe_image_and_images(cloud: Cloud) -> None:
    g = tenant(cloud)
    image = g.get("/v2/schemas/image").json()
    assert image["name"] == "image" and "disk_format" in image["properties"]
    assert image["additionalProperties"] == {"type": "string"}
    assert g.get("/v2/schemas/images").json()["name"] == "images"
    assert g.get("/v2/schemas/nothing").status_code == 404


def test_image_calls_need_a_token(cloud: Cloud) -> None:
    glance_error(cloud.client.get("/image/v2/images"), 401)


# ---------------------------------------------------------------------- records


def test_create_show_patch_delete_round_trip(cloud: Cloud) -> None:
    g = tenant(cloud)
    image = g.create(name="web", disk_format="qcow2", min_disk=1, tags=["a"], os_distro="debian")
    assert image["status"] == "queued"
    assert image["owner"] == g.project_id
    assert image["visibility"] == "shared"
    assert image["os_distro"] == "debian" and image["tags"] == ["a"]
    assert image["self"] == f"/v2/images/{image['id']}" and image["size"] is None
    shown = g.get(f"/v2/images/{image['id']}").json()
    assert shown == image

    ops = [
        {"op": "replace", "path": "/name", "value": "web2"},
        {"op": "add", "path": "/hw_disk_bus", "value": "virtio"},
        {"op": "remove", "path": "/os_distro"},
        {"op": "replace", "path": "/min_ram", "value": 512},
        {"op": "replace", "path": "/tags", "value": ["b", "c"]},
    ]
    patched = g.patch(f"/v2/images/{image['id']}", ops)
    assert patched.status_code == 200, patched.text
    body = patched.json()
    assert body["name"] == "web2" and body["hw_disk_bus"] == "virtio" and body["min_ram"] == 512
    assert "os_distro" not in body and body["tags"] == ["b", "c"]

    assert g.delete(f"/v2/images/{image['id']}").status_code == 204
    glance_error(g.get(f"/v2/images/{image['id']}"), 404)


def test_client_chosen_id_is_kept_and_duplicates_conflict(cloud: Cloud) -> None:
    g = tenant(cloud)
    image_id = str(uuid.uuid4())
    assert g.create(id=image_id)["id"] == image_id
    glance_error(g.post("/v2/images", {"id": image_id}), 409)
    glance_error(g.post("/v2/images", {"id": "not-a-uuid"}), 400)


@pytest.mark.parametrize(
    ("body", "status"),
    [
        ({"disk_format": "floppy"}, 400),
        ({"container_format": "zip"}, 400),
        ({"min_disk": -1}, 400),
        ({"min_ram": "1"}, 400),
        ({"protected": "yes"}, 400),
        ({"visibility": "everyone"}, 400),
        ({"tags": "a"}, 400),
        ({"custom": 5}, 400),
        ({"status": "active"}, 403),
        ({"checksum": "x"}, 403),
        ({"size": 1}, 403),
        ({"location": "file:///etc/passwd"}, 403),
        ({"deleted": True}, 403),
        ({"visibility": "public"}, 403),
    ],
)
def test_create_refuses_bad_and_reserved_attributes(
    cloud: Cloud, body: dict[str, Any], status: int
) -> None:
    g = tenant(cloud)
    glance_error(g.post("/v2/images", body), status)
    assert g.get("/v2/images").json()["images"] == []


def test_bad_json_is_400(cloud: Cloud) -> None:
    g = tenant(cloud)
    response = cloud.client.post(
        "/image/v2/images",
        content=b"{not json",
        headers={"X-Auth-Token": g.token, "Content-Type": "application/json"},
    )
    glance_error(response, 400)


def test_patch_wrong_content_type_is_415_and_read_only_is_403(cloud: Cloud) -> None:
    g = tenant(cloud)
    image = g.create(name="x")
    path = f"/v2/images/{image['id']}"
    ops = [{"op": "replace", "path": "/name", "value": "y"}]
    glance_error(g.patch(path, ops, headers={"Content-Type": "application/json"}), 415)
    glance_error(g.patch(path, [{"op": "replace", "path": "/status", "value": "active"}]), 403)
    glance_error(g.patch(path, [{"op": "add", "path": "/size", "value": 3}]), 403)
    glance_error(g.patch(path, [{"op": "remove", "path": "/checksum"}]), 403)
    glance_error(g.patch(path, [{"op": "remove", "path": "/nothing"}]), 409)
    glance_error(g.patch(path, [{"op": "move", "path": "/name"}]), 400)
    glance_error(g.patch(path, {"op": "add"}), 400)
    glance_error(g.patch(path, [{"op": "replace", "path": "/visibility", "value": "public"}]), 403)
    assert g.get(path).json()["name"] == "x"


def test_admin_may_publicize_and_everyone_then_sees_the_image(cloud: Cloud) -> None:
    a = admin(cloud)
    image = a.create(name="shared-os", visibility="public")
    other = tenant(cloud)
    assert other.get(f"/v2/images/{image['id']}").status_code == 200
    assert image["id"] in [i["id"] for i in other.get("/v2/images").json()["images"]]
    glance_error(other.patch(f"/v2/images/{image['id']}", [{"op": "remove", "path": "/x"}]), 403)
    glance_error(other.delete(f"/v2/images/{image['id']}"), 403)
    assert a.delete(f"/v2/images/{image['id']}").status_code == 204


def test_protected_image_cannot_be_deleted(cloud: Cloud) -> None:
    g = tenant(cloud)
    image = g.create(name="keep", protected=True)
    glance_error(g.delete(f"/v2/images/{image['id']}"), 403)
    g.patch(f"/v2/images/{image['id']}", [{"op": "replace", "path": "/protected", "value": False}])
    assert g.delete(f"/v2/images/{image['id']}").status_code == 204


def test_tags_are_added_and_removed(cloud: Cloud) -> None:
    g = tenant(cloud)
    image = g.create(name="t")
    assert g.put(f"/v2/images/{image['id']}/tags/blue").status_code == 204
    assert g.put(f"/v2/images/{image['id']}/tags/blue").status_code == 204
    assert g.get(f"/v2/images/{image['id']}").json()["tags"] == ["blue"]
    assert g.delete(f"/v2/images/{image['id']}/tags/blue").status_code == 204
    glance_error(g.delete(f"/v2/images/{image['id']}/tags/blue"), 404)


# ---------------------------------------------------------------------- listing


def _names(response: Any) -> list[str]:
    assert response.status_code == 200, response.text
    return [i["name"] for i in response.json()["images"]]


def test_list_filters(cloud: Cloud) -> None:
    g = tenant(cloud)
    g.create(name="a", disk_format="qcow2", tags=["x", "y"], os_type="linux")
    g.create(name="b", disk_format="raw", tags=["x"], protected=True)
    g.create(name="c", disk_format="iso", container_format="ovf", visibility="private")
    assert sorted(_names(g.get("/v2/images"))) == ["a", "b", "c"]
    assert _names(g.get("/v2/images?name=a")) == ["a"]
    assert _names(g.get("/v2/images?disk_format=iso")) == ["c"]
    assert _names(g.get("/v2/images?container_format=ovf")) == ["c"]
    assert sorted(_names(g.get("/v2/images?tag=x"))) == ["a", "b"]
    assert _names(g.get("/v2/images?tag=x&tag=y")) == ["a"]
    assert _names(g.get("/v2/images?protected=true")) == ["b"]
    assert _names(g.get("/v2/images?visibility=private")) == ["c"]
    assert _names(g.get("/v2/images?os_type=linux")) == ["a"]
    assert sorted(_names(g.get("/v2/images?status=queued"))) == ["a", "b", "c"]
    assert _names(g.get(f"/v2/images?owner={g.project_id}&name=b")) == ["b"]
    glance_error(g.get("/v2/images?protected=maybe"), 400)
    glance_error(g.get("/v2/images?size_min=big"), 400)
    glance_error(g.get("/v2/images?visibility=everyone"), 400)


def test_list_size_filters(cloud: Cloud) -> None:
    g = tenant(cloud)
    small, big = g.create(name="small"), g.create(name="big")
    g.upload(small["id"], b"s" * 1000)
    g.upload(big["id"], b"b" * 5000)
    assert _names(g.get("/v2/images?size_min=2000")) == ["big"]
    assert _names(g.get("/v2/images?size_max=2000")) == ["small"]


def test_list_sort_and_pagination(cloud: Cloud) -> None:
    g = tenant(cloud)
    for name in ("d", "b", "e", "a", "c"):
        g.create(name=name, min_disk=ord(name) % 3)
    assert _names(g.get("/v2/images?sort_key=name&sort_dir=asc")) == list("abcde")
    assert _names(g.get("/v2/images?sort=name:desc")) == list("edcba")
    by_disk = _names(g.get("/v2/images?sort=min_disk:asc,name:desc"))
    assert by_disk == sorted("abcde", key=lambda n: (ord(n) % 3, -ord(n)))
    assert _names(g.get("/v2/images?sort_key=min_disk&sort_key=name&sort_dir=asc")) == sorted(
        "abcde", key=lambda n: (ord(n) % 3, n)
    )

    seen: list[str] = []
    url = "/v2/images?sort_key=name&sort_dir=asc&limit=2"
    pages = 0
    while url:
        body = g.get(url).json()
        seen += [i["name"] for i in body["images"]]
        url = body.get("next", "")
        assert not url or url.startswith("/v2/images?")
        pages += 1
    assert seen == list("abcde") and pages == 3

    glance_error(g.get("/v2/images?sort_key=password"), 400)
    glance_error(g.get("/v2/images?sort_dir=sideways"), 400)
    glance_error(g.get("/v2/images?sort=name:asc&sort_key=name"), 400)
    glance_error(g.get("/v2/images?limit=0"), 400)
    glance_error(g.get("/v2/images?limit=ten"), 400)
    glance_error(g.get(f"/v2/images?marker={uuid.uuid4()}"), 400)


# ---------------------------------------------------------------------- data


def test_upload_download_round_trip_with_checksums(cloud: Cloud, tmp_path: Path) -> None:
    g = tenant(cloud)
    data = qcow2(tmp_path)
    image = g.create(name="disk", disk_format="qcow2")
    response = g.upload(image["id"], data)
    assert response.status_code == 204, response.text
    shown = g.get(f"/v2/images/{image['id']}").json()
    assert shown["status"] == "active"
    assert shown["size"] == len(data)
    assert shown["checksum"] == hashlib.md5(data).hexdigest()
    assert shown["os_hash_algo"] == "sha512"
    assert shown["os_hash_value"] == hashlib.sha512(data).hexdigest()
    assert 290_000 <= shown["virtual_size"] < 290_000 + 512  # the raw size, in whole sectors
    download = g.get(f"/v2/images/{image['id']}/file")
    assert download.status_code == 200
    assert download.content == data
    assert download.headers["content-md5"] == shown["checksum"]
    assert download.headers["content-length"] == str(len(data))
    assert download.headers["content-type"] == "application/octet-stream"
    glance_error(g.upload(image["id"], data), 409)
    glance_error(
        g.patch(
            f"/v2/images/{image['id']}", [{"op": "replace", "path": "/disk_format", "value": "raw"}]
        ),
        403,
    )


def test_raw_image_virtual_size_is_its_size(cloud: Cloud) -> None:
    g = tenant(cloud)
    image = g.create(name="raw")
    assert g.upload(image["id"], b"r" * 1001).status_code == 204
    shown = g.get(f"/v2/images/{image['id']}").json()
    assert shown["size"] == shown["virtual_size"] == 1001


def test_download_of_an_image_without_data_is_204(cloud: Cloud) -> None:
    g = tenant(cloud)
    image = g.create(name="empty")
    response = g.get(f"/v2/images/{image['id']}/file")
    assert response.status_code == 204 and response.content == b""


def test_upload_needs_octet_stream(cloud: Cloud) -> None:
    g = tenant(cloud)
    image = g.create(name="x")
    response = g.put(
        f"/v2/images/{image['id']}/file", content=b"abc", headers={"Content-Type": "text/plain"}
    )
    glance_error(response, 415)
    assert g.get(f"/v2/images/{image['id']}").json()["status"] == "queued"


def test_wrong_disk_format_is_refused_and_nothing_is_left(cloud: Cloud, tmp_path: Path) -> None:
    g = tenant(cloud)
    before = set(stored_files(cloud))
    image = g.create(name="liar", disk_format="qcow2")
    message = glance_error(g.upload(image["id"], b"plain bytes, not a qcow2" * 100), 400)
    assert "raw" in message and "qcow2" in message
    shown = g.get(f"/v2/images/{image['id']}").json()
    assert shown["status"] == "queued" and shown["size"] is None and shown["checksum"] is None
    assert set(stored_files(cloud)) == before
    # declared raw but really a qcow2: refused too
    raw = g.create(name="liar2", disk_format="raw")
    glance_error(g.upload(raw["id"], qcow2(tmp_path)), 400)
    # an iso must carry the ISO 9660 signature
    iso = g.create(name="liar3", disk_format="iso")
    assert "ISO 9660" in glance_error(g.upload(iso["id"], bytes(40000)), 400)
    # and the queued image still takes good data afterwards
    assert g.upload(image["id"], qcow2(tmp_path)).status_code == 204


def test_iso_with_signature_is_accepted(cloud: Cloud) -> None:
    g = tenant(cloud)
    iso = g.create(name="cd", disk_format="iso")
    data = bytearray(40000)
    data[32769:32774] = b"CD001"
    assert g.upload(iso["id"], bytes(data)).status_code == 204


def test_qcow2_with_backing_file_is_refused(cloud: Cloud, tmp_path: Path) -> None:
    g = tenant(cloud)
    before = set(stored_files(cloud))
    image = g.create(name="sneaky", disk_format="qcow2")
    message = glance_error(g.upload(image["id"], qcow2(tmp_path, backing="/etc/shadow")), 400)
    assert "backing file" in message
    assert g.get(f"/v2/images/{image['id']}").json()["status"] == "queued"
    assert set(stored_files(cloud)) == before


def test_oversized_upload_is_413_and_image_stays_queued(cloud: Cloud) -> None:
    g = tenant(cloud)
    before = set(stored_files(cloud))
    image = g.create(name="huge")
    response = g.upload(image["id"], bytes(MAX_IMAGE_BYTES + 1))
    glance_error(response, 413)

    def streamed() -> Iterator[bytes]:  # chunked: no Content-Length to refuse up front
        for _ in range(5):
            yield bytes(1024 * 1024)

    response = g.put(f"/v2/images/{image['id']}/file", content=streamed(), headers=OCTETS)
    glance_error(response, 413)
    assert g.get(f"/v2/images/{image['id']}").json()["status"] == "queued"
    assert set(stored_files(cloud)) == before


def test_delete_removes_the_bytes(cloud: Cloud) -> None:
    g = tenant(cloud)
    before = set(stored_files(cloud))
    image = g.create(name="gone")
    g.upload(image["id"], b"data" * 100)
    assert len(set(stored_files(cloud)) - before) == 1
    assert g.delete(f"/v2/images/{image['id']}").status_code == 204
    assert set(stored_files(cloud)) == before


def test_usage_counts_images_and_bytes(cloud: Cloud) -> None:
    g = tenant(cloud)
    g.upload(g.create(name="one")["id"], b"1" * 100)
    g.create(name="two")
    assert cloud.platform.image.usage(g.project_id) == (2, 100)


def test_deactivated_image_data_is_hidden_from_owner(cloud: Cloud) -> None:
    g, a = tenant(cloud), admin(cloud)
    image = g.create(name="bad")
    g.upload(image["id"], b"x" * 10)
    glance_error(g.post(f"/v2/images/{image['id']}/actions/deactivate"), 403)
    assert a.post(f"/v2/images/{image['id']}/actions/deactivate").status_code == 204
    assert g.get(f"/v2/images/{image['id']}").json()["status"] == "deactivated"
    glance_error(g.get(f"/v2/images/{image['id']}/file"), 403)
    assert a.post(f"/v2/images/{image['id']}/actions/reactivate").status_code == 204
    assert g.get(f"/v2/images/{image['id']}/file").content == b"x" * 10


# ---------------------------------------------------------------------- members


def test_members_flow(cloud: Cloud) -> None:
    owner, guest, stranger = tenant(cloud), tenant(cloud), tenant(cloud)
    image = owner.create(name="gift")
    path = f"/v2/images/{image['id']}"
    owner.upload(image["id"], b"gift" * 10)

    # not shared yet: the guest neither sees nor lists it
    glance_error(guest.get(path), 404)
    added = owner.post(f"{path}/members", {"member": guest.project_id})
    assert added.status_code == 200, added.text
    assert added.json()["status"] == "pending"
    glance_error(owner.post(f"{path}/members", {"member": guest.project_id}), 409)
    glance_error(guest.post(f"{path}/members", {"member": stranger.project_id}), 403)

    # pending: visible by id, not in the default list
    assert guest.get(path).status_code == 200
    assert image["id"] not in [i["id"] for i in guest.get("/v2/images").json()["images"]]
    pending = guest.get("/v2/images?member_status=pending").json()["images"]
    assert [i["id"] for i in pending] == [image["id"]]
    glance_error(stranger.get(path), 404)

    # only the member changes its status
    member_path = f"{path}/members/{guest.project_id}"
    glance_error(owner.put(member_path, json={"status": "accepted"}), 403)
    glance_error(guest.put(member_path, json={"status": "maybe"}), 400)
    accepted = guest.put(member_path, json={"status": "accepted"})
    assert accepted.status_code == 200 and accepted.json()["status"] == "accepted"
    assert image["id"] in [i["id"] for i in guest.get("/v2/images").json()["images"]]
    assert guest.get(f"{path}/file").content == b"gift" * 10
    members = guest.get(f"{path}/members").json()["members"]
    assert [m["member_id"] for m in members] == [guest.project_id]
    assert owner.get(member_path).json()["status"] == "accepted"

    # a member cannot modify, delete or re-upload
    glance_error(guest.patch(path, [{"op": "add", "path": "/k", "value": "v"}]), 403)
    glance_error(guest.delete(path), 403)

    # removed: gone again
    glance_error(guest.delete(member_path), 403)
    assert owner.delete(member_path).status_code == 204
    glance_error(guest.get(path), 404)


def test_members_only_for_shared_images(cloud: Cloud) -> None:
    owner, guest = tenant(cloud), tenant(cloud)
    image = owner.create(name="mine", visibility="private")
    glance_error(owner.post(f"/v2/images/{image['id']}/members", {"member": guest.project_id}), 403)


def test_community_images_are_visible_but_listed_only_on_request(cloud: Cloud) -> None:
    owner, other = tenant(cloud), tenant(cloud)
    image = owner.create(name="commons", visibility="community")
    assert other.get(f"/v2/images/{image['id']}").status_code == 200
    assert image["id"] not in [i["id"] for i in other.get("/v2/images").json()["images"]]
    listed = other.get("/v2/images?visibility=community").json()["images"]
    assert image["id"] in [i["id"] for i in listed]


# ---------------------------------------------------------------------- tenancy


def test_other_project_gets_404_on_private_image(cloud: Cloud) -> None:
    a, b = tenant(cloud), tenant(cloud)
    image = a.create(name="secret", visibility="private")
    a.upload(image["id"], b"secret" * 10)
    path = f"/v2/images/{image['id']}"
    glance_error(b.get(path), 404)
    glance_error(b.get(f"{path}/file"), 404)
    glance_error(b.patch(path, [{"op": "replace", "path": "/name", "value": "mine"}]), 404)
    glance_error(b.delete(path), 404)
    glance_error(b.put(f"{path}/tags/x"), 404)
    glance_error(b.post(f"{path}/members", {"member": b.project_id}), 404)
    queued = a.create(name="queued", visibility="private")
    glance_error(b.upload(queued["id"], b"mine"), 404)
    assert image["id"] not in [i["id"] for i in b.get("/v2/images").json()["images"]]
    assert b.get(f"/v2/images?owner={a.project_id}").json()["images"] == []
    # the admin sees everything
    assert admin(cloud).get(path).status_code == 200
    assert a.get(path).json()["name"] == "secret"


@pytest.mark.parametrize(
    "image_id",
    [
        "..%2f..%2fetc%2fpasswd",
        "..%252f..%252f",
        "%2e%2e",
        "x" * 5000,
        "00000000-0000-0000-0000-000000000000",
        "files",
        "tmp",
    ],
)
def test_hostile_image_ids_are_404(cloud: Cloud, image_id: str) -> None:
    g = tenant(cloud)
    for method, suffix in (("GET", ""), ("GET", "/file"), ("PUT", "/file"), ("DELETE", "")):
        response = cloud.client.request(
            method,
            f"/image/v2/images/{image_id}{suffix}",
            headers={"X-Auth-Token": g.token, **OCTETS},
            content=b"x" if method == "PUT" else None,
        )
        assert response.status_code == 404, (method, suffix, response.text)


def test_mutations_are_audited(cloud: Cloud) -> None:
    g = tenant(cloud)
    image = g.create(name="audited")
    g.delete(f"/v2/images/{image['id']}")
    log = (cloud.platform.paths.audit_log).read_text()
    assert '"image.create"' in log and '"image.delete"' in log and image["id"] in log


# ---------------------------------------------------------------------- for compute, start-up


def _ctx(g: Glance) -> RequestContext:
    return RequestContext(
        user_id="u", user_domain_id="default", roles=frozenset({"member"}), project_id=g.project_id
    )


def test_snapshot_record_then_import_file_makes_a_bootable_image(
    cloud: Cloud, tmp_path: Path
) -> None:
    g, other = tenant(cloud), tenant(cloud)
    service = cloud.platform.image
    record = service.create_snapshot_record(_ctx(g), "snap", {"kernel_id": "k"}, min_disk=1)
    assert record["status"] == "queued" and record["visibility"] == "private"
    assert record["owner"] == g.project_id and record["kernel_id"] == "k"
    with pytest.raises(BadRequest, match="is not active"):
        service.image_for_boot(_ctx(g), record["id"])

    source = cloud.platform.paths.root / "snapshot.qcow2"  # same file system as the store
    data = qcow2(tmp_path)
    source.write_bytes(data)
    service.import_file(record["id"], source)
    assert not source.exists()
    boot = service.image_for_boot(_ctx(g), record["id"])
    assert boot.path.read_bytes() == data and boot.size == len(data)
    assert boot.disk_format == "qcow2" and boot.min_disk == 1
    assert boot.properties == {"kernel_id": "k"}
    assert service.get(_ctx(g), record["id"])["checksum"] == hashlib.md5(data).hexdigest()
    with pytest.raises(NotFound, match="could not be found"):
        service.image_for_boot(_ctx(other), record["id"])


def test_fail_image_kills_it_and_removes_bytes(cloud: Cloud, tmp_path: Path) -> None:
    g = tenant(cloud)
    service = cloud.platform.image
    record = service.create_snapshot_record(_ctx(g), "doomed", {})
    service.fail_image(record["id"], "the guest went away")
    shown = service.get(_ctx(g), record["id"])
    assert shown["status"] == "killed" and shown["size"] is None
    glance_error(g.upload(record["id"], qcow2(tmp_path)), 409)


def test_sweep_requeues_interrupted_uploads_and_removes_stray_files(cloud: Cloud) -> None:
    g = tenant(cloud)
    service = cloud.platform.image
    image = g.create(name="interrupted")
    kept = g.create(name="kept")
    g.upload(kept["id"], b"keep" * 10)
    service.begin_upload(_ctx(g), image["id"])  # as if the server died mid-upload
    writer = service.store.writer()
    writer.write(b"half")
    stray = service.store.files / ("ab" * 16)
    stray.write_bytes(b"orphan")
    assert service.sweep() >= 3
    assert g.get(f"/v2/images/{image['id']}").json()["status"] == "queued"
    assert not writer.tmp_path.exists() and not stray.exists()
    assert g.get(f"/v2/images/{kept['id']}/file").content == b"keep" * 10


def test_register_public_is_idempotent_by_name_and_checksum(cloud: Cloud, tmp_path: Path) -> None:
    service = cloud.platform.image
    source = tmp_path / "tiny.qcow2"
    source.write_bytes(qcow2(tmp_path, "tiny1"))
    first = service.register_public("tiny", source, properties={"os_distro": "tiny"})
    assert service.register_public("tiny", source) == first
    g = tenant(cloud)
    shown = g.get(f"/v2/images/{first}").json()
    assert shown["visibility"] == "public" and shown["status"] == "active"
    assert shown["os_distro"] == "tiny" and shown["owner"] is None
    assert source.exists()  # the operator's file is copied, not moved

    (tmp_path / "other.raw").write_bytes(b"other" * 5000)
    subprocess.run(
        ["qemu-img", "convert", "-O", "qcow2", str(tmp_path / "other.raw"), str(source)],
        check=True,
    )
    second = service.register_public("tiny", source)
    assert second != first
    glance_error(g.get(f"/v2/images/{first}"), 404)
    assert [i["id"] for i in g.get("/v2/images?name=tiny").json()["images"]] == [second]


def test_a_second_concurrent_upload_is_409(cloud: Cloud) -> None:
    g = tenant(cloud)
    image = g.create(name="busy")
    assert cloud.platform.image.begin_upload(_ctx(g), image["id"]) == "raw"
    glance_error(g.upload(image["id"], b"second"), 409)
    cloud.platform.image.abandon_upload(image["id"])
    assert g.upload(image["id"].upper(), b"first").status_code == 204
