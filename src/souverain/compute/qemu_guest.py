"""What QEMU is told about a guest: its spec, its devices, and their command-line and QMP
forms. Pure data and checks; nothing here touches the host.
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass, field
from enum import IntEnum
from pathlib import Path
from typing import Any

from souverain.common.ceph import CephAccess, CephConnection, RbdRef

MAC_RE = re.compile(r"^[0-9a-f]{2}(:[0-9a-f]{2}){5}$")
IFNAME_RE = re.compile(r"^[A-Za-z0-9_.-]{1,15}$")
# A volume's QEMU id names its device; its block nodes are named after it (see node_names).
DISK_ID_RE = re.compile(r"^[A-Za-z][A-Za-z0-9_.-]{0,127}$")
NODE_NAME_MAX = 31  # QEMU's limit
DISK_SERIAL_RE = re.compile(r"^[A-Za-z0-9_.-]{0,20}$")
DISK_FORMATS = ("qcow2", "raw", "luks")
# Disks the kernel names before the volumes: the root disk (vda) and the config drive (vdb).
DISKS_BEFORE_VOLUMES = 2


class PowerState(IntEnum):
    """Nova's power_state numbers, as the compute API reports them."""

    NOSTATE = 0
    RUNNING = 1
    PAUSED = 3
    SHUTDOWN = 4
    CRASHED = 6
    SUSPENDED = 7


@dataclass(frozen=True)
class Nic:
    """One virtio-net NIC: QEMU user networking (isolated, restrict=on) or an existing tap.

    `id` (same rules as a Disk's, e.g. "nic-<port id>") names the device so it can be
    unplugged and put back in its PCI slot on resume; hot-plugged NICs must have one.
    """

    mac: str
    kind: str = "user"
    ifname: str | None = None
    id: str | None = None


@dataclass(frozen=True)
class Disk:
    """A volume as the guest sees it: a virtio-blk device over a qcow2 or raw file, or over
    an RBD image (`rbd`, raw) that QEMU's own rbd driver opens with `ceph` (guest I/O goes
    from QEMU to the OSDs).

    `id` names the QEMU device (letters, digits, '-', '_', '.'; starts with a letter; at most
    128 characters, e.g. "vol-<volume id>"); its block nodes are named after it.
    `serial` (at most 20 characters) is what the guest reads in /sys/block/vdX/serial.
    `passphrase`: the volume is a LUKS-encrypted qcow2 file, or an RBD image holding a bare
    LUKS container (`format` "luks"), that QEMU opens with it (a QMP secret object, or a
    pipe at start); never in argv, a file or a repr.
    """

    id: str
    path: Path | None = None
    format: str = "qcow2"
    readonly: bool = False
    serial: str = ""
    rbd: RbdRef | None = None
    ceph: CephAccess | None = None
    passphrase: str | None = field(default=None, repr=False)


@dataclass(frozen=True)
class GuestSpec:
    """What QEMU needs to run one server; the service builds it from the database."""

    uuid: str
    name: str
    vcpus: int
    memory_mib: int
    disk: Path
    config_drive: Path | None = None
    nics: tuple[Nic, ...] = ()
    kernel: Path | None = None
    ramdisk: Path | None = None
    kernel_cmdline: str = "console=ttyS0"
    # Volumes attached at start, after the root disk and the config drive, in this order.
    # resume() must be given the same disks as the guest had when it was suspended.
    disks: tuple[Disk, ...] = ()
    # the root disk is a LUKS qcow2 (a server booted from an encrypted volume) QEMU opens
    # with this passphrase, read from a pipe at start; never in argv, a file or a repr
    disk_passphrase: str | None = field(default=None, repr=False)


class DriverError(Exception):
    """A host operation failed; the message says what a customer or operator can act on."""


