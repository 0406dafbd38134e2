"""Root disks on RBD (`compute.disk_backend = "rbd"`, images on RBD too) on the all-in-one
host, against real QEMU guests (TCG, the tiny image) and the shared Ceph cluster.

A server boots from a copy-on-write clone of the image's protected raw snapshot, opened by
QEMU's own rbd driver; the image cannot be deleted while the clone lives; createImage makes
an image of the clone; delete removes it. Then the scale proof: 20 root disks made from one
image (two of them booted for real) take their written blocks only, not 20 images' worth.

Storage does not depend on the database: SQLite only.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import tempfile
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from souverain import server
from souverain.common.clock import Clock
from souverain.compute.core import SYSTEM
from tests.ceph import CephCluster, shared_cluster
from tests.host_cleanup import kill_guests, qemu_processes
from tests.vm.guest_support import build_tiny_image

from .conftest import _fast_tmp_root
from .support import ADMIN_PASSWORD, Cloud, Member, SteppingClock, TestClient, settings_for
from .test_compute_api import Nova, _create, wait_for, wait_gone, wait_status

READY = "souverain-guest: ready"
CLONES = 20


@pytest.fixture(scope="module", params=("sqlite",), autouse=True)
def database_backend(request: pytest.FixtureRequest) -> str:
    """The storage backend is what varies here, not the database."""
    return str(request.param)


@dataclass
class RbdWorld:
    cloud: Cloud
    data_dir: Path
    ceph: CephCluster
    images_pool: str
    disks_pool: str
    alice: Member
    a: Nova
    image_id: str


def _rbd(ceph: CephCluster, *args: str) -> Any:
    out = subprocess.run(
        ["rbd", *args, "--format", "json"],
        env=ceph.env(),
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    ).stdout
    return json.loads(out) if out.strip() else None


@pytest.fixture(scope="module")
def world(database_backend: str, ceph_session: None) -> Iterator[RbdWorld]:
    ceph = shared_cluster()
    suffix = uuid.uuid4().hex[:8]
    images_pool, disks_pool = f"img-{suffix}", f"disks-{suffix}"
    root = Path(tempfile.mkdtemp(prefix="souverain-novarbd-", dir=_fast_tmp_root()))
    data_dir = root / "data"
    settings = settings_for(data_dir)
    settings.image.tiny_image = build_tiny_image()
    settings.image.backend = "rbd"
    settings.image.rbd_pool = images_pool
    settings.compute.disk_backend = "rbd"
    settings.compute.rbd_pool = disks_pool
    settings.compute.shutdown_timeout = 15
    settings.ceph.conf_file = ceph.conf
    try:
        with pytest.MonkeyPatch.context() as patch:
            patch.setenv("SOUVERAIN_ADMIN_PASSWORD", ADMIN_PASSWORD)
            built = server.prepare(settings, clock=Clock(SteppingClock().now))
        try:
            with TestClient(built.app, base_url="http://testserver") as client:
                cloud = Cloud(client, built)
                alice = cloud.member()
                images = client.get("/image/v2/images?name=tiny", headers=alice.headers).json()
                yield RbdWorld(
                    cloud,
                    data_dir,
                    ceph,
                    images_pool,
                    disks_pool,
                    alice,
                    Nova(client, alice.token),
                    images["images"][0]["id"],
                )
        finally:
            built.close()
    finally:
        kill_guests(data_dir)
        shutil.rmtree(root, ignore_errors=True)
        for pool in (images_pool, disks_pool):
            if pool in ceph.pools():
                ceph.command("osd", "pool", "delete", pool, pool, "--yes-i-really-really-mean-it")


def pool_stored(ceph: CephCluster, pool: str) -> int:
    """`ceph df`'s bytes stored in a pool (one replica), once the figure is fresh."""
    for entry in ceph.command("df")["pools"]:
        if entry["name"] == pool:
            return int(entry["stats"]["stored"])
    raise AssertionError(f"pool {pool} not in ceph df")


