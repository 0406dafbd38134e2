"""Volumes hot-plug into real tiny guests: attach, detach, re-attach, resize, suspend, at boot.

The guest's user-data lists its virtio disks (name, size in sectors, serial) every second and
writes a known pattern to /dev/vdc whenever vdc appears blank, or reads it back when it is
there: the host checks the volume file itself after the guest let go. One guest is shared in
file order (each test leaves it with no volume attached, except the suspend test, which is last
to use it); machine `pc`, ACPI PCI hot-plug (acpiphp, built into the Debian cloud kernel).
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import time
import uuid
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

import pytest

from souverain.compute.qemu import (
    Disk,
    DriverError,
    GuestSpec,
    PowerState,
    QemuDriver,
    guest_device_name,
)

MIB = 1024**2
SECTOR = 512
PATTERN_LINE = b"souverain volume pattern\n"
PATTERN = (PATTERN_LINE * (MIB // len(PATTERN_LINE) + 1))[:MIB]
PATTERN_MD5 = hashlib.md5(PATTERN).hexdigest()

# Every second: "disks: vda=<sectors>:<serial> vdb=..."; when vdc appears, its first MiB is the
# pattern (read) or gets it (wrote), and "vdc md5=<md5 of its first MiB> read|wrote".
USER_DATA = b"""#!/bin/sh
yes 'souverain volume pattern' | head -c 1048576 > /tmp/pattern
want=$(md5sum < /tmp/pattern | cut -d ' ' -f 1)
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
        got=$(dd if=/dev/vdc bs=65536 count=16 2>/dev/null | md5sum | cut -d ' ' -f 1)
        how=read
        if [ "$got" != "$want" ]; then
            dd if=/tmp/pattern of=/dev/vdc bs=65536 conv=fsync 2>/dev/null
            echo 3 > /proc/sys/vm/drop_caches
            got=$(dd if=/dev/vdc bs=65536 count=16 2>/dev/null | md5sum | cut -d ' ' -f 1)
            how=wrote
        fi
        echo "vdc md5=$got $how"
    elif [ ! -b /dev/vdc ]; then
        had=""
    fi
    sleep 1
done
) &
exit 0
"""
NETWORK_DATA = {"links": [], "networks": [], "services": []}
VOLUME_ID = "0123abcd-4567-89ab-cdef-0123456789ab"
SERIAL = VOLUME_ID[:20]  # as Nova passes it

pytestmark = pytest.mark.skipif(
    os.geteuid() != 0 or not Path("/usr/bin/qemu-system-x86_64").exists(),
    reason="needs root and qemu-system-x86_64 (scripts/install-system-packages)",
)


def wait_until(check: Callable[[], bool], timeout: float, what: Callable[[], str]) -> float:
    started = time.monotonic()
    while not check():
        if time.monotonic() - started > timeout:
            raise AssertionError(f"timed out after {timeout} s waiting for {what()}")
        time.sleep(0.1)
    return time.monotonic() - started


def disks_seen(driver: QemuDriver, server: str, since: int) -> dict[str, tuple[int, str]]:
    """The guest's last "disks:" line after offset `since`: name -> (size in bytes, serial)."""
    text = driver.console_output(server)[since:]
    complete = text[: text.rfind("\n") + 1]  # the last line may still be being written
    lines = [line for line in complete.splitlines() if "disks:" in line]
    if not lines:
        return {}
    seen: dict[str, tuple[int, str]] = {}
    for item in lines[-1].partition("disks:")[2].split():
        name, _, rest = item.partition("=")
        sectors, _, serial = rest.partition(":")
        seen[name] = (int(sectors) * SECTOR, serial)
    return seen


