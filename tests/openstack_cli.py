"""The real `openstack` CLI, imported once per test worker and forked for each command.

Starting `openstack` costs about 2 s of CPU before it sends a byte (it imports
openstacksdk, keystoneauth, cliff, cmd2 and every plugin's commands); the e2e suites type
hundreds of commands, which on CI's 2 cores made minutes of the run. A warm process per
worker imports the client and its command modules once, then forks a child per command
that runs the client's own `main(argv)` with the command's environment, working
directory, stdin from /dev/null and stdout/stderr in files, exactly what a shell would
give it. Nothing of ours stands between the client and the cloud: the child is the
client, only its imports were done before the fork.

The warm process exits when the worker that started it exits (it polls its parent), and
each command's child is killed when its caller's timeout passes.
"""

from __future__ import annotations

import atexit
import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import uuid
from pathlib import Path

BIN = Path(sys.executable).parent
WARM_START_TIMEOUT = 120.0

# Runs in the warm process (the venv's python, stdin from /dev/null, output to a log).
SERVER = r"""
import importlib, json, os, signal, socket, sys
from importlib.metadata import entry_points

path = sys.argv[1]
sys.argv = ["openstack"]  # cliff names the program from argv[0] when it is imported
from openstackclient import shell

for group in [g for g in entry_points().groups if g.startswith("openstack.")]:
    for entry in entry_points(group=group):
        try:
            importlib.import_module(entry.value.split(":")[0])
        except Exception:  # a plugin the client itself would fail to load: its own error then
            pass

signal.signal(signal.SIGCHLD, signal.SIG_IGN)  # the command children reap themselves
parent = os.getppid()
listener = socket.socket(socket.AF_UNIX)
listener.bind(path)
listener.listen(16)
listener.settimeout(1.0)
print("ready", flush=True)
while os.getppid() == parent:
    try:
        conn, _ = listener.accept()
    except TimeoutError:
        continue
    conn.settimeout(None)
    request = json.loads(conn.makefile("rb").readline())
    if os.fork():
        conn.close()
        continue
    listener.close()
    os.setpgid(0, 0)  # the command and what it starts: one group to kill on a timeout
    conn.sendall(json.dumps({"pid": os.getpid()}).encode() + b"\n")
    signal.signal(signal.SIGCHLD, signal.SIG_DFL)
    code = 1
    try:
        os.chdir(request["cwd"])
        os.environ.clear()
        os.environ.update(request["env"])
        devnull = os.open(os.devnull, os.O_RDONLY)
        os.dup2(devnull, 0)
        for fd, path in ((1, request["stdout"]), (2, request["stderr"])):
            os.dup2(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600), fd)
        sys.argv = ["openstack", *request["argv"]]
        try:
            code = shell.main(request["argv"])
        except SystemExit as exit:
            code = exit.code if isinstance(exit.code, int) else 1
    finally:
        for stream in (sys.stdout, sys.stderr):
            try:
                stream.flush()
            except Exception:
                pass
        try:
            conn.sendall(json.dumps({"returncode": code or 0}).encode() + b"\n")
        finally:
            os._exit(code or 0)
"""


class WarmCli:
    """One warm `openstack` per test worker; `run` has `subprocess.run`'s results."""

    _lock = threading.Lock()
    _instance: WarmCli | None = None

    def __init__(self) -> None:
        self.dir = Path(tempfile.mkdtemp(prefix="souverain-cli-"))
        self.socket = self.dir / "cli.sock"
        self.log = self.dir / "warm.log"
        with self.log.open("wb") as log:
            self.process = subprocess.Popen(
                [sys.executable, "-c", SERVER, str(self.socket)],
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=log,
                start_new_session=True,
            )
        assert self.process.stdout is not None
        ready = _readline_within(self.process.stdout, WARM_START_TIMEOUT)
        if ready.strip() != b"ready":
            said = self.log.read_text(errors="replace")[-3000:]
            self.stop()
            raise RuntimeError(f"the warm openstack CLI did not start: {said}")
        atexit.register(self.stop)

    @classmethod
    def shared(cls) -> WarmCli:
        with cls._lock:
            if cls._instance is None or cls._instance.process.poll() is not None:
                cls._instance = cls()
            return cls._instance

    def run(
        self, argv: list[str], env: dict[str, str], timeout: float, cwd: str | None = None
    ) -> subprocess.CompletedProcess[str]:
        out, err = (self.dir / f"{uuid.uuid4().hex}.{name}" for name in ("out", "err"))
        request = {
            "argv": argv, "env": env, "cwd": cwd or os.getcwd(),
            "stdout": str(out), "stderr": str(err),
        }  # fmt: skip
        try:
            with socket.socket(socket.AF_UNIX) as conn:
                conn.connect(str(self.socket))
                conn.sendall(json.dumps(request).encode() + b"\n")
                conn.settimeout(timeout)
                replies = conn.makefile("rb")
                pid = json.loads(replies.readline())["pid"]
                try:
                    line = replies.readline()
                except TimeoutError:
                    _kill_group(pid)
                    raise subprocess.TimeoutExpired(["openstack", *argv], timeout) from None
            # no answer: the child died before it could say (a signal, an abort)
            returncode = json.loads(line)["returncode"] if line else -signal.SIGKILL
            return subprocess.CompletedProcess(
                ["openstack", *argv],
                returncode,
                out.read_text(errors="replace"),
                err.read_text(errors="replace"),
            )
        finally:
            out.unlink(missing_ok=True)
            err.unlink(missing_ok=True)

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait()
        if self.process.stdout is not None:
            self.process.stdout.close()
        shutil.rmtree(self.dir, ignore_errors=True)


def _kill_group(pid: int) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pid, signal.SIGKILL)


def _readline_within(stream: object, timeout: float) -> bytes:
    """A line from the warm process's stdout, or b"" if none comes within `timeout`."""
    found: list[bytes] = []
    reader = threading.Thread(target=lambda: found.append(stream.readline()), daemon=True)  # type: ignore[attr-defined]
    reader.start()
    reader.join(timeout)
    return found[0] if found else b""


def run_openstack(
    argv: list[str], env: dict[str, str], timeout: float
) -> subprocess.CompletedProcess[str]:
    """`openstack argv...` as a shell would run it, from the worker's warm client."""
    return WarmCli.shared().run(argv, env, timeout)
