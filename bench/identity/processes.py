"""Start, watch and stop the servers a benchmark compares.

Every server runs in its own session so that stopping it reaches all of its
children (gunicorn's workers, uvicorn's reloader, ...). Nothing here knows
what the servers are.
"""

from __future__ import annotations

import contextlib
import os
import resource
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Mapping, Sequence
from pathlib import Path


class ServerFailed(RuntimeError):
    """A server did not start, or died, and the benchmark cannot go on."""


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def log_tail(path: Path, lines: int = 40) -> str:
    if not path.exists():
        return f"(no log at {path})"
    text = path.read_text(errors="replace").splitlines()
    return "\n".join(text[-lines:])


class Server:
    """One server process group, its log file, and how to know it is ready."""

    def __init__(
        self,
        name: str,
        argv: Sequence[str],
        log_path: Path,
        env: Mapping[str, str] | None = None,
        cwd: Path | None = None,
    ) -> None:
        self.name = name
        self.argv = list(argv)
        self.log_path = log_path
        self.env = dict(env) if env is not None else None
        self.cwd = cwd
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        with self.log_path.open("wb") as log:
            self.process = subprocess.Popen(
                self.argv,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                env=self.env,
                cwd=self.cwd,
                start_new_session=True,
            )

    def wait_ready(self, url: str, timeout_s: float = 90.0) -> None:
        """Poll `url` until it answers 200, failing fast if the process exits."""
        deadline = time.monotonic() + timeout_s
        last_problem = "no answer yet"
        while time.monotonic() < deadline:
            self.raise_if_exited()
            try:
                with urllib.request.urlopen(url, timeout=5) as response:
                    if response.status == 200:
                        return
                    last_problem = f"HTTP {response.status}"
            except urllib.error.HTTPError as error:
                last_problem = f"HTTP {error.code}"
            except (urllib.error.URLError, OSError) as error:
                last_problem = str(error)
            time.sleep(0.25)
        raise ServerFailed(
            f"{self.name} not ready at {url} after {timeout_s:.0f}s ({last_problem}).\n"
            f"Last lines of {self.log_path}:\n{log_tail(self.log_path)}"
        )

    def raise_if_exited(self) -> None:
        if self.process is not None and self.process.poll() is not None:
            raise ServerFailed(
                f"{self.name} exited with status {self.process.returncode}.\n"
                f"Last lines of {self.log_path}:\n{log_tail(self.log_path)}"
            )

    def cpu_seconds(self) -> float:
        """CPU time used so far by every process of this server's group."""
        if self.process is None:
            return 0.0
        return _group_cpu_seconds(self.process.pid)

    def wait_idle(self, timeout_s: float = 120.0, interval_s: float = 0.25) -> None:
        """Wait until the server burns (almost) no CPU: the work a client left behind is done.

        A server keeps computing requests whose client went away (threads under
        uvicorn, the listen backlog under gunicorn); without this, one cell's
        leftovers would be charged to the next.
        """
        deadline = time.monotonic() + timeout_s
        quiet = 0
        before = self.cpu_seconds()
        while quiet < 2 and time.monotonic() < deadline:
            time.sleep(interval_s)
            self.raise_if_exited()
            now = self.cpu_seconds()
            quiet = quiet + 1 if now - before < 0.05 * interval_s else 0
            before = now

    def stop(self, grace_s: float = 10.0) -> None:
        """Stop the whole process group: SIGTERM, then SIGKILL after `grace_s`."""
        process = self.process
        if process is None:
            return
        self.process = None
        _signal_group(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=grace_s)
        except subprocess.TimeoutExpired:
            _signal_group(process.pid, signal.SIGKILL)
            process.wait(timeout=grace_s)
        # Workers may outlive a master that exited first; the group id is still theirs.
        _signal_group(process.pid, signal.SIGKILL)


_TICKS_PER_S = os.sysconf("SC_CLK_TCK")


def _group_cpu_seconds(pgid: int) -> float:
    ticks = 0
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue  # the process ended while we looked
        # After "pid (comm)": state ppid pgrp ... utime(12th) stime(13th)
        if int(fields[2]) == pgid:
            ticks += int(fields[11]) + int(fields[12])
    return ticks / _TICKS_PER_S


def machine_busy_seconds() -> float:
    """CPU time the whole machine spent busy since boot, all cores (steal counts as busy)."""
    fields = Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]
    user, nice, system, _idle, _iowait, irq, softirq, steal = map(int, fields[:8])
    return (user + nice + system + irq + softirq + steal) / _TICKS_PER_S


class CpuWatch:
    """Measures how much of the machine others took while we measured.

    "Ours" is this process, the children it has waited for (wrk, the bcrypt
    bound) and the given servers' process groups; whatever else kept the cores
    busy -- a test suite, another benchmark, the hypervisor's steal -- is
    reported as `foreign_share`, the fraction of all cores over the interval.
    """

    def __init__(self, servers: Sequence[Server]) -> None:
        self.servers = servers
        self.foreign_share = 0.0

    def _snapshot(self) -> tuple[float, float, float]:
        own = sum(server.cpu_seconds() for server in self.servers)
        for who in (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN):
            usage = resource.getrusage(who)
            own += usage.ru_utime + usage.ru_stime
        return time.monotonic(), machine_busy_seconds(), own

    def __enter__(self) -> CpuWatch:
        self._start = self._snapshot()
        return self

    def __exit__(self, *exc_info: object) -> None:
        wall, busy, own = (b - a for a, b in zip(self._start, self._snapshot(), strict=True))
        cores = os.cpu_count() or 1
        if wall > 0:
            self.foreign_share = max(0.0, busy - own) / (cores * wall)


def _signal_group(pgid: int, sig: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pgid, sig)
