"""Leases in real serving processes: `souverain serve` with two workers on one database
gives each cloud-wide loop exactly one holder, one of its workers, and a clean stop
releases them all (so another node would take the work at once)."""

from __future__ import annotations

import socket
import sqlite3
import subprocess
import time
from pathlib import Path

import pytest

from souverain.server import LEASED_WORK
from tests.platform.conftest import ServerFactory

pytestmark = pytest.mark.e2e


def workers_of(pid: int) -> list[int]:
    out = subprocess.run(["ps", "-o", "pid=", "--ppid", str(pid)], capture_output=True, text=True)
    return [int(x) for x in out.stdout.split()]


def leases(data_dir: Path) -> dict[str, str]:
    with sqlite3.connect(data_dir / "souverain.db") as conn:
        return dict(conn.execute("SELECT name, holder FROM leases").fetchall())


def test_each_cloud_wide_loop_has_one_worker_holding_it_and_a_stop_releases_them(
    make_server: ServerFactory,
) -> None:
    server = make_server(SOUVERAIN_SERVER__WORKERS="2").start()
    assert server.proc is not None
    workers = workers_of(server.proc.pid)
    assert len(workers) == 2
    deadline = time.monotonic() + 15
    while set(leases(server.data_dir)) != set(LEASED_WORK) and time.monotonic() < deadline:
        time.sleep(0.1)
    held = leases(server.data_dir)
    assert set(held) == set(LEASED_WORK)
    for name, holder in held.items():
        host, pid, nonce = holder.rsplit(":", 2)
        assert host == socket.gethostname() and len(nonce) == 12, holder
        assert int(pid) in workers, f"{name} held by {holder}, not a worker of {workers}"
    code, _, err = server.stop()
    assert code == 0, err
    assert leases(server.data_dir) == {}
