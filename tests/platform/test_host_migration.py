"""Servers move between two agent hosts, with real processes and real guests: an API node
that runs no guest itself and two `souverain agent` processes with the QEMU driver (each its
own data dir, both on 127.0.0.1 as their underlay), driven by openstacksdk and the
`openstack` CLI as an admin drives them.

The tiny guest counts every second on its console. Live-migrated (openstacksdk, then back
with `openstack server migrate --live-migration --wait`), it keeps counting on the other
host: every count from the first is in the destination's console (its history carried
over), none repeated, and it counts on there; os-migrations says completed. Stopped, it is cold-migrated and confirmed (the source's files go); migrated
again and reverted, it is back on its source and its destination's files go."""

from __future__ import annotations

import base64
import contextlib
import os
import re
import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

import openstack.connection
import pytest

from tests.platform.conftest import SOUVERAIN, Server, ServerFactory
from tests.platform.test_host_agents import (
    DOWN_AFTER,
    OPENSTACK,
    AgentProcess,
    _admin,
    _server,
    _status,
    _until,
    _up,
    qemu_hosts,
)
from tests.vm.guest_support import TINY_IMAGE

# Migration between hosts is what this module proves, not the database: it runs where a
# cloud of several hosts keeps its state, PostgreSQL (every API test runs on both).
pytestmark = [
    pytest.mark.e2e,
    pytest.mark.parametrize("backend", ["postgresql"], indirect=True),
]
COUNTER = b"""#!/bin/sh
( n=0; while true; do n=$((n+1)); echo "<2>tick $n" > /dev/kmsg; sleep 1; done ) &
exit 0
"""
TICK = re.compile(rb"tick (\d+)")


@pytest.fixture
def api(make_server: ServerFactory, tmp_path: Path) -> Server:
    server = make_server(
        SOUVERAIN_COMPUTE__LOCAL_HOST="false",
        SOUVERAIN_COMPUTE__SERVICE_DOWN_TIME=str(DOWN_AFTER + 7),
        SOUVERAIN_COMPUTE__HOST_DEAD_AFTER="600",
        SOUVERAIN_NETWORK__DATAPLANE="false",
    ).start()
    # two agents' heartbeats fill a 64 KiB pipe of access lines in about a minute: read
    # them into files as they come, or the server blocks writing its log
    assert server.proc is not None
    for stream, name in ((server.proc.stdout, "api.out"), (server.proc.stderr, "api.log")):
        threading.Thread(target=_drain, args=(stream, tmp_path / name), daemon=True).start()
    return server


def _drain(stream: IO[str] | None, path: Path) -> None:
    if stream is None:
        return
    with path.open("a") as out, contextlib.suppress(ValueError, OSError):
        for line in stream:
            out.write(line)


@pytest.fixture
def hosts(api: Server, tmp_path: Path) -> Iterator[dict[str, AgentProcess]]:
    with qemu_hosts(api, tmp_path) as made:
        yield made


def _ticks(agent: AgentProcess, server_id: str) -> list[int]:
    console = agent.instance(server_id) / "console.log"
    if not console.exists():
        return []
    return [int(n) for n in TICK.findall(console.read_bytes())]


def _counts_on(agent: AgentProcess, server_id: str) -> None:
    """The guest counts on after the move, every count from the first in this host's
    console once (its history carried over, none lost or repeated)."""
    seen = max(_ticks(agent, server_id))
    # A guest left paused never counts again. One that runs counts within a second or two,
    # but under TCG on a loaded CI host (two cores, four test workers, Ceph beside them) its
    # vCPU thread may wait its turn for many seconds: the continuity of the count proves
    # there was no gap, this wait only that the guest runs.
    _until(lambda: max(_ticks(agent, server_id)) > seen, within=45, what="the next count")
    ticks = _ticks(agent, server_id)
    assert ticks == list(range(1, len(ticks) + 1)), "a count was lost or repeated"


def _other(host: str) -> str:
    return {"hva": "hvb", "hvb": "hva"}[host]


def _moved_live(
    conn: openstack.connection.Connection,
    hosts: dict[str, AgentProcess],
    server_id: str,
    source: str,
) -> None:
    """The server runs on the other host, its count continued there without a gap."""
    dest = _other(source)
    _until(
        lambda: (
            _server(conn, server_id).compute_host == dest
            and _server(conn, server_id).status == "ACTIVE"
        ),
        within=120,
        what=f"the server ACTIVE on {dest}",
    )
    _counts_on(hosts[dest], server_id)
    _until(lambda: not hosts[source].instance(server_id).exists(), what="the source's copy gone")


def _migration(conn: openstack.connection.Connection, server_id: str) -> Any:
    return next(iter(conn.compute.migrations(instance_uuid=server_id)))