class Console:
    """The guest's console from a mark on: what it says after an action."""

    def __init__(self, driver: QemuDriver, server: str) -> None:
        self.driver, self.server = driver, server
        self.mark = len(driver.console_output(server))

    def text(self) -> str:
        return self.driver.console_output(self.server)[self.mark :]

    def disks(self) -> dict[str, tuple[int, str]]:
        return disks_seen(self.driver, self.server, self.mark)

    def wait_disks(self, check: Callable[[dict[str, tuple[int, str]]], bool]) -> float:
        return wait_until(
            lambda: check(self.disks()), 60, lambda: f"the guest's disks; it says {self.disks()}"
        )

    def wait_text(self, text: str) -> float:
        return wait_until(
            lambda: text in self.text(), 60, lambda: f"{text!r}; console:\n{self.text()[-2000:]}"
        )


def volume_file(path: Path, size: str = "64M") -> Path:
    subprocess.run(["qemu-img", "create", "-q", "-f", "qcow2", str(path), size], check=True)
    return path


def first_mib(path: Path, tmp_path: Path) -> bytes:
    raw = tmp_path / f"{path.name}.raw"
    subprocess.run(["qemu-img", "convert", "-O", "raw", str(path), str(raw)], check=True)
    data = raw.read_bytes()[:MIB]
    raw.unlink()
    return data


def virtual_size(path: Path) -> int:
    info = subprocess.run(
        ["qemu-img", "info", "-U", "--output=json", str(path)], capture_output=True, check=True
    ).stdout
    return int(json.loads(info)["virtual-size"])


# the data dir of this module's driver (tests/vm/conftest.py)
DRIVER_DIR = "hotplug"


