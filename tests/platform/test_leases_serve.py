"""Leases in real serving processes: `souverain serve` with two workers on one database
gives each cloud-wide loop exactly one holder, one of its workers, and a clean stop
releases them all (so another node would take the work at once)."""

from __future__ import annotations

import socket
import subprocess
import time

import pytest
from sqlalchemy import text

from souverain.db.engine import make_engine
from souverain.server import LEASED_WORK
from tests.platform.conftest import Server, ServerFactory

pytestmark = pytest.mark.e2e


def workers_of(pid: int) -> list[int]:
    out = subprocess.run(["ps", "-o", "pid=", "--ppid", str(pid)], capture_output=True, text=True)
    return [int(x) for x in out.stdout.split()]


def leases(server: Server) -> dict[str, str]:
    """The lease rows in the server's database (its SQLite file or PostgreSQL)."""
    engine = make_engine(server.database_url)
    try:
        with engine.connect() as conn:
            rows = conn.execute(text("SELECT name, holder FROM leases")).all()
            return {str(name): str(holder) for name, holder in rows}
    finally:
        engine.dispose()


def test_each_cloud_wide_loop_has_one_worker_holding_it_and_a_stop_releases_them(
    make_server: ServerFactory,
) -> None:
    server = make_server(SOUVERAIN_SERVER__WORKERS="2").start()
    assert server.proc is not None
    workers = workers_of(server.proc.pid)
    assert len(workers) == 2
    deadline = time.monotonic() + 15
    while set(leases(server)) != set(LEASED_WORK) and time.monotonic() < deadline:
        time.sleep(0.1)
    held = leases(server)
    assert set(held) == set(LEASED_WORK)
    for name, holder in held.items():
        host, pid, nonce = holder.rsplit(":", 2)
        assert host == socket.gethostname() and len(nonce) == 12, holder
        assert int(pid) in workers, f"{name} held by {holder}, not a worker of {workers}"
    code, _, err = server.stop()
    assert code == 0, err
    assert leases(server) == {}