def test_servers_move_between_agent_hosts_live_and_cold(
    api: Server, hosts: dict[str, AgentProcess]
) -> None:
    conn = _admin(api)
    _until(lambda: _up(conn) >= {"hva", "hvb"}, what="both agents reported")
    image = conn.image.create_image(
        name="tiny", data=TINY_IMAGE.read_bytes(), disk_format="qcow2",
        container_format="bare", wait=True,
    )  # fmt: skip
    flavor = conn.compute.create_flavor(name="tiny.move", ram=128, vcpus=1, disk=1)
    server = conn.compute.create_server(
        name="mover", image_id=image.id, flavor_id=flavor.id, networks="none",
        user_data=base64.b64encode(COUNTER).decode(),
    )  # fmt: skip
    server = _status(conn, server.id, "ACTIVE")
    first = str(server.compute_host)
    _until(lambda: len(_ticks(hosts[first], server.id)) >= 3, within=120, what="counting")

    # live, through openstacksdk
    conn.compute.live_migrate_server(server, host=None, block_migration="auto")
    _moved_live(conn, hosts, server.id, first)
    assert _migration(conn, server.id).status == "completed"

    # live back, as an operator types it
    moved = subprocess.run(
        [
            *(OPENSTACK, "--os-cloud", "souverain", "--os-compute-api-version", "2.90"),
            *("server", "migrate", "--live-migration", "--wait", server.id),
        ],
        env={**os.environ, "OS_CLIENT_CONFIG_FILE": str(api.data_dir / "clouds.yaml")},
        capture_output=True, text=True, timeout=180, check=False,
    )  # fmt: skip
    assert moved.returncode == 0, moved.stderr
    _moved_live(conn, hosts, server.id, _other(first))

    # cold, stopped: confirmed, then once more and reverted
    conn.compute.stop_server(server.id)
    _status(conn, server.id, "SHUTOFF")
    conn.compute.migrate_server(server.id)
    _until(lambda: _server(conn, server.id).status == "VERIFY_RESIZE", within=120, what="migrated")
    assert _server(conn, server.id).compute_host == _other(first)
    assert hosts[first].instance(server.id).exists()  # kept until confirmed
    conn.compute.confirm_server_resize(server.id)
    _status(conn, server.id, "SHUTOFF")
    _until(lambda: not hosts[first].instance(server.id).exists(), what="source copy removed")
    back = _other(first)
    conn.compute.migrate_server(server.id)
    _until(lambda: _server(conn, server.id).status == "VERIFY_RESIZE", within=120, what="migrated")
    assert _server(conn, server.id).compute_host == first
    conn.compute.revert_server_resize(server.id)
    _status(conn, server.id, "SHUTOFF")
    assert _server(conn, server.id).compute_host == back
    _until(lambda: not hosts[first].instance(server.id).exists(), what="dest copy removed")
    statuses = [m.status for m in conn.compute.migrations(instance_uuid=server.id)]
    assert statuses == ["reverted", "confirmed", "completed", "completed"]
    conn.compute.start_server(server.id)
    _status(conn, server.id, "ACTIVE")
    before = len(_ticks(hosts[back], server.id))
    _until(lambda: len(_ticks(hosts[back], server.id)) > before, within=120, what="it runs")
    _drained(api, conn, hosts, back, [server.id, _stopped_on(conn, back, image.id, flavor.id)])


def _stopped_on(
    conn: openstack.connection.Connection, host: str, image_id: str, flavor_id: str
) -> str:
    made = conn.compute.create_server(
        name="idle", image_id=image_id, flavor_id=flavor_id, networks="none",
        availability_zone=f"nova:{host}",
    )  # fmt: skip
    _status(conn, made.id, "ACTIVE")
    conn.compute.stop_server(made.id)
    _status(conn, made.id, "SHUTOFF")
    return str(made.id)


def _drained(
    api: Server,
    conn: openstack.connection.Connection,
    hosts: dict[str, AgentProcess],
    host: str,
    servers: list[str],
) -> None:
    """`souverain host drain` moves the running server live and the stopped one cold."""
    done = subprocess.run(
        [SOUVERAIN, "host", "drain", host, "--clouds-file", str(api.data_dir / "clouds.yaml")],
        env=api.env, capture_output=True, text=True, timeout=300, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    assert f"host {host}: disabled for new servers" in done.stdout
    assert f"host {host}: 2 moved, 0 left" in done.stdout
    states = {s: (_server(conn, s).compute_host, _server(conn, s).status) for s in servers}
    assert states == {servers[0]: (_other(host), "ACTIVE"), servers[1]: (_other(host), "SHUTOFF")}
    _until(lambda: not any(hosts[host].instance(s).exists() for s in servers), what="emptied")
    for server_id in servers:
        conn.compute.delete_server(server_id)
    _until(lambda: not list(conn.compute.servers()), what="every server deleted")
