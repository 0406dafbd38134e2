"""Moving a guest between two hosts' QEMU drivers: live (QEMU's migration, its local disk
mirrored to the destination over NBD first) and cold (a stopped guest's files copied).

Each step is a function of one side's driver, so the host agents can each run their half on
their own machine; `live_migrate` and `cold_migrate` chain the halves for two drivers in one
process (tests, an all-in-one host). Whatever fails before the destination takes over leaves
the guest as it was on the source and nothing on the destination. No database, no HTTP. The
disk and memory streams cross the underlay unencrypted. Calls block: run them in a thread.
A root disk on RBD (`compute.disk_backend = "rbd"`) is shared storage: live, only memory
moves (no NBD export, no mirror); cold, the destination opens the same RBD image; neither
side removes it when its half is undone or done (`delete_files(keep_shared_disk=True)`).
"""

from __future__ import annotations

import contextlib
import ipaddress
import os
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from souverain.compute.qemu import QemuDriver
from souverain.compute.qemu_guest import DriverError, GuestSpec, Nic
from souverain.compute.qemu_host import fsync_dir, fsync_file, write_atomically
from souverain.compute.rbd_disks import is_rbd

ROOT_DRIVE = "root"  # the -drive id of the root disk (qemu.py)
NBD_EXPORT = "root"  # the name the destination exports the root disk under
EXPORT_ID = "migrate-root"
MIRROR_JOB = "migrate-root"
MIRROR_TARGET = "migrate-root-nbd"  # the source's NBD client node
MIRROR_NODE: dict[str, Any] = {"node-name": MIRROR_TARGET}
MIGRATE_TIMEOUT = 600.0  # the disk copy and the memory passes together
FINISH_TIMEOUT = 60.0  # the destination taking over, the mirror ending
POLL_INTERVAL = 0.2
PROGRESS_INTERVAL = 1.0
DISK_FORMATS = ("qcow2", "raw")


@dataclass(frozen=True)
class Endpoint:
    """An address and TCP port a destination host listens on (its underlay address)."""

    host: str
    port: int

    def __post_init__(self) -> None:
        try:
            ipaddress.ip_address(self.host)
        except ValueError:
            raise DriverError(
                f"migration listen address {self.host!r} is not an IP address; give the "
                "destination host's underlay address"
            ) from None
        if not 0 < self.port < 65536:
            raise DriverError(f"migration port {self.port} is not a TCP port (1-65535)")

    @property
    def uri(self) -> str:
        """QEMU's `tcp:` migration URI (an IPv6 address in brackets)."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"tcp:{host}:{self.port}"

    def socket_address(self) -> dict[str, str]:
        """A QMP InetSocketAddress."""
        return {"host": self.host, "port": str(self.port)}


@dataclass(frozen=True)
class IncomingMigration:
    """A destination waiting for a guest: its spec there, where its disk and state go."""

    spec: GuestSpec
    nbd: Endpoint | None  # None: the root disk is shared (RBD), only memory moves
    stream: Endpoint


@dataclass(frozen=True)
class Progress:
    """One progress report: `phase` "disk" (the mirror) or "memory" (the migration)."""

    phase: str
    status: str
    done_bytes: int
    total_bytes: int
    elapsed: float


ProgressCallback = Callable[[Progress], None]


def spec_on(driver: QemuDriver, spec: GuestSpec, nics: tuple[Nic, ...] | None = None) -> GuestSpec:
    """The guest's spec with its disk and config drive in `driver`'s instance dir (and
    `nics` for its NICs, when given: a device the guest knows must not change)."""
    directory = driver.instance_dir(spec.uuid)
    drive = directory / spec.config_drive.name if spec.config_drive is not None else None
    if nics is not None and [(n.mac.lower(), n.id) for n in nics] != [
        (n.mac.lower(), n.id) for n in spec.nics
    ]:
        raise DriverError(
            f"server {spec.uuid}'s NICs on the destination must have the MACs and ids they "
            "have on the source, in the same order; only their taps may differ"
        )
    return replace(
        spec,
        disk=directory / spec.disk.name,
        config_drive=drive,
        nics=spec.nics if nics is None else nics,
    )


def root_disk_backing(driver: QemuDriver, spec: GuestSpec) -> tuple[int, str]:
    """The root disk's virtual size and its backing image's format (the destination makes
    its overlay with both)."""
    info = driver._img_info(spec.disk, "qcow2")
    base_format = str(info.get("backing-filename-format", ""))
    if base_format not in DISK_FORMATS:
        raise DriverError(
            f"the root disk of server {spec.uuid} has no raw or qcow2 backing image; only "
            "disks made from an image can be migrated"
        )
    return int(info["virtual-size"]), base_format


def _refuse_volumes(spec: GuestSpec) -> None:
    if spec.disks:
        raise DriverError(
            f"server {spec.uuid} has volumes attached; detach them before a live migration "
            "(volumes move with the server only in a cold migration)"
        )


def _refuse_existing(dest: QemuDriver, uuid: str) -> None:
    if dest.instance_dir(uuid).exists():
        raise DriverError(
            f"server {uuid} already has files on the destination host "
            f"({dest.instance_dir(uuid)}); abort the earlier migration there first"
        )


def _make_overlay(dest: QemuDriver, disk: Path, base: Path, base_format: str, size: int) -> None:
    """An empty qcow2 overlay of exactly `size` bytes over the destination's copy of the
    image: the mirror fills in what the source's overlay holds."""
    disk.parent.mkdir(parents=True, exist_ok=True)
    tmp = disk.with_name(f".{disk.name}.tmp")
    dest._qemu_img(
        "create", "-q", "-f", "qcow2", "-b", str(base.resolve()), "-F", base_format,
        str(tmp), str(size),
    )  # fmt: skip
    fsync_file(tmp)
    os.replace(tmp, disk)
    fsync_dir(disk.parent)