def console(world: RbdWorld, server_id: str) -> str:
    path = f"/servers/{server_id}/action"
    return str(world.a.ok("POST", path, {"os-getConsoleOutput": {}})["output"])


def boot(world: RbdWorld, name: str) -> str:
    response = _create(world.a, imageRef=world.image_id, name=name)
    assert response.status_code == 202, response.text
    server_id = str(response.json()["server"]["id"])
    wait_status(world.a, server_id, "ACTIVE")
    wait_for(lambda: READY in console(world, server_id), f"{name} to finish booting", 120)
    return server_id


@pytest.mark.one_backend("sqlite")  # a guest on RBD: the cluster, not the database, is its subject
def test_a_server_boots_from_an_rbd_clone_and_snapshots_to_an_image(world: RbdWorld) -> None:
    server_id = boot(world, "cow")
    disk = f"{world.disks_pool}/{server_id}_disk"
    info = _rbd(world.ceph, "info", disk)
    parent = info["parent"]
    assert parent["pool"] == world.images_pool and parent["snapshot"] == "snap"
    assert parent["image"].endswith(".raw")  # the tiny qcow2's raw conversion
    assert info["size"] >= 1024**3  # grown to the flavor's 1 GiB
    # QEMU opens the clone with its own rbd driver; no local disk file exists
    argv = next(iter(qemu_processes(world.data_dir).values()))
    assert f"file.image={server_id}_disk" in argv and "file.driver=rbd" in argv
    instance = world.cloud.platform.compute.driver.instance_dir(server_id)
    assert not (instance / "disk.qcow2").exists() and (instance / "disk.rbd").exists()
    store: Any = world.cloud.platform.image.store
    assert not list(store.cache.iterdir()) and not list(store.files.iterdir())  # no copy
    # the image is in use by the clone: Glance's 409
    gone = world.cloud.client.delete(
        f"/image/v2/images/{world.image_id}", headers={"X-Auth-Token": world.cloud.admin_token}
    )
    assert gone.status_code == 409 and "in use" in gone.json()["message"]

    shot = world.a.post(f"/servers/{server_id}/action", {"createImage": {"name": "snap"}})
    assert shot.status_code == 202, shot.text
    snap_id = shot.headers["Location"].rsplit("/", 1)[-1]

    def active() -> bool:
        image = world.cloud.client.get(f"/image/v2/images/{snap_id}", headers=world.alice.headers)
        assert image.json()["status"] in ("queued", "saving", "active"), image.text
        return bool(image.json()["status"] == "active")

    wait_for(active, "the snapshot image", 120)
    boot_image = world.cloud.platform.image.image_for_boot(SYSTEM, snap_id)
    assert boot_image.rbd is not None and boot_image.rbd.pool == world.images_pool
    assert boot_image.disk_format == "qcow2" and (boot_image.virtual_size or 0) >= 1024**3

    # a rebuild is a new clone of the image
    rebuild = {"rebuild": {"imageRef": world.image_id}}
    world.a.ok("POST", f"/servers/{server_id}/action", rebuild, 202)
    wait_status(world.a, server_id, "ACTIVE")
    assert _rbd(world.ceph, "info", disk)["id"] != info["id"]

    # resize grows the clone and keeps a snapshot to revert to; revert shrinks it back
    admin = Nova(world.cloud.client, world.cloud.admin_token)
    bigger = {"name": "t1.rbd2", "ram": 128, "vcpus": 1, "disk": 2, "id": "rbd2"}
    admin.ok("POST", "/flavors", {"flavor": bigger})
    world.a.ok("POST", f"/servers/{server_id}/action", {"resize": {"flavorRef": "rbd2"}}, 202)
    wait_status(world.a, server_id, "VERIFY_RESIZE")
    assert _rbd(world.ceph, "info", disk)["size"] == 2 * 1024**3
    assert [s["name"] for s in _rbd(world.ceph, "snap", "ls", disk)] == ["before-resize"]
    world.a.ok("POST", f"/servers/{server_id}/action", {"revertResize": None}, 202)
    wait_status(world.a, server_id, "ACTIVE")
    assert _rbd(world.ceph, "info", disk)["size"] == 1024**3
    assert not _rbd(world.ceph, "snap", "ls", disk)

    world.a.ok("DELETE", f"/servers/{server_id}", status=204)
    wait_gone(world.a, server_id)
    listed = _rbd(world.ceph, "ls", world.disks_pool) or []
    assert f"{server_id}_disk" not in listed
    world.cloud.client.delete(f"/image/v2/images/{snap_id}", headers=world.alice.headers)


