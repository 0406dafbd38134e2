"""The compute host driver: one detached QEMU process per server, driven over QMP.

Everything here is a host side effect (files under `root`, QEMU processes, QMP sockets) and
is idempotent; no state lives in this object beyond a cached accelerator probe, so a control
plane restarted after kill -9 finds its guests again from pidfiles and /proc. No HTTP, no
database. Calls block (QMP round trips, waits for QEMU): from async code, run them in a thread.
"""

from __future__ import annotations

import contextlib
import errno
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
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from souverain.common.ceph import CephAccess, RbdRef
from souverain.compute.configdrive import build_config_drive
from souverain.compute.qemu_guest import (
    ROOT_SECRET_ID,
    Disk,
    DriverError,
    GuestSpec,
    Nic,
    PowerState,
    disk_args,
    guest_device_name,
    nic_args,
)
from souverain.compute.qemu_host import (
    checked_uuid,
    fsync_dir,
    fsync_file,
    is_uuid,
    proc_argv,
    qemu_message,
    qemu_opt,
    wait_gone,
    write_atomically,
)
from souverain.compute.qemu_hotplug import QemuHotplug
from souverain.compute.qemu_monitor import QEMU_IMG_COPY_TIMEOUT
from souverain.compute.rbd_disks import POINTER as RBD_POINTER
from souverain.compute.rbd_disks import (
    VOLUME_POINTER,
    RbdRootDisks,
    is_rbd,
    volume_drive,
    write_volume_pointer,
)

__all__ = [
    "Disk",
    "DriverError",
    "GuestSpec",
    "Nic",
    "PowerState",
    "QemuDriver",
    "guest_device_name",
]

GIB = 1024**3
RESIZE_BACKUP = "disk.before-resize.qcow2"
RESIZE_SNAPSHOT = "before-resize"
START_TIMEOUT = 60.0
KVM_PROBE_TIMEOUT = 4.0
IMAGE_ID_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$")

# Runstates (QMP query-status) and what Nova calls them.
CRASHED_STATES = {"guest-panicked", "internal-error"}
SHUTDOWN_STATES = {"shutdown"}


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


