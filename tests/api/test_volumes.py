"""The block storage service (Cinder v3) in-process: volumes, snapshots, types, quotas, tenancy.

Volume files are real qcow2 files made by qemu-img; data is checked by reading it
back with `qemu-img convert -O raw`.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import shutil
import subprocess
import tempfile
import threading
import uuid
from collections.abc import Iterator
from contextlib import AbstractContextManager
from pathlib import Path
from typing import Any

import pytest

from souverain import server
from souverain.common.clock import Clock
from souverain.common.context import RequestContext
from souverain.common.errors import ApiError, BadRequest, NotFound
from souverain.volume import models as vm

from .conftest import _fast_tmp_root
from .support import ADMIN_PASSWORD, Cloud, SteppingClock, TestClient, settings_for

MIB = 1024 * 1024
GIB = 1024 * MIB


@pytest.fixture(scope="module")
def cloud(database_backend: str) -> Iterator[Cloud]:
    root = Path(tempfile.mkdtemp(prefix="souverain-vol-", dir=_fast_tmp_root()))
    settings = settings_for(root / "data")
    settings.volume.max_volume_gib = 100
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


class Cinder:
    """One caller of the volume API: a token, its project, and the verbs under /volume/v3."""

    def __init__(self, cloud: Cloud, token: str, project_id: str, user_id: str = "") -> None:
        self.cloud = cloud
        self.client = cloud.client
        self.token = token
        self.project_id = project_id
        self.user_id = user_id
        self.version = "3.70"

    def _h(self, extra: dict[str, str] | None = None) -> dict[str, str]:
        return {
            "X-Auth-Token": self.token,
            "OpenStack-API-Version": f"volume {self.version}",
            **(extra or {}),
        }

    def url(self, path: str, project: bool = False) -> str:
        return f"/volume/v3/{self.project_id}{path}" if project else f"/volume/v3{path}"

    def get(self, path: str, project: bool = False, **kw: Any) -> Any:
        return self.client.get(
            self.url(path, project), headers=self._h(kw.pop("headers", None)), **kw
        )

    def post(self, path: str, body: Any = None, project: bool = False, **kw: Any) -> Any:
        return self.client.post(
            self.url(path, project), json=body, headers=self._h(kw.pop("headers", None)), **kw
        )

    def put(self, path: str, body: Any = None, project: bool = False) -> Any:
        return self.client.put(self.url(path, project), json=body, headers=self._h())

    def delete(self, path: str, project: bool = False) -> Any:
        return self.client.delete(self.url(path, project), headers=self._h())

    def create(self, **fields: Any) -> dict[str, Any]:
        fields.setdefault("size", 1)
        response = self.post("/volumes", {"volume": fields})
        assert response.status_code == 202, response.text
        body: dict[str, Any] = response.json()["volume"]
        return body

    def show(self, volume_id: str) -> dict[str, Any]:
        response = self.get(f"/volumes/{volume_id}")
        assert response.status_code == 200, response.text
        body: dict[str, Any] = response.json()["volume"]
        return body

    def snapshot(self, volume_id: str, **fields: Any) -> dict[str, Any]:
        response = self.post("/snapshots", {"snapshot": {"volume_id": volume_id, **fields}})
        assert response.status_code == 202, response.text
        body: dict[str, Any] = response.json()["snapshot"]
        return body

    def action(self, volume_id: str, name: str, args: Any = None) -> Any:
        return self.post(f"/volumes/{volume_id}/action", {name: args if args is not None else {}})

    def ctx(self) -> RequestContext:
        view = self.cloud.platform.identity.validate(self.token)
        assert view is not None
        return view.context("req-test")


def cinder_error(response: Any, status: int) -> str:
    assert response.status_code == status, response.text
    body = response.json()
    assert len(body) == 1, body
    fault = next(iter(body.values()))
    assert fault["code"] == status
    message: str = fault["message"]
    return message


def tenant(cloud: Cloud) -> Cinder:
    member = cloud.member()
    return Cinder(cloud, member.token, member.project_id, member.id)


def admin(cloud: Cloud) -> Cinder:
    return Cinder(cloud, cloud.admin_token, cloud.admin_project_id, cloud.admin_id)


def volume_file(cloud: Cloud, volume_id: str) -> Path:
    return cloud.platform.volume.backend.volume_path(volume_id)


def write_pattern(cloud: Cloud, volume_id: str, tmp_path: Path, seed: bytes) -> str:
    """Put a pattern into the volume (raw data converted into its qcow2); its raw sha256."""
    path = volume_file(cloud, volume_id)
    size = cloud.platform.volume.backend.virtual_size(path)
    raw = tmp_path / f"{seed.hex()}.raw"
    with raw.open("wb") as handle:
        handle.truncate(size)
        for offset in (0, 3 * MIB, size - MIB):
            handle.seek(offset)
            handle.write(hashlib.sha256(seed).digest() * (MIB // 32))
    subprocess.run(
        ["qemu-img", "convert", "-f", "raw", "-O", "qcow2", str(raw), str(path)],
        check=True,
        capture_output=True,
    )
    return raw_hash(path, tmp_path, size)


def raw_hash(path: Path, tmp_path: Path, size: int | None = None) -> str:
    out = tmp_path / "read.raw"
    subprocess.run(
        ["qemu-img", "convert", "-U", "-O", "raw", str(path), str(out)],
        check=True,
        capture_output=True,
    )
    if size is not None:
        with out.open("r+b") as handle:
            handle.truncate(size)
    digest = hashlib.sha256()
    with out.open("rb") as handle:
        while chunk := handle.read(MIB):
            digest.update(chunk)
    out.unlink()
    return digest.hexdigest()


# ---------------------------------------------------------------------- discovery


def test_version_discovery_lists_v3_with_microversions(cloud: Cloud) -> None:
    response = cloud.client.get("/volume/")
    assert response.status_code == 300
    (version,) = response.json()["versions"]
    assert version["id"] == "v3.0" and version["status"] == "CURRENT"
    assert version["min_version"] == "3.0" and version["version"] == "3.70"
    assert version["links"][0]["href"] == "http://testserver/volume/v3/"
    for path in ("/volume/v3/", "/volume/v3"):
        shown = cloud.client.get(path)
        assert shown.status_code == 200, shown.text
        assert shown.json() == {"versions": [version]}


def test_microversion_is_echoed_and_out_of_range_is_406(cloud: Cloud) -> None:
    c = tenant(cloud)
    c.version = "3.42"
    response = c.get("/volumes")
    assert response.headers["OpenStack-API-Version"] == "volume 3.42"
    assert "OpenStack-API-Version" in response.headers["Vary"]
    c.version = "3.99"
    cinder_error(c.get("/volumes"), 406)
    c.version = "latest"
    assert c.get("/volumes").headers["OpenStack-API-Version"] == "volume 3.70"
    response = cloud.client.get("/volume/v3/volumes", headers={"X-Auth-Token": c.token})
    assert response.headers["OpenStack-API-Version"] == "volume 3.0"


def test_volume_calls_need_a_token(cloud: Cloud) -> None:
    cinder_error(cloud.client.get("/volume/v3/volumes"), 401)


# ---------------------------------------------------------------------- volumes


def test_create_show_update_delete_with_and_without_project_in_path(cloud: Cloud) -> None:
    c = tenant(cloud)
    created = c.create(name="data", description="d", metadata={"tier": "gold"})
    assert created["status"] == "available" and created["size"] == 1
    assert created["bootable"] == "false" and created["volume_type"] == "__DEFAULT__"
    assert "os-vol-tenant-attr:tenant_id" not in created  # on reads only, not on create
    assert created["availability_zone"] == "nova" and created["attachments"] == []
    path = volume_file(cloud, created["id"])
    assert path.is_file()
    assert cloud.platform.volume.backend.virtual_size(path) == GIB

    shown = c.get(f"/volumes/{created['id']}", project=True).json()["volume"]
    assert shown["id"] == created["id"] and shown["metadata"] == {"tier": "gold"}

    updated = c.put(f"/volumes/{created['id']}", {"volume": {"name": "data2"}}, project=True)
    assert updated.status_code == 200 and updated.json()["volume"]["name"] == "data2"

    assert c.delete(f"/volumes/{created['id']}").status_code == 202
    cinder_error(c.get(f"/volumes/{created['id']}"), 404)
    assert not path.exists()


def test_ten_gib_volume_is_thin(cloud: Cloud) -> None:
    c = tenant(cloud)
    created = c.create(size=10)
    path = volume_file(cloud, created["id"])
    assert cloud.platform.volume.backend.virtual_size(path) == 10 * GIB
    assert path.stat().st_blocks * 512 < 2 * MIB


@pytest.mark.parametrize(
    ("body", "status"),
    [
        ({}, 400),
        ({"size": 0}, 400),
        ({"size": -1}, 400),
        ({"size": "x"}, 400),
        ({"size": True}, 400),
        ({"size": 101}, 400),
        ({"size": 1, "availability_zone": "moon"}, 400),
        ({"size": 1, "volume_type": "gold-nope"}, 404),
        ({"size": 1, "metadata": "a"}, 400),
        ({"size": 1, "name": "x" * 256}, 400),
        ({"size": 1, "snapshot_id": "nope"}, 404),
        ({"size": 1, "source_volid": "../../etc/passwd"}, 404),
        ({"size": 1, "imageRef": "00000000-0000-0000-0000-000000000000"}, 404),
    ],
)
def test_bad_create_bodies_are_refused_naming_the_field(
    cloud: Cloud, body: dict[str, Any], status: int
) -> None:
    c = tenant(cloud)
    cinder_error(c.post("/volumes", {"volume": body}), status)
    assert c.get("/volumes").json()["volumes"] == []


def test_list_filters_sorting_and_pagination(cloud: Cloud) -> None:
    c = tenant(cloud)
    made = [c.create(name=f"v{i}", size=i + 1, metadata={"n": str(i % 2)}) for i in range(5)]
    listed = c.get("/volumes").json()["volumes"]
    assert {v["id"] for v in listed} == {v["id"] for v in made}
    assert set(listed[0]) == {"id", "name", "links"}
    by_name = c.get("/volumes/detail", params={"name": "v3"}).json()["volumes"]
    assert [v["id"] for v in by_name] == [made[3]["id"]]
    odd = c.get("/volumes/detail", params={"metadata": '{"n": "1"}'}).json()["volumes"]
    assert {v["name"] for v in odd} == {"v1", "v3"}
    by_size = c.get("/volumes/detail", params={"sort": "size:asc"}).json()["volumes"]
    assert [v["size"] for v in by_size] == [1, 2, 3, 4, 5]
    page = c.get("/volumes/detail", params={"sort": "size:desc", "limit": 2}).json()
    assert [v["size"] for v in page["volumes"]] == [5, 4]
    next_href = page["volumes_links"][0]["href"]
    assert "marker=" in next_href and next_href.startswith("http://testserver/volume/v3/")
    rest = c.get(
        "/volumes/detail", params={"sort": "size:desc", "limit": 2, "marker": made[3]["id"]}
    ).json()
    assert [v["size"] for v in rest["volumes"]] == [3, 2]
    assert c.get("/volumes/detail", params={"status": "error"}).json()["volumes"] == []
    cinder_error(c.get("/volumes", params={"sort": "secret:asc"}), 400)
    cinder_error(c.get("/volumes", params={"marker": "nope"}), 404)  # Cinder: marker not found


def test_metadata_routes(cloud: Cloud) -> None:
    c = tenant(cloud)
    vid = c.create(metadata={"a": "1"})["id"]
    merged = c.post(f"/volumes/{vid}/metadata", {"metadata": {"b": "2"}}).json()["metadata"]
    assert merged == {"a": "1", "b": "2"}
    assert c.get(f"/volumes/{vid}/metadata/b").json() == {"meta": {"b": "2"}}
    assert c.put(f"/volumes/{vid}/metadata/c", {"meta": {"c": "3"}}).status_code == 200
    cinder_error(c.put(f"/volumes/{vid}/metadata/c", {"meta": {"d": "3"}}), 400)
    assert c.delete(f"/volumes/{vid}/metadata/a").status_code == 200
    cinder_error(c.delete(f"/volumes/{vid}/metadata/a"), 404)
    replaced = c.put(f"/volumes/{vid}/metadata", {"metadata": {"z": "9"}}).json()["metadata"]
    assert replaced == {"z": "9"} and c.show(vid)["metadata"] == {"z": "9"}


def test_bootable_and_readonly_flags(cloud: Cloud) -> None:
    c = tenant(cloud)
    vid = c.create()["id"]
    assert c.action(vid, "os-set_bootable", {"bootable": True}).status_code == 200
    assert c.show(vid)["bootable"] == "true"
    assert c.action(vid, "os-update_readonly_flag", {"readonly": True}).status_code == 202
    assert c.show(vid)["metadata"]["readonly"] == "True"
    assert cloud.platform.volume.handle(vid).readonly
    cinder_error(c.action(vid, "os-set_bootable", {"bootable": "maybe"}), 400)
    cinder_error(c.action(vid, "os-nothing"), 400)


def test_extend_available_volume_grows_the_file(cloud: Cloud) -> None:
    c = tenant(cloud)
    vid = c.create(size=1)["id"]
    assert c.action(vid, "os-extend", {"new_size": 3}).status_code == 202
    assert c.show(vid)["size"] == 3
    assert cloud.platform.volume.backend.virtual_size(volume_file(cloud, vid)) == 3 * GIB
    assert "greater than current size" in cinder_error(
        c.action(vid, "os-extend", {"new_size": 2}), 400
    )


def test_extend_in_use_goes_through_the_attached_resizer(cloud: Cloud) -> None:
    c = tenant(cloud)
    service = cloud.platform.volume
    vid = c.create(size=1)["id"]
    service.reserve(c.ctx(), vid, "server-1")
    service.attached(vid, "server-1", "/dev/vdb", "att-1")
    calls: list[tuple[str, str, int]] = []
    previous = service.attached_resizer
    try:
        service.attached_resizer = None
        cinder_error(c.action(vid, "os-extend", {"new_size": 2}), 400)
        assert c.show(vid)["status"] == "in-use" and c.show(vid)["size"] == 1

        def failing(server_id: str, volume_id: str, size: int) -> None:
            raise RuntimeError("QMP said no")

        service.attached_resizer = failing
        assert "QMP said no" in cinder_error(c.action(vid, "os-extend", {"new_size": 2}), 400)
        assert c.show(vid)["status"] == "in-use"

        def resizer(server_id: str, volume_id: str, size: int) -> None:
            calls.append((server_id, volume_id, size))

        service.attached_resizer = resizer
        assert c.action(vid, "os-extend", {"new_size": 2}).status_code == 202
    finally:
        service.attached_resizer = previous
    assert calls == [("server-1", vid, 2)]
    shown = c.show(vid)
    assert shown["status"] == "in-use" and shown["size"] == 2


# ---------------------------------------------------------------------- attachments


def test_attach_detach_state_machine(cloud: Cloud) -> None:
    c = tenant(cloud)
    service = cloud.platform.volume
    vid = c.create()["id"]
    handle = service.reserve(c.ctx(), vid, "srv")
    assert handle.id == vid and handle.format == "qcow2" and handle.path.is_file()
    assert c.show(vid)["status"] == "attaching"
    with pytest.raises(BadRequest, match="must be available to attach"):
        service.reserve(c.ctx(), vid, "srv2")
    service.unreserve(vid)
    assert c.show(vid)["status"] == "available"

    service.reserve(c.ctx(), vid, "srv")
    service.attached(vid, "srv", "/dev/vdc", "att-9", delete_on_termination=True)
    shown = c.show(vid)
    assert shown["status"] == "in-use"
    (attachment,) = shown["attachments"]
    assert attachment["server_id"] == "srv" and attachment["device"] == "/dev/vdc"
    assert attachment["attachment_id"] == "att-9"
    (listed,) = service.attachments_of("srv")
    assert listed["volume_id"] == vid and listed["delete_on_termination"] is True
    assert listed["path"] == handle.path and listed["status"] == "in-use"

    assert "detach it first" in cinder_error(c.delete(f"/volumes/{vid}"), 400)
    with pytest.raises(NotFound):
        service.begin_detach(c.ctx(), vid, "other-server")
    detach = service.begin_detach(c.ctx(), vid, "srv")
    assert detach["device"] == "/dev/vdc" and detach["attachment_id"] == "att-9"
    assert c.show(vid)["status"] == "detaching"
    service.roll_back_detach(vid)
    assert c.show(vid)["status"] == "in-use"
    service.begin_detach(c.ctx(), vid, "srv")
    service.detached(vid)
    shown = c.show(vid)
    assert shown["status"] == "available" and shown["attachments"] == []
    assert service.attachments_of("srv") == []


def test_attachments_of_keeps_attach_order_and_delete_internal(cloud: Cloud) -> None:
    c = tenant(cloud)
    service = cloud.platform.volume
    ids = [c.create()["id"] for _ in range(3)]
    for index, vid in enumerate(reversed(ids)):
        service.reserve(c.ctx(), vid, "ordered")
        service.attached(vid, "ordered", f"/dev/vd{'bcd'[index]}", f"a{index}")
    assert [a["volume_id"] for a in service.attachments_of("ordered")] == list(reversed(ids))
    service.delete_internal(ids[0])
    cinder_error(c.get(f"/volumes/{ids[0]}"), 404)
    assert not volume_file(cloud, ids[0]).exists()


def test_create_for_boot_makes_a_bootable_volume_from_the_image(
    cloud: Cloud, tmp_path: Path
) -> None:
    c = tenant(cloud)
    image_id = upload_image(cloud, c, tmp_path)
    handle = cloud.platform.volume.create_for_boot(c.ctx(), image_id, 1)
    assert handle.bootable and handle.size_gib == 1
    shown = c.show(handle.id)
    assert shown["status"] == "available" and shown["volume_image_metadata"]["image_id"] == image_id
    with pytest.raises(NotFound):
        cloud.platform.volume.create_for_boot(c.ctx(), "00000000-0000-0000-0000-000000000000", 1)


# ---------------------------------------------------------------------- snapshots and clones


def test_snapshot_clone_and_volume_clone_hold_the_same_data(cloud: Cloud, tmp_path: Path) -> None:
    c = tenant(cloud)
    vid = c.create(size=1, name="origin")["id"]
    original = write_pattern(cloud, vid, tmp_path, b"one")
    snap = c.snapshot(vid, name="s1", metadata={"k": "v"})
    assert snap["status"] == "available" and snap["size"] == 1 and snap["volume_id"] == vid

    write_pattern(cloud, vid, tmp_path, b"two")  # the snapshot keeps the old data
    from_snap = c.create(snapshot_id=snap["id"], size=None)
    assert from_snap["status"] == "available" and from_snap["snapshot_id"] == snap["id"]
    assert raw_hash(volume_file(cloud, from_snap["id"]), tmp_path) == original

    bigger = c.create(snapshot_id=snap["id"], size=2)
    assert raw_hash(volume_file(cloud, bigger["id"]), tmp_path, GIB) == original
    assert cloud.platform.volume.backend.virtual_size(volume_file(cloud, bigger["id"])) == 2 * GIB

    clone = c.create(source_volid=vid, size=None)
    current = raw_hash(volume_file(cloud, vid), tmp_path)
    assert clone["source_volid"] == vid
    assert raw_hash(volume_file(cloud, clone["id"]), tmp_path) == current != original

    # independent copies: the origin and snapshot can go and the copies stay intact
    assert "dependent snapshot" in cinder_error(c.delete(f"/volumes/{vid}"), 400)
    assert c.delete(f"/volumes/{vid}?cascade=true").status_code == 202
    cinder_error(c.get(f"/snapshots/{snap['id']}"), 404)
    assert raw_hash(volume_file(cloud, from_snap["id"]), tmp_path) == original


def test_snapshot_of_in_use_volume_refused_with_force_false(cloud: Cloud) -> None:
    c = tenant(cloud)
    service = cloud.platform.volume
    vid = c.create()["id"]
    server_id = str(uuid.uuid4())  # the compute service holds its writes: a real server id
    service.reserve(c.ctx(), vid, server_id)
    service.attached(vid, server_id, "/dev/vdb", "att")
    c.version = "3.65"  # from 3.66 an in-use volume needs no force (test_volume_snapshot_in_use)
    refused = {"snapshot": {"volume_id": vid, "force": False}}
    assert "force" in cinder_error(c.post("/snapshots", refused), 400)
    snap = c.snapshot(vid, force=True)
    assert snap["status"] == "available"


def test_snapshot_or_clone_of_in_use_volume_is_copied_while_the_guests_writes_are_held(
    cloud: Cloud,
) -> None:
    c = tenant(cloud)
    service = cloud.platform.volume
    vid = c.create()["id"]
    service.reserve(c.ctx(), vid, "server-held")
    service.attached(vid, "server-held", "/dev/vdb", "att")
    events: list[str] = []
    copy = service.backend.copy

    @contextlib.contextmanager
    def holder(server_id: str) -> Iterator[None]:
        events.append(f"hold {server_id}")
        yield
        events.append("release")

    def failing(server_id: str) -> AbstractContextManager[None]:
        raise RuntimeError("QMP stop failed on /run/souverain/x.qmp")

    def recorded_copy(*args: Any, **kw: Any) -> None:
        events.append(f"copy shared={kw.get('shared', args[4:5] == (True,))}")
        copy(*args, **kw)

    previous = service.writes_held
    try:
        service.writes_held = failing
        snap = c.snapshot(vid, force=True)
        assert snap["status"] == "error"
        shown = c.get(f"/snapshots/{snap['id']}").json()["snapshot"]
        assert "/run" not in str(shown)  # the host's paths stay on the host
        service.writes_held = holder
        with pytest.MonkeyPatch.context() as patch:
            patch.setattr(service.backend, "copy", recorded_copy)
            assert c.snapshot(vid, force=True)["status"] == "available"
            assert c.snapshot(c.create()["id"])["status"] == "available"  # detached: no hold
            assert c.create(source_volid=vid, size=None)["status"] == "available"
    finally:
        service.writes_held = previous
    held = ["hold server-held", "copy shared=True", "release"]
    assert events == [*held, "copy shared=False", *held]


def test_snapshot_list_update_metadata_delete(cloud: Cloud) -> None:
    c = tenant(cloud)
    vid = c.create()["id"]
    s1 = c.snapshot(vid, name="a")
    s2 = c.snapshot(vid, name="b")
    listed = c.get("/snapshots/detail").json()["snapshots"]
    assert {s["id"] for s in listed} == {s1["id"], s2["id"]}
    assert [s["id"] for s in c.get("/snapshots", params={"name": "b"}).json()["snapshots"]] == [
        s2["id"]
    ]
    renamed = c.put(f"/snapshots/{s1['id']}", {"snapshot": {"name": "a2"}}).json()["snapshot"]
    assert renamed["name"] == "a2"
    meta = c.post(f"/snapshots/{s1['id']}/metadata", {"metadata": {"x": "1"}}).json()
    assert meta == {"metadata": {"x": "1"}}
    assert c.delete(f"/snapshots/{s1['id']}/metadata/x").status_code == 200
    assert c.delete(f"/snapshots/{s1['id']}").status_code == 202
    cinder_error(c.get(f"/snapshots/{s1['id']}"), 404)
    assert not cloud.platform.volume.backend.snapshot_path(s1["id"]).exists()


# ---------------------------------------------------------------------- images


def upload_image(cloud: Cloud, c: Cinder, tmp_path: Path) -> str:
    raw = tmp_path / "image.raw"
    with raw.open("wb") as handle:
        handle.truncate(8 * MIB)
        handle.write(b"bootable image " * 1000)
    qcow = tmp_path / "image.qcow2"
    subprocess.run(
        ["qemu-img", "convert", "-f", "raw", "-O", "qcow2", str(raw), str(qcow)],
        check=True,
        capture_output=True,
    )
    headers = {"X-Auth-Token": c.token}
    created = cloud.client.post(
        "/image/v2/images",
        json={"name": "img", "disk_format": "qcow2", "container_format": "bare"},
        headers=headers,
    ).json()
    put = cloud.client.put(
        f"/image/v2/images/{created['id']}/file",
        content=qcow.read_bytes(),
        headers={**headers, "Content-Type": "application/octet-stream"},
    )
    assert put.status_code == 204, put.text
    image_id: str = created["id"]
    return image_id


def test_volume_from_image_and_upload_back_to_image(cloud: Cloud, tmp_path: Path) -> None:
    c = tenant(cloud)
    image_id = upload_image(cloud, c, tmp_path)
    vol = c.create(imageRef=image_id, size=1, name="from-image")
    assert vol["status"] == "available" and vol["bootable"] == "true"
    assert c.show(vol["id"])["volume_image_metadata"]["image_id"] == image_id
    image_path = cloud.platform.image.image_for_boot(c.ctx(), image_id).path
    assert raw_hash(volume_file(cloud, vol["id"]), tmp_path, 8 * MIB) == raw_hash(
        image_path, tmp_path
    )

    response = c.action(vol["id"], "os-volume_upload_image", {"image_name": "back"})
    assert response.status_code == 202, response.text
    upload = response.json()["os-volume_upload_image"]
    assert "bootable" not in upload  # Cinder's upload answer carries no bootable flag
    new_image = cloud.platform.image.get(c.ctx(), upload["image_id"])
    assert new_image["status"] == "active" and new_image["disk_format"] == "raw"  # the default
    assert c.show(vol["id"])["status"] == "available"
    new_path = cloud.platform.image.image_for_boot(c.ctx(), upload["image_id"]).path
    assert raw_hash(new_path, tmp_path, 8 * MIB) == raw_hash(image_path, tmp_path)
    body = {"image_name": "back-qcow2", "disk_format": "qcow2"}
    upload = c.action(vol["id"], "os-volume_upload_image", body).json()["os-volume_upload_image"]
    assert cloud.platform.image.get(c.ctx(), upload["image_id"])["disk_format"] == "qcow2"
    new_path = cloud.platform.image.image_for_boot(c.ctx(), upload["image_id"]).path
    assert raw_hash(new_path, tmp_path, 8 * MIB) == raw_hash(image_path, tmp_path)
    refused = c.action(
        vol["id"], "os-volume_upload_image", {"image_name": "x", "disk_format": "vmdk"}
    )
    assert "disk_format" in cinder_error(refused, 400)


# ---------------------------------------------------------------------- types


def test_types_default_and_admin_only_writes(cloud: Cloud) -> None:
    c, a = tenant(cloud), admin(cloud)
    default = c.get("/types/default").json()["volume_type"]
    assert default["name"] == "__DEFAULT__"
    assert [t["name"] for t in c.get("/types").json()["volume_types"]] == ["__DEFAULT__"]
    cinder_error(c.post("/types", {"volume_type": {"name": "fast"}}), 403)
    fast = a.post("/types", {"volume_type": {"name": "fast", "extra_specs": {"k": "v"}}})
    assert fast.status_code == 200, fast.text
    fast_id = fast.json()["volume_type"]["id"]
    cinder_error(a.post("/types", {"volume_type": {"name": "fast"}}), 409)
    specs = a.post(f"/types/{fast_id}/extra_specs", {"extra_specs": {"x": "y"}}).json()
    assert specs == {"extra_specs": {"x": "y"}}
    assert a.get(f"/types/{fast_id}/extra_specs").json()["extra_specs"] == {"k": "v", "x": "y"}
    assert c.get(f"/types/{fast_id}/extra_specs").json()["extra_specs"] == {}  # not user visible
    assert a.delete(f"/types/{fast_id}/extra_specs/k").status_code == 202
    renamed = a.put(f"/types/{fast_id}", {"volume_type": {"description": "nvme"}}).json()
    assert renamed["volume_type"]["description"] == "nvme"
    vol = c.create(volume_type="fast")
    assert vol["volume_type"] == "fast"
    assert "in use" in cinder_error(a.delete(f"/types/{fast_id}"), 400)
    cinder_error(c.delete(f"/types/{fast_id}"), 403)
    cinder_error(a.delete(f"/types/{default['id']}"), 400)
    c.delete(f"/volumes/{vol['id']}")
    assert a.delete(f"/types/{fast_id}").status_code == 202


# ---------------------------------------------------------------------- quotas


def test_quota_over_volumes_and_gigabytes_is_413(cloud: Cloud) -> None:
    c, a = tenant(cloud), admin(cloud)
    cinder_error(c.put(f"/os-quota-sets/{c.project_id}", {"quota_set": {"volumes": 1}}), 403)
    response = a.put(
        f"/os-quota-sets/{c.project_id}", {"quota_set": {"volumes": 2, "gigabytes": 5}}
    )
    assert response.status_code == 200, response.text
    assert response.json()["quota_set"]["volumes"] == 2
    c.create(size=3)
    assert "VolumeSizeExceedsAvailableQuota" in cinder_error(
        c.post("/volumes", {"volume": {"size": 3}}), 413
    )
    c.create(size=1)
    assert "VolumeLimitExceeded" in cinder_error(c.post("/volumes", {"volume": {"size": 1}}), 413)
    usage = c.get(f"/os-quota-sets/{c.project_id}", params={"usage": "true"}).json()["quota_set"]
    assert usage["volumes"] == {"limit": 2, "in_use": 2, "reserved": 0, "allocated": 0}
    assert usage["gigabytes"]["in_use"] == 4
    absolute = c.get("/limits").json()["limits"]["absolute"]
    assert absolute["maxTotalVolumes"] == 2 and absolute["totalVolumesUsed"] == 2
    assert absolute["totalGigabytesUsed"] == 4
    defaults = c.get(f"/os-quota-sets/{c.project_id}/defaults").json()["quota_set"]
    assert defaults["volumes"] == 10
    other = tenant(cloud)
    cinder_error(c.get(f"/os-quota-sets/{other.project_id}"), 403)


def test_twenty_concurrent_creates_against_a_quota_of_five(cloud: Cloud) -> None:
    c, a = tenant(cloud), admin(cloud)
    a.put(f"/os-quota-sets/{c.project_id}", {"quota_set": {"volumes": 5}})
    service, ctx = cloud.platform.volume, c.ctx()
    results: list[str] = []
    lock = threading.Lock()
    start = threading.Barrier(20)

    def create() -> None:
        start.wait()
        try:
            service.create_volume(ctx, {"size": 1})
            outcome = "ok"
        except ApiError as exc:
            outcome = str(exc.status)
        with lock:
            results.append(outcome)

    threads = [threading.Thread(target=create) for _ in range(20)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(results) == ["413"] * 15 + ["ok"] * 5
    assert len(c.get("/volumes").json()["volumes"]) == 5


def test_snapshot_quota(cloud: Cloud) -> None:
    c, a = tenant(cloud), admin(cloud)
    a.put(f"/os-quota-sets/{c.project_id}", {"quota_set": {"snapshots": 1}})
    vid = c.create()["id"]
    c.snapshot(vid)
    assert "SnapshotLimitExceeded" in cinder_error(
        c.post("/snapshots", {"snapshot": {"volume_id": vid}}), 413
    )


def test_availability_zones(cloud: Cloud) -> None:
    zones = tenant(cloud).get("/os-availability-zone").json()["availabilityZoneInfo"]
    assert zones == [{"zoneName": "nova", "zoneState": {"available": True}}]


# ---------------------------------------------------------------------- tenancy


def test_other_project_gets_404_everywhere(cloud: Cloud) -> None:
    a, b = tenant(cloud), tenant(cloud)
    vid = a.create(metadata={"k": "v"})["id"]
    sid = a.snapshot(vid)["id"]
    for response in (
        b.get(f"/volumes/{vid}"),
        b.put(f"/volumes/{vid}", {"volume": {"name": "x"}}),
        b.delete(f"/volumes/{vid}"),
        b.get(f"/volumes/{vid}/metadata"),
        b.post(f"/volumes/{vid}/metadata", {"metadata": {"a": "b"}}),
        b.delete(f"/volumes/{vid}/metadata/k"),
        b.action(vid, "os-extend", {"new_size": 5}),
        b.action(vid, "os-set_bootable", {"bootable": True}),
        b.get(f"/snapshots/{sid}"),
        b.delete(f"/snapshots/{sid}"),
        b.get(f"/snapshots/{sid}/metadata"),
        b.post("/snapshots", {"snapshot": {"volume_id": vid}}),
        b.post("/volumes", {"volume": {"source_volid": vid}}),
        b.post("/volumes", {"volume": {"snapshot_id": sid}}),
        b.client.get(f"/volume/v3/{a.project_id}/volumes", headers=b._h()),
    ):
        cinder_error(response, 404)
    assert b.get("/volumes/detail", params={"all_tenants": "1"}).json()["volumes"] == []
    with pytest.raises(NotFound):
        cloud.platform.volume.reserve(b.ctx(), vid, "srv")
    assert a.show(vid)["name"] is None and a.show(vid)["metadata"] == {"k": "v"}


def test_admin_sees_all_projects_with_all_tenants(cloud: Cloud) -> None:
    a, adm = tenant(cloud), admin(cloud)
    vid = a.create()["id"]
    assert vid not in {v["id"] for v in adm.get("/volumes").json()["volumes"]}
    everyone = adm.get("/volumes/detail", params={"all_tenants": "1"}).json()["volumes"]
    assert vid in {v["id"] for v in everyone}
    assert (
        adm.client.get(f"/volume/v3/{a.project_id}/volumes/{vid}", headers=adm._h()).status_code
        == 200
    )


@pytest.mark.parametrize(
    "volume_id",
    ["..%2f..", "%2e%2e%2fetc", "x" * 300, "'; drop table volumes; --", "\u00e9t\u00e9"],
)
def test_hostile_ids_are_not_found(cloud: Cloud, volume_id: str) -> None:
    c = tenant(cloud)
    cinder_error(c.get(f"/volumes/{volume_id}"), 404)
    cinder_error(c.delete(f"/snapshots/{volume_id}"), 404)


# ---------------------------------------------------------------------- crash recovery


def test_set_up_resolves_volumes_left_mid_operation(cloud: Cloud) -> None:
    c = tenant(cloud)
    service = cloud.platform.volume
    creating = c.create()["id"]
    deleting = c.create()["id"]
    extending = c.create(size=1)["id"]
    service.backend.resize(volume_file(cloud, extending), 2)  # the resize ran, the commit not
    with service.db.session() as s:
        for vid, status in (
            (creating, "creating"),
            (deleting, "deleting"),
            (extending, "extending"),
        ):
            row = s.get(vm.Volume, vid)
            assert row is not None
            row.status = status
    service.set_up()
    failed = c.show(creating)
    assert failed["status"] == "error"
    messages = c.get("/messages").json()["messages"]
    assert any(
        m["resource_uuid"] == creating and "interrupted" in m["user_message"] for m in messages
    )
    cinder_error(c.get(f"/volumes/{deleting}"), 404)
    assert not volume_file(cloud, deleting).exists()
    grown = c.show(extending)
    assert grown["status"] == "available" and grown["size"] == 2
    assert c.delete(f"/volumes/{creating}").status_code == 202


def test_audit_records_mutating_calls(cloud: Cloud) -> None:
    c = tenant(cloud)
    vid = c.create(name="audited")["id"]
    c.delete(f"/volumes/{vid}")
    log_text = cloud.platform.paths.audit_log.read_text()
    assert "volume.create" in log_text and "volume.delete" in log_text and vid in log_text


def test_volume_files_are_private(cloud: Cloud) -> None:
    c = tenant(cloud)
    vid = c.create()["id"]
    assert os.stat(volume_file(cloud, vid)).st_mode & 0o077 == 0
