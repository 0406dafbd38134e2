"""The cloud on a real PostgreSQL server: claims that cannot overbook, outages that heal.

Each test starts what it needs itself (Debian's initdb and pg_ctl, tests/postgres.py): the
claim test uses the worker's shared server, the outage test a server of its own, since it
stops it. Nothing is left behind: the last test checks that no server of ours still runs.
"""

from __future__ import annotations

import datetime as dt
import json
import shutil
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from defusedxml import ElementTree

from souverain import server
from souverain.common.clock import Clock
from souverain.compute.models import ComputeHost
from souverain.compute.scheduler import PlacementRequest, Scheduler, usage
from souverain.config import ComputeSettings
from souverain.db.engine import Database, make_engine
from tests.api.support import ADMIN_PASSWORD, S3, Cloud, SteppingClock, TestClient, settings_for
from tests.postgres import PostgresServer, _processes_of, postgres_server, shared_server
from tests.server_rows import server_row

CLAIMS = 20
ROOM = 10  # servers of 128 MiB the host has room for


def _claim_all(db: Database, ids: list[str]) -> list[str]:
    """Every server's placement at once, each in its own thread and transaction."""
    scheduler = Scheduler(ComputeSettings(), is_up=lambda _host: True)
    placed: list[str] = []
    lock = threading.Lock()
    barrier = threading.Barrier(len(ids))

    def claim(server_id: str) -> None:
        barrier.wait()
        with db.session() as s:
            host = scheduler.select_and_claim(s, PlacementRequest(server_id, 1, 128, 1))
            time.sleep(0.01)  # hold the transaction open: a racing claim would see stale sums
        if host is not None:
            with lock:
                placed.append(server_id)

    threads = [threading.Thread(target=claim, args=(i,)) for i in ids]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return placed


def test_twenty_concurrent_claims_on_postgresql_place_exactly_ten(postgres_session: None) -> None:
    pg = shared_server()
    name = pg.create_database()
    engine = make_engine(pg.url(name))
    try:
        db = Database(engine)
        ids = [f"s{i:02d}" for i in range(CLAIMS)]
        now = dt.datetime(2026, 1, 1)
        with db.session() as s:
            s.add(
                ComputeHost(
                    name="h1",
                    vcpus=100,
                    memory_mib=ROOM * 128,
                    disk_gib=100,
                    created_at=now,
                    last_seen_at=now,
                )
            )
            for server_id in ids:
                s.add(server_row(server_id, memory=128))
        placed = _claim_all(db, ids)
        assert len(placed) == ROOM, placed
        with db.session() as s:
            used = usage(s, "h1")
        assert (used.servers, used.memory_mib, used.vcpus) == (ROOM, ROOM * 128, ROOM)
    finally:
        engine.dispose()
        pg.drop_database(name)


# ---------------------------------------------------------------- outage


@pytest.fixture
def own_postgres() -> Iterator[PostgresServer]:
    with postgres_server() as pg:
        yield pg


@pytest.fixture
def pg_cloud(own_postgres: PostgresServer) -> Iterator[Cloud]:
    root = Path(tempfile.mkdtemp(prefix="souverain-pgout-"))
    try:
        with own_postgres.database() as url:
            settings = settings_for(root / "data")
            settings.database.url = url
            with pytest.MonkeyPatch.context() as patch:
                patch.setenv("SOUVERAIN_ADMIN_PASSWORD", ADMIN_PASSWORD)
                built = server.prepare(settings, clock=Clock(SteppingClock().now))
            try:
                with TestClient(built.app, base_url="http://testserver") as client:
                    yield Cloud(client, built)
            finally:
                built.close()
    finally:
        shutil.rmtree(root, ignore_errors=True)


def _calls(cloud: Cloud, token: str, s3: S3) -> dict[str, Any]:
    """One read per API, as the member; each answer as it came."""
    headers = {"X-Auth-Token": token}
    get = cloud.client.get
    return {
        "nova": get("/compute/v2.1/servers", headers=headers),
        "cinder": get("/volume/v3/volumes", headers=headers),
        "neutron": get("/network/v2.0/networks", headers=headers),
        "glance": get("/image/v2/images", headers=headers),
        "keystone": get("/identity/v3/auth/projects", headers=headers),
        "s3": s3.send("GET", "/"),
    }


def _assert_unavailable(name: str, response: Any) -> None:
    assert response.status_code == 503, (name, response.status_code, response.text)
    assert int(response.headers["Retry-After"]) > 0, name
    if name == "s3":
        root = ElementTree.fromstring(response.content)
        assert root.tag == "Error" and root.findtext("Code") == "ServiceUnavailable"
        return
    body = json.loads(response.content)
    if name in ("nova", "cinder"):
        assert body["serviceUnavailable"]["code"] == 503, body
    elif name == "neutron":
        assert body["NeutronError"]["type"], body
    elif name == "glance":
        assert body["code"] == 503, body
    else:  # Keystone's `error`
        assert body["error"]["code"] == 503, body
    assert "Traceback" not in response.text and "psycopg" not in response.text


def test_every_api_answers_503_while_postgresql_is_down_and_recovers_by_itself(
    pg_cloud: Cloud, own_postgres: PostgresServer
) -> None:
    cloud = pg_cloud
    alice = cloud.member()
    s3 = S3(cloud, alice)
    made = cloud.client.post(
        "/network/v2.0/networks", headers=alice.headers, json={"network": {"name": "kept"}}
    )
    assert made.status_code == 201, made.text
    assert s3.send("PUT", "/kept-bucket").status_code == 200
    before = _calls(cloud, alice.token, s3)
    assert all(r.status_code == 200 for r in before.values()), before

    own_postgres.stop()
    try:
        down = _calls(cloud, alice.token, s3)
        for name, response in down.items():
            _assert_unavailable(name, response)
        refused = cloud.client.post(
            "/network/v2.0/networks", headers=alice.headers, json={"network": {"name": "lost"}}
        )
        _assert_unavailable("neutron", refused)
    finally:
        own_postgres.start()

    after = _calls(cloud, alice.token, s3)
    assert all(r.status_code == 200 for r in after.values()), {
        k: (r.status_code, r.text[:200]) for k, r in after.items()
    }
    names = {n["name"] for n in after["neutron"].json()["networks"]}
    assert "kept" in names and "lost" not in names  # acknowledged: there; refused: not
    assert b"<Name>kept-bucket</Name>" in after["s3"].content


def test_no_postgres_server_of_the_tests_outlives_them() -> None:
    """A test server is gone once its context ended: pg_ctl stop, directory removed, no
    process left (`postgres_server` itself raises if one is)."""
    with postgres_server() as pg:
        data = pg.data
        assert pg.running() and _processes_of(data)
    assert not data.exists()
    assert _processes_of(data) == []
