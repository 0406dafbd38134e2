"""The image service with its data on RBD (`image.backend = "rbd"`), on the shared Ceph
cluster: a handful of test_images' tests again (upload, download byte for byte, bad data,
snapshots, sweep, public images), then what only the pool shows: the verbatim copy and the
raw clone parent, delete while cloned, damaged qcow2, a missing pool or conf file.

Storage does not depend on the database: these run on SQLite only.
"""

from __future__ import annotations

import hashlib
import shutil
import struct
import subprocess
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from souverain import server
from souverain.common.clock import Clock
from souverain.image.rbd_store import RAW_SUFFIX, SNAP, RbdImageStore
from tests.ceph import CephCluster

from .conftest import _fast_tmp_root
from .support import ADMIN_PASSWORD, Cloud, SteppingClock, TestClient, settings_for
from .test_image_import import (  # noqa: F401  (collected again here, on the RBD cloud)
    test_glance_direct_stages_then_imports_into_an_active_image,
    test_import_of_data_not_in_the_declared_format_fails_its_task_and_keeps_nothing,
)
from .test_images import (  # noqa: F401  (collected again here, on the RBD cloud)
    MAX_IMAGE_BYTES,
    _ctx,
    glance_error,
    qcow2,
    tenant,
    test_raw_image_virtual_size_is_its_size,
    test_register_public_is_idempotent_by_name_and_checksum,
    test_snapshot_record_then_import_file_makes_a_bootable_image,
    test_sweep_requeues_interrupted_uploads_and_removes_stray_files,
    test_upload_download_round_trip_with_checksums,
    test_wrong_disk_format_is_refused_and_nothing_is_left,
)


@pytest.fixture(scope="module", params=("sqlite",), autouse=True)
def database_backend(request: pytest.FixtureRequest) -> str:
    """The storage backend is what varies here, not the database."""
    return str(request.param)


def rbd_settings(root: Path, ceph: CephCluster, pool: str) -> Any:
    settings = settings_for(root / "data")
    settings.image.max_image_bytes = MAX_IMAGE_BYTES
    settings.image.backend = "rbd"
    settings.image.rbd_pool = pool
    settings.ceph.conf_file = ceph.conf
    return settings


@pytest.fixture(scope="module")
def pool(database_backend: str, ceph_session: None) -> Iterator[str]:
    from tests.ceph import shared_cluster

    name = f"img-{uuid.uuid4().hex[:10]}"
    yield name  # made by the platform's start (the store creates a missing pool)
    if name in shared_cluster().pools():
        shared_cluster().command(
            "osd", "pool", "delete", name, name, "--yes-i-really-really-mean-it"
        )


@pytest.fixture(scope="module")
def cloud(pool: str) -> Iterator[Cloud]:
    from tests.ceph import shared_cluster

    root = Path(tempfile.mkdtemp(prefix="souverain-imgrbd-", dir=_fast_tmp_root()))
    try:
        with pytest.MonkeyPatch.context() as patch:
            patch.setenv("SOUVERAIN_ADMIN_PASSWORD", ADMIN_PASSWORD)
            settings = rbd_settings(root, shared_cluster(), pool)
            built = server.prepare(settings, clock=Clock(SteppingClock().now))
        try:
            with TestClient(built.app, base_url="http://testserver") as client:
                yield Cloud(client, built)
        finally:
            built.close()
    finally:
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture(scope="module")
def shared_cloud(cloud: Cloud) -> Cloud:
    """test_image_import's tests take this name for the module's platform."""
    return cloud


def _rbd(ceph: CephCluster, *args: str) -> str:
    """The rbd CLI, looking from outside."""
    return subprocess.run(
        ["rbd", *args], env=ceph.env(), capture_output=True, text=True, check=True, timeout=60
    ).stdout


def pool_images(ceph: CephCluster, pool: str) -> set[str]:
    return set(_rbd(ceph, "ls", pool).split())


def file_id(cloud: Cloud, image_id: str) -> str:
    from souverain.image import models

    with cloud.platform.image.db.session() as s:
        row = s.get(models.Image, image_id)
        assert row is not None and row.file_id is not None
        return str(row.file_id)


def test_store_is_rbd_and_created_its_pool(cloud: Cloud, ceph: CephCluster, pool: str) -> None:
    assert isinstance(cloud.platform.image.store, RbdImageStore)
    assert pool in ceph.pools()
    apps = ceph.command("osd", "pool", "application", "get", pool)
    assert "rbd" in apps


