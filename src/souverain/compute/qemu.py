"""The compute host driver: one detached QEMU process per server, driven over QMP.

Everything here is a host side effect (files under `root`, QEMU processes, QMP sockets) and
is idempotent; no state lives in this object beyond a cached accelerator probe, so a control
plane restarted after kill -9 finds its guests again from pidfiles and /proc. No HTTP, no
database. Calls block (QMP round trips, waits for QEMU): from async code, run them in a thread.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import fcntl
import hashlib
import itertools
import json
import os
import platform
import re
import shlex
import shutil
import signal
import subprocess
import tempfile
import threading
import time
import uuid as uuid_module
from collections.abc import Iterator
from dataclasses import dataclass
from enum import IntEnum
from pathlib import Path
from typing import Any

from qemu.qmp import ConnectError, QMPClient
from qemu.qmp.qmp_client import GreetingError, NegotiationError

from souverain.compute.configdrive import build_config_drive

GIB = 1024**3
QMP_TIMEOUT = 10.0
QMP_CONNECT_ATTEMPTS = 3
START_TIMEOUT = 60.0
KVM_PROBE_TIMEOUT = 4.0
MAC_RE = re.compile(r"^[0-9a-f]{2}(:[0-9a-f]{2}){5}$")
IFNAME_RE = re.compile(r"^[A-Za-z0-9_.-]{1,15}$")
IMAGE_ID_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$")
# A volume's QEMU id names its device; its block nodes are named after it (see _node_names).
DISK_ID_RE = re.compile(r"^[A-Za-z][A-Za-z0-9_.-]{0,127}$")
NODE_NAME_MAX = 31  # QEMU's limit
DISK_SERIAL_RE = re.compile(r"^[A-Za-z0-9_.-]{0,20}$")
DISK_FORMATS = ("qcow2", "raw")
DETACH_POLL_INTERVAL = 0.1
NODE_RELEASE_TIMEOUT = 5.0
# Disks the kernel names before the volumes: the root disk (vda) and the config drive (vdb).
_DISKS_BEFORE_VOLUMES = 2

# Runstates (QMP query-status) and what Nova calls them.
_CRASHED_STATES = {"guest-panicked", "internal-error"}
_SHUTDOWN_STATES = {"shutdown"}


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
    """A volume as the guest sees it: a virtio-blk device over a qcow2 or raw file.

    `id` names the QEMU device (letters, digits, '-', '_', '.'; starts with a letter; at most
    128 characters, e.g. "vol-<volume id>"); its block nodes are named after it.
    `serial` (at most 20 characters) is what the guest reads in /sys/block/vdX/serial.
    """

    id: str
    path: Path
    format: str = "qcow2"
    readonly: bool = False
    serial: str = ""


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
    index = index_in_disks + (_DISKS_BEFORE_VOLUMES if has_config_drive else 1)
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
#   out 'W', '\n'; hlt loop.
_KVM_PROBE_KERNEL = bytes.fromhex(
    "02b0ad1b00000100fe4f51e40000100000001000e60010000080100020001000fa66ba0204b050eebf004010"
    "0031c0b9000c0000f3abc7050040100003501000c7050050100003601000bf00601000b883000000b9000200"
    "008907050000200083c708e2f4b8004010000f22d80f20e083c8200f22e0b9800000c00f320d000100000f30"
    "0f20c00d010000800f22c00f0115e0001000ea9d001000080066ba0204b04ceebb2000000048c7c700004000"
    "48c7c1000030004889d8f348abffcb75e8b057eeb00aeef4ebfd8db6000000000000000000000000ffff0000"
    "009aaf000f00d0001000"
)


class QemuDriver:
    """Runs guests under `root` (<data_dir>/compute): base images, instance dirs, sockets."""

    def __init__(
        self,
        root: Path,
        console_max_bytes: int = 1_048_576,
        qemu_binary: str = "qemu-system-x86_64",
        qemu_img: str = "qemu-img",
        accelerator: str | None = None,
    ) -> None:
        self.root = root.resolve()
        self.console_max_bytes = console_max_bytes
        self.qemu_binary = qemu_binary
        self.qemu_img = qemu_img
        self._accelerator = accelerator
        self._accelerator_lock = threading.Lock()
        # Unix socket paths must stay under 108 bytes whatever the data dir: sockets live in
        # a short run dir named after a hash of the root, so two roots never share one.
        digest = hashlib.sha256(str(self.root).encode()).hexdigest()[:8]
        run_base = Path("/run/souverain") if os.geteuid() == 0 else Path(tempfile.gettempdir())
        if os.geteuid() != 0:
            digest = f"souverain-{os.geteuid()}-{digest}"
        self.run_dir = run_base / digest

    # ----------------------------------------------------------------- paths and probes

    def instance_dir(self, uuid: str) -> Path:
        return self.root / "instances" / _checked_uuid(uuid)

    def _pidfile(self, uuid: str) -> Path:
        return self.instance_dir(uuid) / "qemu.pid"

    def _console(self, uuid: str) -> Path:
        return self.instance_dir(uuid) / "console.log"

    def _state_file(self, uuid: str) -> Path:
        return self.instance_dir(uuid) / "suspended.state"

    def _state_slots_file(self, uuid: str) -> Path:
        """The PCI slot of each volume at suspend time: resume must plug them in the same."""
        return self.instance_dir(uuid) / "suspended.disks.json"

    def _qmp_socket(self, uuid: str) -> Path:
        return self.run_dir / f"{_checked_uuid(uuid)}.qmp"

    def accelerator(self) -> str:
        """ "kvm" if a probe guest really runs under KVM here, else "tcg"; probed once."""
        with self._accelerator_lock:  # concurrent builds probe once, not once each
            if self._accelerator is None:
                self._accelerator = self._cached_or_probed_accelerator()
            return self._accelerator

    def _cached_or_probed_accelerator(self) -> str:
        version = subprocess.run(
            [self.qemu_binary, "--version"], capture_output=True, text=True, check=False
        ).stdout.splitlines()
        key = {"kernel": platform.release(), "qemu": version[0] if version else ""}
        # a property of the host, not of one data dir: cached beside every root's run dir
        cache = self.run_dir.parent / "accelerator.json"
        with contextlib.suppress(OSError, ValueError, KeyError):
            cached = json.loads(cache.read_text())
            if cached["key"] == key and cached["accelerator"] in ("kvm", "tcg"):
                return str(cached["accelerator"])
        result = "kvm" if self._kvm_runs_a_guest() else "tcg"
        cache.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        _write_atomically(cache, json.dumps({"key": key, "accelerator": result}).encode())
        return result

    def _kvm_runs_a_guest(self) -> bool:
        if not os.access("/dev/kvm", os.R_OK | os.W_OK):
            return False
        with tempfile.TemporaryDirectory(prefix="kvm-probe-") as tmp:
            kernel, out = Path(tmp) / "probe.bin", Path(tmp) / "debugcon.log"
            kernel.write_bytes(_KVM_PROBE_KERNEL)
            argv = [
                self.qemu_binary, "-accel", "kvm", "-nodefaults", "-no-user-config",
                "-display", "none", "-m", "64", "-kernel", str(kernel),
                "-chardev", f"file,id=dbg,path={_opt(out)}",
                "-device", "isa-debugcon,iobase=0x402,chardev=dbg",
            ]  # fmt: skip
            proc = subprocess.Popen(
                argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
            )
            try:
                deadline = time.monotonic() + KVM_PROBE_TIMEOUT
                while time.monotonic() < deadline and proc.poll() is None:
                    with contextlib.suppress(OSError):
                        if b"PLW" in out.read_bytes():
                            return True
                    time.sleep(0.05)
                return False
            finally:
                proc.kill()
                proc.wait()

    # ----------------------------------------------------------------- disks

    def cache_base_image(self, image_id: str, source: Path) -> Path:
        """Hard-link (or copy) an image into root/base so deleting it in Glance breaks nothing."""
        if not IMAGE_ID_RE.match(image_id):
            raise DriverError(f"invalid image id {image_id!r}")
        base_dir = self.root / "base"
        base_dir.mkdir(parents=True, exist_ok=True)
        dest = base_dir / image_id
        if dest.exists():
            return dest
        # one temp name per thread: concurrent builds of one image must not take each other's
        tmp = base_dir / f".{image_id}.{os.getpid()}.{threading.get_ident()}.tmp"
        tmp.unlink(missing_ok=True)
        try:
            try:
                os.link(source, tmp)
            except OSError as exc:
                if exc.errno not in (errno.EXDEV, errno.EPERM, errno.EMLINK, errno.ENOTSUP):
                    raise
                with source.open("rb") as src, tmp.open("wb") as dst:
                    shutil.copyfileobj(src, dst, 1 << 20)
                    dst.flush()
                    os.fsync(dst.fileno())
            os.replace(tmp, dest)
        except FileNotFoundError as exc:
            raise DriverError(f"image file for {image_id} not found: {source}") from exc
        finally:
            tmp.unlink(missing_ok=True)
        _fsync_dir(base_dir)
        return dest

    def create_root_disk(self, uuid: str, base: Path, base_format: str, size_gib: int) -> Path:
        """A qcow2 overlay on `base`, at least `size_gib` GiB; an existing disk is kept."""
        if base_format not in ("raw", "qcow2"):
            raise DriverError(f"unsupported image disk format {base_format!r} (raw or qcow2)")
        directory = self.instance_dir(uuid)
        directory.mkdir(parents=True, exist_ok=True)
        disk = directory / "disk.qcow2"
        if disk.exists():
            return disk
        info = self._img_info(base, base_format)
        size = max(size_gib * GIB, int(info["virtual-size"]))
        tmp = directory / ".disk.qcow2.tmp"
        tmp.unlink(missing_ok=True)
        self._qemu_img(
            "create", "-q", "-f", "qcow2", "-b", str(base.resolve()), "-F", base_format,
            str(tmp), str(size),
        )  # fmt: skip
        _fsync_file(tmp)
        os.replace(tmp, disk)
        _fsync_dir(directory)
        return disk

    def resize_root_disk(self, uuid: str, size_gib: int) -> None:
        """Grow the root disk to `size_gib` GiB while the server is stopped; never shrink."""
        if self.pid(uuid) is not None:
            raise DriverError("the server must be stopped to resize its disk")
        disk = self.instance_dir(uuid) / "disk.qcow2"
        current = int(self._img_info(disk, "qcow2")["virtual-size"])
        if size_gib * GIB < current:
            raise DriverError(f"disk is {current} bytes; it can grow but not shrink")
        if size_gib * GIB > current:
            self._qemu_img("resize", "-q", "-f", "qcow2", str(disk), str(size_gib * GIB))

    def snapshot_disk(self, uuid: str, dest: Path) -> None:
        """A standalone compressed qcow2 of the root disk (backing chain flattened).

        A running guest is paused for the copy (QMP stop flushes its writes) and resumed after.
        """
        disk = self.instance_dir(uuid) / "disk.qcow2"
        resume = False
        if self.pid(uuid) is not None and self._status(uuid) == "running":
            self._qmp(uuid, "stop")
            resume = True
        tmp = dest.with_name(f".{dest.name}.{os.getpid()}.{threading.get_ident()}.tmp")
        try:
            self._qemu_img("convert", "-U", "-c", "-f", "qcow2", "-O", "qcow2", str(disk), str(tmp))
            _fsync_file(tmp)
            os.replace(tmp, dest)
            _fsync_dir(dest.parent)
        finally:
            tmp.unlink(missing_ok=True)
            if resume:
                self._qmp(uuid, "cont")

    def write_config_drive(
        self,
        uuid: str,
        meta_data: dict[str, Any],
        user_data: bytes | None,
        network_data: dict[str, Any],
        vendor_data: dict[str, Any] | None = None,
    ) -> Path:
        directory = self.instance_dir(uuid)
        directory.mkdir(parents=True, exist_ok=True)
        dest = directory / "disk.config"
        build_config_drive(dest, meta_data, user_data, network_data, vendor_data)
        return dest

    # ----------------------------------------------------------------- processes

    def start(self, spec: GuestSpec, paused: bool = False) -> int:
        """Start the guest as a detached QEMU; a running guest is left alone. Returns its pid."""
        with self._instance_lock(spec.uuid):
            existing = self.pid(spec.uuid)
            if existing is not None:
                return existing
            return self._launch(spec, paused=paused, incoming=False)

    def resume(self, spec: GuestSpec) -> int:
        """Start the guest again from its suspended state file and let it run on.

        The saved state holds every device: `spec` must name the volumes the guest had when
        suspended (cold- and hot-plugged alike, any order); they go back into the PCI slots
        recorded then. Another set is refused before QEMU starts (the state stays).
        """
        with self._instance_lock(spec.uuid):
            existing = self.pid(spec.uuid)
            if existing is not None:
                return existing
            state = self._state_file(spec.uuid)
            if not state.exists():
                raise DriverError("the server has no saved state to resume from")
            slots = self._suspended_slots(spec)
            pid = self._launch(spec, paused=True, incoming=True, slots=slots)
            try:
                self._qmp(spec.uuid, "migrate-incoming", uri=f"exec:cat {shlex.quote(str(state))}")
                self._wait_for(
                    lambda: self._status(spec.uuid) != "inmigrate",
                    timeout=300,
                    what="restoring the saved state",
                )
                status = self._status(spec.uuid)
                if status not in ("paused", "prelaunch"):
                    raise DriverError(f"restoring the saved state left the guest {status}")
                self._qmp(spec.uuid, "cont")
            except BaseException:
                self.destroy(spec.uuid)
                raise
            state.unlink()
            self._state_slots_file(spec.uuid).unlink(missing_ok=True)
            return pid

    def _suspended_slots(self, spec: GuestSpec) -> dict[str, int]:
        """The volumes' PCI slots when suspended; the spec must name exactly those volumes."""
        try:
            slots = json.loads(self._state_slots_file(spec.uuid).read_text())
        except FileNotFoundError:
            return {}  # suspended before volumes were recorded: the command-line order decides
        # NICs with an id are recorded too (and put back where they were), but a NIC set that
        # changed is caught by the guest, not here: only the volumes must match exactly
        nic_ids = {nic.id for nic in spec.nics if nic.id}
        saved = sorted(key for key in slots if key not in nic_ids and not key.startswith("nic-"))
        given = sorted(disk.id for disk in spec.disks)
        if saved != given:
            raise DriverError(
                f"the server was suspended with volumes {saved or 'none'}; resuming needs the "
                f"same set, not {given or 'none'}"
            )
        return {str(key): int(value) for key, value in slots.items()}

    def _launch(
        self,
        spec: GuestSpec,
        *,
        paused: bool,
        incoming: bool,
        slots: dict[str, int] | None = None,
    ) -> int:
        directory = self.instance_dir(spec.uuid)
        directory.mkdir(parents=True, exist_ok=True)
        self.run_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        os.chmod(self.run_dir, 0o700)
        self._qmp_socket(spec.uuid).unlink(missing_ok=True)
        self._pidfile(spec.uuid).unlink(missing_ok=True)
        argv = self._argv(spec, paused=paused, incoming=incoming, slots=slots)
        errors = directory / "qemu-start.err"
        with errors.open("w+b") as err:
            # -daemonize double-forks and setsids once QEMU is initialised: the guest outlives
            # us, and the parent's exit status and stderr say whether it started.
            proc = subprocess.Popen(
                argv,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=err,
                start_new_session=True,
                cwd=directory,
            )
            try:
                returncode = proc.wait(timeout=START_TIMEOUT)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
                returncode = -1
            err.seek(0)
            message = err.read().decode("utf-8", "replace").strip()
        if returncode != 0:
            self.destroy(spec.uuid)
            detail = _qemu_message(message) or f"exit status {returncode}"
            raise DriverError(f"QEMU failed to start server {spec.uuid}: {detail}")
        pid = self.pid(spec.uuid)
        if pid is None:
            raise DriverError(f"QEMU started server {spec.uuid} but is no longer running")
        errors.unlink(missing_ok=True)
        return pid

    def _argv(
        self,
        spec: GuestSpec,
        *,
        paused: bool,
        incoming: bool,
        slots: dict[str, int] | None = None,
    ) -> list[str]:
        uuid = _checked_uuid(spec.uuid)
        if spec.vcpus < 1 or spec.memory_mib < 16:
            raise DriverError("a server needs at least 1 vCPU and 16 MiB of memory")
        accel = self.accelerator()
        argv = [
            self.qemu_binary,
            "-name", f"guest={uuid},debug-threads=on",
            "-uuid", uuid,
            "-nodefaults", "-no-user-config", "-display", "none",
            "-machine", "pc", "-accel", accel,
            "-cpu", "host" if accel == "kvm" else "max",
            "-smp", str(spec.vcpus), "-m", str(spec.memory_mib),
            "-qmp", f"unix:{_opt(self._qmp_socket(uuid))},server=on,wait=off",
            "-pidfile", str(self._pidfile(uuid)),
            "-chardev", f"file,id=console,path={_opt(self._console(uuid))},append=on",
            "-serial", "chardev:console",
            "-device", "pvpanic", "-action", "panic=pause",
            "-drive", f"file={_opt(spec.disk)},if=none,id=root,format=qcow2",
            "-device", "virtio-blk-pci,drive=root,bootindex=0",
            "-daemonize",
        ]  # fmt: skip
        if spec.config_drive is not None:
            argv += [
                "-drive",
                f"file={_opt(spec.config_drive)},if=none,id=config,format=raw,readonly=on",
                "-device", "virtio-blk-pci,drive=config",
            ]  # fmt: skip
        for index, nic in enumerate(spec.nics):
            argv += self._nic_args(index, nic, slots.get(nic.id) if slots and nic.id else None)
        for disk in spec.disks:
            argv += _disk_args(disk, slots.get(disk.id) if slots else None)
        if spec.kernel is not None:
            argv += ["-kernel", str(spec.kernel), "-append", spec.kernel_cmdline]
            if spec.ramdisk is not None:
                argv += ["-initrd", str(spec.ramdisk)]
        if paused:
            argv.append("-S")
        if incoming:
            argv += ["-incoming", "defer"]
        return argv

    @staticmethod
    def _nic_args(index: int, nic: Nic, slot: int | None = None) -> list[str]:
        netdev_id = f"{_check_disk_id(nic.id)}-net" if nic.id else f"net{index}"
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

    def pid(self, uuid: str) -> int | None:
        """The guest's QEMU pid, only if that process really is this guest's QEMU."""
        try:
            pid = int(self._pidfile(uuid).read_text().strip())
        except (OSError, ValueError):
            return None
        return pid if self._is_our_qemu(pid, uuid) else None

    def _is_our_qemu(self, pid: int, uuid: str) -> bool:
        argv = _proc_argv(pid)
        return argv is not None and self._uuid_of(argv) == uuid

    def _uuid_of(self, argv: list[str]) -> str | None:
        """The server uuid of a QEMU command line started by this driver (same root), or None."""
        marker = f"unix:{_opt(self.run_dir)}/"
        if not any(arg.startswith(marker) for arg in argv):
            return None
        for flag, value in itertools.pairwise(argv):
            if flag == "-uuid":
                return value
        return None

    def running(self) -> dict[str, int]:
        """Every guest of this root with a live QEMU: uuid -> pid (orphans included)."""
        found: dict[str, int] = {}
        for entry in Path("/proc").iterdir():
            if not entry.name.isdigit():
                continue
            argv = _proc_argv(int(entry.name))
            if argv is None:
                continue
            uuid = self._uuid_of(argv)
            if uuid is not None:
                found[uuid] = int(entry.name)
        instances = self.root / "instances"
        if instances.is_dir():
            for directory in instances.iterdir():
                if directory.name not in found and _is_uuid(directory.name):
                    pid = self.pid(directory.name)
                    if pid is not None:
                        found[directory.name] = pid
        return found

    def power_state(self, uuid: str) -> PowerState:
        if self.pid(uuid) is None:
            return PowerState.SUSPENDED if self._state_file(uuid).exists() else PowerState.SHUTDOWN
        try:
            status = self._status(uuid)
        except DriverError:
            return PowerState.NOSTATE
        if status == "running":
            return PowerState.RUNNING
        if status in _CRASHED_STATES:
            return PowerState.CRASHED
        if status in _SHUTDOWN_STATES:
            return PowerState.SHUTDOWN
        return PowerState.PAUSED

    def shutdown(self, uuid: str, timeout: float = 60.0) -> bool:
        """ACPI power button, wait for QEMU to exit; killed after `timeout`. True if clean."""
        pid = self.pid(uuid)
        if pid is None:
            return True
        deadline = time.monotonic() + timeout
        with contextlib.suppress(DriverError):
            # A paused guest cannot see the power button: stopping it cleanly is impossible.
            if self._status(uuid) == "running":
                while time.monotonic() < deadline:
                    # Pressed again every few seconds: a press before the guest's handler
                    # was ready is lost (Nova retries the same way).
                    with contextlib.suppress(DriverError):
                        self._qmp(uuid, "system_powerdown")
                    if _wait_gone(pid, min(5.0, max(0.0, deadline - time.monotonic()))):
                        self._pidfile(uuid).unlink(missing_ok=True)
                        return True
        self.destroy(uuid)
        return False

    def destroy(self, uuid: str) -> None:
        """Stop the guest's QEMU now (QMP quit, then SIGKILL); nothing running is fine."""
        pid = self.pid(uuid)
        if pid is not None:
            with contextlib.suppress(DriverError):
                self._qmp(uuid, "quit", timeout=2.0)
            if not _wait_gone(pid, 3.0):
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
                if not _wait_gone(pid, 30.0):
                    raise DriverError(f"QEMU process {pid} of server {uuid} does not die")
        self._pidfile(uuid).unlink(missing_ok=True)
        self._qmp_socket(uuid).unlink(missing_ok=True)

    def reset(self, uuid: str) -> None:
        self._require_running(uuid)
        self._qmp(uuid, "system_reset")

    def pause(self, uuid: str) -> None:
        self._require_running(uuid)
        self._qmp(uuid, "stop")

    def unpause(self, uuid: str) -> None:
        self._require_running(uuid)
        self._qmp(uuid, "cont")

    def suspend(self, uuid: str) -> None:
        """Save RAM and device state to suspended.state, then end the process (managed save)."""
        with self._instance_lock(uuid):
            pid = self._require_running(uuid)
            state = self._state_file(uuid)
            tmp = state.with_name("suspended.state.tmp")
            tmp.unlink(missing_ok=True)
            was_running = self._status(uuid) == "running"
            self._qmp(uuid, "stop")
            try:
                _write_atomically(
                    self._state_slots_file(uuid), json.dumps(self._volume_slots(uuid)).encode()
                )
                # Paused first, the migration is a single pass; no bandwidth cap on a local file.
                self._qmp(uuid, "migrate-set-parameters", **{"max-bandwidth": 1 << 40})
                self._qmp(uuid, "migrate", uri=f"exec:cat > {shlex.quote(str(tmp))}")
                self._wait_for(
                    lambda: self._migration_finished(uuid), timeout=600, what="saving the state"
                )
                _fsync_file(tmp)
                os.replace(tmp, state)
                _fsync_dir(state.parent)
            except BaseException:
                tmp.unlink(missing_ok=True)
                if was_running:
                    with contextlib.suppress(DriverError):
                        self._qmp(uuid, "cont")
                raise
            with contextlib.suppress(DriverError):
                self._qmp(uuid, "quit", timeout=2.0)
            if not _wait_gone(pid, 10.0):
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
                _wait_gone(pid, 30.0)
            self._pidfile(uuid).unlink(missing_ok=True)
            self._qmp_socket(uuid).unlink(missing_ok=True)

    def _migration_finished(self, uuid: str) -> bool:
        info = self._qmp(uuid, "query-migrate")
        status = info.get("status") if isinstance(info, dict) else None
        if status == "completed":
            return True
        if status in ("failed", "cancelled"):
            reason = info.get("error-desc", status) if isinstance(info, dict) else status
            raise DriverError(f"saving the guest state failed: {reason}")
        return False

    def delete_files(self, uuid: str) -> None:
        """Remove the instance dir and its socket; the process must already be gone."""
        shutil.rmtree(self.instance_dir(uuid), ignore_errors=True)
        self._qmp_socket(uuid).unlink(missing_ok=True)
        (self.run_dir / f"{uuid}.lock").unlink(missing_ok=True)

    # ----------------------------------------------------------------- volumes

    guest_device_name = staticmethod(guest_device_name)

    def attach_disk(self, uuid: str, disk: Disk) -> None:
        """Hot-plug a volume into a running (or paused) guest; already attached is fine.

        The guest names it with the lowest free vdX letter (see guest_device_name).
        """
        _check_disk(disk)
        with self._instance_lock(uuid):
            self._require_running(uuid)
            if disk.id in self._peripherals(uuid):
                return
            # left by a detach the guest finished late (or is finishing now)
            if not self._delete_nodes_once_free(uuid, disk.id):
                raise DriverError(f"volume {disk.id} is still being released by server {uuid}")
            try:
                for node in _blockdev_nodes(disk):
                    self._qmp(uuid, "blockdev-add", **node)
                self._qmp(uuid, "device_add", **_device_properties(disk))
            except DriverError:
                with contextlib.suppress(DriverError):  # QEMU's first message is the one
                    self._delete_nodes(uuid, disk.id)
                raise

    def detach_disk(self, uuid: str, disk_id: str, timeout: float = 30.0) -> bool:
        """Ask the guest to release a volume, wait for it, then close the file.

        True once released and the file closed (or when there is nothing to release: no such
        device, no process); False if the guest has not let go within `timeout`: the device
        stays, the unplug stays requested (a paused guest completes it when it runs again), the
        caller decides. Called again after a False, it finishes the job.
        """
        _check_disk_id(disk_id)
        with self._instance_lock(uuid):
            if self.pid(uuid) is None:
                return True
            if disk_id in self._peripherals(uuid):
                try:
                    self._qmp(uuid, "device_del", id=disk_id)
                except DriverError as exc:
                    # asked before and not yet done: keep waiting for the same unplug
                    if "already in the process of unplug" not in str(exc):
                        raise
                deadline = time.monotonic() + timeout
                while disk_id in self._peripherals(uuid):
                    if time.monotonic() >= deadline:
                        return False
                    time.sleep(DETACH_POLL_INTERVAL)
            return self._delete_nodes_once_free(uuid, disk_id)

    def _delete_nodes_once_free(self, uuid: str, disk_id: str) -> bool:
        """blockdev-del the nodes of a device that is gone: it leaves the QOM tree a moment
        before it lets go of its block node, and until then blockdev-del says "in use"."""
        deadline = time.monotonic() + NODE_RELEASE_TIMEOUT
        while True:
            try:
                self._delete_nodes(uuid, disk_id)
                return True
            except DriverError as exc:
                if "is in use" not in str(exc):
                    raise
                if time.monotonic() >= deadline:
                    return False
            time.sleep(DETACH_POLL_INTERVAL)

    def has_disk(self, uuid: str, disk_id: str) -> bool:
        """Whether the running guest has the volume's device (False when not running)."""
        _check_disk_id(disk_id)
        if self.pid(uuid) is None:
            return False
        return disk_id in self._peripherals(uuid)

    # ----------------------------------------------------------------- NICs

    def attach_nic(self, uuid: str, nic: Nic) -> None:
        """Hot-plug a tap NIC into a running (or paused) guest; already there is fine."""
        if nic.kind != "tap" or not nic.id or nic.ifname is None:
            raise DriverError("a hot-plugged NIC is a tap with an id")
        self._nic_args(0, nic)  # validates the id, MAC and tap name
        with self._instance_lock(uuid):
            self._require_running(uuid)
            if nic.id in self._peripherals(uuid):
                return
            netdev_id = f"{nic.id}-net"
            netdev: dict[str, Any] = {
                "type": "tap",
                "id": netdev_id,
                "ifname": nic.ifname,
                "script": "no",
                "downscript": "no",
            }
            with contextlib.suppress(DriverError):  # left by a detach cut short
                self._qmp(uuid, "netdev_del", id=netdev_id)
            self._qmp(uuid, "netdev_add", **netdev)
            device: dict[str, Any] = {
                "driver": "virtio-net-pci",
                "id": nic.id,
                "netdev": netdev_id,
                "mac": nic.mac.lower(),
            }
            try:
                self._qmp(uuid, "device_add", **device)
            except DriverError:
                with contextlib.suppress(DriverError):
                    self._qmp(uuid, "netdev_del", id=netdev_id)
                raise

    def detach_nic(self, uuid: str, nic_id: str, timeout: float = 30.0) -> bool:
        """Unplug a NIC (the guest acknowledges), then close its tap. False on timeout."""
        _check_disk_id(nic_id)
        with self._instance_lock(uuid):
            if self.pid(uuid) is None:
                return True
            if nic_id in self._peripherals(uuid):
                try:
                    self._qmp(uuid, "device_del", id=nic_id)
                except DriverError as exc:
                    if "already in the process of unplug" not in str(exc):
                        raise
                deadline = time.monotonic() + timeout
                while nic_id in self._peripherals(uuid):
                    if time.monotonic() >= deadline:
                        return False
                    time.sleep(DETACH_POLL_INTERVAL)
            with contextlib.suppress(DriverError):  # never added, or gone with the device
                self._qmp(uuid, "netdev_del", id=f"{nic_id}-net")
            return True

    def resize_disk(self, uuid: str, disk_id: str, size_bytes: int) -> None:
        """Grow an attached volume (and its file) to `size_bytes`; the guest sees the change."""
        _check_disk_id(disk_id)
        with self._instance_lock(uuid):
            self._require_running(uuid)
            node, _ = _node_names(disk_id)
            current = self._node_sizes(uuid).get(node)
            if current is None:
                raise DriverError(f"server {uuid} has no volume {disk_id}")
            if size_bytes < current:
                raise DriverError(f"volume is {current} bytes; it can grow but not shrink")
            if size_bytes > current:
                resize: dict[str, Any] = {"node-name": node, "size": size_bytes}
                self._qmp(uuid, "block_resize", **resize)

    def _peripherals(self, uuid: str) -> set[str]:
        """The ids of the guest's devices that have one (the volumes)."""
        children = self._qmp(uuid, "qom-list", path="/machine/peripheral")
        return {
            str(child["name"])
            for child in children
            if str(child.get("type", "")).startswith("child<")
        }

    def _node_sizes(self, uuid: str) -> dict[str, int]:
        nodes = self._qmp(uuid, "query-named-block-nodes", flat=True)
        return {str(node["node-name"]): int(node["image"]["virtual-size"]) for node in nodes}

    def _delete_nodes(self, uuid: str, disk_id: str) -> None:
        """blockdev-del the volume's format and file nodes, whichever exist."""
        existing = self._node_sizes(uuid)
        for node in _node_names(disk_id):
            if node in existing:
                delete: dict[str, Any] = {"node-name": node}
                self._qmp(uuid, "blockdev-del", **delete)

    def _volume_slots(self, uuid: str) -> dict[str, int]:
        """Each volume's and NIC's PCI slot on bus 0 (the devices that carry an id)."""
        slots: dict[str, int] = {}
        for bus in self._qmp(uuid, "query-pci"):
            for device in bus["devices"]:
                if device.get("qdev_id"):
                    slots[str(device["qdev_id"])] = int(device["slot"])
        return slots

    # ----------------------------------------------------------------- console

    def console_output(self, uuid: str, length: int | None = None) -> str:
        """The last `length` lines of the serial console (all when None)."""
        self.trim_console(uuid)
        try:
            text = self._console(uuid).read_bytes().decode("utf-8", "replace")
        except FileNotFoundError:
            return ""
        if length is None:
            return text
        if length <= 0:
            return ""
        return "".join(text.splitlines(keepends=True)[-length:])

    def trim_console(self, uuid: str) -> None:
        """Keep console.log under console_max_bytes by keeping its newest half.

        QEMU appends with O_APPEND, so after the truncate its next write lands at the new end.
        Bytes the guest writes between our read and the truncate are lost: a small race on a
        log that is a courtesy, not a record.
        """
        path = self._console(uuid)
        try:
            size = path.stat().st_size
        except FileNotFoundError:
            return
        if size <= self.console_max_bytes:
            return
        keep = self.console_max_bytes // 2
        with path.open("r+b") as log:
            log.seek(-keep, os.SEEK_END)
            tail = log.read()
            newline = tail.find(b"\n")
            if 0 <= newline < len(tail) - 1:
                tail = tail[newline + 1 :]
            log.seek(0)
            log.write(tail)
            log.truncate(len(tail))

    # ----------------------------------------------------------------- QMP and helpers

    def _require_running(self, uuid: str) -> int:
        pid = self.pid(uuid)
        if pid is None:
            raise DriverError(f"server {uuid} is not running")
        return pid

    def _status(self, uuid: str) -> str:
        info = self._qmp(uuid, "query-status")
        return str(info["status"]) if isinstance(info, dict) else "unknown"

    def _qmp(self, uuid: str, command: str, timeout: float = QMP_TIMEOUT, **args: Any) -> Any:
        """One QMP command on a fresh connection (QEMU serves one monitor client at a time)."""
        socket_path = str(self._qmp_socket(uuid))

        async def run() -> Any:
            for attempt in itertools.count(1):
                client = QMPClient(f"souverain-{uuid}")
                try:
                    await asyncio.wait_for(client.connect(socket_path), timeout)
                    return await asyncio.wait_for(client.execute(command, args or None), timeout)
                except ConnectError as exc:
                    # An event QEMU emits as a client connects (DEVICE_DELETED after a
                    # device_del) can reach it before the greeting or before the reply to
                    # the capabilities handshake; the command itself was not sent yet.
                    handshake = isinstance(exc.exc, GreetingError | NegotiationError)
                    if not handshake or attempt == QMP_CONNECT_ATTEMPTS:
                        raise
                finally:
                    await client.disconnect()
            raise AssertionError("unreachable")

        try:
            return asyncio.run(run())
        except Exception as exc:  # every QMP failure becomes one DriverError
            raise DriverError(f"QMP {command} on server {uuid} failed: {exc or type(exc)}") from exc

    def _qemu_img(self, *args: str) -> str:
        result = subprocess.run([self.qemu_img, *args], capture_output=True, text=True, check=False)
        if result.returncode != 0:
            message = _qemu_message(result.stderr) or f"exit status {result.returncode}"
            raise DriverError(f"qemu-img {args[0]} failed: {message}")
        return result.stdout

    def _img_info(self, path: Path, fmt: str) -> dict[str, Any]:
        info = json.loads(self._qemu_img("info", "-U", "--output=json", "-f", fmt, str(path)))
        if not isinstance(info, dict):
            raise DriverError(f"qemu-img info gave no details for {path}")
        return info

    @staticmethod
    def _wait_for(predicate: Any, *, timeout: float, what: str) -> None:
        deadline = time.monotonic() + timeout
        while not predicate():
            if time.monotonic() > deadline:
                raise DriverError(f"timed out {what}")
            time.sleep(0.05)

    @contextlib.contextmanager
    def _instance_lock(self, uuid: str) -> Iterator[None]:
        """Serialise start/resume/suspend of one guest across threads and processes."""
        self.run_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        with (self.run_dir / f"{_checked_uuid(uuid)}.lock").open("a") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            yield


