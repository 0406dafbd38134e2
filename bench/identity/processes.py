"""Start, watch and stop the servers a benchmark compares.

Every server runs in its own session so that stopping it reaches all of its
children (gunicorn's workers, uvicorn's reloader, ...). Nothing here knows
what the servers are.
"""

from __future__ import annotations

import os
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


def _signal_group(pgid: int, sig: signal.Signals) -> None:
    try:
        os.killpg(pgid, sig)
    except ProcessLookupError:
        pass
