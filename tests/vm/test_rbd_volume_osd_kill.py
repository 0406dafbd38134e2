"""A guest writing to an RBD volume loses no acknowledged block when an OSD is kill -9'ed.

A private cluster (3 MemStore OSDs, pool size 3 / min_size 2). The guest writes numbered
4 KiB blocks, block i at offset i * 4 KiB, each fsynced (virtio flush -> QEMU -> librbd ->
the OSDs' acknowledgement) before it prints "acked i". osd.1 is killed mid-way; writes stall
until the monitor marks it down, then go on on the two copies left. QEMU is then killed
itself (nothing more is flushed), and librbd reads every acknowledged block back: each holds
its own number, whole. osd.1 is started again and the cluster heals; the blocks still read
back the same.
"""

from __future__ import annotations

import os
import re
import time
import uuid
from pathlib import Path

import pytest

from souverain.common.ceph import CephAccess, CephConnection, bindings
from souverain.compute.qemu import Disk, GuestSpec, QemuDriver
from souverain.volume.rbd_backend import RbdVolumeBackend
from tests.ceph import ceph_cluster

BLOCK = 4096
BEFORE_KILL = 40  # blocks acknowledged before osd.1 dies
AFTER_DOWN = 200  # blocks acknowledged after the monitor marked it down

USER_DATA = f"""#!/bin/sh
(
while [ ! -b /dev/vdc ]; do sleep 0.2; done
i=1
while true; do
    yes "$(printf '%015d' $i)" | head -c {BLOCK} > /tmp/block
    dd if=/tmp/block of=/dev/vdc bs={BLOCK} seek=$i count=1 conv=fsync 2>/dev/null && \\
        echo "acked $i"
    i=$((i + 1))
done
) &
exit 0
""".encode()

pytestmark = pytest.mark.skipif(
    os.geteuid() != 0 or not Path("/usr/bin/qemu-system-x86_64").exists(),
    reason="needs root and qemu-system-x86_64 (scripts/install-system-packages)",
)
DRIVER_DIR = "rbdkill"


def acked(driver: QemuDriver, server: str) -> int:
    found = re.findall(r"acked (\d+)\r?\n", driver.console_output(server))
    return int(found[-1]) if found else 0


def wait_acked(driver: QemuDriver, server: str, floor: int, timeout: float = 120) -> int:
    deadline = time.monotonic() + timeout
    while (count := acked(driver, server)) < floor:
        if time.monotonic() > deadline:
            tail = driver.console_output(server)[-1500:]
            raise AssertionError(f"the guest acknowledged {count} < {floor} blocks:\n{tail}")
        time.sleep(0.2)
    return count


def record_of(block: bytes) -> int:
    lines = block.split(b"\n")
    assert lines[-1] == b"" and len(lines) == BLOCK // 16 + 1, block[:64]
    assert len(set(lines[:-1])) == 1, f"torn block: {sorted(set(lines[:-1]))[:3]}"
    return int(lines[0])


def check_blocks(store: RbdVolumeBackend, volume_id: str, last: int) -> None:
    rbd = bindings("rbd")
    with (
        store.connection.ioctx(store.pool) as ctx,
        rbd.Image(ctx, f"volume-{volume_id}", read_only=True) as image,
    ):
        data = image.read(0, (last + 1) * BLOCK)
    for i in range(1, last + 1):
        assert record_of(data[i * BLOCK : (i + 1) * BLOCK]) == i, f"block {i} lost"


def test_acknowledged_guest_writes_survive_an_osd_kill_9(
    driver: QemuDriver, image: Path, tmp_path: Path
) -> None:
    with ceph_cluster() as cluster:
        pool = cluster.make_pool("volumes", application="rbd")
        access = CephAccess(conf=cluster.conf, user=cluster.user)
        store = RbdVolumeBackend(CephConnection(access), pool, tmp_path / "scratch")
        store.setup()
        try:
            volume_id = str(uuid.uuid4())
            store.make_blank(volume_id, 1)
            where = store.location(volume_id)
            server = str(uuid.uuid4())
            base = driver.cache_base_image("tiny", image)
            meta = {"uuid": server, "name": "writer", "hostname": "writer"}
            nets: dict[str, list[str]] = {"links": [], "networks": [], "services": []}
            disk = Disk(id=f"vol-{volume_id}", format="raw", rbd=where.rbd, ceph=where.ceph)
            driver.start(
                GuestSpec(
                    uuid=server,
                    name="rbd writer",
                    vcpus=1,
                    memory_mib=256,
                    disk=driver.create_root_disk(server, base, "qcow2", 1),
                    config_drive=driver.write_config_drive(server, meta, USER_DATA, nets),
                    disks=(disk,),
                )
            )
            wait_acked(driver, server, BEFORE_KILL)
            cluster.kill_osd(1)
            killed_at = acked(driver, server)
            began = time.monotonic()
            while cluster.osd_up(1):
                assert time.monotonic() - began < 60, "osd.1 never marked down"
                time.sleep(0.5)
            down = acked(driver, server)
            last = wait_acked(driver, server, down + AFTER_DOWN)
            driver.destroy(server)  # QEMU gone: only what was acknowledged counts
            check_blocks(store, volume_id, last)
            healed = cluster.restart_osd(1)
            check_blocks(store, volume_id, last)
            print(
                f"\n{killed_at} blocks acked before the kill, {down} when osd.1 was marked "
                f"down, {last} in all, intact; healed {healed:.1f} s after restart"
            )
        finally:
            store.connection.close()