def _drive_node(driver: QemuDriver, uuid: str, drive: str) -> str:
    """The block node name QEMU gave a -drive (the NBD export names a node)."""
    for entry in driver._qmp(uuid, "query-block"):
        if entry.get("device") == drive and "inserted" in entry:
            return str(entry["inserted"]["node-name"])
    raise DriverError(f"server {uuid} has no {drive} disk to migrate")


# ----------------------------------------------------------------- the destination's half


def prepare_incoming(
    dest: QemuDriver,
    spec: GuestSpec,
    *,
    base: Path,
    base_format: str,
    disk_size: int,
    config_drive: bytes | None,
    slots: dict[str, int],
    nbd: Endpoint | None,
    stream: Endpoint,
    nics: tuple[Nic, ...] | None = None,
) -> IncomingMigration:
    """Make the destination ready for `spec`'s guest: an empty overlay on `base` (the
    destination's cached copy of the image), its config drive, QEMU started paused with the
    same devices in the same PCI `slots`, the overlay exported writable over NBD at `nbd`
    and QEMU listening for the migration stream at `stream`. `nics` are the guest's NICs
    here when its taps have other names than on the source (same MACs, same order). On
    failure nothing stays. A root disk on RBD (`nbd` None) is shared: the destination opens
    the same image and no disk is copied."""
    _refuse_volumes(spec)
    _refuse_existing(dest, spec.uuid)
    target = spec_on(dest, spec, nics)
    try:
        if nbd is None:
            _open_shared_disk(dest, target)
        else:
            _make_overlay(dest, target.disk, base, base_format, disk_size)
        if target.config_drive is not None and config_drive is not None:
            write_atomically(target.config_drive, config_drive)
        elif target.config_drive is not None:
            raise DriverError(f"server {spec.uuid} has a config drive: pass its bytes")
        dest.start_incoming(target, slots)
        if nbd is not None:
            _export_disk(dest, spec.uuid, nbd)
        dest._qmp(spec.uuid, "migrate-incoming", uri=stream.uri)
    except BaseException:
        abort_incoming(dest, spec.uuid)
        raise
    return IncomingMigration(target, nbd, stream)


def _open_shared_disk(dest: QemuDriver, target: GuestSpec) -> None:
    if dest.rbd_disks is None or not is_rbd(target.disk):
        raise DriverError(
            f"server {target.uuid}'s root disk is not on RBD on both hosts: a migration "
            "without a disk copy needs compute.disk_backend = rbd on both"
        )
    dest.rbd_disks.adopt(target.disk.parent, target.uuid)


def _export_disk(dest: QemuDriver, uuid: str, nbd: Endpoint) -> None:
    """The destination's empty overlay exported writable over NBD for the source's mirror."""
    # nbd-server-start takes the legacy form of a socket address ("data" wraps it)
    address = {"type": "inet", "data": nbd.socket_address()}
    dest._qmp(uuid, "nbd-server-start", addr=address)
    export: dict[str, Any] = {
        "type": "nbd",
        "id": EXPORT_ID,
        "node-name": _drive_node(dest, uuid, ROOT_DRIVE),
        "name": NBD_EXPORT,
        "writable": True,
    }
    dest._qmp(uuid, "block-export-add", **export)