def test_twenty_root_disks_of_one_image_take_their_written_blocks_only(
    world: RbdWorld,
) -> None:
    booted = [boot(world, f"many-{n}") for n in range(2)]  # two real guests wrote theirs
    driver = world.cloud.platform.compute.driver
    image = world.cloud.platform.image.image_for_boot(SYSTEM, world.image_id)
    made = []
    for _ in range(CLONES - len(booted)):  # the rest as the build makes them, no QEMU
        made.append(str(uuid.uuid4()))
        driver.make_root_disk(made[-1], (image.id, image.path, image.disk_format), 1, image.rbd)
    disks = driver.rbd_disks
    assert disks is not None
    names = [f"{s}_disk" for s in (*booted, *made)]
    written = {name: disks.used_bytes(name) for name in names}
    assert image.rbd is not None
    parent_used = disks.used_bytes(image.rbd.image, image.rbd.pool)
    total = sum(written.values())
    stored = pool_stored(world.ceph, world.disks_pool)
    print(
        f"\n{CLONES} root disks of one image: {total / 2**20:.2f} MiB written in the clones "
        f"(booted guests: {[written[f'{s}_disk'] // 1024 for s in booted]} KiB), "
        f"ceph df stored in the disks pool {stored / 2**20:.2f} MiB; the image's data "
        f"{parent_used / 2**20:.2f} MiB, {CLONES} full copies would be "
        f"{CLONES * parent_used / 2**20:.1f} MiB"
    )
    assert all(written[f"{s}_disk"] > 0 for s in booted)  # the guests did write
    assert total < CLONES * parent_used / 10
    assert stored < CLONES * parent_used / 10
    for server_id in booted:
        world.a.ok("DELETE", f"/servers/{server_id}", status=204)
    for server_id in made:
        driver.delete_files(server_id)
    for server_id in booted:
        wait_gone(world.a, server_id)
    assert not set(names) & set(_rbd(world.ceph, "ls", world.disks_pool) or [])


def test_an_image_on_local_files_is_imported_once_as_a_base_and_cloned(
    world: RbdWorld,
) -> None:
    """compute.disk_backend rbd with an image that is not on RBD: imported once into the
    disks pool (raw, protected snapshot), every root disk a clone of it."""
    driver = world.cloud.platform.compute.driver
    source = world.data_dir / "local-image"
    shutil.copyfile(build_tiny_image(), source)
    made = [str(uuid.uuid4()) for _ in range(2)]
    try:
        for server_id in made:
            driver.make_root_disk(server_id, ("local", source, "qcow2"), 1, None)
        base = f"base-{source.name}"
        assert base in _rbd(world.ceph, "ls", world.disks_pool)
        for server_id in made:
            parent = _rbd(world.ceph, "info", f"{world.disks_pool}/{server_id}_disk")["parent"]
            assert (parent["pool"], parent["image"], parent["snapshot"]) == (
                world.disks_pool,
                base,
                "snap",
            )
    finally:
        for server_id in made:
            driver.delete_files(server_id)
    left = _rbd(world.ceph, "ls", world.disks_pool) or []
    assert not {f"{s}_disk" for s in made} & set(left)
