"""Root disks on RBD between two agent hosts (`compute.disk_backend = "rbd"`, images on RBD
too), with real processes, real guests and the shared Ceph cluster: an API node that runs
no guest and two `souverain agent` processes with the QEMU driver, on 127.0.0.1.

The tiny guest counts every second on its console and keeps a mark on its root disk's
boot partition. Live-migrated, only its memory moves: the count continues on the other host
without a gap, the destination made no disk of its own (no qcow2 overlay, no NBD mirror
target) and runs on the very RBD image the source ran on. Then its host dies (the agent
and its QEMU killed) and the server is evacuated: the new host opens the same RBD image
(the dead host's lock broken), and the guest finds the mark it wrote before.
"""

from __future__ import annotations

import base64
import json
import subprocess
import threading
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.ceph import CephCluster, shared_cluster
from tests.host_cleanup import kill_guests
from tests.platform.conftest import Server, ServerFactory
from tests.platform.test_host_agents import (
    DOWN_AFTER,
    AgentProcess,
    _admin,
    _server,
    _status,
    _until,
    _up,
    qemu_hosts,
)
from tests.platform.test_host_migration import _counts_on, _drain, _other, _ticks
from tests.postgres import sqlite_backend  # noqa: F401  (the module's `backend`)
from tests.vm.guest_support import TINY_IMAGE

pytestmark = pytest.mark.e2e
MARK = uuid.uuid4().hex[:12]
# counts on the console and on the root disk (so whichever QEMU runs it holds the disk's
# exclusive lock); writes a mark on the disk's boot partition the first time, says it found
# it every boot after
GUEST = f"""#!/bin/sh
if [ -f /mnt/root-disk/mark ]; then
    echo "<2>found mark $(cat /mnt/root-disk/mark)" > /dev/kmsg
else
    echo {MARK} > /mnt/root-disk/mark && sync && echo "<2>wrote mark" > /dev/kmsg
fi
( n=0; while true; do
    n=$((n+1)); echo "<2>tick $n" > /dev/kmsg; echo $n > /mnt/root-disk/last-tick; sleep 1
done ) &
exit 0
""".encode()


@pytest.fixture
def pools(ceph_session: None) -> Iterator[tuple[CephCluster, dict[str, str]]]:
    ceph = shared_cluster()
    suffix = uuid.uuid4().hex[:8]
    names = {"images": f"img-{suffix}", "disks": f"disks-{suffix}"}
    yield ceph, names
    for pool in names.values():
        if pool in ceph.pools():
            ceph.command("osd", "pool", "delete", pool, pool, "--yes-i-really-really-mean-it")


def _rbd_env(ceph: CephCluster, names: dict[str, str]) -> dict[str, str]:
    return {
        "SOUVERAIN_CEPH__CONF_FILE": str(ceph.conf),
        "SOUVERAIN_IMAGE__BACKEND": "rbd",
        "SOUVERAIN_IMAGE__RBD_POOL": names["images"],
        "SOUVERAIN_COMPUTE__DISK_BACKEND": "rbd",
        "SOUVERAIN_COMPUTE__RBD_POOL": names["disks"],
    }


@pytest.fixture
def api(
    make_server: ServerFactory, tmp_path: Path, pools: tuple[CephCluster, dict[str, str]]
) -> Server:
    ceph, names = pools
    server = make_server(
        SOUVERAIN_COMPUTE__LOCAL_HOST="false",
        SOUVERAIN_COMPUTE__SERVICE_DOWN_TIME=str(DOWN_AFTER),
        SOUVERAIN_COMPUTE__HOST_DEAD_AFTER="600",
        SOUVERAIN_NETWORK__DATAPLANE="false",
        **_rbd_env(ceph, names),
    ).start()
    assert server.proc is not None
    for stream, name in ((server.proc.stdout, "api.out"), (server.proc.stderr, "api.log")):
        threading.Thread(target=_drain, args=(stream, tmp_path / name), daemon=True).start()
    return server


@pytest.fixture
def hosts(
    api: Server, tmp_path: Path, pools: tuple[CephCluster, dict[str, str]]
) -> Iterator[dict[str, AgentProcess]]:
    ceph, names = pools
    with qemu_hosts(api, tmp_path, _rbd_env(ceph, names)) as made:
        yield made


