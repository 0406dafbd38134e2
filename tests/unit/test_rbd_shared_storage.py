"""Root disks on RBD are Nova's shared storage: what the API then accepts, and how the
driver names the disk to QEMU (no cluster needed for either)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from souverain.common.ceph import CephAccess, CephConnection, RbdRef
from souverain.common.errors import BadRequest
from souverain.compute.api_actions import _evacuate_args
from souverain.compute.api_migrations import live_migrate_args
from souverain.compute.qemu import QemuDriver
from souverain.compute.qemu_guest import DriverError, GuestSpec
from souverain.compute.rbd_disks import POINTER, RbdRootDisks

UUID = "0c6f0f1e-8a4e-4c1b-9a43-5a4d1e0c9b2f"


@pytest.mark.parametrize("block", [False, "false"])
def test_block_migration_false_needs_shared_storage(block: object) -> None:
    version = (2, 24) if block == "false" else (2, 30)
    args: dict[str, object] = {"block_migration": block, "host": None}
    if version < (2, 25):
        args["disk_over_commit"] = False
    with pytest.raises(BadRequest, match="share no instance storage"):
        live_migrate_args(args, version)
    assert live_migrate_args(args, version, shared_storage=True) is None


def test_evacuate_on_shared_storage_needs_rbd_disks() -> None:
    with pytest.raises(BadRequest, match="share no instance storage"):
        _evacuate_args({"onSharedStorage": True}, (2, 13))
    assert _evacuate_args({"onSharedStorage": True}, (2, 13), shared_storage=True) == (None, None)
    with pytest.raises(BadRequest, match="a boolean"):  # still checked on shared storage
        _evacuate_args({"onSharedStorage": "maybe"}, (2, 13), shared_storage=True)


def test_an_rbd_root_disk_is_opened_by_qemus_rbd_driver(tmp_path: Path) -> None:
    driver = QemuDriver(tmp_path / "q")
    assert driver.root_disk_path(UUID).name == "disk.qcow2"  # local files by default
    ceph = CephConnection(CephAccess(conf=tmp_path / "ceph, odd.conf", user="cinder"))
    driver.rbd_disks = RbdRootDisks(ceph, "disks")
    pointer = driver.root_disk_path(UUID)
    assert pointer.name == POINTER  # an rbd host's new server gets a pointer, not a file
    pointer.parent.mkdir(parents=True)
    pointer.write_text(json.dumps({"pool": "disks", "image": f"{UUID}_disk"}))
    drive = driver._root_drive(pointer)
    assert drive.startswith("driver=raw,file.driver=rbd,file.pool=disks,")
    assert f"file.image={UUID}_disk," in drive and "file.user=cinder," in drive
    assert "ceph,, odd.conf" in drive  # a comma in a path is doubled for QEMU
    assert drive.endswith("if=none,id=root,cache=writeback,discard=unmap")
    driver.rbd_disks = None
    with pytest.raises(Exception, match="no Ceph access"):  # a host without the cluster
        driver._root_drive(pointer)


def test_an_encrypted_rbd_root_volume_is_qemus_luks_driver_over_its_rbd_driver(
    tmp_path: Path,
) -> None:
    """The key comes from the pipe QEMU inherits (a secret object), never the command line;
    a server's own RBD clone is never encrypted, so a passphrase for one is refused."""
    driver = QemuDriver(tmp_path / "q")
    access = CephAccess(conf=tmp_path / "ceph.conf", user="cinder")
    pointer = driver.volume_root(UUID, RbdRef("volumes", "volume-x"), access)
    spec = GuestSpec(UUID, "s", 1, 64, pointer, disk_passphrase="00" * 32)
    argv = driver._root_args(spec, 7)
    assert argv[:2] == ["-object", "secret,id=root-key,format=raw,file=/dev/fd/7"]
    assert argv[2] == "-drive" and "00" * 32 not in " ".join(argv)
    assert argv[3].startswith("driver=luks,key-secret=root-key,file.driver=rbd,file.pool=volumes,")
    with pytest.raises(DriverError, match="passphrase's pipe"):
        driver._root_args(spec, None)
    clone = pointer.with_name(POINTER)
    clone.write_text(json.dumps({"pool": "disks", "image": f"{UUID}_disk"}))
    with pytest.raises(DriverError, match="LUKS qcow2 file or an RBD volume"):
        driver._root_args(GuestSpec(UUID, "s", 1, 64, clone, disk_passphrase="00" * 32), 7)
