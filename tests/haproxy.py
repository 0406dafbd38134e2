"""Debian's HAProxy in front of HTTP backends, as in front of a cloud's API nodes.

`HAProxy` writes a config into its own temp dir (one frontend on 127.0.0.1 and a free
port, the backends health-checked every CHECK_INTERVAL_MS, a failed connection retried
on another server), runs haproxy in master-worker mode, reloads it with a new backend
list without dropping connections (SIGUSR2 to the master: new workers take the socket,
old ones finish what they serve), and stops it leaving no process. The `haproxy`
fixture gives one factory per test and stops whatever it started.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator, Sequence
from pathlib import Path

import pytest

CHECK_INTERVAL_MS = 200  # a dead backend is out after FALL checks: within ~0.5 s
FALL = 2
START_TIMEOUT = 10.0


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def render_config(port: int, backends: Sequence[tuple[str, int]], health_path: str) -> str:
    """The whole config: `backends` are (host, port) pairs, named n0, n1, ... in order.
    Only a connection that failed is retried (on another server): a request a node
    received may have acted before the node died, and an API POST must not run twice."""
    servers = "\n".join(
        f"    server n{i} {host}:{bport} check" for i, (host, bport) in enumerate(backends)
    )
    return f"""global
    master-worker
    maxconn 256

defaults
    mode http
    timeout connect 1s
    timeout client 30s
    timeout server 30s
    retries 3
    option redispatch 1
    retry-on conn-failure
    default-server inter {CHECK_INTERVAL_MS}ms fastinter {CHECK_INTERVAL_MS}ms fall {FALL} rise 1

frontend api
    bind 127.0.0.1:{port}
    default_backend nodes

backend nodes
    balance roundrobin
    option httpchk GET {health_path}
{servers}
"""


def processes_naming(path: Path) -> list[int]:
    """Every process whose command line names `path` (the master and its workers)."""
    needle = str(path)
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes().decode(errors="replace")
        except OSError:
            continue
        if needle in cmdline.split("\0"):
            found.append(int(entry.name))
    return found


class HAProxy:
    """One haproxy (master and workers) in its own temp dir; `stop` leaves nothing."""

    def __init__(self, backends: Sequence[tuple[str, int]], health_path: str = "/") -> None:
        if shutil.which("haproxy") is None:
            raise RuntimeError("haproxy is missing: scripts/install-system-packages installs it")
        self.dir = Path(tempfile.mkdtemp(prefix="souverain-haproxy-"))
        self.config = self.dir / "haproxy.cfg"
        self.log = self.dir / "haproxy.log"
        self.port = free_port()
        self.health_path = health_path
        self.backends = list(backends)
        self._process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> HAProxy:
        self._write(self.backends)
        with self.log.open("ab") as log:
            self._process = subprocess.Popen(
                ["haproxy", "-W", "-db", "-f", str(self.config)],
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        self._wait_listening()
        self._wait(lambda: bool(self.workers()), "haproxy worker")
        return self

    def reload(self, backends: Sequence[tuple[str, int]]) -> None:
        """Serve `backends` from now on; connections in flight finish on the old workers.
        A config haproxy refuses raises here and leaves the running one as it was."""
        previous = self.config.read_text()
        self._write(backends)
        checked = subprocess.run(
            ["haproxy", "-c", "-q", "-f", str(self.config)], capture_output=True, text=True
        )
        if checked.returncode != 0:
            self.config.write_text(previous)
            raise RuntimeError(f"haproxy refused the new config: {checked.stdout}{checked.stderr}")
        self.backends = list(backends)
        before = self.workers()
        os.kill(self.master_pid, signal.SIGUSR2)
        self._wait(lambda: bool(set(self.workers()) - set(before)), "a new worker after reload")

    def stop(self) -> None:
        """Stop the master (it takes its workers), then make sure nothing of ours runs."""
        if self._process is not None and self._process.poll() is None:
            self._process.terminate()
            try:
                self._process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self._process.kill()
                self._process.wait()
        for pid in processes_naming(self.config):  # a worker the master failed to take
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        self._wait(lambda: not processes_naming(self.config), "haproxy's processes gone")
        shutil.rmtree(self.dir, ignore_errors=True)

    @property
    def master_pid(self) -> int:
        if self._process is None:
            raise RuntimeError("haproxy was not started")
        return self._process.pid

    def workers(self) -> list[int]:
        return [pid for pid in processes_naming(self.config) if pid != self.master_pid]

    def _write(self, backends: Sequence[tuple[str, int]]) -> None:
        self.config.write_text(render_config(self.port, backends, self.health_path))

    def _wait_listening(self) -> None:
        def listening() -> bool:
            if self._process is not None and self._process.poll() is not None:
                raise RuntimeError(f"haproxy exited: {self.log.read_text()[-2000:]}")
            with socket.socket() as sock:
                return sock.connect_ex(("127.0.0.1", self.port)) == 0

        self._wait(listening, f"haproxy listening on {self.port}")

    def _wait(self, condition: object, what: str) -> None:
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline:
            if condition():  # type: ignore[operator]
                return
            time.sleep(0.02)
        raise RuntimeError(
            f"no {what} within {START_TIMEOUT}s; log: {self.log.read_text()[-2000:]}"
        )


@pytest.fixture
def haproxy() -> Iterator[type[HAProxy]]:
    """`haproxy(backends).start()`: every one started in the test is stopped after it."""
    started: list[HAProxy] = []

    class Tracked(HAProxy):
        def start(self) -> HAProxy:
            started.append(self)
            return super().start()

    try:
        yield Tracked
    finally:
        for proxy in started:
            proxy.stop()
