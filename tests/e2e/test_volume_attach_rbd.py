"""The volume journey of test_volume_attach.py with `volume.backend = "rbd"`: real clients
(the `openstack` CLI, openstacksdk), real guests, the volumes RBD images in the shared
Ceph cluster that QEMU opens with its own rbd driver. One guest writes, the volume is
detached and attached to another that reads the same bytes, extended while attached
(the guest sees the new size), snapshotted and cloned (copy-on-write), and another
project never sees it. A server boots from an RBD volume, which QEMU opens in the cluster,
and from an encrypted one, which QEMU opens through its luks driver.
"""

from __future__ import annotations

import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import openstack.connection
import pytest

from souverain.common.ceph import bindings
from tests.ceph import shared_cluster
from tests.e2e import test_volume_attach as journey
from tests.e2e.conftest import Cloud, CloudFactory, Tenant, unique
from tests.e2e.test_compute import create, tiny_id, wait_status
from tests.host_cleanup import kill_guests


@pytest.fixture(scope="module")
def rbd_cloud(
    start_cloud: CloudFactory, tiny_image_file: Path, ceph_session: None
) -> Iterator[tuple[Cloud, str]]:
    ceph = shared_cluster()
    pool = f"e2evol-{uuid.uuid4().hex[:8]}"
    cloud = start_cloud(
        "rbdvolumes",
        SOUVERAIN_IMAGE__TINY_IMAGE=str(tiny_image_file),
        SOUVERAIN_COMPUTE__SHUTDOWN_TIMEOUT="20",
        SOUVERAIN_COMPUTE__SYNC_INTERVAL="1",
        SOUVERAIN_VOLUME__BACKEND="rbd",
        SOUVERAIN_VOLUME__RBD_POOL=pool,
        SOUVERAIN_CEPH__CONF_FILE=str(ceph.conf),
        SOUVERAIN_CEPH__USER=ceph.user,
    )
    try:
        yield cloud, pool
        cloud.stop_and_check()
    finally:
        kill_guests(cloud.server.data_dir)
        ceph.command("osd", "pool", "rm", pool, pool, "--yes-i-really-really-mean-it")


def test_a_volume_on_rbd_carries_data_between_guests_and_grows_attached(
    rbd_cloud: tuple[Cloud, str],
) -> None:
    cloud, pool = rbd_cloud
    tenant: Tenant = cloud.make_tenant("rbdvolumes")
    conn: openstack.connection.Connection = cloud.connect(
        tenant.user_name, tenant.password, tenant.project_name
    )
    journey.test_a_volume_carries_data_from_one_guest_to_another(cloud, tenant, conn)

    # the bytes were RBD images all along: one per volume left, without the snapshot
    # (gone with its clone), nothing else in the pool
    rbd = bindings("rbd")
    rados = bindings("rados")
    ceph = shared_cluster()
    left = [v.id for v in conn.block_storage.volumes()]
    assert left
    with (
        rados.Rados(conffile=str(ceph.conf), rados_id=ceph.user) as cluster,
        cluster.open_ioctx(pool) as ctx,
    ):
        assert set(rbd.RBD().list(ctx)) == {f"volume-{vid}" for vid in left}
        for vid in left:
            with rbd.Image(ctx, f"volume-{vid}", read_only=True) as image:
                assert list(image.list_snaps()) == []
                assert image.size() == 2 * 1024**3


