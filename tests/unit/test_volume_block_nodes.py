"""What QEMU is told about a volume: a file under a qcow2 node, or an RBD image opened by
QEMU's own rbd driver under a raw node; a disk that names neither (or both) is refused."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from souverain.common.ceph import CephAccess, RbdRef
from souverain.compute.qemu_guest import Disk, DriverError, blockdev_nodes, disk_args, secret_id
from souverain.volume.backend import VolumeBackend

VOLUME = "0123abcd-4567-89ab-cdef-0123456789ab"
ACCESS = CephAccess(conf=Path("/etc/ceph/test.conf"), user="souverain")


def test_rbd_volume_is_qemus_rbd_driver_under_a_raw_node() -> None:
    disk = Disk(
        id=f"vol-{VOLUME}",
        format="raw",
        rbd=RbdRef("souverain-volumes", f"volume-{VOLUME}"),
        ceph=ACCESS,
    )
    file_node, format_node = blockdev_nodes(disk)
    assert file_node["driver"] == "rbd"
    assert file_node["pool"] == "souverain-volumes" and file_node["image"] == f"volume-{VOLUME}"
    assert file_node["conf"] == "/etc/ceph/test.conf" and file_node["user"] == "souverain"
    assert "filename" not in file_node and file_node["discard"] == "unmap"
    assert format_node["driver"] == "raw" and format_node["file"] == file_node["node-name"]
    args = disk_args(disk, None)
    assert json.loads(args[1])["driver"] == "rbd"


def test_file_volume_keeps_its_file_node() -> None:
    file_node, format_node = blockdev_nodes(Disk(id="vol-a", path=Path("/v/a.qcow2")))
    assert file_node["driver"] == "file" and file_node["filename"] == "/v/a.qcow2"
    assert format_node["driver"] == "qcow2"


@pytest.mark.parametrize(
    ("disk", "why"),
    [
        (Disk(id="vol-a"), "needs a file or an RBD image"),
        (
            Disk(id="vol-a", path=Path("/v/a"), format="raw", rbd=RbdRef("p", "i"), ceph=ACCESS),
            "needs a file or an RBD image",
        ),
        (Disk(id="vol-a", format="qcow2", rbd=RbdRef("p", "i"), ceph=ACCESS), "is raw"),
        (Disk(id="vol-a", format="raw", rbd=RbdRef("p", "i")), "access"),
    ],
)
def test_a_disk_naming_neither_or_both_or_half_is_refused(disk: Disk, why: str) -> None:
    with pytest.raises(DriverError, match=why):
        disk_args(disk, None)


def test_file_backend_locates_a_volume_by_its_file(tmp_path: Path) -> None:
    backend = VolumeBackend(tmp_path)
    where = backend.location(VOLUME)
    assert where.format == "qcow2" and where.rbd is None
    assert where.path == tmp_path / f"volume-{VOLUME}.qcow2"
    assert backend.snapshot_dependents(VOLUME, VOLUME) == 0
    with pytest.raises(ValueError, match="not a volume"):
        backend.location("../../etc/passwd")


def test_encrypted_rbd_volume_is_a_luks_node_over_qemus_rbd_driver() -> None:
    """A bare LUKS container in the image: QEMU's luks driver with the secret's id over the
    rbd file node; the command line names a pipe, never the passphrase."""
    disk = Disk(
        id=f"vol-{VOLUME}",
        format="luks",
        rbd=RbdRef("souverain-volumes", f"volume-{VOLUME}"),
        ceph=ACCESS,
        passphrase="ab" * 32,
    )
    file_node, format_node = blockdev_nodes(disk)
    assert file_node["driver"] == "rbd" and format_node["driver"] == "luks"
    assert format_node["key-secret"] == secret_id(disk.id) and "encrypt" not in format_node
    assert format_node["file"] == file_node["node-name"]
    args = disk_args(disk, None, secret_fd=7)
    assert f"secret,id={secret_id(disk.id)},format=raw,file=/dev/fd/7" in args
    assert "ab" * 32 not in " ".join(args) and "ab" * 32 not in repr(disk)


@pytest.mark.parametrize(
    ("disk", "why"),
    [
        (
            Disk(id="vol-a", format="luks", rbd=RbdRef("p", "i"), ceph=ACCESS),
            "needs its passphrase",
        ),
        (
            Disk(id="vol-a", format="raw", rbd=RbdRef("p", "i"), ceph=ACCESS, passphrase="k"),
            "is a LUKS qcow2 or a LUKS RBD image",
        ),
    ],
)
def test_a_luks_disk_without_its_key_or_a_raw_one_with_a_key_is_refused(
    disk: Disk, why: str
) -> None:
    with pytest.raises(DriverError, match=why):
        disk_args(disk, None, secret_fd=7)
