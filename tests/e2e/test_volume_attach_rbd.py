"""The volume journey of test_volume_attach.py with `volume.backend = "rbd"`: real clients
(the `openstack` CLI, openstacksdk), real guests, the volumes RBD images in the shared
Ceph cluster that QEMU opens with its own rbd driver. One guest writes, the volume is
detached and attached to another that reads the same bytes, extended while attached
(the guest sees the new size), snapshotted and cloned (copy-on-write), and another
project never sees it.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import openstack.connection
import pytest

from souverain.common.ceph import bindings
from tests.ceph import shared_cluster
from tests.e2e import test_volume_attach as journey
from tests.e2e.conftest import Cloud, CloudFactory, Tenant, unique
from tests.e2e.test_compute import create, wait_status
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


def test_boot_from_an_rbd_volume_fails_the_build_saying_why(
    rbd_cloud: tuple[Cloud, str],
) -> None:
    """Root disks on RBD belong to compute's RBD disk backend: until it is on, a server
    booted from an RBD volume ends in ERROR with a fault that says so, the volume free."""
    cloud, _ = rbd_cloud
    tenant: Tenant = cloud.make_tenant("rbdboot")
    conn: openstack.connection.Connection = cloud.connect(
        tenant.user_name, tenant.password, tenant.project_name
    )
    volume = conn.block_storage.create_volume(size=1, name=unique("root"))
    journey.wait_volume(conn, volume.id, "available")
    server = create(
        conn,
        unique("bfv-rbd"),
        image="",
        block_device_mapping=[
            {"boot_index": 0, "uuid": volume.id, "source_type": "volume",
             "destination_type": "volume", "delete_on_termination": False}
        ],
    )  # fmt: skip
    failed = wait_status(conn, server.id, "ERROR")
    assert "is on RBD" in str(failed.fault), failed.fault
    journey.wait_volume(conn, volume.id, "available")
    conn.compute.delete_server(server)
    conn.compute.wait_for_delete(server, wait=60)
    conn.block_storage.delete_volume(volume.id)
