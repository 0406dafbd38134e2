"""A snapshot of a volume a running guest keeps writing is crash-consistent.

The guest writes numbered 4 KiB blocks to its volume, each a record repeated 256 times,
in pairs: record i to the LAST block, fsync, then record i to the FIRST block, fsync.
On the disk at any instant the first block holds the last block's number or one less,
and neither block is half old, half new. A copy read while the guest writes (as
`qemu-img convert -U` alone did) reads the first block, then the last one later on: it
can find them many numbers apart (the volume holds 256 MiB of data between them, so the
copy takes a while from one to the other: without the hold this test fails, checked).
Copied the way a volume snapshot is (the compute
driver's `writes_held` around the volume backend's copy), every copy keeps the invariant,
and the guest goes on writing afterwards.
"""

from __future__ import annotations

import os
import re
import subprocess
import time
import uuid
from pathlib import Path

import pytest

from souverain.compute.qemu import Disk, GuestSpec, PowerState, QemuDriver
from souverain.volume.backend import VolumeBackend

BLOCK = 4096
SIZE_GIB = 1
LAST_BLOCK = SIZE_GIB * 1024**3 // BLOCK - 1
SNAPSHOTS = 5
FILLED_MIB = 256

# "writer <i>" on the console every 10 pairs; each block is "<i, 15 digits>\n" x 256.
USER_DATA = f"""#!/bin/sh
(
while [ ! -b /dev/vdc ]; do sleep 0.2; done
i=1
while true; do
    yes "$(printf '%015d' $i)" | head -c {BLOCK} > /tmp/block
    dd if=/tmp/block of=/dev/vdc bs={BLOCK} seek={LAST_BLOCK} count=1 conv=fsync 2>/dev/null
    dd if=/tmp/block of=/dev/vdc bs={BLOCK} seek=0 count=1 conv=fsync 2>/dev/null
    [ $((i % 10)) -eq 0 ] && echo "writer $i"
    i=$((i + 1))
done
) &
exit 0
""".encode()
NETWORK_DATA = {"links": [], "networks": [], "services": []}

pytestmark = pytest.mark.skipif(
    os.geteuid() != 0 or not Path("/usr/bin/qemu-system-x86_64").exists(),
    reason="needs root and qemu-system-x86_64 (scripts/install-system-packages)",
)


# the data dir of this module's driver (tests/vm/conftest.py)
DRIVER_DIR = "snapshot"


@pytest.fixture(scope="module")
def backend(tmp_path_factory: pytest.TempPathFactory) -> VolumeBackend:
    volumes = VolumeBackend(tmp_path_factory.mktemp("volumes"))
    volumes.setup()
    return volumes


def wait_console(driver: QemuDriver, server: str, text: str, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while text not in driver.console_output(server):
        if time.monotonic() > deadline:
            tail = driver.console_output(server)[-2000:]
            raise AssertionError(f"no {text!r} on the console; it says:\n{tail}")
        time.sleep(0.2)


def last_count(driver: QemuDriver, server: str) -> int:
    counts = re.findall(r"writer (\d+)", driver.console_output(server))
    return int(counts[-1]) if counts else 0


def wait_count_above(driver: QemuDriver, server: str, floor: int, timeout: float = 90) -> int:
    deadline = time.monotonic() + timeout
    while (count := last_count(driver, server)) <= floor:
        if time.monotonic() > deadline:
            tail = driver.console_output(server)[-2000:]
            raise AssertionError(f"the guest wrote no pair past {floor}; console:\n{tail}")
        time.sleep(0.2)
    return count


def filled_volume(path: Path, tmp_path: Path) -> Path:
    """A volume whose blocks between the first and the last hold data, so a copy takes
    a while between reading one and reading the other, as it would on a used disk."""
    raw = tmp_path / "filled.raw"
    with raw.open("wb") as f:
        f.truncate(SIZE_GIB * 1024**3)
        f.seek(BLOCK)
        chunk = os.urandom(1024**2)
        for _ in range(FILLED_MIB):
            f.write(chunk)
    subprocess.run(
        ["qemu-img", "convert", "-f", "raw", "-O", "qcow2", str(raw), str(path)],
        check=True,
        timeout=120,
    )
    raw.unlink()
    return path


def record_of(block: bytes) -> int:
    """The number a block holds; it fails on a block that is torn (mixes two records)."""
    if block == bytes(BLOCK):
        return 0
    lines = block.split(b"\n")
    assert lines[-1] == b"" and len(lines) == BLOCK // 16 + 1, block[:64]
    assert len(set(lines[:-1])) == 1, f"torn block: {sorted(set(lines[:-1]))[:3]}"
    return int(lines[0])


def first_and_last(copy: Path, tmp_path: Path) -> tuple[int, int]:
    raw = tmp_path / f"{copy.stem}.raw"
    subprocess.run(
        ["qemu-img", "convert", "-f", "qcow2", "-O", "raw", str(copy), str(raw)],
        check=True,
        timeout=120,
    )
    with raw.open("rb") as f:
        first = f.read(BLOCK)
        f.seek(LAST_BLOCK * BLOCK)
        last = f.read(BLOCK)
    raw.unlink()
    return record_of(first), record_of(last)


def test_a_snapshot_taken_while_the_guest_writes_is_crash_consistent(
    driver: QemuDriver, backend: VolumeBackend, image: Path, tmp_path: Path
) -> None:
    server = str(uuid.uuid4())
    base = driver.cache_base_image("tiny", image)
    meta = {"uuid": server, "name": "writer", "hostname": "writer"}
    spec = GuestSpec(
        uuid=server,
        name="snapshot writer",
        vcpus=1,
        memory_mib=256,
        disk=driver.create_root_disk(server, base, "qcow2", 1),
        config_drive=driver.write_config_drive(server, meta, USER_DATA, NETWORK_DATA),
    )
    volume_id = str(uuid.uuid4())
    volume = filled_volume(backend.volume_path(volume_id), tmp_path)
    driver.start(spec)
    wait_console(driver, server, "souverain-guest: ready")
    driver.attach_disk(server, Disk(id=f"vol-{volume_id}", path=volume, serial="snap"))
    count = wait_count_above(driver, server, 10)

    for n in range(SNAPSHOTS):
        copy = backend.snapshot_path(str(uuid.uuid4()))
        with driver.writes_held(server):
            assert driver.power_state(server) == PowerState.PAUSED
            backend.copy(volume, "qcow2", copy, SIZE_GIB, shared=True)
        first, last = first_and_last(copy, tmp_path)
        assert first >= count > 0, (n, first, count)  # the copy is of now, not of before
        assert last - first in (0, 1), f"copy {n}: first block {first}, last block {last}"
        count = wait_count_above(driver, server, last)  # the guest writes on after the hold

    assert driver.power_state(server) == PowerState.RUNNING
    driver.destroy(server)