def _qemu_argv(server_id: str) -> str:
    """The command line of the QEMU running `server_id` (its uuid is on it)."""
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            argv = (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode()
        except OSError:
            continue
        if argv.startswith("qemu-system") and server_id in argv:
            return argv
    raise AssertionError(f"no QEMU runs server {server_id}")


def test_a_server_boots_from_an_rbd_volume_that_qemu_opens_in_the_cluster(
    rbd_cloud: tuple[Cloud, str],
) -> None:
    """`openstack server create --boot-from-volume`: the root volume is an RBD image that
    QEMU opens with its own rbd driver (no file on the host); the guest boots and sees its
    1 GiB disk; deleting the server keeps the volume (the CLI asks so), available again
    with its bytes, and an existing bootable RBD volume boots a second server."""
    cloud, pool = rbd_cloud
    tenant: Tenant = cloud.make_tenant("rbdboot")
    conn: openstack.connection.Connection = cloud.connect(
        tenant.user_name, tenant.password, tenant.project_name
    )
    name = unique("bfv-rbd")
    server = cloud.cli_json(
        "server", "create", "--image", "tiny", "--boot-from-volume", "1",
        "--flavor", "t1.nano", "--nic", "none", "--wait", name,
        cloud=tenant.cloud_name,
    )  # fmt: skip
    assert server["status"] == "ACTIVE"
    out = journey.wait_console(conn, server["id"], "souverain-guest: ready")
    assert f"souverain-guest: disk=/dev/vda size={1024**3}" in out
    (attached,) = conn.compute.get_server(server["id"]).attached_volumes
    root = journey.wait_volume(conn, attached["id"], "in-use")
    argv = _qemu_argv(server["id"])
    assert f"file.driver=rbd,file.pool={pool},file.image=volume-{root.id}" in argv, argv
    assert not [p for p in cloud.server.data_dir.rglob("*") if root.id in p.name]  # no file
    cloud.cli_ok("server", "delete", "--wait", name, cloud=tenant.cloud_name)
    journey.wait_volume(conn, root.id, "available")
    rbd = bindings("rbd")
    rados = bindings("rados")
    ceph = shared_cluster()
    with (
        rados.Rados(conffile=str(ceph.conf), rados_id=ceph.user) as cluster,
        cluster.open_ioctx(pool) as ctx,
    ):
        assert f"volume-{root.id}" in rbd.RBD().list(ctx)  # the server's delete kept it

    again = _boot_ready(conn, "bfv-rbd-again", root.id)
    conn.compute.delete_server(again)
    conn.compute.wait_for_delete(again, wait=60)
    conn.block_storage.wait_for_delete(root, wait=60)  # delete_on_termination
    with (
        rados.Rados(conffile=str(ceph.conf), rados_id=ceph.user) as cluster,
        cluster.open_ioctx(pool) as ctx,
    ):
        assert f"volume-{root.id}" not in rbd.RBD().list(ctx)


def _objects_holding(pool: str, image_name: str, needle: bytes) -> tuple[int, list[str]]:
    """How many bytes the image's RADOS data objects hold, and those holding `needle`
    (read with the rados binding, as an OSD stores them)."""
    rbd = bindings("rbd")
    rados = bindings("rados")
    ceph = shared_cluster()
    found: list[str] = []
    total = 0
    with (
        rados.Rados(conffile=str(ceph.conf), rados_id=ceph.user) as cluster,
        cluster.open_ioctx(pool) as ctx,
    ):
        with rbd.Image(ctx, image_name, read_only=True) as image:
            prefix = str(image.block_name_prefix())
        for obj in ctx.list_objects():
            if not obj.key.startswith(prefix):
                continue
            size, _ = ctx.stat(obj.key)
            data = ctx.read(obj.key, size)
            total += len(data)
            if needle in data:
                found.append(obj.key)
    return total, found


# the journey's writer, but writing only a volume that does not hold the pattern yet
WRITE_ONCE = (
    "if [ \"$(dd if=/dev/vdc bs=65536 count=16 2>/dev/null | md5sum | cut -d' ' -f1)\" "
    f'!= "{journey.PATTERN_MD5}" ]; then yes souverain-volume-pattern | head -c 1048576 '
    "> /tmp/p; dd if=/tmp/p of=/dev/vdc bs=65536 conv=fsync 2>/dev/null; sync; echo wrote; fi"
)


def test_an_encrypted_rbd_volume_holds_only_ciphertext_in_rados(
    rbd_cloud: tuple[Cloud, str],
) -> None:
    """An encrypted volume type on RBD: the image is a LUKS container QEMU opens with the
    volume's key (a QMP secret on hot-plug). A guest writes a known pattern; no RADOS object
    of the image holds it; extended while attached, the guest sees the new size; stopped
    and started (the volume on QEMU's command line, its key over a pipe), the guest reads
    the pattern back without writing it again."""
    cloud, pool = rbd_cloud
    admin = cloud.admin
    vtype = admin.block_storage.create_type(name=unique("luks-rbd"))
    admin.block_storage.create_type_encryption(
        vtype,
        provider="luks",
        cipher="aes-xts-plain64",
        key_size=256,
        control_location="front-end",
    )
    tenant: Tenant = cloud.make_tenant("rbdluks")
    conn: openstack.connection.Connection = cloud.connect(
        tenant.user_name, tenant.password, tenant.project_name
    )
    volume = conn.block_storage.create_volume(size=1, volume_type=vtype.name, name=unique("sealed"))
    volume = journey.wait_volume(conn, volume.id, "available")
    assert volume.is_encrypted
    guest = create(conn, unique("luks-writer"), journey.WATCHER.format(write=WRITE_ONCE))
    wait_status(conn, guest.id, "ACTIVE")
    journey.wait_console(conn, guest.id, "souverain-guest: ready")

    conn.compute.create_volume_attachment(guest, volume_id=volume.id)
    journey.wait_volume(conn, volume.id, "in-use")
    out = journey.wait_console(conn, guest.id, "seen md5=")
    assert "wrote" in out
    # the guest sees exactly 1 GiB (the LUKS header is outside it) and its own bytes
    assert f"seen md5={journey.PATTERN_MD5} serial={volume.id[:20]} size={2 * 1024 * 1024}" in out
    stored, holding = _objects_holding(pool, f"volume-{volume.id}", journey.PATTERN * 8)
    assert stored > 1024 * 1024, stored  # the guest's MiB reached the OSDs...
    assert holding == []  # ...as ciphertext

    conn.block_storage.extend_volume(volume.id, 2)
    journey.wait_console(conn, guest.id, f"resized size={4 * 1024 * 1024}", timeout=60)

    # boot-time attach: the guest finds its pattern on the volume and leaves it be
    conn.compute.stop_server(guest)
    wait_status(conn, guest.id, "SHUTOFF")
    conn.compute.start_server(guest)
    wait_status(conn, guest.id, "ACTIVE")
    out = journey.wait_console(conn, guest.id, "seen md5=", count=2)
    last = out.rsplit("seen md5=", 1)[1]
    assert last.startswith(f"{journey.PATTERN_MD5} serial={volume.id[:20]} size={4 * 1024 * 1024}")
    assert out.count("wrote") == 1

    conn.compute.delete_server(guest)
    conn.compute.wait_for_delete(guest, wait=60)
    journey.wait_volume(conn, volume.id, "available")
    conn.block_storage.delete_volume(volume.id)
    conn.block_storage.wait_for_delete(volume, wait=60)
    rbd = bindings("rbd")
    rados = bindings("rados")
    ceph = shared_cluster()
    with (
        rados.Rados(conffile=str(ceph.conf), rados_id=ceph.user) as cluster,
        cluster.open_ioctx(pool) as ctx,
    ):
        assert f"volume-{volume.id}" not in rbd.RBD().list(ctx)


def test_a_server_boots_from_an_encrypted_rbd_volume_whose_objects_hold_no_plaintext(
    rbd_cloud: tuple[Cloud, str], tiny_image_file: Path, tmp_path: Path
) -> None:
    """A volume of an encrypted type made from the tiny image: QEMU's luks driver over its
    rbd driver opens it as the root disk (the key over a pipe at start, never on the
    command line), the guest boots; no RADOS object of the image holds a string the
    image's raw bytes do."""
    cloud, pool = rbd_cloud
    vtype = cloud.admin.block_storage.create_type(name=unique("luks-rbd-boot"))
    cloud.admin.block_storage.create_type_encryption(
        vtype, provider="luks", cipher="aes-xts-plain64", key_size=256,
        control_location="front-end",
    )  # fmt: skip
    tenant: Tenant = cloud.make_tenant("rbdlukboot")
    conn: openstack.connection.Connection = cloud.connect(
        tenant.user_name, tenant.password, tenant.project_name
    )
    made = conn.block_storage.create_volume(
        size=1, volume_type=vtype.name, image_id=tiny_id(conn), name=unique("sealed-root")
    )
    root = journey.wait_volume(conn, made.id, "available")
    assert root.is_encrypted and root.is_bootable
    server = _boot_ready(conn, "luks-rbd-boot", root.id)
    argv = _qemu_argv(server.id)
    assert f"driver=luks,key-secret=root-key,file.driver=rbd,file.pool={pool}" in argv, argv
    assert "secret,id=root-key,format=raw,file=/dev/fd/" in argv, argv  # a pipe, no key

    raw = tmp_path / "tiny.raw"
    subprocess.run(["qemu-img", "convert", "-O", "raw", str(tiny_image_file), str(raw)], check=True)
    assert journey.IMAGE_MARKER in raw.read_bytes()
    stored, holding = _objects_holding(pool, f"volume-{root.id}", journey.IMAGE_MARKER)
    assert stored > 16 * 1024 * 1024, stored  # the image's bytes are there...
    assert holding == []  # ...as ciphertext
    conn.compute.delete_server(server)
    conn.compute.wait_for_delete(server, wait=60)
    conn.block_storage.wait_for_delete(root, wait=60)  # delete_on_termination


def _boot_ready(conn: openstack.connection.Connection, name: str, volume_id: str) -> Any:
    """A server booted from `volume_id` (deleted with it), once its guest says it is ready."""
    server = create(
        conn,
        unique(name),
        image="",
        block_device_mapping=[
            {"boot_index": 0, "uuid": volume_id, "source_type": "volume",
             "destination_type": "volume", "delete_on_termination": True}
        ],
    )  # fmt: skip
    wait_status(conn, server.id, "ACTIVE")
    journey.wait_console(conn, server.id, "souverain-guest: ready")
    return server
