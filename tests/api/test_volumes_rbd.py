"""The volume API on RBD (`volume.backend = "rbd"`) against the real shared Ceph cluster:
the representative paths of test_volumes.py (blank, extend, snapshots, clones, copies,
images in and out, delete with dependents), looked at from outside through librbd.

One platform per module on a pool of its own (deleted afterwards); each test its own
project.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import tempfile
import time
import uuid
import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from souverain import server
from souverain.common.ceph import CephAccess, CephConnection, RbdRef, bindings
from souverain.common.clock import Clock
from souverain.common.keys import KeyNotFound
from souverain.volume import models as vm
from souverain.volume.rbd_backend import RbdVolumeBackend
from tests.ceph import CephCluster, shared_cluster

from .conftest import _fast_tmp_root
from .support import ADMIN_PASSWORD, Cloud, SteppingClock, TestClient, settings_for
from .test_volume_backups import backup, settle
from .test_volume_encryption import backup_row, encrypted_type, key_gone, secret_of
from .test_volumes import admin, cinder_error, tenant, upload_image

rbd = bindings("rbd")
MIB = 1024 * 1024
GIB = 1024 * MIB


@pytest.fixture(scope="module", params=["sqlite"])
def database_backend(request: pytest.FixtureRequest) -> str:
    """The storage is the subject here, not the database (test_volumes.py runs every
    volume path on both): SQLite only, to keep the Ceph tests within their time budget."""
    return str(request.param)


@pytest.fixture(scope="module")
def rbd_cloud(database_backend: str, ceph_session: None) -> Iterator[Cloud]:
    ceph = shared_cluster()
    pool = f"vol-{uuid.uuid4().hex[:8]}"
    root = Path(tempfile.mkdtemp(prefix="souverain-rbdvol-", dir=_fast_tmp_root()))
    base = settings_for(root / "data")
    settings = base.model_copy(
        update={
            "volume": base.volume.model_copy(update={"backend": "rbd", "rbd_pool": pool}),
            "ceph": base.ceph.model_copy(update={"conf_file": ceph.conf, "user": ceph.user}),
        }
    )
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
        ceph.command("osd", "pool", "rm", pool, pool, "--yes-i-really-really-mean-it")


def backend(cloud: Cloud) -> RbdVolumeBackend:
    store = cloud.platform.volume.backend
    assert isinstance(store, RbdVolumeBackend)
    return store


def image_info(cloud: Cloud, volume_id: str) -> dict[str, Any]:
    """What librbd says of the volume's image: size, parent, snapshots; {} when absent."""
    store = backend(cloud)
    with store.connection.ioctx(store.pool) as ctx:
        if f"volume-{volume_id}" not in rbd.RBD().list(ctx):
            return {}
        with rbd.Image(ctx, f"volume-{volume_id}", read_only=True) as image:
            try:
                parent = image.get_parent_image_spec()["image_name"]
            except rbd.ImageNotFound:
                parent = None
            snaps = sorted(str(s["name"]) for s in image.list_snaps())
            return {"size": image.size(), "parent": parent, "snapshots": snaps}