def guest_device_name(index_in_disks: int, *, has_config_drive: bool = True) -> str:
    """The /dev name a Linux guest gives GuestSpec.disks[index_in_disks] at boot.

    virtio-blk disks are named in probe order (PCI slot order): root disk vda, config drive
    vdb, then the volumes. Right for disks on the command line at start. A hot-plugged disk
    takes the lowest free index instead: after vdc is detached, the next attach is vdc again.
    So for hot-plug, pass the lowest index not used by the disks attached now. The guest may
    still name disks otherwise (udev rules, another driver); /dev/disk/by-id/virtio-<serial>
    is the stable name.
    """
    if index_in_disks < 0:
        raise ValueError("a disk index is not negative")
    index = index_in_disks + (DISKS_BEFORE_VOLUMES if has_config_drive else 1)
    # the kernel's letters: a..z, aa..zz, aaa.. (virtblk_name_format)
    letters = ""
    index += 1
    while index > 0:
        index, remainder = divmod(index - 1, 26)
        letters = chr(ord("a") + remainder) + letters
    return f"/dev/vd{letters}"


# The KVM probe guest: a 230-byte multiboot kernel that enters long mode, fills 24 MiB of
# RAM 32 times and writes "PLW" to the debug port 0x402. On hosts where /dev/kvm opens and
# even runs the BIOS but a real kernel never gets anywhere (nested virtualisation that traps
# every page fault), the "W" never comes; a working KVM prints it in milliseconds.
# Source (GNU as, `as --32`, `ld -m elf_i386 -Ttext=0 --oformat binary`):
#   multiboot header (a.out kludge, load at 1 MiB); cli; out 'P'; zero 3 pages of tables at
#   1 MiB+16K; PML4 -> PDPT -> PD mapping the first GiB with 2 MiB pages; CR3, CR4.PAE,
#   EFER.LME, CR0.PG|PE; lgdt with a 64-bit code segment; ljmp 0x08:long64;
#   long64: out 'L'; ebx=32; loop { rdi=4 MiB; rcx=3 Mi; rax=rbx; rep stosq; dec ebx };


def nic_args(index: int, nic: Nic, slot: int | None = None) -> list[str]:
    netdev_id = f"{check_disk_id(nic.id)}-net" if nic.id else f"net{index}"
    mac = nic.mac.lower()
    if not MAC_RE.match(mac):
        raise DriverError(f"invalid MAC address {nic.mac!r}")
    if nic.kind == "user":
        netdev = f"user,id={netdev_id},restrict=on"
    elif nic.kind == "tap":
        if nic.ifname is None or not IFNAME_RE.match(nic.ifname):
            raise DriverError(f"invalid tap device name {nic.ifname!r}")
        netdev = f"tap,id={netdev_id},ifname={nic.ifname},script=no,downscript=no"
    else:
        raise DriverError(f"unknown NIC kind {nic.kind!r}")
    device = f"virtio-net-pci,netdev={netdev_id},mac={mac}"
    if nic.id:
        device += f",id={nic.id}"
    if slot is not None:
        device += f",addr={slot:#x}"
    return ["-netdev", netdev, "-device", device]


def check_disk_id(disk_id: str) -> str:
    if not DISK_ID_RE.match(disk_id):
        raise DriverError(
            f"invalid volume device id {disk_id!r} (a letter, then up to 127 letters, digits, "
            "'-', '_' or '.')"
        )
    return disk_id


def check_disk(disk: Disk) -> None:
    check_disk_id(disk.id)
    if disk.format not in DISK_FORMATS:
        raise DriverError(f"unsupported volume format {disk.format!r} (raw, qcow2 or luks)")
    if (disk.path is None) == (disk.rbd is None):
        raise DriverError(f"volume {disk.id} needs a file or an RBD image (one of them)")
    if disk.rbd is not None and (disk.ceph is None or disk.format == "qcow2"):
        raise DriverError(f"RBD volume {disk.id} is raw or LUKS and needs the cluster's access")
    if disk.format == "luks" and disk.passphrase is None:
        raise DriverError(f"LUKS volume {disk.id} needs its passphrase")
    if disk.passphrase is not None and disk.format == "raw":
        raise DriverError(f"encrypted volume {disk.id} is a LUKS qcow2 or a LUKS RBD image")
    if not DISK_SERIAL_RE.match(disk.serial):
        raise DriverError(
            f"invalid volume serial {disk.serial!r} (up to 20 letters, digits, '-', '_', '.')"
        )