def finish_incoming(
    dest: QemuDriver,
    uuid: str,
    *,
    run: bool = True,
    console_history: bytes = b"",
    timeout: float = FINISH_TIMEOUT,
) -> None:
    """Take over once the source's migration completed: wait for the state to be loaded,
    close the NBD server, put the source's console log before the guest's next line, and
    let the guest run (`run`, when it ran on the source)."""
    dest._wait_for(
        lambda: dest._status(uuid) != "inmigrate",
        timeout=timeout,
        what=f"for server {uuid}'s state to arrive on the destination",
    )
    status = dest._status(uuid)
    if status not in ("paused", "prelaunch"):
        raise DriverError(f"loading the migrated state left server {uuid} {status}")
    if not is_rbd(dest.root_disk_path(uuid)):  # a shared disk had no NBD server
        dest._qmp(uuid, "nbd-server-stop")
    if console_history:
        # QEMU appends to the log (O_APPEND) and the guest is paused: this lands first
        with dest._console(uuid).open("ab") as log:
            log.write(console_history)
    if run:
        dest._resume(uuid)
        # QEMU announced the NICs' MACs (RARP) as the state arrived; once more now that the
        # guest runs (and can announce itself), for the switches and VXLAN forwarding tables
        # that learn where the guest is now. The guest runs here by then: a lost announcement
        # is not worth moving it back (the guest's own traffic teaches the same)
        with contextlib.suppress(DriverError):
            dest._qmp(uuid, "announce-self", initial=50, max=550, rounds=5, step=100)


def abort_incoming(dest: QemuDriver, uuid: str) -> None:
    """Stop the waiting (or half-migrated) QEMU and remove every file of the guest here
    (a shared RBD disk stays: the source still runs on it)."""
    dest.destroy(uuid)
    dest.delete_files(uuid, keep_shared_disk=True)


# ----------------------------------------------------------------- the source's half


def send_guest(
    source: QemuDriver,
    uuid: str,
    incoming: IncomingMigration,
    *,
    timeout: float = MIGRATE_TIMEOUT,
    progress: ProgressCallback | None = None,
) -> None:
    """Mirror the root disk to the destination's NBD export, then migrate the guest's
    memory and devices to its stream port. On return the source QEMU is stopped with the
    destination holding everything (call `remove_source` once it runs there). On failure
    the guest runs on here as before (`rollback_source`)."""
    source._require_running(uuid)
    was_running = source._status(uuid) == "running"
    started = time.monotonic()
    deadline = started + timeout
    report = _Reporter(progress, started)
    try:
        if incoming.nbd is not None:  # None: a shared disk, memory only
            _mirror_disk(source, uuid, incoming.nbd, deadline, report)
        _migrate_state(source, uuid, incoming.stream, deadline, report)
        if incoming.nbd is not None:
            _end_mirror(source, uuid)
    except BaseException:
        rollback_source(source, uuid, was_running=was_running)
        raise


class _Reporter:
    """Calls the progress callback at most once a PROGRESS_INTERVAL."""

    def __init__(self, callback: ProgressCallback | None, started: float) -> None:
        self.callback = callback
        self.started = started
        self.last = 0.0

    def __call__(
        self, phase: str, status: str, done: int, total: int, *, final: bool = False
    ) -> None:
        now = time.monotonic()
        if self.callback is None or (now - self.last < PROGRESS_INTERVAL and not final):
            return
        self.last = now
        self.callback(Progress(phase, status, done, total, now - self.started))


def _mirror_disk(
    source: QemuDriver, uuid: str, nbd: Endpoint, deadline: float, report: _Reporter
) -> None:
    """Copy the overlay's own clusters (sync "top": the destination has the image) until
    the copy is in step ("ready"). From then on the job copies what the guest writes, in
    the background (the guest's writes never wait on the network); whatever is still to
    copy when the guest stops is copied when the job ends (`_end_mirror`)."""
    client: dict[str, Any] = {
        "driver": "nbd",
        "node-name": MIRROR_TARGET,
        "server": {"type": "inet", **nbd.socket_address()},
        "export": NBD_EXPORT,
    }
    source._qmp(uuid, "blockdev-add", **client)
    mirror: dict[str, Any] = {
        "job-id": MIRROR_JOB,
        "device": ROOT_DRIVE,
        "target": MIRROR_TARGET,
        "sync": "top",
        "copy-mode": "background",
        "auto-dismiss": False,
    }
    source._qmp(uuid, "blockdev-mirror", **mirror)
    while True:
        job = _mirror_job(source, uuid)
        status = str(job.get("status")) if job else "gone"
        if status == "ready":
            return
        if job is None or status in ("concluded", "aborting", "null") or job.get("error"):
            reason = job.get("error", status) if job else "the job vanished"
            raise DriverError(f"copying server {uuid}'s disk to the destination failed: {reason}")
        done, total = int(job.get("current-progress", 0)), int(job.get("total-progress", 0))
        report("disk", status, done, total)
        if time.monotonic() > deadline:
            raise DriverError(
                f"copying server {uuid}'s disk did not finish in time ({done} of {total} "
                "bytes); try again with a longer timeout or while the guest writes less"
            )
        time.sleep(POLL_INTERVAL)