class QemuDriver(QemuHotplug):
    """Runs guests under `root` (<data_dir>/compute): base images, instance dirs, sockets."""

    # compute.disk_backend = "rbd": root disks are RBD clones (set by the composition root)
    rbd_disks: RbdRootDisks | None = None

    def accelerator(self) -> str:
        """ "kvm" if a probe guest really runs under KVM here, else "tcg"; probed once."""
        with self._accelerator_lock:  # concurrent builds probe once, not once each
            if self._accelerator is None:
                self._accelerator = self._cached_or_probed_accelerator()
            return self._accelerator

    def _cached_or_probed_accelerator(self) -> str:
        try:
            version = subprocess.run(
                [self.qemu_binary, "--version"],
                capture_output=True,
                text=True,
                check=False,
                stdin=subprocess.DEVNULL,
                timeout=KVM_PROBE_TIMEOUT,
            ).stdout.splitlines()
        except subprocess.TimeoutExpired:
            version = []  # no version in the cache key: the probe below runs again
        key = {"kernel": platform.release(), "qemu": version[0] if version else ""}
        # a property of the host, not of one data dir: cached beside every root's run dir
        cache = self.run_dir.parent / "accelerator.json"
        with contextlib.suppress(OSError, ValueError, KeyError):
            cached = json.loads(cache.read_text())
            if cached["key"] == key and cached["accelerator"] in ("kvm", "tcg"):
                return str(cached["accelerator"])
        result = "kvm" if self._kvm_runs_a_guest() else "tcg"
        cache.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        write_atomically(cache, json.dumps({"key": key, "accelerator": result}).encode())
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
                "-chardev", f"file,id=dbg,path={qemu_opt(out)}",
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
        fsync_dir(base_dir)
        return dest

    def make_root_disk(
        self,
        uuid: str,
        image: tuple[str, Path, str],
        size_gib: int,
        rbd_parent: RbdRef | None = None,
    ) -> Path:
        """The server's root disk from an image (id, local file, disk format): an RBD clone
        of `rbd_parent` (or of the image imported once) with the rbd backend, else a qcow2
        overlay on the cached base file. The path QEMU's spec names."""
        image_id, path, disk_format = image
        if self.rbd_disks is not None:
            return self.rbd_disks.create(
                self.instance_dir(uuid), checked_uuid(uuid), rbd_parent, path, size_gib
            )
        base = self.cache_base_image(image_id, path)
        return self.create_root_disk(uuid, base, disk_format, size_gib)

    def root_disk_path(self, uuid: str) -> Path:
        """The root disk the guest spec names: the RBD pointer if the server has one (or,
        on an rbd host, will have one), else the qcow2 overlay."""
        pointer = self.instance_dir(uuid) / RBD_POINTER
        qcow2 = self.instance_dir(uuid) / "disk.qcow2"
        if pointer.exists() or (self.rbd_disks is not None and not qcow2.exists()):
            return pointer
        return qcow2

    def remove_root_disk(self, uuid: str) -> None:
        """The root disk gone (a rebuild makes a new one): the file, or the RBD clone."""
        pointer = self.instance_dir(uuid) / RBD_POINTER
        if pointer.exists():
            self._rbd().remove(pointer)
        (self.instance_dir(uuid) / "disk.qcow2").unlink(missing_ok=True)

    def _rbd(self) -> RbdRootDisks:
        if self.rbd_disks is None:
            raise DriverError(
                "this server's root disk is on RBD but this host has no Ceph access: set "
                'compute.disk_backend = "rbd" and [ceph] conf_file'
            )
        return self.rbd_disks

    def volume_root(self, uuid: str, volume: RbdRef, access: CephAccess) -> Path:
        """The root disk of a server booted from an RBD volume: a pointer QEMU's rbd driver
        is given (the volume stays the volume service's; this host needs no RBD pool)."""
        return write_volume_pointer(self.instance_dir(checked_uuid(uuid)), volume, access)

    def _root_drive(self, disk: Path) -> str:
        if disk.name == VOLUME_POINTER:
            return volume_drive(disk)
        if is_rbd(disk):
            return self._rbd().drive(disk)
        return f"file={qemu_opt(disk)},if=none,id=root,format=qcow2"

    def _root_args(self, spec: GuestSpec, secret_fd: int | None) -> list[str]:
        """The root disk's -drive; an encrypted one (a LUKS qcow2 volume, or an RBD volume
        holding a bare LUKS container) with the secret object QEMU reads its passphrase
        from (`secret_fd`, a pipe it inherits)."""
        if spec.disk_passphrase is None:
            return ["-drive", self._root_drive(spec.disk)]
        if spec.disk.name != VOLUME_POINTER and is_rbd(spec.disk):
            raise DriverError("an encrypted root disk is a LUKS qcow2 file or an RBD volume")
        if secret_fd is None:
            raise DriverError("the encrypted root disk needs its passphrase's pipe")
        secret = f"secret,id={ROOT_SECRET_ID},format=raw,file=/dev/fd/{secret_fd}"
        if spec.disk.name == VOLUME_POINTER:  # QEMU's luks driver over its rbd driver
            return ["-object", secret, "-drive", volume_drive(spec.disk, ROOT_SECRET_ID)]
        luks = f"encrypt.format=luks,encrypt.key-secret={ROOT_SECRET_ID}"
        return ["-object", secret, "-drive", f"{self._root_drive(spec.disk)},{luks}"]

    def create_root_disk(
        self, uuid: str, base: Path, base_format: str, size_gib: int, name: str = "disk.qcow2"
    ) -> Path:
        """A qcow2 overlay on `base`, at least `size_gib` GiB; an existing disk is kept.
        `name` is another file of the instance's (a rescue disk) instead of its root disk."""
        if base_format not in ("raw", "qcow2"):
            raise DriverError(f"unsupported image disk format {base_format!r} (raw or qcow2)")
        directory = self.instance_dir(uuid)
        directory.mkdir(parents=True, exist_ok=True)
        disk = directory / name
        if disk.exists():
            return disk
        info = self._img_info(base, base_format)
        size = max(size_gib * GIB, int(info["virtual-size"]))
        tmp = directory / f".{name}.tmp"
        tmp.unlink(missing_ok=True)
        self._qemu_img(
            "create", "-q", "-f", "qcow2", "-b", str(base.resolve()), "-F", base_format,
            str(tmp), str(size),
        )  # fmt: skip
        fsync_file(tmp)
        os.replace(tmp, disk)
        fsync_dir(directory)
        return disk

    def resize_root_disk(self, uuid: str, size_gib: int) -> None:
        """Grow the root disk to `size_gib` GiB while the server is stopped; never shrink."""
        if self.pid(uuid) is not None:
            raise DriverError("the server must be stopped to resize its disk")
        pointer = self.instance_dir(uuid) / RBD_POINTER
        if pointer.exists():
            self._rbd().resize(pointer, size_gib)
            return
        disk = self.instance_dir(uuid) / "disk.qcow2"
        current = int(self._img_info(disk, "qcow2")["virtual-size"])
        if size_gib * GIB < current:
            raise DriverError(f"disk is {current} bytes; it can grow but not shrink")
        if size_gib * GIB > current:
            self._qemu_img("resize", "-q", "-f", "qcow2", str(disk), str(size_gib * GIB))

    def keep_root_for_revert(self, uuid: str) -> None:
        """Before a resize: the root disk kept as it is (an RBD snapshot, or a file copy)."""
        disk = self.root_disk_path(uuid)
        if is_rbd(disk):
            self._rbd().keep_snapshot(disk, RESIZE_SNAPSHOT)
            return
        backup = self.instance_dir(uuid) / RESIZE_BACKUP
        tmp = backup.with_name(backup.name + ".tmp")
        shutil.copyfile(disk, tmp)
        fsync_file(tmp)
        os.replace(tmp, backup)

    def revert_root(self, uuid: str) -> None:
        """A resize reverted: the root disk as kept before it (nothing kept: unchanged)."""
        disk = self.root_disk_path(uuid)
        if is_rbd(disk):
            self._rbd().back_to_snapshot(disk, RESIZE_SNAPSHOT)
            return
        backup = self.instance_dir(uuid) / RESIZE_BACKUP
        if backup.exists():
            backup.replace(disk)

    def drop_root_revert(self, uuid: str) -> None:
        """A resize confirmed: what was kept for a revert goes."""
        disk = self.root_disk_path(uuid)
        if is_rbd(disk):
            self._rbd().drop_snapshot(disk, RESIZE_SNAPSHOT)
            return
        (self.instance_dir(uuid) / RESIZE_BACKUP).unlink(missing_ok=True)

    def snapshot_disk(self, uuid: str, dest: Path) -> None:
        """A standalone compressed qcow2 of the root disk (backing chain flattened).

        A running guest is paused for the copy (`writes_held`) and resumed after.
        """
        disk = self.root_disk_path(uuid)
        # an RBD disk is read by qemu-img's own rbd driver (a read-only open takes no lock)
        source = ["-f", "qcow2", str(disk)] if not is_rbd(disk) else [self._rbd().json_spec(disk)]
        tmp = dest.with_name(f".{dest.name}.{os.getpid()}.{threading.get_ident()}.tmp")
        try:
            with self.writes_held(uuid):
                self._qemu_img(
                    "convert", "-U", "-c", "-O", "qcow2", *source, str(tmp),
                    timeout=QEMU_IMG_COPY_TIMEOUT,
                )  # fmt: skip
            fsync_file(tmp)
            os.replace(tmp, dest)
            fsync_dir(dest.parent)
        finally:
            tmp.unlink(missing_ok=True)

    def write_config_drive(
        self,
        uuid: str,
        meta_data: dict[str, Any],
        user_data: bytes | None,
        network_data: dict[str, Any],
        vendor_data: dict[str, Any] | None = None,
        name: str = "disk.config",
    ) -> Path:
        directory = self.instance_dir(uuid)
        directory.mkdir(parents=True, exist_ok=True)
        dest = directory / name
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

    def start_incoming(self, spec: GuestSpec, slots: dict[str, int] | None = None) -> int:
        """Start QEMU paused, waiting for a migration stream (`-incoming defer`; QMP
        `migrate-incoming` names where). `slots` puts volumes and NICs in the PCI slots they
        have on the source. A guest already running here is refused: it is not a target."""
        with self._instance_lock(spec.uuid):
            if self.pid(spec.uuid) is not None:
                raise DriverError(f"server {spec.uuid} already runs on this host")
            return self._launch(spec, paused=True, incoming=True, slots=slots)

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
        errors = directory / "qemu-start.err"
        with secret_pipes(passphrases_of(spec)) as secret_fds:
            argv = self._argv(
                spec, paused=paused, incoming=incoming, slots=slots, secret_fds=secret_fds
            )
            returncode, message = self._run_daemonizing(argv, errors, tuple(secret_fds.values()))
        if returncode != 0:
            self.destroy(spec.uuid)
            detail = qemu_message(message) or f"exit status {returncode}"
            raise DriverError(f"QEMU failed to start server {spec.uuid}: {detail}")
        pid = self.pid(spec.uuid)
        if pid is None:
            raise DriverError(f"QEMU started server {spec.uuid} but is no longer running")
        errors.unlink(missing_ok=True)
        return pid

    def _run_daemonizing(
        self, argv: list[str], errors: Path, fds: tuple[int, ...]
    ) -> tuple[int, str]:
        """Run QEMU with -daemonize: its exit status and stderr say whether it started."""
        with errors.open("w+b") as err:
            # -daemonize double-forks and setsids once QEMU is initialised: the guest outlives
            # us, and the parent's exit status and stderr say whether it started.
            proc = subprocess.Popen(
                argv,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=err,
                start_new_session=True,
                cwd=errors.parent,
                pass_fds=fds,
            )
            try:
                returncode = proc.wait(timeout=START_TIMEOUT)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
                returncode = -1
            err.seek(0)
            return returncode, err.read().decode("utf-8", "replace").strip()

    def _argv(
        self,
        spec: GuestSpec,
        *,
        paused: bool,
        incoming: bool,
        slots: dict[str, int] | None = None,
        secret_fds: dict[str, int] | None = None,
    ) -> list[str]:
        uuid = checked_uuid(spec.uuid)
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
            "-qmp", f"unix:{qemu_opt(self._qmp_socket(uuid))},server=on,wait=off",
            "-pidfile", str(self._pidfile(uuid)),
            # the serial port: a socket a console client attaches to, logged to console.log
            # whether or not anyone is attached (os-getConsoleOutput reads the log)
            "-chardev", f"socket,id=console,path={qemu_opt(self.serial_socket(uuid))},"
            f"server=on,wait=off,logfile={qemu_opt(self._console(uuid))},logappend=on",
            "-serial", "chardev:console",
            "-device", "pvpanic", "-action", "panic=pause",
            *self._root_args(spec, (secret_fds or {}).get(ROOT_SECRET_ID)),
            "-device", "virtio-blk-pci,drive=root,bootindex=0",
            "-daemonize",
        ]  # fmt: skip
        if spec.config_drive is not None:
            argv += [
                "-drive",
                f"file={qemu_opt(spec.config_drive)},if=none,id=config,format=raw,readonly=on",
                "-device", "virtio-blk-pci,drive=config",
            ]  # fmt: skip
        for index, nic in enumerate(spec.nics):
            argv += nic_args(index, nic, slots.get(nic.id) if slots and nic.id else None)
        for disk in spec.disks:
            secret_fd = (secret_fds or {}).get(disk.id)
            argv += disk_args(disk, slots.get(disk.id) if slots else None, secret_fd)
        if spec.kernel is not None:
            argv += ["-kernel", str(spec.kernel), "-append", spec.kernel_cmdline]
            if spec.ramdisk is not None:
                argv += ["-initrd", str(spec.ramdisk)]
        if paused:
            argv.append("-S")
        if incoming:
            argv += ["-incoming", "defer"]
        return argv

    def running(self) -> dict[str, int]:
        """Every guest of this root with a live QEMU: uuid -> pid (orphans included)."""
        found: dict[str, int] = {}
        for entry in Path("/proc").iterdir():
            if not entry.name.isdigit():
                continue
            argv = proc_argv(int(entry.name))
            if argv is None:
                continue
            uuid = self._uuid_of(argv)
            if uuid is not None:
                found[uuid] = int(entry.name)
        instances = self.root / "instances"
        if instances.is_dir():
            for directory in instances.iterdir():
                if directory.name not in found and is_uuid(directory.name):
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
        if status in CRASHED_STATES:
            return PowerState.CRASHED
        if status in SHUTDOWN_STATES:
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
                    if wait_gone(pid, min(5.0, max(0.0, deadline - time.monotonic()))):
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
            if not wait_gone(pid, 3.0):
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
                if not wait_gone(pid, 30.0):
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
                write_atomically(
                    self._state_slots_file(uuid), json.dumps(self._volume_slots(uuid)).encode()
                )
                # Paused first, the migration is a single pass; no bandwidth cap on a local file.
                self._qmp(uuid, "migrate-set-parameters", **{"max-bandwidth": 1 << 40})
                self._qmp(uuid, "migrate", uri=f"exec:cat > {shlex.quote(str(tmp))}")
                self._wait_for(
                    lambda: self._migration_finished(uuid), timeout=600, what="saving the state"
                )
                fsync_file(tmp)
                os.replace(tmp, state)
                fsync_dir(state.parent)
            except BaseException:
                tmp.unlink(missing_ok=True)
                if was_running:
                    with contextlib.suppress(DriverError):
                        self._qmp(uuid, "cont")
                raise
            with contextlib.suppress(DriverError):
                self._qmp(uuid, "quit", timeout=2.0)
            if not wait_gone(pid, 10.0):
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
                wait_gone(pid, 30.0)
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

    def delete_files(self, uuid: str, keep_shared_disk: bool = False) -> None:
        """Remove the instance dir (and an RBD root disk, unless `keep_shared_disk`: the
        guest moved to or stays on another host that opens the same RBD image) and its
        socket; the process must already be gone."""
        pointer = self.instance_dir(uuid) / RBD_POINTER
        if pointer.exists() and not keep_shared_disk:
            self._rbd().remove(pointer)
        shutil.rmtree(self.instance_dir(uuid), ignore_errors=True)
        self._qmp_socket(uuid).unlink(missing_ok=True)
        self.serial_socket(uuid).unlink(missing_ok=True)
        (self.run_dir / f"{uuid}.serial.lock").unlink(missing_ok=True)
        (self.run_dir / f"{uuid}.lock").unlink(missing_ok=True)

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


def passphrases_of(spec: GuestSpec) -> dict[str, str]:
    """The passphrases QEMU reads at start, by the id their pipe is known by: each encrypted
    volume's (its disk id) and an encrypted root disk's (ROOT_SECRET_ID)."""
    found = {disk.id: disk.passphrase for disk in spec.disks if disk.passphrase is not None}
    if spec.disk_passphrase is not None:
        found[ROOT_SECRET_ID] = spec.disk_passphrase
    return found


@contextlib.contextmanager
def secret_pipes(passphrases: dict[str, str]) -> Iterator[dict[str, int]]:
    """A pipe per passphrase, written and closed on our side: QEMU inherits the read ends
    and reads the secrets at start (never argv, never a file)."""
    fds: dict[str, int] = {}
    try:
        for key, passphrase in passphrases.items():
            read, write = os.pipe()
            fds[key] = read
            try:
                os.write(write, passphrase.encode("ascii"))
            finally:
                os.close(write)
        yield fds
    finally:
        for fd in fds.values():
            os.close(fd)