def node_names(disk_id: str) -> tuple[str, str]:
    """The volume's format node and file node: "<id>" and "<id>-file" when that fits QEMU's
    31 characters, else the id's first 17 characters and 8 hex digits of its hash."""
    stem = disk_id
    if len(disk_id) + len("-file") > NODE_NAME_MAX:
        stem = f"{disk_id[:17]}-{hashlib.sha256(disk_id.encode()).hexdigest()[:8]}"
    return stem, f"{stem}-file"


def blockdev_nodes(disk: Disk) -> list[dict[str, Any]]:
    """blockdev-add arguments: the file node (a file, or QEMU's rbd driver on the RBD
    image), then the format node over it."""
    node, file = node_names(disk.id)
    common = {"read-only": disk.readonly, "discard": "unmap", "cache": {"direct": False}}
    if disk.rbd is not None and disk.ceph is not None:
        rbd = CephConnection(disk.ceph).qemu_blockdev(disk.rbd.pool, disk.rbd.image, file)
        file_node = {**rbd, **common}
    else:
        file_node = {"driver": "file", "node-name": file, "filename": str(disk.path), **common}
    format_node = {"driver": disk.format, "node-name": node, "file": file, **common}
    if disk.format == "luks":  # a bare container: the key is the format's own option
        format_node["key-secret"] = secret_id(disk.id)
    elif disk.passphrase is not None:
        format_node["encrypt"] = {"format": "luks", "key-secret": secret_id(disk.id)}
    return [file_node, format_node]


# the id of the QEMU secret object holding an encrypted root disk's passphrase
ROOT_SECRET_ID = "root-key"  # noqa: S105 - a QEMU object id, not a secret


def secret_id(disk_id: str) -> str:
    """The id of the QEMU secret object holding an encrypted volume's passphrase."""
    return f"{node_names(disk_id)[0]}-key"


def secret_object(disk: Disk) -> dict[str, Any]:
    """QMP object-add arguments for an encrypted volume's passphrase (sent over the
    monitor socket only)."""
    assert disk.passphrase is not None
    return {
        "qom-type": "secret",
        "id": secret_id(disk.id),
        "data": disk.passphrase,
        "format": "raw",
    }


def device_properties(disk: Disk, slot: int | None = None) -> dict[str, Any]:
    drive, _ = node_names(disk.id)
    device: dict[str, Any] = {"driver": "virtio-blk-pci", "id": disk.id, "drive": drive}
    if disk.serial:
        device["serial"] = disk.serial
    if slot is not None:
        device["addr"] = f"{slot:#x}"
    return device


def disk_args(disk: Disk, slot: int | None, secret_fd: int | None = None) -> list[str]:
    """The command line for a volume: the same nodes and device as attach_disk makes (JSON,
    so a path needs no escaping). An encrypted volume's passphrase is read by QEMU from
    `secret_fd`, a pipe it inherits: the command line names the pipe, never the secret."""
    check_disk(disk)
    argv: list[str] = []
    if disk.passphrase is not None:
        if secret_fd is None:
            raise DriverError(f"encrypted volume {disk.id} needs its passphrase's pipe")
        argv += ["-object", f"secret,id={secret_id(disk.id)},format=raw,file=/dev/fd/{secret_fd}"]
    for node in blockdev_nodes(disk):
        argv += ["-blockdev", json.dumps(node)]
    return [*argv, "-device", json.dumps(device_properties(disk, slot))]