def _mirror_job(source: QemuDriver, uuid: str) -> dict[str, Any] | None:
    for job in source._qmp(uuid, "query-jobs"):
        if job.get("id") == MIRROR_JOB:
            return dict(job)
    return None


def _migrate_state(
    source: QemuDriver, uuid: str, stream: Endpoint, deadline: float, report: _Reporter
) -> None:
    """QEMU's migration of memory and devices; the guest pauses only for the last pass."""
    source._qmp(uuid, "migrate", uri=stream.uri)
    while True:
        info = source._qmp(uuid, "query-migrate")
        status = str(info.get("status", "none"))
        ram = info.get("ram", {})
        if status == "completed":
            report("memory", status, int(ram.get("transferred", 0)), int(ram.get("total", 0)),
                   final=True)  # fmt: skip
            return
        if status in ("failed", "cancelled", "none"):
            reason = info.get("error-desc", status)
            raise DriverError(f"migrating server {uuid} failed: {reason}")
        report("memory", status, int(ram.get("transferred", 0)), int(ram.get("total", 0)))
        if time.monotonic() > deadline:
            remaining = int(ram.get("remaining", 0))
            raise DriverError(
                f"migrating server {uuid} did not converge in time ({remaining} bytes of "
                "memory still to send); try again with a longer timeout, more bandwidth "
                "or while the guest is less busy"
            )
        time.sleep(POLL_INTERVAL)


def _end_mirror(source: QemuDriver, uuid: str) -> None:
    """End the mirror without switching the source to the copy (the source QEMU is done)
    and close its NBD connection, so the destination can stop its server. Cancelled once
    ready, a mirror first copies what is left: the destination's disk is the source's as
    the guest stopped, and the destination must not run before this returns."""
    source._qmp(uuid, "block-job-cancel", device=MIRROR_JOB)
    _wait_job_concluded(source, uuid, f"ending the disk copy of server {uuid}")
    source._qmp(uuid, "job-dismiss", id=MIRROR_JOB)
    source._qmp(uuid, "blockdev-del", **MIRROR_NODE)


def _wait_job_concluded(source: QemuDriver, uuid: str, what: str) -> None:
    source._wait_for(
        lambda: (_mirror_job(source, uuid) or {"status": "concluded"})["status"] == "concluded",
        timeout=FINISH_TIMEOUT,
        what=what,
    )


def rollback_source(source: QemuDriver, uuid: str, *, was_running: bool) -> None:
    """Undo whatever part of `send_guest` ran: the migration cancelled, the mirror and its
    NBD node gone, and the guest running again if it ran before (also after a completed
    migration whose destination failed to take over: QEMU takes its disks back on `cont`)."""
    if source.pid(uuid) is None:
        raise DriverError(f"server {uuid}'s QEMU is gone from the source host")
    with contextlib.suppress(DriverError):
        if source._qmp(uuid, "query-migrate").get("status") in ("active", "device", "setup"):
            source._qmp(uuid, "migrate_cancel")
            source._wait_for(
                lambda: source._qmp(uuid, "query-migrate").get("status") != "cancelling",
                timeout=FINISH_TIMEOUT,
                what=f"cancelling the migration of server {uuid}",
            )
    job = _mirror_job(source, uuid)
    if job is not None:
        if job["status"] != "concluded":
            source._qmp(uuid, "block-job-cancel", device=MIRROR_JOB, force=True)
            _wait_job_concluded(source, uuid, f"cancelling the disk copy of server {uuid}")
        source._qmp(uuid, "job-dismiss", id=MIRROR_JOB)
    if MIRROR_TARGET in {
        node["node-name"] for node in source._qmp(uuid, "query-named-block-nodes")
    }:
        source._qmp(uuid, "blockdev-del", **MIRROR_NODE)
    if was_running and source._status(uuid) != "running":
        source._resume(uuid)


def remove_source(source: QemuDriver, uuid: str) -> None:
    """The guest runs on the destination: stop the source's QEMU, remove its files (not a
    shared RBD disk: the destination runs on it)."""
    source.destroy(uuid)
    source.delete_files(uuid, keep_shared_disk=True)