def _rbd_info(ceph: CephCluster, spec: str) -> dict[str, Any]:
    out = subprocess.run(
        ["rbd", "info", spec, "--format", "json"],
        env=ceph.env(),
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    ).stdout
    info: dict[str, Any] = json.loads(out)
    return info


def _console(agent: AgentProcess, server_id: str) -> bytes:
    path = agent.instance(server_id) / "console.log"
    return path.read_bytes() if path.exists() else b""


def _qcow2_files(agent: AgentProcess) -> list[Path]:
    return list((agent.root / "data" / "agent" / "compute").rglob("*.qcow2"))


def test_rbd_root_disk_moves_memory_only_and_survives_its_hosts_death(
    api: Server, hosts: dict[str, AgentProcess], pools: tuple[CephCluster, dict[str, str]]
) -> None:
    ceph, names = pools
    conn = _admin(api)
    _until(lambda: _up(conn) >= {"hva", "hvb"}, what="both agents reported")
    image = conn.image.create_image(
        name="tiny", data=TINY_IMAGE.read_bytes(), disk_format="qcow2",
        container_format="bare", wait=True,
    )  # fmt: skip
    flavor = conn.compute.create_flavor(name="tiny.rbd", ram=128, vcpus=1, disk=1)
    server = conn.compute.create_server(
        name="shared", image_id=image.id, flavor_id=flavor.id, networks="none",
        user_data=base64.b64encode(GUEST).decode(),
    )  # fmt: skip
    server = _status(conn, server.id, "ACTIVE")
    first = str(server.compute_host)
    disk = f"{names['disks']}/{server.id}_disk"
    before = _rbd_info(ceph, disk)
    assert before["parent"]["pool"] == names["images"]  # a clone of the image's snapshot
    _until(lambda: len(_ticks(hosts[first], server.id)) >= 3, within=120, what="counting")
    assert b"wrote mark" in _console(hosts[first], server.id)
    assert not _qcow2_files(hosts[first])  # no local disk, no local image copy

    # live, with block_migration false: Nova's shared-storage live migration
    conn.compute.live_migrate_server(server, host=None, block_migration=False)
    second = _other(first)
    _until(
        lambda: (
            _server(conn, server.id).compute_host == second
            and _server(conn, server.id).status == "ACTIVE"
        ),
        within=120,
        what=f"the server ACTIVE on {second}",
    )
    _counts_on(hosts[second], server.id)
    assert not _qcow2_files(hosts[second])  # memory only: no overlay, no mirror target
    assert _rbd_info(ceph, disk)["id"] == before["id"]  # the very same RBD image
    _until(lambda: not hosts[first].instance(server.id).exists(), what="the source's copy gone")
    assert _rbd_info(ceph, disk)["id"] == before["id"]  # the source kept the shared disk
    (migration,) = list(conn.compute.migrations(instance_uuid=server.id))
    assert migration.status == "completed"

    # its host dies (agent and QEMU); it is evacuated back onto the same disk
    hosts[second].kill()
    kill_guests(hosts[second].root / "data" / "agent")
    _until(
        lambda: _server(conn, server.id).host_status in ("UNKNOWN", "DOWN"),
        within=DOWN_AFTER + 20,
        what="the dead host noticed",
    )
    conn.compute.evacuate_server(server.id)
    _until(
        lambda: (
            _server(conn, server.id).compute_host == first
            and _server(conn, server.id).status == "ACTIVE"
        ),
        within=120,
        what=f"the server evacuated to {first}",
    )
    _until(
        lambda: f"found mark {MARK}".encode() in _console(hosts[first], server.id),
        within=120,
        what="the guest finding the mark it wrote before",
    )
    assert _rbd_info(ceph, disk)["id"] == before["id"]
    # the dead host's QEMU held the lock (the guest wrote there): broken, with a blocklist
    log = (hosts[first].root / "agent.log").read_text()
    assert f"server {server.id} evacuated here on its RBD disk (1 lock(s) broken)" in log
    conn.compute.delete_server(server.id)
    _until(lambda: conn.compute.find_server(server.id) is None, what="deleted", within=60)
    listed = subprocess.run(
        ["rbd", "ls", names["disks"]], env=ceph.env(), capture_output=True, text=True, check=True
    ).stdout.split()
    assert f"{server.id}_disk" not in listed  # the delete removed the clone