@pytest.fixture(scope="module")
def volumes(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("volumes")


def make_spec(driver: QemuDriver, image: Path, disks: tuple[Disk, ...] = ()) -> GuestSpec:
    server = str(uuid.uuid4())
    base = driver.cache_base_image("tiny", image)
    disk = driver.create_root_disk(server, base, "qcow2", 1)
    meta = {"uuid": server, "name": "hotplug", "hostname": "hotplug"}
    drive = driver.write_config_drive(server, meta, USER_DATA, NETWORK_DATA)
    return GuestSpec(
        uuid=server,
        name="hotplug guest",
        vcpus=1,
        memory_mib=256,
        disk=disk,
        config_drive=drive,
        disks=disks,
    )


@pytest.fixture(scope="module")
def guest(driver: QemuDriver, image: Path) -> GuestSpec:
    spec = make_spec(driver, image)
    console = Console(driver, spec.uuid)
    driver.start(spec)
    console.wait_text("souverain-guest: ready")
    console.wait_disks(lambda seen: set(seen) == {"vda", "vdb"})
    return spec


@pytest.fixture(scope="module")
def volume(volumes: Path) -> Disk:
    # 40 characters: longer than QEMU's block node names may be
    return Disk(id=f"vol-{VOLUME_ID}", path=volume_file(volumes / "a.qcow2"), serial=SERIAL)


def test_guest_device_names_follow_the_kernel_after_root_and_config_drive() -> None:
    assert guest_device_name(0) == "/dev/vdc"
    assert guest_device_name(23) == "/dev/vdz"
    assert guest_device_name(24) == "/dev/vdaa"
    assert guest_device_name(0, has_config_drive=False) == "/dev/vdb"
    assert QemuDriver.guest_device_name(1) == "/dev/vdd"


def test_attached_volume_appears_in_the_guest_with_its_serial_and_size(
    driver: QemuDriver, guest: GuestSpec, volume: Disk
) -> None:
    console = Console(driver, guest.uuid)
    started = time.monotonic()
    driver.attach_disk(guest.uuid, volume)
    attach_seconds = time.monotonic() - started
    assert driver.has_disk(guest.uuid, volume.id)
    seen_seconds = console.wait_disks(lambda seen: "vdc" in seen)
    assert console.disks()["vdc"] == (64 * MIB, SERIAL)
    console.wait_text(f"vdc md5={PATTERN_MD5} wrote")
    driver.attach_disk(guest.uuid, volume)  # already there: nothing happens
    assert driver.has_disk(guest.uuid, volume.id)
    print(f"attach {attach_seconds:.2f} s, seen by the guest after {seen_seconds:.2f} s more")


def test_detach_waits_for_the_guest_and_the_file_keeps_what_it_wrote(
    driver: QemuDriver, guest: GuestSpec, volume: Disk, tmp_path: Path
) -> None:
    console = Console(driver, guest.uuid)
    started = time.monotonic()
    assert driver.detach_disk(guest.uuid, volume.id) is True
    detach_seconds = time.monotonic() - started
    assert not driver.has_disk(guest.uuid, volume.id)
    console.wait_disks(lambda seen: set(seen) == {"vda", "vdb"})
    # the file is closed: another process may open it read-write (no image lock left)
    assert first_mib(volume.path, tmp_path) == PATTERN
    assert driver.detach_disk(guest.uuid, volume.id) is True  # already gone
    print(f"detach {detach_seconds:.2f} s")


def test_reattached_volume_shows_the_guest_its_own_data(
    driver: QemuDriver, guest: GuestSpec, volume: Disk
) -> None:
    console = Console(driver, guest.uuid)
    driver.attach_disk(guest.uuid, volume)
    console.wait_text(f"vdc md5={PATTERN_MD5} read")


def test_resize_grows_the_volume_the_guest_sees(
    driver: QemuDriver, guest: GuestSpec, volume: Disk
) -> None:
    console = Console(driver, guest.uuid)
    driver.resize_disk(guest.uuid, volume.id, 128 * MIB)
    console.wait_disks(lambda seen: seen.get("vdc") == (128 * MIB, SERIAL))
    driver.resize_disk(guest.uuid, volume.id, 128 * MIB)  # the same size: nothing to do
    with pytest.raises(DriverError, match="can grow but not shrink"):
        driver.resize_disk(guest.uuid, volume.id, 64 * MIB)
    with pytest.raises(DriverError, match="no volume vol-nothere"):
        driver.resize_disk(guest.uuid, "vol-nothere", 128 * MIB)
    assert driver.detach_disk(guest.uuid, volume.id) is True
    assert virtual_size(volume.path) == 128 * MIB
    console.wait_disks(lambda seen: set(seen) == {"vda", "vdb"})


def test_a_paused_guest_does_not_release_a_volume_until_it_runs(
    driver: QemuDriver, guest: GuestSpec, volume: Disk
) -> None:
    console = Console(driver, guest.uuid)
    driver.pause(guest.uuid)
    driver.attach_disk(guest.uuid, volume)  # plugged now, seen once the guest runs
    assert driver.has_disk(guest.uuid, volume.id)
    driver.unpause(guest.uuid)
    console.wait_text(f"vdc md5={PATTERN_MD5} read")
    driver.pause(guest.uuid)
    started = time.monotonic()
    assert driver.detach_disk(guest.uuid, volume.id, timeout=2.0) is False
    assert time.monotonic() - started < 5
    assert driver.has_disk(guest.uuid, volume.id)
    assert driver.detach_disk(guest.uuid, volume.id, timeout=0.5) is False  # asked again: same
    driver.unpause(guest.uuid)
    # the unplug stays requested: the guest completes it once it runs; a detach then tidies up
    wait_until(lambda: not driver.has_disk(guest.uuid, volume.id), 60, lambda: "the late release")
    assert driver.detach_disk(guest.uuid, volume.id) is True
    driver.attach_disk(guest.uuid, volume)  # its block nodes are gone: it attaches again
    assert driver.detach_disk(guest.uuid, volume.id) is True


def test_attach_that_qemu_refuses_says_why_and_leaves_nothing_behind(
    driver: QemuDriver, guest: GuestSpec, volumes: Path
) -> None:
    raw = volumes / "not-qcow2.raw"
    raw.write_bytes(b"\0" * MIB)
    not_qcow2 = Disk(id="vol-bad", path=raw, format="qcow2")
    with pytest.raises(DriverError, match="qcow2"):
        driver.attach_disk(guest.uuid, not_qcow2)
    with pytest.raises(DriverError, match="No such file"):
        driver.attach_disk(guest.uuid, replace(not_qcow2, path=volumes / "missing.qcow2"))
    nodes = driver._node_sizes(guest.uuid)
    assert not [name for name in nodes if name.startswith("vol-")]
    assert not driver.has_disk(guest.uuid, "vol-bad")
    for bad in (
        replace(not_qcow2, id="1-starts-with-a-digit"),
        replace(not_qcow2, id="vol-" + "x" * 130),
        replace(not_qcow2, serial="x" * 21),
        replace(not_qcow2, serial="a,b"),
        replace(not_qcow2, format="vmdk"),
    ):
        with pytest.raises(DriverError, match=r"invalid|unsupported"):
            driver.attach_disk(guest.uuid, bad)


def test_volume_on_the_command_line_is_there_at_boot_and_detaches(
    driver: QemuDriver, image: Path, volumes: Path
) -> None:
    boot_volume = Disk(id="vol-boot", path=volume_file(volumes / "boot.qcow2"), serial="boot1")
    spare = Disk(id="vol-ro", path=volume_file(volumes / "ro.qcow2", "32M"), readonly=True)
    spec = make_spec(driver, image, disks=(boot_volume, spare))
    console = Console(driver, spec.uuid)
    driver.start(spec)
    try:
        console.wait_disks(lambda seen: len(seen) == 4)
        seen = console.disks()
        assert seen["vdc"] == (64 * MIB, "boot1")
        assert seen["vdd"] == (32 * MIB, "")
        assert guest_device_name(0) == "/dev/vdc" and guest_device_name(1) == "/dev/vdd"
        console.wait_text(f"vdc md5={PATTERN_MD5} wrote")
        assert driver.has_disk(spec.uuid, "vol-boot")
        assert driver.detach_disk(spec.uuid, "vol-ro") is True
        console.wait_disks(lambda seen: set(seen) == {"vda", "vdb", "vdc"})
    finally:
        driver.destroy(spec.uuid)
    assert driver.power_state(spec.uuid) == PowerState.SHUTDOWN
    assert driver.has_disk(spec.uuid, "vol-boot") is False
    assert driver.detach_disk(spec.uuid, "vol-boot") is True  # no process: nothing to do
    with pytest.raises(DriverError, match="not running"):
        driver.attach_disk(spec.uuid, boot_volume)
    driver.delete_files(spec.uuid)


def test_resume_plugs_volumes_back_where_they_were_when_suspended(
    driver: QemuDriver, guest: GuestSpec, volume: Disk, volumes: Path
) -> None:
    # vol-a then vol-b; vol-a goes: vol-b keeps the later PCI slot, which resume must reuse
    other = Disk(id="vol-b", path=volume_file(volumes / "b.qcow2", "16M"), serial="b")
    console = Console(driver, guest.uuid)
    driver.attach_disk(guest.uuid, volume)
    driver.attach_disk(guest.uuid, other)
    console.wait_disks(lambda seen: seen.get("vdd") == (16 * MIB, "b"))
    assert driver.detach_disk(guest.uuid, volume.id) is True
    console.wait_disks(lambda seen: set(seen) == {"vda", "vdb", "vdd"})
    driver.suspend(guest.uuid)
    assert driver.power_state(guest.uuid) == PowerState.SUSPENDED
    with pytest.raises(DriverError, match="suspended with volumes"):
        driver.resume(guest)  # without vol-b
    assert driver.power_state(guest.uuid) == PowerState.SUSPENDED
    console = Console(driver, guest.uuid)
    driver.resume(replace(guest, disks=(other,)))
    assert driver.power_state(guest.uuid) == PowerState.RUNNING
    console.wait_disks(lambda seen: set(seen) == {"vda", "vdb", "vdd"})
    assert "souverain-guest: booted" not in console.text()
    assert driver.detach_disk(guest.uuid, other.id) is True
    console.wait_disks(lambda seen: set(seen) == {"vda", "vdb"})
