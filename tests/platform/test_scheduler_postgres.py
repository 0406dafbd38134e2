"""The scheduler's claims on PostgreSQL, as several API nodes make them: a real server
started here (`initdb` + `pg_ctl`, Debian's binaries, a unix socket in a temp dir), one
connection per thread, the claims racing.

Under READ COMMITTED two UPDATEs of different server rows do not wait for each other,
so without the FOR UPDATE lock of the host's row both would see the same free room:
these tests are what proves that lock.
"""

from __future__ import annotations

import datetime as dt
import os
import shutil
import subprocess
import tempfile
import threading
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import delete

from souverain.common.clock import Clock
from souverain.compute.hosts import Hosts
from souverain.compute.models import ComputeHost, Server, ServerGroup
from souverain.compute.scheduler import Capacity, PlacementRequest, Scheduler, usage
from souverain.config import ComputeSettings
from souverain.db import migrate
from souverain.db.engine import Database, make_engine
from tests.server_rows import add_server

PG_BIN = Path("/usr/lib/postgresql/15/bin")


def _as_postgres(*args: str) -> None:
    command = [str(a) for a in args]
    if os.geteuid() == 0:  # initdb and postgres refuse to run as root
        command = ["runuser", "-u", "postgres", "--", *command]
    subprocess.run(command, check=True, capture_output=True, timeout=120)


@pytest.fixture(scope="module")
def database() -> Iterator[Database]:
    root = Path(tempfile.mkdtemp(prefix="souverain-sched-pg-"))
    data, sock = root / "data", root / "sock"
    sock.mkdir()
    if os.geteuid() == 0:
        shutil.chown(root, "postgres")
        shutil.chown(sock, "postgres")
    started = False
    try:
        _as_postgres(PG_BIN / "initdb", "-D", str(data), "-U", "postgres", "-A", "trust")
        _as_postgres(
            PG_BIN / "pg_ctl",
            "-D",
            str(data),
            "-w",
            "-o",
            f"-k {sock} -c listen_addresses='' -c max_connections=60",
            "-l",
            str(root / "log"),
            "start",
        )
        started = True
        engine = make_engine(f"postgresql+psycopg://postgres@/postgres?host={sock}")
        migrate.upgrade(engine)
        yield Database(engine)
        engine.dispose()
    finally:
        if started:
            _as_postgres(PG_BIN / "pg_ctl", "-D", str(data), "-m", "immediate", "-w", "stop")
        shutil.rmtree(root, ignore_errors=True)


def _race(db: Database, scheduler: Scheduler, servers: list[str]) -> list[str | None]:
    """Every server claimed at once, each from its own thread and connection."""
    barrier = threading.Barrier(len(servers))
    placed: list[str | None] = []
    lock = threading.Lock()

    def claim(server_id: str) -> None:
        barrier.wait()
        with db.session() as s:
            row = s.get(Server, server_id)
            assert row is not None
            request = PlacementRequest(server_id, row.vcpus, row.memory_mib, row.disk_gib)
            host = scheduler.select_and_claim(s, request)
        with lock:
            placed.append(host)

    threads = [threading.Thread(target=claim, args=(sid,)) for sid in servers]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return placed


def _hosts(db: Database, *names: str, memory: int) -> Scheduler:
    with db.session() as s:  # the hosts of earlier tests (same server) take nothing here
        s.execute(delete(ComputeHost))
    settings = ComputeSettings()
    hosts = Hosts(db, Clock(lambda: dt.datetime.now(dt.UTC)), settings)
    for name in names:
        capacity = Capacity(name, 64, memory, 1000, 64, memory, 1000)
        hosts.report(name, capacity, None, ["compute"], hosts.now())
    return Scheduler(settings, hosts.is_up)


def test_twenty_claims_from_twenty_connections_on_room_for_ten_place_ten(
    database: Database,
) -> None:
    name = f"pg-{uuid.uuid4().hex[:6]}"
    scheduler = _hosts(database, name, memory=10 * 512)
    placed = _race(database, scheduler, [add_server(database, memory=512) for _ in range(20)])
    assert placed.count(name) == 10 and placed.count(None) == 10
    with database.session() as s:
        assert usage(s, name).memory_mib == 10 * 512


def test_racing_members_of_an_anti_affinity_group_never_share_a_host(
    database: Database,
) -> None:
    names = [f"pg-{uuid.uuid4().hex[:6]}" for _ in range(2)]
    scheduler = _hosts(database, *names, memory=64 * 1024)
    group = str(uuid.uuid4())
    with database.session() as s:
        s.add(
            ServerGroup(
                id=group,
                project_id="p",
                user_id="u",
                name="g",
                policy="anti-affinity",
                rules={},
                created_at=dt.datetime(2026, 1, 1),
            )
        )
    members = [add_server(database, group, memory=256) for _ in range(8)]
    placed = _race(database, scheduler, members)
    assert sorted(h for h in placed if h is not None) == sorted(names)
    assert placed.count(None) == 6


def test_claims_racing_over_two_filling_hosts_neither_deadlock_nor_overbook(
    database: Database,
) -> None:
    """A claimer that finds its first host full lets go of it before trying the next:
    otherwise two claimers holding one host each and wanting the other's deadlock."""
    names = [f"pg-{uuid.uuid4().hex[:6]}" for _ in range(2)]
    scheduler = _hosts(database, *names, memory=5 * 512)
    placed = _race(database, scheduler, [add_server(database, memory=512) for _ in range(24)])
    assert sorted(h for h in placed if h is not None) == sorted(names * 5)
    assert placed.count(None) == 14
    with database.session() as s:
        assert [usage(s, name).memory_mib for name in names] == [5 * 512, 5 * 512]
