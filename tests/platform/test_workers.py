"""Several serving processes on one socket: they act as one cloud."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from concurrent.futures import ThreadPoolExecutor

import pytest

from tests.platform.conftest import Server, ServerFactory

pytestmark = pytest.mark.e2e


def _children(pid: int) -> list[int]:
    out = subprocess.run(["ps", "-o", "pid=", "--ppid", str(pid)], capture_output=True, text=True)
    return [int(x) for x in out.stdout.split()]


def _validate(server: Server, token: str) -> int:
    status, _, _ = server.request(
        "GET",
        "/identity/v3/auth/tokens",
        headers={"X-Auth-Token": token, "X-Subject-Token": token, "Connection": "close"},
    )
    return status


def test_two_workers_serve_and_a_revocation_holds_on_both_at_once(
    make_server: ServerFactory,
) -> None:
    server = make_server(SOUVERAIN_SERVER__WORKERS="2").start()
    assert server.proc is not None
    assert len(_children(server.proc.pid)) == 2
    token = server.token()
    with ThreadPoolExecutor(8) as pool:
        assert set(pool.map(lambda _: _validate(server, token), range(40))) == {200}
    status, _, _ = server.request(
        "DELETE",
        "/identity/v3/auth/tokens",
        headers={"X-Auth-Token": token, "X-Subject-Token": token},
    )
    assert status == 204
    # Straight away, whichever worker answers: no worker may still accept it.
    with ThreadPoolExecutor(8) as pool:
        assert set(pool.map(lambda _: _validate(server, token), range(40))) == {401}
    code, out, _ = server.stop()
    assert code == 0 and "stopped cleanly" in out


def test_writes_through_both_workers_keep_one_audit_chain(make_server: ServerFactory) -> None:
    server = make_server(SOUVERAIN_SERVER__WORKERS="2").start()
    token = server.token()

    def create(i: int) -> int:
        body = json.dumps({"project": {"name": f"p{i}"}}).encode()
        status, _, _ = server.request(
            "POST",
            "/identity/v3/projects",
            body,
            {"X-Auth-Token": token, "Content-Type": "application/json", "Connection": "close"},
        )
        return status

    with ThreadPoolExecutor(8) as pool:
        assert set(pool.map(create, range(40))) == {201}
    assert server.stop()[0] == 0
    server.assert_audit_intact()
    lines = (server.data_dir / "audit.log").read_text().splitlines()
    creates = [json.loads(x) for x in lines if "identity.project.create" in x]
    assert len(creates) == 40 and all(c["outcome"] == "success" for c in creates)


def test_a_worker_that_dies_is_replaced(make_server: ServerFactory) -> None:
    server = make_server(SOUVERAIN_SERVER__WORKERS="2").start()
    assert server.proc is not None
    victim = _children(server.proc.pid)[0]
    os.kill(victim, signal.SIGKILL)
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        workers = _children(server.proc.pid)
        if len(workers) == 2 and victim not in workers:
            break
        time.sleep(0.1)
    else:
        pytest.fail("the dead worker was not replaced")
    token = server.token()
    assert {_validate(server, token) for _ in range(10)} == {200}
    code, _, err = server.stop()
    assert code == 0, [x for x in err.splitlines() if not x.startswith('{"req')]
    assert "starting a new one" in err


def _rss_mib(pid: int) -> int:
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) // 1024
    return 0


def test_the_supervisor_holds_no_copy_of_the_application(make_server: ServerFactory) -> None:
    """Once the workers run, the waiting process is a few MiB, not another application."""
    server = make_server(SOUVERAIN_SERVER__WORKERS="2").start()
    assert server.proc is not None
    with open(f"/proc/{server.proc.pid}/cmdline", "rb") as cmdline:
        assert b"souverain.supervisor" in cmdline.read()
    assert _rss_mib(server.proc.pid) < 30
    assert len(_children(server.proc.pid)) == 2
    code, out, _ = server.stop()
    assert code == 0
    assert "Souverain stopped cleanly." in out