def test_qcow2_is_kept_verbatim_beside_a_raw_clone_parent(
    cloud: Cloud, ceph: CephCluster, pool: str, tmp_path: Path
) -> None:
    g = tenant(cloud)
    data = qcow2(tmp_path)
    image = g.create(name="q", disk_format="qcow2")
    assert g.upload(image["id"], data).status_code == 204
    fid = file_id(cloud, image["id"])
    assert {fid, fid + RAW_SUFFIX} <= pool_images(ceph, pool)
    assert not (cloud.platform.image.store.files / fid).exists()  # no local copy kept
    # the raw conversion is the qcow2's disk content, and its snapshot is protected
    out = tmp_path / "exported.raw"
    _rbd(ceph, "export", f"{pool}/{fid}{RAW_SUFFIX}@{SNAP}", str(out))
    assert out.read_bytes()[:90000] == b"souverain" * 10000
    snaps = _rbd(ceph, "snap", "ls", f"{pool}/{fid}{RAW_SUFFIX}", "--format", "json")
    assert '"protected":"true"' in snaps.replace(" ", "")
    boot = cloud.platform.image.image_for_boot(_ctx(g), image["id"])
    assert boot.rbd is not None
    assert (boot.rbd.pool, boot.rbd.image, boot.rbd.snapshot) == (pool, fid + RAW_SUFFIX, SNAP)
    assert boot.path.read_bytes() == data  # a local copy for local-file users, exported
    # a raw image is its own clone parent: no second copy
    raw = g.create(name="r", disk_format="raw")
    assert g.upload(raw["id"], b"r" * 5000).status_code == 204
    rfid = file_id(cloud, raw["id"])
    assert rfid in pool_images(ceph, pool) and rfid + RAW_SUFFIX not in pool_images(ceph, pool)
    ref = cloud.platform.image.image_for_boot(_ctx(g), raw["id"]).rbd
    assert ref is not None and ref.image == rfid
    download = g.get(f"/v2/images/{raw['id']}/file")
    assert download.content == b"r" * 5000
    assert download.headers["content-md5"] == hashlib.md5(b"r" * 5000).hexdigest()


def test_delete_refused_while_cloned_then_removes_every_rbd_image(
    cloud: Cloud, ceph: CephCluster, pool: str
) -> None:
    g = tenant(cloud)
    image = g.create(name="parent")
    assert g.upload(image["id"], b"p" * 8192).status_code == 204
    fid = file_id(cloud, image["id"])
    clone = f"{pool}/clone-{uuid.uuid4().hex[:8]}"
    _rbd(ceph, "clone", f"{pool}/{fid}@{SNAP}", clone)
    message = glance_error(g.delete(f"/v2/images/{image['id']}"), 409)
    assert "in use" in message and "clone" in message
    assert g.get(f"/v2/images/{image['id']}").json()["status"] == "active"
    assert g.get(f"/v2/images/{image['id']}/file").content == b"p" * 8192
    _rbd(ceph, "rm", clone)
    assert g.delete(f"/v2/images/{image['id']}").status_code == 204
    assert fid not in pool_images(ceph, pool)


def damaged_qcow2(tmp_path: Path) -> bytes:
    """A qcow2 whose header is sound (qemu-img info reads it) but whose first cluster is a
    compressed cluster of garbage: converting it fails."""
    data = bytearray(qcow2(tmp_path, "sound"))
    l1_offset = struct.unpack(">Q", data[40:48])[0]
    l2_offset = struct.unpack(">Q", data[l1_offset : l1_offset + 8])[0] & 0x00FFFFFFFFFFFE00
    garbage_at = len(data) - 4096
    data[l2_offset : l2_offset + 8] = struct.pack(">Q", (1 << 62) | (3 << 54) | garbage_at)
    data[garbage_at:] = b"\xff" * 4096
    return bytes(data)


def test_damaged_qcow2_is_400_and_leaves_nothing(
    cloud: Cloud, ceph: CephCluster, pool: str, tmp_path: Path
) -> None:
    g = tenant(cloud)
    before = pool_images(ceph, pool)
    store = cloud.platform.image.store
    local_before = set(store.files.iterdir()) | set(store.tmp.iterdir())
    image = g.create(name="damaged", disk_format="qcow2")
    message = glance_error(g.upload(image["id"], damaged_qcow2(tmp_path)), 400)
    assert "damaged" in message
    shown = g.get(f"/v2/images/{image['id']}").json()
    assert shown["status"] == "queued" and shown["checksum"] is None
    assert pool_images(ceph, pool) == before
    assert set(store.files.iterdir()) | set(store.tmp.iterdir()) == local_before


def test_sweep_removes_old_orphans_only(
    cloud: Cloud, ceph: CephCluster, pool: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    from souverain.image import rbd_store

    orphan = uuid.uuid4().hex
    _rbd(ceph, "create", "--size", "1M", f"{pool}/{orphan}")
    _rbd(ceph, "create", "--size", "1M", f"{pool}/not-ours")
    cloud.platform.image.sweep()
    assert orphan in pool_images(ceph, pool)  # too young: perhaps an upload about to commit
    monkeypatch.setattr(rbd_store, "ORPHAN_GRACE_SECONDS", -1.0)
    cloud.platform.image.sweep()
    left = pool_images(ceph, pool)
    assert orphan not in left and "not-ours" in left
    _rbd(ceph, "rm", f"{pool}/not-ours")


def test_start_without_conf_or_with_a_missing_conf_file_says_what_to_do(
    ceph: CephCluster, tmp_path: Path
) -> None:
    settings = rbd_settings(tmp_path, ceph, "unused")
    settings.ceph.conf_file = None
    with pytest.raises(RuntimeError, match=r"ceph\.conf_file"):
        server.set_up_data(settings)
    settings.ceph.conf_file = tmp_path / "nowhere.conf"
    with pytest.raises(RuntimeError, match="does not exist"):
        server.set_up_data(settings)
    settings.image.backend, settings.compute.disk_backend = "file", "rbd"
    settings.ceph.conf_file = None
    with pytest.raises(RuntimeError, match=r"compute\.disk_backend"):
        server.set_up_data(settings)
