"""The warm `openstack` CLI the e2e suites type through: the client's own answers, its
exit codes, and a command past its timeout killed with what it started."""

from __future__ import annotations

import os
import socket
import subprocess
import time

import pytest

from tests.openstack_cli import WarmCli, run_openstack


def test_the_client_answers_as_its_own_program() -> None:
    done = run_openstack(["--version"], dict(os.environ), 120)
    assert done.returncode == 0, done.stderr
    assert (done.stdout + done.stderr).startswith("openstack ")
    helped = run_openstack(["help", "server", "list"], dict(os.environ), 60)
    assert helped.returncode == 0 and "usage: openstack server list" in helped.stdout


def test_a_failing_command_gives_its_exit_code_and_its_error() -> None:
    with socket.socket() as closed:
        closed.bind(("127.0.0.1", 0))
        port = closed.getsockname()[1]  # nobody listens there once closed
    flags = ["--os-auth-url", f"http://127.0.0.1:{port}/v3", "--os-username", "u",
             "--os-password", "p", "--os-project-name", "p"]  # fmt: skip
    failed = run_openstack([*flags, "server", "list"], dict(os.environ), 60)
    assert failed.returncode == 1
    assert f"127.0.0.1:{port}" in failed.stderr and failed.stdout == ""


def test_a_command_past_its_timeout_is_killed() -> None:
    with socket.socket() as silent:  # accepts connections (the backlog), never answers
        silent.bind(("127.0.0.1", 0))
        silent.listen(8)
        port = silent.getsockname()[1]
        flags = ["--os-auth-url", f"http://127.0.0.1:{port}/v3", "--os-username", "u",
                 "--os-password", "p", "--os-project-name", "p"]  # fmt: skip
        with pytest.raises(subprocess.TimeoutExpired):
            run_openstack([*flags, "token", "issue"], dict(os.environ), 3)
        # still silent: only the kill can have ended the command
        warm = WarmCli.shared().process.pid
        deadline = time.monotonic() + 5
        while _children(warm) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert _children(warm) == []


def _children(parent: int) -> list[int]:
    """The processes `parent` forked that still exist (the commands it runs)."""
    found = []
    for pid in os.listdir("/proc"):
        try:
            with open(f"/proc/{pid}/stat") as stat:
                ppid = int(stat.read().rsplit(")", 1)[1].split()[1])
        except (OSError, ValueError, IndexError):
            continue
        if ppid == parent:
            found.append(int(pid))
    return found
