"""The QEMU host driver runs real tiny guests: start, console, pause, reset, suspend, snapshot.

One guest, started by a helper process that is then SIGKILLed (as a control plane might be),
is shared by the tests in file order: they only read it or act on it reversibly, and the
power-off test comes last. Sockets and files live under pytest's (long) tmp path on purpose.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import uuid
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

import pytest

from souverain.compute.qemu import DriverError, GuestSpec, Nic, PowerState, QemuDriver

HOSTNAME = "driver-guest"
USER_DATA = b"""#!/bin/sh
echo "user-data: hello from $(hostname)"
if [ -f /mnt/root-disk/persist.txt ]; then
    echo "user-data: persisted $(cat /mnt/root-disk/persist.txt)"
fi
echo "written before the snapshot" > /mnt/root-disk/persist.txt
sync
( n=0; while true; do n=$((n+1)); echo "tick $n"; sleep 1; done ) &
exit 0
"""
NETWORK_DATA = {"links": [], "networks": [], "services": []}

pytestmark = pytest.mark.skipif(
    os.geteuid() != 0 or not Path("/usr/bin/qemu-system-x86_64").exists(),
    reason="needs root and qemu-system-x86_64 (scripts/install-system-packages)",
)


def wait_until(check: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(0.1)


def wait_for_console(driver: QemuDriver, server: str, text: str, count: int = 1) -> float:
    started = time.monotonic()
    wait_until(
        lambda: driver.console_output(server).count(text) >= count,
        60,
        f"{text!r} x{count} on the console of {server}:\n{driver.console_output(server, 30)}",
    )
    return time.monotonic() - started


# the data dir of this module's driver (tests/vm/conftest.py)
DRIVER_DIR = "a-data-dir-whose-path-is-long-" + "x" * 60


def make_spec(driver: QemuDriver, image: Path, *, user_data: bytes | None = USER_DATA) -> GuestSpec:
    server = str(uuid.uuid4())
    base = driver.cache_base_image("tiny", image)
    disk = driver.create_root_disk(server, base, "qcow2", 1)
    meta = {"uuid": server, "name": 'odd "name"\nü', "hostname": HOSTNAME}
    drive = driver.write_config_drive(server, meta, user_data, NETWORK_DATA)
    return GuestSpec(
        uuid=server,
        name="driver guest",
        vcpus=1,
        memory_mib=256,
        disk=disk,
        config_drive=drive,
        nics=(Nic(mac="fa:16:3e:00:00:01"),),
    )


@pytest.fixture(scope="module")
def guest(driver: QemuDriver, image: Path) -> GuestSpec:
    """The shared guest, started from a process that is SIGKILLed right after."""
    spec = make_spec(driver, image)
    code = (
        "import os, signal, sys, pathlib\n"
        "from souverain.compute.qemu import GuestSpec, Nic, QemuDriver\n"
        "args = sys.argv[1:]\n"
        "spec = GuestSpec(uuid=args[1], name='x', vcpus=1, memory_mib=256,\n"
        "    disk=pathlib.Path(args[2]), config_drive=pathlib.Path(args[3]),\n"
        "    nics=(Nic(mac='fa:16:3e:00:00:01'),))\n"
        "print(QemuDriver(pathlib.Path(args[0])).start(spec), flush=True)\n"
        "os.kill(os.getpid(), signal.SIGKILL)\n"
    )
    paths = (spec.disk, spec.config_drive)
    done = subprocess.run(
        [sys.executable, "-c", code, str(driver.root), spec.uuid, *map(str, paths)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == -9, done.stderr
    assert int(done.stdout) > 0
    return spec


def test_accelerator_probe_falls_back_to_tcg_when_kvm_runs_no_guest(driver: QemuDriver) -> None:
    # This host's /dev/kvm opens and runs the BIOS but no kernel; set SOUVERAIN_KVM_WORKS=1
    # where KVM really works.
    expected = "kvm" if os.environ.get("SOUVERAIN_KVM_WORKS") == "1" else "tcg"
    host_cache = driver.run_dir.parent / "accelerator.json"
    host_cache.unlink(missing_ok=True)  # probe for real, not from an earlier run's answer
    assert driver.accelerator() == expected
    cache = json.loads(host_cache.read_text())
    assert cache["accelerator"] == expected
    started = time.monotonic()
    assert QemuDriver(driver.root).accelerator() == expected  # from the cache: no probe
    assert time.monotonic() - started < 1.0


def test_guest_outlives_the_killed_process_that_started_it(
    driver: QemuDriver, guest: GuestSpec
) -> None:
    pid = driver.pid(guest.uuid)
    assert pid is not None
    assert driver.running() == {guest.uuid: pid}
    assert driver.power_state(guest.uuid) == PowerState.RUNNING
    assert guest.uuid in Path(f"/proc/{pid}/cmdline").read_text()
    assert driver.start(guest) == pid  # already running: no second QEMU


def test_console_shows_boot_and_user_data_from_the_config_drive(
    driver: QemuDriver, guest: GuestSpec
) -> None:
    wait_for_console(driver, guest.uuid, "souverain-guest: ready")
    console = driver.console_output(guest.uuid)
    assert "souverain-guest: booted" in console
    assert f"souverain-guest: hostname={HOSTNAME}" in console
    assert "user-data: hello from driver-guest" in console
    assert "souverain-guest: user-data exit=0" in console
    assert "on eth0" in console
    wait_for_console(driver, guest.uuid, "tick 2")
    assert "tick " in driver.console_output(guest.uuid, 1)  # the last line (after a prompt)


def test_pause_and_unpause(driver: QemuDriver, guest: GuestSpec) -> None:
    driver.pause(guest.uuid)
    assert driver.power_state(guest.uuid) == PowerState.PAUSED
    driver.unpause(guest.uuid)
    assert driver.power_state(guest.uuid) == PowerState.RUNNING


def test_console_is_trimmed_under_the_cap_while_the_guest_writes(
    driver: QemuDriver, guest: GuestSpec
) -> None:
    capped = QemuDriver(driver.root, console_max_bytes=512)
    capped.trim_console(guest.uuid)
    log = driver.instance_dir(guest.uuid) / "console.log"
    assert log.stat().st_size <= 512
    assert "tick" in capped.console_output(guest.uuid)
    kept = len(log.read_bytes())
    wait_until(lambda: b"tick" in log.read_bytes()[kept:], 10, "QEMU to append after the trim")


def test_snapshot_is_a_standalone_qcow2_that_boots_with_the_guest_data(
    driver: QemuDriver, guest: GuestSpec, image: Path, tmp_path: Path
) -> None:
    dest = tmp_path / "snapshot.qcow2"
    driver.snapshot_disk(guest.uuid, dest)
    assert driver.power_state(guest.uuid) == PowerState.RUNNING
    info = json.loads(
        subprocess.run(
            ["qemu-img", "info", "--output=json", str(dest)], capture_output=True, check=True
        ).stdout
    )
    assert info["format"] == "qcow2"
    assert "backing-filename" not in info
    assert [p.name for p in tmp_path.iterdir()] == ["snapshot.qcow2"]

    clone = make_spec(driver, image, user_data=USER_DATA)
    base = driver.cache_base_image("snap", dest)
    clone_disk = driver.instance_dir(clone.uuid) / "disk.qcow2"
    clone_disk.unlink()
    clone = replace(clone, disk=driver.create_root_disk(clone.uuid, base, "qcow2", 1))
    driver.start(clone)
    try:
        wait_for_console(driver, clone.uuid, "user-data: persisted written before the snapshot")
    finally:
        driver.destroy(clone.uuid)
        driver.delete_files(clone.uuid)


def test_reset_reboots_in_place(driver: QemuDriver, guest: GuestSpec) -> None:
    pid = driver.pid(guest.uuid)
    boots = driver.console_output(guest.uuid).count("souverain-guest: booted")
    driver.reset(guest.uuid)
    wait_for_console(driver, guest.uuid, "souverain-guest: booted", count=boots + 1)
    wait_for_console(driver, guest.uuid, "souverain-guest: ready", count=boots + 1)
    assert driver.pid(guest.uuid) == pid


def test_suspend_releases_the_process_and_resume_carries_on(
    driver: QemuDriver, guest: GuestSpec
) -> None:
    pid = driver.pid(guest.uuid)
    assert pid is not None
    started = time.monotonic()
    driver.suspend(guest.uuid)
    suspend_seconds = time.monotonic() - started
    assert driver.power_state(guest.uuid) == PowerState.SUSPENDED
    assert driver.pid(guest.uuid) is None
    assert guest.uuid not in driver.running()
    assert not Path(f"/proc/{pid}").exists() or not driver.running()
    ticks = driver.console_output(guest.uuid).count("tick ")
    boots = driver.console_output(guest.uuid).count("souverain-guest: booted")

    started = time.monotonic()
    driver.resume(guest)
    resume_seconds = time.monotonic() - started
    assert driver.power_state(guest.uuid) == PowerState.RUNNING
    assert not (driver.instance_dir(guest.uuid) / "suspended.state").exists()
    wait_for_console(driver, guest.uuid, "tick ", count=ticks + 2)
    # No reboot: the guest carried on where it was.
    assert driver.console_output(guest.uuid).count("souverain-guest: booted") == boots
    print(f"suspend {suspend_seconds:.2f} s, resume {resume_seconds:.2f} s")


def test_shutdown_powers_off_cleanly_and_destroy_is_idempotent(
    driver: QemuDriver, guest: GuestSpec
) -> None:
    assert driver.shutdown(guest.uuid, timeout=30) is True
    assert "souverain-guest: powering off" in driver.console_output(guest.uuid)
    assert driver.power_state(guest.uuid) == PowerState.SHUTDOWN
    assert driver.running() == {}
    driver.destroy(guest.uuid)
    driver.destroy(guest.uuid)
    driver.delete_files(guest.uuid)
    driver.delete_files(guest.uuid)
    assert not driver.instance_dir(guest.uuid).exists()


def test_destroy_kills_a_running_guest(driver: QemuDriver, image: Path) -> None:
    spec = make_spec(driver, image, user_data=None)
    pid = driver.start(spec, paused=True)
    assert driver.power_state(spec.uuid) == PowerState.PAUSED
    driver.destroy(spec.uuid)
    assert driver.pid(spec.uuid) is None
    assert (
        not Path(f"/proc/{pid}/cmdline").exists() or not Path(f"/proc/{pid}/cmdline").read_bytes()
    )
    assert driver.power_state(spec.uuid) == PowerState.SHUTDOWN
    driver.delete_files(spec.uuid)


def test_orphan_whose_files_were_deleted_is_still_found(driver: QemuDriver, image: Path) -> None:
    spec = make_spec(driver, image, user_data=None)
    pid = driver.start(spec, paused=True)
    (driver.instance_dir(spec.uuid) / "qemu.pid").unlink()
    assert driver.running() == {spec.uuid: pid}
    other_root = QemuDriver(driver.root.parent / "other-compute")
    assert other_root.running() == {}
    os.kill(pid, 9)
    wait_until(lambda: spec.uuid not in driver.running(), 10, "the orphan to die")
    driver.delete_files(spec.uuid)


def test_start_with_a_missing_disk_says_why_and_leaves_no_process(
    driver: QemuDriver, image: Path, tmp_path: Path
) -> None:
    spec = make_spec(driver, image, user_data=None)
    broken = replace(spec, disk=tmp_path / "no-such-disk.qcow2")
    with pytest.raises(DriverError, match=r"no-such-disk\.qcow2.*No such file"):
        driver.start(broken)
    assert driver.pid(spec.uuid) is None
    assert spec.uuid not in driver.running()
    driver.delete_files(spec.uuid)


def test_pid_does_not_trust_a_pidfile_naming_another_process(driver: QemuDriver) -> None:
    server = str(uuid.uuid4())
    directory = driver.instance_dir(server)
    directory.mkdir(parents=True)
    (directory / "qemu.pid").write_text(f"{os.getpid()}\n")
    assert driver.pid(server) is None
    assert driver.power_state(server) == PowerState.SHUTDOWN
    with pytest.raises(DriverError, match="not running"):
        driver.pause(server)
    driver.delete_files(server)


def test_base_image_is_hard_linked_and_root_disk_is_an_overlay(
    driver: QemuDriver, image: Path, tmp_path: Path
) -> None:
    source = tmp_path / "glance-image"
    subprocess.run(["qemu-img", "create", "-q", "-f", "raw", str(source), "3G"], check=True)
    base = driver.cache_base_image("big-raw", source)
    assert base.stat().st_ino == source.stat().st_ino
    assert driver.cache_base_image("big-raw", source) == base
    source.unlink()  # deleting the Glance image leaves the cached base
    server = str(uuid.uuid4())
    disk = driver.create_root_disk(server, base, "raw", 1)
    info = json.loads(
        subprocess.run(
            ["qemu-img", "info", "--output=json", str(disk)], capture_output=True, check=True
        ).stdout
    )
    assert info["virtual-size"] == 3 * 1024**3  # the image is bigger than the flavor's 1 GiB
    assert info["backing-filename-format"] == "raw"
    driver.resize_root_disk(server, 5)
    with pytest.raises(DriverError, match="grow but not shrink"):
        driver.resize_root_disk(server, 4)
    driver.delete_files(server)
    with pytest.raises(DriverError, match="invalid server id"):
        driver.instance_dir("../../etc")
