"""One guest's QEMU as this driver sees it: where its files and sockets are, whether its
process is alive, and one QMP command or qemu-img run at a time.

The base of `QemuDriver`; the hot-plug and lifecycle halves build on it.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import hashlib
import itertools
import json
import os
import subprocess
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from qemu.qmp import ConnectError, QMPClient
from qemu.qmp.qmp_client import GreetingError, NegotiationError

from souverain.compute.qemu_guest import DriverError
from souverain.compute.qemu_host import checked_uuid, proc_argv, qemu_message, qemu_opt

QMP_TIMEOUT = 10.0
# qemu-img: info, create and resize touch metadata only; a convert copies a whole disk,
# up to hundreds of GiB at disk speed, so it gets an hour before it is called hung.
QEMU_IMG_TIMEOUT = 60.0
QEMU_IMG_COPY_TIMEOUT = 3600.0
QMP_CONNECT_ATTEMPTS = 3


class QemuMonitor:
    """Paths, pids and QMP for the guests under `root` (<data_dir>/compute)."""

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

    # ----------------------------------------------------------------- paths

    def instance_dir(self, uuid: str) -> Path:
        return self.root / "instances" / checked_uuid(uuid)

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
        return self.run_dir / f"{checked_uuid(uuid)}.qmp"

    def serial_socket(self, uuid: str) -> Path:
        """The guest's serial port: one client at a time reads and types on it."""
        return self.run_dir / f"{checked_uuid(uuid)}.serial"

    def claim_serial(self, uuid: str) -> int | None:
        """The one client's claim on the guest's serial port, held across processes (QEMU
        serves one client and leaves a second waiting unseen): a file descriptor to release,
        or None while another client holds it."""
        self.run_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        fd = os.open(
            self.run_dir / f"{checked_uuid(uuid)}.serial.lock", os.O_RDWR | os.O_CREAT, 0o600
        )
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            return None
        return fd

    @staticmethod
    def release_serial(fd: int) -> None:
        os.close(fd)  # closing drops the lock

    def pid(self, uuid: str) -> int | None:
        """The guest's QEMU pid, only if that process really is this guest's QEMU."""
        try:
            pid = int(self._pidfile(uuid).read_text().strip())
        except (OSError, ValueError):
            return None
        return pid if self._is_our_qemu(pid, uuid) else None

    def _is_our_qemu(self, pid: int, uuid: str) -> bool:
        argv = proc_argv(pid)
        return argv is not None and self._uuid_of(argv) == uuid

    def _uuid_of(self, argv: list[str]) -> str | None:
        """The server uuid of a QEMU command line started by this driver (same root), or None."""
        marker = f"unix:{qemu_opt(self.run_dir)}/"
        if not any(arg.startswith(marker) for arg in argv):
            return None
        for flag, value in itertools.pairwise(argv):
            if flag == "-uuid":
                return value
        return None

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

    @contextlib.contextmanager
    def writes_held(self, uuid: str) -> Iterator[None]:
        """Hold the guest's disk writes while the block runs, so its disks can be copied
        crash-consistent: QMP `stop` drains the in-flight requests and flushes every disk
        before it returns, and the paused vCPUs issue no new ones. `cont` follows whatever
        the block did. A guest not running (no QEMU, or already paused) is left as it is.
        """
        resume = self.pid(uuid) is not None and self._status(uuid) == "running"
        if resume:
            self._qmp(uuid, "stop")
        try:
            yield
        finally:
            if resume:
                self._resume(uuid)

    def _resume(self, uuid: str) -> None:
        """`cont`, tried again once: a guest left paused by a lost reply is an outage."""
        try:
            self._qmp(uuid, "cont")
        except DriverError:
            time.sleep(0.5)
            self._qmp(uuid, "cont")

    def _qemu_img(self, *args: str, timeout: float = QEMU_IMG_TIMEOUT) -> str:
        """qemu-img's output; DriverError if it fails or outlives `timeout` (then killed)."""
        try:
            result = subprocess.run(  # a fixed argv, no shell
                [self.qemu_img, *args],
                capture_output=True,
                text=True,
                check=False,
                stdin=subprocess.DEVNULL,
                timeout=timeout,
            )
        except subprocess.TimeoutExpired:
            raise DriverError(f"qemu-img {args[0]} took longer than {timeout:g} s") from None
        if result.returncode != 0:
            message = qemu_message(result.stderr) or f"exit status {result.returncode}"
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
        with (self.run_dir / f"{checked_uuid(uuid)}.lock").open("a") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            yield