# ----------------------------------------------------------------- both halves, one process


def live_migrate(
    source: QemuDriver,
    dest: QemuDriver,
    spec: GuestSpec,
    *,
    dest_base: Path,
    nbd: Endpoint | None,
    stream: Endpoint,
    timeout: float = MIGRATE_TIMEOUT,
    progress: ProgressCallback | None = None,
    dest_nics: tuple[Nic, ...] | None = None,
) -> GuestSpec:
    """Move a running (or paused) guest from `source` to `dest` with its local disk; the
    guest keeps running throughout but for the last memory pass. Returns its spec on the
    destination. `dest_base` is the destination's copy of the guest's image; `dest_nics`
    its NICs there when their taps are named otherwise (see `prepare_incoming`)."""
    uuid = spec.uuid
    _refuse_volumes(spec)
    source._require_running(uuid)
    run = source._status(uuid) == "running"
    if is_rbd(spec.disk):  # shared: nothing to mirror
        nbd, disk_size, base_format = None, 0, "raw"
    else:
        disk_size, base_format = root_disk_backing(source, spec)
    drive = spec.config_drive.read_bytes() if spec.config_drive is not None else None
    incoming = prepare_incoming(
        dest, spec, base=dest_base, base_format=base_format, disk_size=disk_size,
        config_drive=drive, slots=source._volume_slots(uuid), nbd=nbd, stream=stream,
        nics=dest_nics,
    )  # fmt: skip
    try:
        send_guest(source, uuid, incoming, timeout=timeout, progress=progress)
    except BaseException:
        abort_incoming(dest, uuid)
        raise
    try:
        history = source._console(uuid).read_bytes() if source._console(uuid).exists() else b""
        finish_incoming(dest, uuid, run=run, console_history=history)
    except BaseException:
        abort_incoming(dest, uuid)
        rollback_source(source, uuid, was_running=run)
        raise
    remove_source(source, uuid)
    return incoming.spec


def cold_migrate(
    source: QemuDriver,
    dest: QemuDriver,
    spec: GuestSpec,
    *,
    dest_base: Path,
    start: bool = True,
) -> GuestSpec:
    """Copy a stopped guest's root disk, config drive and console log to `dest` (the
    overlay re-pointed at `dest_base`, the destination's copy of the image) and start it
    there (`start`). The source keeps its files until `confirm_migration`; `abort_incoming`
    on the destination reverts. Returns the guest's spec on the destination."""
    uuid = spec.uuid
    if source.pid(uuid) is not None:
        raise DriverError(f"server {uuid} is running; stop it first, or live-migrate it")
    if source._state_file(uuid).exists():
        raise DriverError(f"server {uuid} is suspended; resume and stop it first")
    shared = is_rbd(spec.disk)
    base_format = "raw" if shared else root_disk_backing(source, spec)[1]
    _refuse_existing(dest, uuid)
    target = spec_on(dest, spec)
    try:
        if shared:  # the same RBD image: no copy
            _open_shared_disk(dest, target)
        else:
            _copy_overlay(dest, spec.disk, target.disk, dest_base, base_format)
        if spec.config_drive is not None and target.config_drive is not None:
            _copy_file(spec.config_drive, target.config_drive)
        if source._console(uuid).exists():
            _copy_file(source._console(uuid), dest._console(uuid))
        if start:
            dest.start(target)
            dest._wait_for(
                lambda: dest._status(uuid) == "running",
                timeout=FINISH_TIMEOUT,
                what=f"for server {uuid} to run on the destination",
            )
    except BaseException:
        abort_incoming(dest, uuid)
        raise
    return target


def _copy_overlay(dest: QemuDriver, disk: Path, target: Path, base: Path, fmt: str) -> None:
    """A copy of the overlay whose backing file is the destination's image (same bytes, so
    only the pointer changes: `rebase -u`)."""
    tmp = target.with_name(f".{target.name}.tmp")
    _copy_file(disk, tmp)
    dest._qemu_img(
        "rebase", "-q", "-u", "-f", "qcow2", "-b", str(base.resolve()), "-F", fmt, str(tmp)
    )
    os.replace(tmp, target)
    fsync_dir(target.parent)


def _copy_file(path: Path, target: Path) -> None:
    target.parent.mkdir(parents=True, exist_ok=True)
    with path.open("rb") as src, target.open("wb") as dst:
        shutil.copyfileobj(src, dst, 1 << 20)
        dst.flush()
        os.fsync(dst.fileno())


def confirm_migration(source: QemuDriver, uuid: str) -> None:
    """The guest runs on its destination: remove what is left of it on the source."""
    remove_source(source, uuid)