def _check_disk_id(disk_id: str) -> str:
    if not DISK_ID_RE.match(disk_id):
        raise DriverError(
            f"invalid volume device id {disk_id!r} (a letter, then up to 127 letters, digits, "
            "'-', '_' or '.')"
        )
    return disk_id


def _check_disk(disk: Disk) -> None:
    _check_disk_id(disk.id)
    if disk.format not in DISK_FORMATS:
        raise DriverError(f"unsupported volume format {disk.format!r} (raw or qcow2)")
    if not DISK_SERIAL_RE.match(disk.serial):
        raise DriverError(
            f"invalid volume serial {disk.serial!r} (up to 20 letters, digits, '-', '_', '.')"
        )


def _node_names(disk_id: str) -> tuple[str, str]:
    """The volume's format node and file node: "<id>" and "<id>-file" when that fits QEMU's
    31 characters, else the id's first 17 characters and 8 hex digits of its hash."""
    stem = disk_id
    if len(disk_id) + len("-file") > NODE_NAME_MAX:
        stem = f"{disk_id[:17]}-{hashlib.sha256(disk_id.encode()).hexdigest()[:8]}"
    return stem, f"{stem}-file"


def _blockdev_nodes(disk: Disk) -> list[dict[str, Any]]:
    """blockdev-add arguments: the file node, then the format node over it."""
    node, file = _node_names(disk.id)
    common = {"read-only": disk.readonly, "discard": "unmap", "cache": {"direct": False}}
    file_node = {"driver": "file", "node-name": file, "filename": str(disk.path), **common}
    format_node = {"driver": disk.format, "node-name": node, "file": file, **common}
    return [file_node, format_node]


