"""`souverain serve --roles` on one PostgreSQL: an api-only node serves the APIs and holds
no lease and makes nothing in the kernel; a background-only node answers only its health,
takes every cloud-wide lease and does the work (here Swift's expirer deletes an object the
api node stored with X-Delete-After); a network-only node makes its data plane."""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import signal
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from email.message import Message
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import text

from souverain.db.engine import make_engine
from souverain.server import LEASED_WORK, _dataplane_prefix
from tests import host_hygiene
from tests.host_cleanup import kill_guests
from tests.platform.conftest import Server, server_env, start_node
from tests.platform.test_scale_out import _free_port
from tests.postgres import postgres_session, shared_server

pytestmark = pytest.mark.e2e
EXPIRER_ROUNDS = "1"  # seconds between the expirer's rounds (objectstore.meter_interval)

__all__ = ["postgres_session"]


@pytest.fixture
def database(postgres_session: None) -> Iterator[str]:
    with shared_server().database() as url:
        yield url


def _until(condition: Callable[[], bool], within: float, what: str) -> None:
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.1)
    raise AssertionError(f"not within {within}s: {what}")


def _call(
    url: str, method: str = "GET", body: bytes | None = None, headers: dict[str, str] | None = None
) -> tuple[int, Message, bytes]:
    request = urllib.request.Request(url, data=body, method=method, headers=headers or {})
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, response.headers, response.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.headers, exc.read()


def _rows(url: str, query: str) -> list[Any]:
    engine = make_engine(url)
    try:
        with engine.connect() as conn:
            return list(conn.execute(text(query)).all())
    finally:
        engine.dispose()


def _kernel_objects(data_dir: Path) -> list[str]:
    """The links, namespaces and nftables tables of this data dir's prefix on the host."""
    digest = hashlib.sha256(str(data_dir.resolve()).encode()).hexdigest()
    prefix = _dataplane_prefix(digest)
    links = [n for n in os.listdir("/sys/class/net") if host_hygiene.link_prefix(n) == prefix]
    spaces = os.listdir("/run/netns") if os.path.isdir("/run/netns") else []
    namespaces = [n for n in spaces if host_hygiene.namespace_prefix(n) == prefix]
    tables = [t for t in host_hygiene.souverain_tables() if host_hygiene.table_prefix(t) == prefix]
    return links + namespaces + tables


def _stop(nodes: list[Server]) -> None:
    for node in nodes:
        if node.proc is not None and node.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(node.proc.pid, signal.SIGKILL)
            node.proc.wait(timeout=30)
        kill_guests(node.data_dir)


def _node(tmp_path: Path, name: str, env: dict[str, str], roles: str) -> tuple[Server, str]:
    """A node of these roles (the first one's keys, as every node of a cloud has); its URL."""
    if name != "a":
        shutil.copytree(tmp_path / "a" / "keys", tmp_path / name / "keys")
    port = _free_port()
    ready = "/identity/v3" if "api" in roles else "/health"
    env = dict(env, SOUVERAIN_SERVER__ROLES=roles)
    return start_node(tmp_path / name, port, _free_port(), env, ready), f"http://127.0.0.1:{port}"


@pytest.mark.skipif(os.geteuid() != 0, reason="a network node's data plane needs root")
def test_api_background_and_network_nodes_each_run_their_part_only(
    tmp_path: Path, database: str
) -> None:
    env = server_env(
        SOUVERAIN_DATABASE__URL=database, SOUVERAIN_OBJECTSTORE__METER_INTERVAL=EXPIRER_ROUNDS
    )
    nodes: list[Server] = []
    try:
        api, base = _node(tmp_path, "a", env, "api")
        nodes.append(api)
        _store_expiring_object(api, base)
        time.sleep(3 * float(EXPIRER_ROUNDS))  # rounds an expirer on this node would have run
        assert _rows(database, "SELECT name FROM leases") == []
        assert len(_rows(database, "SELECT key FROM swift_expiring")) == 1
        assert _kernel_objects(api.data_dir) == []

        background, background_url = _node(tmp_path, "b", env, "background")
        nodes.append(background)
        _until(lambda: not _rows(database, "SELECT key FROM swift_expiring"), 20, "expiry")
        assert _rows(database, "SELECT key FROM s3_objects WHERE key = 'due'") == []
        _held_by(database, background)
        status, _, raw = _call(f"{background_url}/health")
        assert status == 200
        assert json.loads(raw) == {
            "status": "ok", "roles": ["background"], "leases": sorted(LEASED_WORK)
        }  # fmt: skip
        assert _call(f"{background_url}/identity/v3")[0] == 404
        for node in (api, background):
            assert _kernel_objects(node.data_dir) == [], node.data_dir

        # the check above can see a data plane: a `network` node's own appears
        network_env = server_env(SOUVERAIN_DATABASE__URL=database)  # a public range of its own
        network, _ = _node(tmp_path, "c", network_env, "network")
        nodes.append(network)
        _until(lambda: bool(_kernel_objects(network.data_dir)), 20, "the network node's plane")
        _held_by(database, background)  # still: a network node takes no lease
    finally:
        _stop(nodes)
    for node in nodes:
        assert _kernel_objects(node.data_dir) == []


def _store_expiring_object(node: Server, base: str) -> None:
    token = node.token()
    project = node.scope_of(token)["project"]["id"]
    container = f"{base}/object-storage/v1/AUTH_{project}/expiring"
    assert _call(container, "PUT", b"", {"X-Auth-Token": token})[0] in (201, 202)
    status, _, raw = _call(
        f"{container}/due", "PUT", b"soon gone", {"X-Auth-Token": token, "X-Delete-After": "1"}
    )
    assert status == 201, raw


def _held_by(database: str, node: Server) -> None:
    """Every cloud-wide lease is held by the node's serving process (one worker: itself)."""
    assert node.proc is not None
    _until(
        lambda: len(_rows(database, "SELECT name FROM leases")) == len(LEASED_WORK), 10, "leases"
    )
    for name, holder in _rows(database, "SELECT name, holder FROM leases"):
        assert int(holder.rsplit(":", 2)[1]) == node.proc.pid, (name, holder)