def write_pattern(cloud: Cloud, volume_id: str, seed: bytes) -> str:
    """Known bytes at 0, 3 MiB and the last MiB of the volume, through librbd; the sha256
    of the whole volume."""
    store = backend(cloud)
    with store.connection.ioctx(store.pool) as ctx, rbd.Image(ctx, f"volume-{volume_id}") as img:
        for offset in (0, 3 * MIB, img.size() - MIB):
            img.write(hashlib.sha256(seed).digest() * (MIB // 32), offset)
        img.flush()
    return volume_hash(cloud, volume_id)


def volume_hash(cloud: Cloud, volume_id: str, length: int | None = None) -> str:
    store = backend(cloud)
    digest = hashlib.sha256()
    with (
        store.connection.ioctx(store.pool) as ctx,
        rbd.Image(ctx, f"volume-{volume_id}", read_only=True) as img,
    ):
        size = img.size() if length is None else length
        for offset in range(0, size, 4 * MIB):
            digest.update(img.read(offset, min(4 * MIB, size - offset)))
    return digest.hexdigest()


def raw_hash(path: Path, tmp_path: Path, length: int) -> str:
    out = tmp_path / f"{uuid.uuid4().hex}.raw"
    subprocess.run(
        ["qemu-img", "convert", "-O", "raw", str(path), str(out)], check=True, capture_output=True
    )
    with out.open("r+b") as handle:
        handle.truncate(length)
    digest = hashlib.sha256(out.read_bytes()).hexdigest()
    out.unlink()
    return digest


def test_rbd_blank_volume_is_an_exact_image_extended_and_deleted(rbd_cloud: Cloud) -> None:
    c = tenant(rbd_cloud)
    vol = c.create(size=2, name="blank")
    assert vol["status"] == "available"
    assert image_info(rbd_cloud, vol["id"]) == {"size": 2 * GIB, "parent": None, "snapshots": []}
    assert backend(rbd_cloud).used_bytes(vol["id"]) == 0  # thin: nothing written yet

    assert c.action(vol["id"], "os-extend", {"new_size": 3}).status_code == 202
    assert c.show(vol["id"])["size"] == 3
    assert image_info(rbd_cloud, vol["id"])["size"] == 3 * GIB

    # the pool's capacity is the cluster's (3 MemStore OSDs of 1 GiB), not a local disk's
    a = admin(rbd_cloud)
    caps = a.get("/scheduler-stats/get_pools?detail=true").json()["pools"][0]["capabilities"]
    assert 2.5 <= caps["total_capacity_gb"] <= 3.5
    assert caps["total_capacity_gb"] >= caps["free_capacity_gb"] > 0
    assert caps["allocated_capacity_gb"] >= 3

    assert c.delete(f"/volumes/{vol['id']}").status_code == 202
    assert image_info(rbd_cloud, vol["id"]) == {}


def test_rbd_snapshot_clone_uses_only_its_writes_and_dependents_block_delete(
    rbd_cloud: Cloud,
) -> None:
    c = tenant(rbd_cloud)
    origin = c.create(size=1)
    digest = write_pattern(rbd_cloud, origin["id"], b"origin")
    snap = c.snapshot(origin["id"], name="s1")
    assert c.get(f"/snapshots/{snap['id']}").json()["snapshot"]["status"] == "available"
    assert image_info(rbd_cloud, origin["id"])["snapshots"] == [f"snapshot-{snap['id']}"]
    write_pattern(rbd_cloud, origin["id"], b"changed after the snapshot")

    clone = c.create(snapshot_id=snap["id"], size=2)
    assert clone["status"] == "available", clone
    info = image_info(rbd_cloud, clone["id"])
    assert info["parent"] == f"volume-{origin['id']}" and info["size"] == 2 * GIB
    assert volume_hash(rbd_cloud, clone["id"], GIB) == digest  # the snapshot's bytes
    store = backend(rbd_cloud)
    assert store.used_bytes(clone["id"]) == 0  # copy-on-write: nothing of its own yet
    write_pattern(rbd_cloud, clone["id"], b"clone's own")
    assert 0 < store.used_bytes(clone["id"]) <= 3 * 4 * MIB  # the three written objects

    refused = c.delete(f"/snapshots/{snap['id']}")
    assert "dependent volume" in cinder_error(refused, 400)
    assert c.get(f"/snapshots/{snap['id']}").json()["snapshot"]["status"] == "available"

    # the origin goes with its snapshot (cascade): the clone is flattened first, intact
    clone_digest = volume_hash(rbd_cloud, clone["id"])
    assert c.delete(f"/volumes/{origin['id']}?cascade=true").status_code == 202
    assert image_info(rbd_cloud, origin["id"]) == {}
    assert image_info(rbd_cloud, clone["id"])["parent"] is None
    assert volume_hash(rbd_cloud, clone["id"]) == clone_digest


def test_rbd_volume_from_volume_is_an_independent_copy(rbd_cloud: Cloud) -> None:
    c = tenant(rbd_cloud)
    source = c.create(size=1)
    digest = write_pattern(rbd_cloud, source["id"], b"source")
    copy = c.create(source_volid=source["id"], size=2)
    assert copy["status"] == "available", copy
    assert image_info(rbd_cloud, copy["id"]) == {"size": 2 * GIB, "parent": None, "snapshots": []}
    assert volume_hash(rbd_cloud, copy["id"], GIB) == digest
    assert c.delete(f"/volumes/{source['id']}").status_code == 202
    assert volume_hash(rbd_cloud, copy["id"], GIB) == digest


def test_rbd_volume_from_image_file_and_upload_back(rbd_cloud: Cloud, tmp_path: Path) -> None:
    c = tenant(rbd_cloud)
    image_id = upload_image(rbd_cloud, c, tmp_path)
    vol = c.create(imageRef=image_id, size=1)
    assert vol["status"] == "available" and vol["bootable"] == "true", vol
    image_path = rbd_cloud.platform.image.image_for_boot(c.ctx(), image_id).path
    assert volume_hash(rbd_cloud, vol["id"], 8 * MIB) == raw_hash(image_path, tmp_path, 8 * MIB)

    for fmt in ("raw", "qcow2"):
        body = {"image_name": f"back-{fmt}", "disk_format": fmt}
        response = c.action(vol["id"], "os-volume_upload_image", body)
        assert response.status_code == 202, response.text
        new_id = response.json()["os-volume_upload_image"]["image_id"]
        new_path = rbd_cloud.platform.image.image_for_boot(c.ctx(), new_id).path
        assert raw_hash(new_path, tmp_path, 8 * MIB) == raw_hash(image_path, tmp_path, 8 * MIB)
    assert c.show(vol["id"])["status"] == "available"


def test_rbd_volume_from_an_image_on_rbd_is_a_clone_flattened_on_demand(
    rbd_cloud: Cloud, ceph: CephCluster, tmp_path: Path
) -> None:
    """BootImage.rbd (the image's protected snapshot) is cloned, not copied."""
    store = backend(rbd_cloud)
    image_pool = ceph.make_pool(f"img-{uuid.uuid4().hex[:8]}", application="rbd")
    try:
        with store.connection.ioctx(image_pool) as ctx:
            rbd.RBD().create(ctx, "base", 64 * MIB, old_format=False)
            with rbd.Image(ctx, "base") as image:
                image.write(b"boot sector" * 1000, 0)
                image.create_snap("snap")
                image.protect_snap("snap")
        volume_id = str(uuid.uuid4())
        assert store.from_image_ref(RbdRef(image_pool, "base", "snap"), volume_id, 1)
        assert image_info(rbd_cloud, volume_id)["parent"] == "base"
        assert image_info(rbd_cloud, volume_id)["size"] == GIB
        assert not store.from_image_ref(RbdRef(image_pool, "base"), str(uuid.uuid4()), 1)
        out = tmp_path / "clone.raw"  # an export reads the parent's extents too
        store.export_volume(volume_id, out, out_format="raw")
        assert out.stat().st_size == GIB
        with out.open("rb") as f:
            assert f.read(11000) == b"boot sector" * 1000
        store.flatten(volume_id)
        assert image_info(rbd_cloud, volume_id)["parent"] is None
        store.remove_volume(volume_id)
        assert image_info(rbd_cloud, volume_id) == {}
    finally:
        ceph.command("osd", "pool", "rm", image_pool, image_pool, "--yes-i-really-really-mean-it")


def test_rbd_restart_sweeps_images_without_a_row_after_the_grace(rbd_cloud: Cloud) -> None:
    store = backend(rbd_cloud)
    kept = tenant(rbd_cloud).create(size=1)
    stray = str(uuid.uuid4())
    store.make_blank(stray, 1)
    with rbd_cloud.platform.volume.db.session() as s:
        volumes = set(s.scalars(select(vm.Volume.id)))
    assert kept["id"] in volumes
    assert store.sweep_unknown(volumes, set()) == 0  # within the grace: a create under way
    grace, store.sweep_grace = store.sweep_grace, 0.0
    try:
        assert store.sweep_unknown(volumes, set()) == 1
    finally:
        store.sweep_grace = grace
    assert image_info(rbd_cloud, stray) == {}
    assert image_info(rbd_cloud, kept["id"])["size"] == GIB


def test_rbd_pool_that_cannot_be_made_and_missing_conf_refuse_the_start(
    ceph: CephCluster, tmp_path: Path
) -> None:
    # a cephx user that may read the cluster map but not create pools
    keyring = tmp_path / "reader.keyring"
    subprocess.run(
        ["ceph", "auth", "get-or-create", "client.volreader", "mon", "allow r", "-o", str(keyring)],
        check=True,
        capture_output=True,
        env=ceph.env(),
        timeout=30,
    )
    try:
        access = CephAccess(conf=ceph.conf, user="volreader", keyring=keyring)
        reader = RbdVolumeBackend(CephConnection(access), f"nope-{uuid.uuid4().hex[:8]}", tmp_path)
        with pytest.raises(RuntimeError, match="does not exist and could not be made"):
            reader.setup()
        reader.connection.close()
    finally:
        subprocess.run(
            ["ceph", "auth", "del", "client.volreader"], env=ceph.env(), capture_output=True
        )
    missing = CephAccess(conf=tmp_path / "absent.conf")
    lost = RbdVolumeBackend(CephConnection(missing), "souverain-volumes", tmp_path / "v")
    with pytest.raises(RuntimeError, match=r"absent\.conf does not exist"):
        lost.setup()
    settings = settings_for(tmp_path / "data")
    no_ceph = settings.model_copy(
        update={"volume": settings.volume.model_copy(update={"backend": "rbd"})}
    )
    with pytest.raises(RuntimeError, match=r"set ceph\.conf_file"):
        server._volume_backend(no_ceph)


def test_rbd_backup_read_through_librbd_restores_the_same_bytes(rbd_cloud: Cloud) -> None:
    c = tenant(rbd_cloud)
    volume_id = c.create(size=1)["id"]
    digest = write_pattern(rbd_cloud, volume_id, b"backed up")
    made = c.post("/backups", {"backup": {"volume_id": volume_id, "name": "b"}})
    assert made.status_code == 202, made.text
    backup_id = made.json()["backup"]["id"]
    assert settle(c, backup_id)["status"] == "available"

    restored = c.post(f"/backups/{backup_id}/restore", {"restore": {"name": "back"}})
    assert restored.status_code == 202, restored.text
    new_id = restored.json()["restore"]["volume_id"]
    assert settle(c, backup_id)["status"] == "available"
    assert c.show(new_id)["status"] == "available"
    assert volume_hash(rbd_cloud, new_id) == digest

    # onto an existing volume with other data and a snapshot: the volume takes the
    # backup's bytes, the snapshot keeps its own
    target = c.create(size=1)["id"]
    other = write_pattern(rbd_cloud, target, b"overwritten")
    snap = c.snapshot(target)
    onto = c.post(f"/backups/{backup_id}/restore", {"restore": {"volume_id": target}})
    assert onto.status_code == 202, onto.text
    assert settle(c, backup_id)["status"] == "available"
    assert volume_hash(rbd_cloud, target) == digest
    clone = c.create(snapshot_id=snap["id"])
    assert volume_hash(rbd_cloud, clone["id"]) == other


def test_rbd_flatten_clones_setting_makes_clones_independent_in_the_background(
    rbd_cloud: Cloud,
) -> None:
    c = tenant(rbd_cloud)
    origin = c.create(size=1)
    digest = write_pattern(rbd_cloud, origin["id"], b"to flatten")
    snap = c.snapshot(origin["id"])
    settings = rbd_cloud.platform.volume.shared.settings
    settings.rbd_flatten_clones = True
    try:
        clone = c.create(snapshot_id=snap["id"])
    finally:
        settings.rbd_flatten_clones = False
    assert clone["status"] == "available"
    deadline = time.monotonic() + 60
    while image_info(rbd_cloud, clone["id"])["parent"] is not None:
        assert time.monotonic() < deadline, "the clone was never flattened"
        time.sleep(0.2)
    assert volume_hash(rbd_cloud, clone["id"]) == digest
    # nothing depends on the snapshot any more: it may go
    assert c.delete(f"/snapshots/{snap['id']}").status_code == 202
    assert image_info(rbd_cloud, origin["id"])["snapshots"] == []


def luks_on_rbd(cloud: Cloud, volume_id: str, key: bytes, tool: list[str], *args: str) -> str:
    """`tool` (qemu-io, or qemu-img and its command) on the volume's image opened as LUKS
    under `key` (over a pipe, as the service hands it); its output, or its error."""
    store = backend(cloud)
    access = store.connection.access
    opts = (
        f"driver=luks,key-secret=k,file.driver=rbd,file.pool={store.pool},"
        f"file.image=volume-{volume_id},file.conf={access.conf},file.user={access.user}"
    )
    read, write = os.pipe()
    os.write(write, key.hex().encode())
    os.close(write)
    try:
        done = subprocess.run(
            [*tool, "--object", f"secret,id=k,format=raw,file=/dev/fd/{read}",
             "--image-opts", opts, *args],
            capture_output=True, text=True, pass_fds=(read,), check=False, timeout=60,
        )  # fmt: skip
    finally:
        os.close(read)
    return done.stdout + done.stderr


def payload_bytes(cloud: Cloud, volume_id: str, key: bytes) -> int:
    info = json.loads(luks_on_rbd(cloud, volume_id, key, ["qemu-img", "info"], "--output=json"))
    assert info["format"] == "luks", info
    return int(info["virtual-size"])


def test_rbd_encrypted_volume_is_luks_in_its_image_copies_get_their_own_key(
    rbd_cloud: Cloud,
) -> None:
    """An encrypted type on RBD: the image is a bare LUKS container whose payload is the
    volume's size; the OSDs get ciphertext. Its snapshot keeps its key; a volume from the
    snapshot (a copy-on-write clone) or from the volume (a copy) opens with its own new
    key only; extend grows the payload; another project neither sees it nor reads its key;
    delete takes the images and the keys."""
    a, alice, bob = admin(rbd_cloud), tenant(rbd_cloud), tenant(rbd_cloud)
    encrypted_type(a, "luks-rbd")
    vol = alice.create(volume_type="luks-rbd", size=1)
    assert vol["encrypted"] is True and vol["status"] == "available", vol
    key_id = alice.show(vol["id"])["encryption_key_id"]
    key = secret_of(rbd_cloud, alice.project_id, key_id)
    cinder_error(bob.get(f"/volumes/{vol['id']}"), 404)
    with pytest.raises(KeyNotFound):
        secret_of(rbd_cloud, bob.project_id, key_id)
    handle = rbd_cloud.platform.volume.handle(vol["id"])  # what compute hands QEMU
    assert handle.format == "luks" and handle.passphrase == key.hex()

    # the guest's size is the payload; the image adds the LUKS header (about 1 MiB)
    assert payload_bytes(rbd_cloud, vol["id"], key) == GIB
    assert GIB < image_info(rbd_cloud, vol["id"])["size"] <= GIB + 4 * MIB
    assert "wrote 1048576/1048576" in luks_on_rbd(
        rbd_cloud, vol["id"], key, ["qemu-io"], "-c", "write -P 0x5a 0 1M"
    )
    store = backend(rbd_cloud)
    with store.connection.ioctx(store.pool) as ctx, rbd.Image(ctx, f"volume-{vol['id']}") as img:
        stored = img.read(0, 4 * MIB)
    assert b"\x5a" * 4096 not in stored and stored.startswith(b"LUKS\xba\xbe")

    snap = alice.snapshot(vol["id"])
    assert snap["status"] == "available"
    assert image_info(rbd_cloud, vol["id"])["snapshots"] == [f"snapshot-{snap['id']}"]

    clone = alice.create(snapshot_id=snap["id"], size=2)
    assert clone["status"] == "available" and clone["encrypted"] is True, clone
    clone_key_id = alice.show(clone["id"])["encryption_key_id"]
    assert clone_key_id != key_id
    clone_key = secret_of(rbd_cloud, alice.project_id, clone_key_id)
    assert image_info(rbd_cloud, clone["id"])["parent"] == f"volume-{vol['id']}"
    assert "Invalid password" in luks_on_rbd(
        rbd_cloud, clone["id"], key, ["qemu-io"], "-c", "read -P 0x5a 0 1M"
    )
    assert "read 1048576/1048576" in luks_on_rbd(
        rbd_cloud, clone["id"], clone_key, ["qemu-io"], "-c", "read -P 0x5a 0 1M"
    )
    assert payload_bytes(rbd_cloud, clone["id"], clone_key) == 2 * GIB

    copy = alice.create(source_volid=vol["id"])
    assert copy["status"] == "available", copy
    copy_key = secret_of(rbd_cloud, alice.project_id, alice.show(copy["id"])["encryption_key_id"])
    assert "read 1048576/1048576" in luks_on_rbd(
        rbd_cloud, copy["id"], copy_key, ["qemu-io"], "-c", "read -P 0x5a 0 1M"
    )
    assert "Invalid password" in luks_on_rbd(
        rbd_cloud, copy["id"], key, ["qemu-io"], "-c", "read -P 0x5a 0 1M"
    )

    assert alice.action(vol["id"], "os-extend", {"new_size": 2}).status_code == 202
    assert alice.show(vol["id"])["size"] == 2
    assert payload_bytes(rbd_cloud, vol["id"], key) == 2 * GIB
    assert "read 1048576/1048576" in luks_on_rbd(
        rbd_cloud, vol["id"], key, ["qemu-io"], "-c", "read -P 0x5a 0 1M"
    )

    for volume_id in (clone["id"], copy["id"]):
        assert alice.delete(f"/volumes/{volume_id}").status_code == 202
    assert alice.delete(f"/volumes/{vol['id']}?cascade=true").status_code == 202
    for volume_id in (vol["id"], clone["id"], copy["id"]):
        assert image_info(rbd_cloud, volume_id) == {}
    assert key_gone(rbd_cloud, alice.project_id, key_id)
    assert key_gone(rbd_cloud, alice.project_id, clone_key_id)


def test_rbd_encrypted_backup_is_the_images_ciphertext_under_a_key_of_its_own(
    rbd_cloud: Cloud,
) -> None:
    """An encrypted RBD volume's backup is its image's bytes (the LUKS container, only the
    extents that hold data), chunked into the project's bucket under a clone of the
    volume's key that the backup owns: no object holds what was written through the LUKS
    layer. Restored to a new volume and onto a bigger existing one of the type, each reads
    it back with a key of its own; another project gets 404; a backup of the other kind of
    container is refused, nothing made; deleting the backup deletes its key."""
    a, alice, bob = admin(rbd_cloud), tenant(rbd_cloud), tenant(rbd_cloud)
    type_id, _ = encrypted_type(a, "luks-rbd-backup")
    vol = alice.create(volume_type="luks-rbd-backup", size=1)
    key_id = alice.show(vol["id"])["encryption_key_id"]
    key = secret_of(rbd_cloud, alice.project_id, key_id)
    for command in ("write -P 0x5a 0 1M", "write -P 0x3c 600M 1M"):
        assert "wrote 1048576/1048576" in luks_on_rbd(
            rbd_cloud, vol["id"], key, ["qemu-io"], "-c", command
        )

    full = backup(alice, vol["id"])
    assert full["status"] == "available" and full["object_count"] == 2, full  # holes skipped
    full_key = full["encryption_key_id"]
    assert (
        full_key not in (None, key_id) and secret_of(rbd_cloud, alice.project_id, full_key) == key
    )
    cinder_error(bob.get(f"/backups/{full['id']}"), 404)
    cinder_error(bob.post(f"/backups/{full['id']}/restore", {"restore": {}}), 404)
    with pytest.raises(KeyNotFound):
        secret_of(rbd_cloud, bob.project_id, full_key)

    objects = rbd_cloud.platform.volume.backups.objects
    row = backup_row(rbd_cloud, full["id"])
    stored = [zlib.decompress(objects.get(row.container, c)) for _, c in row.chunks if c]
    assert stored[0].startswith(b"LUKS\xba\xbe")  # the container itself
    for data in stored:
        assert b"\x5a" * 4096 not in data and b"\x3c" * 4096 not in data

    # a LUKS qcow2 file's backup (the file backend's) cannot become an RBD image
    info = dict(row.volume_info)
    with rbd_cloud.platform.db.session() as s:
        s.get(vm.VolumeBackup, full["id"]).volume_info = {**info, "luks_container": "qcow2"}
    before = len(alice.get("/volumes").json()["volumes"])
    refused = alice.post(f"/backups/{full['id']}/restore", {"restore": {}})
    assert "cannot restore it" in cinder_error(refused, 400)
    assert len(alice.get("/volumes").json()["volumes"]) == before
    with rbd_cloud.platform.db.session() as s:
        s.get(vm.VolumeBackup, full["id"]).volume_info = info

    restored = alice.post(f"/backups/{full['id']}/restore", {"restore": {}})
    assert restored.status_code == 202, restored.text
    assert settle(alice, full["id"])["status"] == "available"
    new = alice.show(restored.json()["restore"]["volume_id"])
    assert new["status"] == "available" and new["volume_type"] == "luks-rbd-backup", new
    assert new["encryption_key_id"] not in (key_id, full_key)
    target = alice.create(volume_type="luks-rbd-backup", size=2)
    old_key_id = alice.show(target["id"])["encryption_key_id"]
    onto = alice.post(f"/backups/{full['id']}/restore", {"restore": {"volume_id": target["id"]}})
    assert onto.status_code == 202, onto.text
    assert settle(alice, full["id"])["status"] == "available"
    shown = alice.show(target["id"])
    assert shown["status"] == "available" and shown["encryption_key_id"] != old_key_id, shown
    assert key_gone(rbd_cloud, alice.project_id, old_key_id)
    for volume_id, key_of in ((new["id"], new), (target["id"], shown)):
        new_key = secret_of(rbd_cloud, alice.project_id, key_of["encryption_key_id"])
        for command in ("read -P 0x5a 0 1M", "read -P 0x3c 600M 1M"):
            assert "read 1048576/1048576" in luks_on_rbd(
                rbd_cloud, volume_id, new_key, ["qemu-io"], "-c", command
            )
    assert payload_bytes(rbd_cloud, target["id"], new_key) == 2 * GIB

    assert alice.delete(f"/backups/{full['id']}").status_code == 202
    assert key_gone(rbd_cloud, alice.project_id, full_key)
    assert not key_gone(rbd_cloud, alice.project_id, key_id)
    for volume_id in (vol["id"], new["id"], target["id"]):
        assert alice.delete(f"/volumes/{volume_id}").status_code == 202
        assert image_info(rbd_cloud, volume_id) == {}
    assert a.delete(f"/types/{type_id}").status_code == 202
