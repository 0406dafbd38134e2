"""The host side of running guests: process lookups in /proc, durable file writes, and
the quoting QEMU's option lists need. No QEMU knowledge beyond that.
"""

from __future__ import annotations

import os
import threading
import time
import uuid as uuid_module
from pathlib import Path

from souverain.compute.qemu_guest import DriverError


def checked_uuid(value: str) -> str:
    """Server ids become paths and QEMU arguments: only canonical UUIDs are accepted."""
    if not is_uuid(value):
        raise DriverError(f"invalid server id {value!r}")
    return value


def is_uuid(value: str) -> bool:
    try:
        return str(uuid_module.UUID(value)) == value
    except ValueError:
        return False


def qemu_opt(path: Path | str) -> str:
    """A value inside a QEMU option list: commas are doubled."""
    return str(path).replace(",", ",,")


def qemu_message(stderr: str) -> str:
    lines = [line.strip() for line in stderr.splitlines() if line.strip()]
    return "; ".join(line for line in lines if "warning:" not in line) or "; ".join(lines)


def proc_argv(pid: int) -> list[str] | None:
    """The command line of a live (not zombie) process, or None."""
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return None
    if not raw:
        return None  # zombie or kernel thread
    return raw.rstrip(b"\0").decode("utf-8", "replace").split("\0")


def alive(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    # QEMU is daemonized: its parent is init, which reaps it; until then it is a zombie.
    return stat.rsplit(")", 1)[1].split()[0] not in ("Z", "X")


def wait_gone(pid: int, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while alive(pid):
        if time.monotonic() >= deadline:
            return False
        time.sleep(0.05)
    return True


def fsync_file(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def fsync_dir(path: Path) -> None:
    fsync_file(path)


def write_atomically(dest: Path, data: bytes) -> None:
    tmp = dest.with_name(f".{dest.name}.{os.getpid()}.{threading.get_ident()}.tmp")
    with tmp.open("wb") as out:
        out.write(data)
        out.flush()
        os.fsync(out.fileno())
    os.replace(tmp, dest)
    fsync_dir(dest.parent)


def uptime_text(now: time.struct_time | None = None) -> str:
    """The host's uptime as the `uptime` command prints it (what Nova's hypervisor uptime
    shows): the time, how long the host has run, and its load averages."""
    seconds = int(float(Path("/proc/uptime").read_text().split()[0]))
    days, rest = divmod(seconds, 86400)
    hours, minutes = divmod(rest // 60, 60)
    ran = f"{days} day{'s' if days != 1 else ''}, " if days else ""
    ran += f"{hours:2d}:{minutes:02d}" if hours else f"{minutes} min"
    loads = ", ".join(f"{x:.2f}" for x in os.getloadavg())
    clock = time.strftime("%H:%M:%S", now or time.localtime())
    return f" {clock} up {ran},  load average: {loads}"


def cpu_info() -> dict[str, object]:
    """The host's CPU as Nova's hypervisor cpu_info shows it: architecture, model, vendor,
    features and topology (read from /proc/cpuinfo; what it does not say stays empty)."""
    fields: dict[str, str] = {}
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            key, _, value = line.partition(":")
            fields.setdefault(key.strip(), value.strip())
    except OSError:
        pass
    count = os.cpu_count() or 1
    return {
        "arch": os.uname().machine,
        "model": fields.get("model name", ""),
        "vendor": fields.get("vendor_id", ""),
        "features": fields.get("flags", "").split(),
        "topology": {"cores": count, "threads": 1, "sockets": 1},
    }
