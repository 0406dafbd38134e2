"""An RBD volume moves between real guests with its bytes, and grows under a running one.

QEMU opens the volume with its own rbd driver (the node `blockdev_nodes` makes from the
volume backend's location: no file, no Souverain process on the I/O path). Guest A writes
4 MiB of known bytes and prints their sha256; extended while attached, A sees the new size;
detached, librbd reads the same bytes; attached to guest B, B reads the same sha256.
Both guests are tiny TCG guests on the shared MemStore cluster (a pool of the test's own).
"""

from __future__ import annotations

import hashlib
import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from souverain.common.ceph import CephAccess, CephConnection
from souverain.compute.qemu import Disk, GuestSpec, QemuDriver
from souverain.volume.rbd_backend import RbdVolumeBackend
from tests.ceph import CephCluster
from tests.vm.test_qemu_hotplug import Console

MIB = 1024**2
GIB = 1024**3
PATTERN_LINE = b"souverain rbd volume pattern\n"
PATTERN = (PATTERN_LINE * (4 * MIB // len(PATTERN_LINE) + 1))[: 4 * MIB]
PATTERN_SHA = hashlib.sha256(PATTERN).hexdigest()

# Every second: "disks: vda=<sectors>:<serial> ..."; when vdc appears, its first 4 MiB are
# the pattern (read) or get it (wrote, fsynced), then "vdc sha256=<sha256 of 4 MiB> read|wrote".
USER_DATA = b"""#!/bin/sh
yes 'souverain rbd volume pattern' | head -c 4194304 > /tmp/pattern
want=$(sha256sum < /tmp/pattern | cut -d ' ' -f 1)
(
had=""
while true; do
    line="disks:"
    for b in /sys/block/vd*; do
        [ -e "$b" ] || continue
        line="$line ${b##*/}=$(cat "$b/size"):$(cat "$b/serial" 2>/dev/null)"
    done
    echo "$line"
    if [ -b /dev/vdc ] && [ -z "$had" ]; then
        had=1
        got=$(dd if=/dev/vdc bs=65536 count=64 2>/dev/null | sha256sum | cut -d ' ' -f 1)
        how=read
        if [ "$got" != "$want" ]; then
            dd if=/tmp/pattern of=/dev/vdc bs=65536 conv=fsync 2>/dev/null
            echo 3 > /proc/sys/vm/drop_caches
            got=$(dd if=/dev/vdc bs=65536 count=64 2>/dev/null | sha256sum | cut -d ' ' -f 1)
            how=wrote
        fi
        echo "vdc sha256=$got $how"
    elif [ ! -b /dev/vdc ]; then
        had=""
    fi
    sleep 1
done
) &
exit 0
"""

pytestmark = pytest.mark.skipif(
    os.geteuid() != 0 or not Path("/usr/bin/qemu-system-x86_64").exists(),
    reason="needs root and qemu-system-x86_64 (scripts/install-system-packages)",
)
DRIVER_DIR = "rbdvol"


@pytest.fixture
def store(ceph: CephCluster, tmp_path: Path) -> Iterator[RbdVolumeBackend]:
    pool = ceph.make_pool(f"vmvol-{uuid.uuid4().hex[:8]}", application="rbd")
    access = CephAccess(conf=ceph.conf, user=ceph.user)
    backend = RbdVolumeBackend(CephConnection(access), pool, tmp_path / "scratch")
    backend.setup()
    try:
        yield backend
    finally:
        backend.connection.close()
        ceph.command("osd", "pool", "rm", pool, pool, "--yes-i-really-really-mean-it")


def boot(driver: QemuDriver, image: Path) -> GuestSpec:
    server = str(uuid.uuid4())
    base = driver.cache_base_image("tiny", image)
    meta = {"uuid": server, "name": "rbd", "hostname": "rbd"}
    nets: dict[str, list[str]] = {"links": [], "networks": [], "services": []}
    spec = GuestSpec(
        uuid=server,
        name="rbd volume guest",
        vcpus=1,
        memory_mib=256,
        disk=driver.create_root_disk(server, base, "qcow2", 1),
        config_drive=driver.write_config_drive(server, meta, USER_DATA, nets),
    )
    console = Console(driver, spec.uuid)
    driver.start(spec)
    console.wait_text("souverain-guest: ready")
    return spec


def test_rbd_volume_moves_between_guests_with_its_bytes_and_grows_attached(
    driver: QemuDriver, image: Path, store: RbdVolumeBackend
) -> None:
    volume_id = str(uuid.uuid4())
    store.make_blank(volume_id, 1)
    where = store.location(volume_id)
    assert where.path is None and where.rbd is not None and where.format == "raw"
    disk = Disk(
        id=f"vol-{volume_id}", format="raw", rbd=where.rbd, ceph=where.ceph, serial=volume_id[:20]
    )
    serial = volume_id[:20]

    first = boot(driver, image)
    console = Console(driver, first.uuid)
    driver.attach_disk(first.uuid, disk)
    console.wait_text(f"vdc sha256={PATTERN_SHA} wrote")
    console.wait_disks(lambda seen: seen.get("vdc") == (GIB, serial))

    # extend while attached: QEMU grows the image through librbd, the guest sees it
    driver.resize_disk(first.uuid, disk.id, 2 * GIB)
    console.wait_disks(lambda seen: seen.get("vdc") == (2 * GIB, serial))
    assert store.volume_bytes(volume_id) == 2 * GIB

    assert driver.detach_disk(first.uuid, disk.id) is True
    raw = store.temp_path(".raw")
    store.export_volume(volume_id, raw, out_format="raw")
    with raw.open("rb") as f:
        assert hashlib.sha256(f.read(4 * MIB)).hexdigest() == PATTERN_SHA
    raw.unlink()
    driver.destroy(first.uuid)

    second = boot(driver, image)
    console = Console(driver, second.uuid)
    driver.attach_disk(second.uuid, disk)
    console.wait_text(f"vdc sha256={PATTERN_SHA} read")
    console.wait_disks(lambda seen: seen.get("vdc") == (2 * GIB, serial))
    assert driver.detach_disk(second.uuid, disk.id) is True
    driver.destroy(second.uuid)
    store.remove_volume(volume_id)