def _device_properties(disk: Disk, slot: int | None = None) -> dict[str, Any]:
    drive, _ = _node_names(disk.id)
    device: dict[str, Any] = {"driver": "virtio-blk-pci", "id": disk.id, "drive": drive}
    if disk.serial:
        device["serial"] = disk.serial
    if slot is not None:
        device["addr"] = f"{slot:#x}"
    return device


def _disk_args(disk: Disk, slot: int | None) -> list[str]:
    """The command line for a volume: the same nodes and device as attach_disk makes (JSON,
    so a path needs no escaping)."""
    _check_disk(disk)
    argv: list[str] = []
    for node in _blockdev_nodes(disk):
        argv += ["-blockdev", json.dumps(node)]
    return [*argv, "-device", json.dumps(_device_properties(disk, slot))]


def _checked_uuid(value: str) -> str:
    """Server ids become paths and QEMU arguments: only canonical UUIDs are accepted."""
    if not _is_uuid(value):
        raise DriverError(f"invalid server id {value!r}")
    return value


def _is_uuid(value: str) -> bool:
    try:
        return str(uuid_module.UUID(value)) == value
    except ValueError:
        return False


def _opt(path: Path | str) -> str:
    """A value inside a QEMU option list: commas are doubled."""
    return str(path).replace(",", ",,")


def _qemu_message(stderr: str) -> str:
    lines = [line.strip() for line in stderr.splitlines() if line.strip()]
    return "; ".join(line for line in lines if "warning:" not in line) or "; ".join(lines)


def _proc_argv(pid: int) -> list[str] | None:
    """The command line of a live (not zombie) process, or None."""
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return None
    if not raw:
        return None  # zombie or kernel thread
    return raw.rstrip(b"\0").decode("utf-8", "replace").split("\0")


def _alive(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    # QEMU is daemonized: its parent is init, which reaps it; until then it is a zombie.
    return stat.rsplit(")", 1)[1].split()[0] not in ("Z", "X")


def _wait_gone(pid: int, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while _alive(pid):
        if time.monotonic() >= deadline:
            return False
        time.sleep(0.05)
    return True


def _fsync_file(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _fsync_dir(path: Path) -> None:
    _fsync_file(path)


def _write_atomically(dest: Path, data: bytes) -> None:
    tmp = dest.with_name(f".{dest.name}.{os.getpid()}.{threading.get_ident()}.tmp")
    with tmp.open("wb") as out:
        out.write(data)
        out.flush()
        os.fsync(out.fileno())
    os.replace(tmp, dest)
    _fsync_dir(dest.parent)
