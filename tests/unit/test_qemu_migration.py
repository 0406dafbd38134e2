"""Migration's checks that need no guest: where the destination listens, and the guest's
spec on the destination (tests/vm/test_live_migration.py moves real guests)."""

from __future__ import annotations

import json
import subprocess
import uuid
from pathlib import Path

import pytest

from souverain.compute.qemu import Disk, DriverError, GuestSpec, Nic, QemuDriver
from souverain.compute.qemu_migration import (
    Endpoint,
    cold_migrate,
    live_migrate,
    spec_on,
)


def test_an_endpoint_is_an_ip_address_and_a_tcp_port() -> None:
    assert Endpoint("127.0.0.1", 4444).uri == "tcp:127.0.0.1:4444"
    assert Endpoint("fd00::7", 4444).uri == "tcp:[fd00::7]:4444"
    assert Endpoint("fd00::7", 4444).socket_address() == {"host": "fd00::7", "port": "4444"}
    with pytest.raises(DriverError, match="underlay address"):
        Endpoint("dest.example", 4444)
    with pytest.raises(DriverError, match="underlay address"):
        Endpoint("127.0.0.1; rm -rf /", 4444)
    for port in (0, 65536, -1):
        with pytest.raises(DriverError, match="TCP port"):
            Endpoint("127.0.0.1", port)


def spec(tmp_path: Path) -> GuestSpec:
    server = str(uuid.uuid4())
    directory = tmp_path / "a" / "instances" / server
    return GuestSpec(
        uuid=server,
        name="x",
        vcpus=1,
        memory_mib=64,
        disk=directory / "disk.qcow2",
        config_drive=directory / "disk.config",
        nics=(Nic(mac="fa:16:3e:00:00:01", kind="tap", ifname="tapa", id="nic-1"),),
    )


def test_the_spec_on_the_destination_has_its_files_there(tmp_path: Path) -> None:
    source = spec(tmp_path)
    dest = QemuDriver(tmp_path / "b")
    moved = spec_on(dest, source)
    assert moved.disk == dest.instance_dir(source.uuid) / "disk.qcow2"
    assert moved.config_drive == dest.instance_dir(source.uuid) / "disk.config"
    assert moved.nics == source.nics
    renamed = (Nic(mac="FA:16:3E:00:00:01", kind="tap", ifname="tapb", id="nic-1"),)
    assert spec_on(dest, source, renamed).nics == renamed


@pytest.mark.parametrize(
    "nics",
    [
        (),
        (Nic(mac="fa:16:3e:00:00:02", kind="tap", ifname="tapb", id="nic-1"),),
        (Nic(mac="fa:16:3e:00:00:01", kind="tap", ifname="tapb", id="nic-2"),),
    ],
)
def test_the_guest_keeps_its_nics_on_the_destination(tmp_path: Path, nics: tuple[Nic]) -> None:
    with pytest.raises(DriverError, match="MACs and ids"):
        spec_on(QemuDriver(tmp_path / "b"), spec(tmp_path), nics)


def test_a_guest_that_is_not_running_here_is_not_live_migrated(tmp_path: Path) -> None:
    source, dest = QemuDriver(tmp_path / "a"), QemuDriver(tmp_path / "b")
    guest = spec(tmp_path)
    endpoint = Endpoint("127.0.0.1", 4444)
    with pytest.raises(DriverError, match="not running"):
        live_migrate(source, dest, guest, dest_base=tmp_path, nbd=endpoint, stream=endpoint)
    assert not (tmp_path / "b" / "instances").exists()


def test_a_guest_with_volumes_is_not_live_migrated(tmp_path: Path) -> None:
    guest = spec(tmp_path)
    guest = GuestSpec(**{**guest.__dict__, "disks": (Disk(id="vol-1", path=tmp_path / "v"),)})
    endpoint = Endpoint("127.0.0.1", 4444)
    with pytest.raises(DriverError, match="detach them"):
        live_migrate(
            QemuDriver(tmp_path / "a"), QemuDriver(tmp_path / "b"), guest,
            dest_base=tmp_path, nbd=endpoint, stream=endpoint,
        )  # fmt: skip


def stopped_guest(tmp_path: Path) -> tuple[GuestSpec, Path]:
    """A guest's overlay (one written cluster) and config drive, on a 1 MiB image."""
    guest = spec(tmp_path)
    base = tmp_path / "base.qcow2"
    guest.disk.parent.mkdir(parents=True)
    subprocess.run(["qemu-img", "create", "-q", "-f", "qcow2", str(base), "1M"], check=True)
    subprocess.run(
        ["qemu-img", "create", "-q", "-f", "qcow2", "-b", str(base), "-F", "qcow2",
         str(guest.disk)],
        check=True,
    )  # fmt: skip
    subprocess.run(["qemu-io", "-c", "write -P 0x5a 0 64k", str(guest.disk)], check=True,
                   capture_output=True)  # fmt: skip
    assert guest.config_drive is not None
    guest.config_drive.write_bytes(b"config")
    return guest, base


def test_a_destination_with_files_of_the_guest_is_refused(tmp_path: Path) -> None:
    source, dest = QemuDriver(tmp_path / "a"), QemuDriver(tmp_path / "b")
    guest, base = stopped_guest(tmp_path)
    leftover = dest.instance_dir(guest.uuid)
    leftover.mkdir(parents=True)
    (leftover / "disk.qcow2").write_bytes(b"an earlier attempt")
    with pytest.raises(DriverError, match="abort the earlier migration"):
        cold_migrate(source, dest, guest, dest_base=base, start=False)
    assert (leftover / "disk.qcow2").read_bytes() == b"an earlier attempt"
    assert guest.disk.exists()


def test_a_cold_copy_points_the_overlay_at_the_destination_image(tmp_path: Path) -> None:
    source, dest = QemuDriver(tmp_path / "a"), QemuDriver(tmp_path / "b")
    guest, base = stopped_guest(tmp_path)
    dest_base = tmp_path / "b-base.qcow2"
    dest_base.write_bytes(base.read_bytes())
    moved = cold_migrate(source, dest, guest, dest_base=dest_base, start=False)
    info = json.loads(
        subprocess.run(
            ["qemu-img", "info", "--output=json", str(moved.disk)],
            check=True, capture_output=True, text=True,
        ).stdout
    )  # fmt: skip
    assert info["backing-filename"] == str(dest_base.resolve())
    assert info["backing-filename-format"] == "qcow2"
    compared = subprocess.run(
        ["qemu-img", "compare", str(guest.disk), str(moved.disk)], check=False
    )
    assert compared.returncode == 0
    assert moved.config_drive is not None
    assert moved.config_drive.read_bytes() == b"config"
    assert guest.disk.exists()  # the source keeps its files until the move is confirmed
    assert not list(moved.disk.parent.glob(".*.tmp"))
