"""An RBD volume moves between guests on two agent hosts (the issue's proof): an API node
that runs no guest and two `souverain agent` processes with the QEMU driver, volumes on
the shared Ceph cluster (`volume.backend = "rbd"`; each agent reaches it with its own
`[ceph]` settings), driven by openstacksdk as an admin drives it.

Guest A on hva writes known bytes to the volume and prints their sha256; the volume is
detached (available only once hva's QEMU let go) and attached to guest B on hvb, which
reads the same sha256; librbd reads the same bytes from outside. Neither host's
assignment ever names the volume while it is the other's."""

from __future__ import annotations

import base64
import hashlib
import re
import threading
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import openstack.connection
import pytest

from souverain.common.ceph import bindings
from tests.ceph import CephCluster, shared_cluster
from tests.platform.conftest import Server, ServerFactory
from tests.platform.test_host_agents import (
    DOWN_AFTER,
    AgentProcess,
    _admin,
    _status,
    _until,
    _up,
    qemu_hosts,
)
from tests.platform.test_host_migration import _drain
from tests.postgres import sqlite_backend  # noqa: F401  (the module's `backend`)
from tests.vm.guest_support import TINY_IMAGE

pytestmark = pytest.mark.e2e
MIB = 1024 * 1024
SEED = uuid.uuid4().hex[:16]
PATTERN = (f"souverain-{SEED}\n".encode() * (4 * MIB))[: 4 * MIB]
PATTERN_SHA = hashlib.sha256(PATTERN).hexdigest()
# whenever /dev/vdc appears: the writer fills its first 4 MiB once; both print the sha256
# of the first 4 MiB and the serial as they read them from the device
WATCHER = """#!/bin/sh
( while true; do
    while [ ! -b /dev/vdc ]; do sleep 1; done
    {write}
    echo "<2>seen sha256=$(dd if=/dev/vdc bs=65536 count=64 2>/dev/null | sha256sum | \
cut -d' ' -f1) serial=$(cat /sys/block/vdc/serial)" > /dev/kmsg
    while [ -b /dev/vdc ]; do sleep 1; done
    echo "<2>vdc gone" > /dev/kmsg
  done ) &
exit 0
"""
WRITE = (
    f"if [ ! -f /tmp/written ]; then yes souverain-{SEED} | head -c 4194304 > /tmp/p; "
    "dd if=/tmp/p of=/dev/vdc bs=65536 conv=fsync 2>/dev/null; sync; touch /tmp/written; "
    'echo "<2>wrote" > /dev/kmsg; fi'
)
SEEN = re.compile(rb"seen sha256=([0-9a-f]{64}) serial=(\S*)")


@pytest.fixture
def pool(ceph_session: None) -> Iterator[tuple[CephCluster, str]]:
    ceph = shared_cluster()
    name = f"agvol-{uuid.uuid4().hex[:8]}"
    yield ceph, name
    if name in ceph.pools():
        ceph.command("osd", "pool", "delete", name, name, "--yes-i-really-really-mean-it")


@pytest.fixture
def api(make_server: ServerFactory, tmp_path: Path, pool: tuple[CephCluster, str]) -> Server:
    ceph, name = pool
    server = make_server(
        SOUVERAIN_COMPUTE__LOCAL_HOST="false",
        SOUVERAIN_COMPUTE__SERVICE_DOWN_TIME=str(DOWN_AFTER + 7),
        SOUVERAIN_COMPUTE__HOST_DEAD_AFTER="600",
        SOUVERAIN_NETWORK__DATAPLANE="false",
        SOUVERAIN_VOLUME__BACKEND="rbd",
        SOUVERAIN_VOLUME__RBD_POOL=name,
        SOUVERAIN_CEPH__CONF_FILE=str(ceph.conf),
        SOUVERAIN_CEPH__USER=ceph.user,
    ).start()
    assert server.proc is not None
    for stream, log in ((server.proc.stdout, "api.out"), (server.proc.stderr, "api.log")):
        threading.Thread(target=_drain, args=(stream, tmp_path / log), daemon=True).start()
    return server


@pytest.fixture
def hosts(
    api: Server, tmp_path: Path, pool: tuple[CephCluster, str]
) -> Iterator[dict[str, AgentProcess]]:
    ceph, _ = pool
    # the host's own access to the cluster
    access = {"SOUVERAIN_CEPH__CONF_FILE": str(ceph.conf), "SOUVERAIN_CEPH__USER": ceph.user}
    with qemu_hosts(api, tmp_path, access) as made:
        yield made


def _console(agent: AgentProcess, server_id: str) -> bytes:
    path = agent.instance(server_id) / "console.log"
    return path.read_bytes() if path.exists() else b""


def _seen(agent: AgentProcess, server_id: str) -> list[tuple[str, str]]:
    return [(a.decode(), b.decode()) for a, b in SEEN.findall(_console(agent, server_id))]


def _volume(conn: openstack.connection.Connection, volume_id: str, status: str) -> Any:
    def reached() -> Any:
        volume = conn.block_storage.get_volume(volume_id)
        assert volume.status not in ("error", "error_deleting"), volume
        return volume.status == status and volume

    return _until(reached, within=90, what=f"volume {volume_id} {status}")


def _boot(
    conn: openstack.connection.Connection, name: str, host: str, ids: tuple[str, str], write: str
) -> str:
    image_id, flavor_id = ids
    made = conn.compute.create_server(
        name=name, image_id=image_id, flavor_id=flavor_id, networks="none",
        availability_zone=f"nova:{host}",
        user_data=base64.b64encode(WATCHER.format(write=write).encode()).decode(),
    )  # fmt: skip
    return str(made.id)


def _image_bytes(ceph: CephCluster, pool: str, volume_id: str) -> str:
    rados, rbd = bindings("rados"), bindings("rbd")
    with (
        rados.Rados(conffile=str(ceph.conf), rados_id=ceph.user) as cluster,
        cluster.open_ioctx(pool) as ctx,
        rbd.Image(ctx, f"volume-{volume_id}", read_only=True) as image,
    ):
        return hashlib.sha256(image.read(0, 4 * MIB)).hexdigest()


def test_a_volume_written_on_one_host_is_read_on_another(
    api: Server, hosts: dict[str, AgentProcess], pool: tuple[CephCluster, str]
) -> None:
    conn = _admin(api)
    _until(lambda: _up(conn) >= {"hva", "hvb"}, what="both agents reported")
    image = conn.image.create_image(
        name="tiny", data=TINY_IMAGE.read_bytes(), disk_format="qcow2",
        container_format="bare", wait=True,
    )  # fmt: skip
    flavor = conn.compute.create_flavor(name="tiny.vol", ram=128, vcpus=1, disk=1)
    ids = (str(image.id), str(flavor.id))
    writer = _boot(conn, "writer", "hva", ids, WRITE)
    reader = _boot(conn, "reader", "hvb", ids, ":")
    for server_id in (writer, reader):
        _status(conn, server_id, "ACTIVE")
    volume = conn.block_storage.create_volume(size=1, name="carried")
    _volume(conn, volume.id, "available")

    conn.compute.create_volume_attachment(writer, volume=volume.id)
    _volume(conn, volume.id, "in-use")
    _until(lambda: _seen(hosts["hva"], writer), within=120, what="the writer saw the volume")
    assert b"wrote" in _console(hosts["hva"], writer)
    assert _seen(hosts["hva"], writer) == [(PATTERN_SHA, volume.id[:20])]

    conn.compute.delete_volume_attachment(writer, volume.id)
    _volume(conn, volume.id, "available")  # only once hva's QEMU let go
    gone = lambda: b"vdc gone" in _console(hosts["hva"], writer)  # noqa: E731
    _until(gone, within=30, what="the writer's guest saw its disk go")
    assert _image_bytes(*pool, volume.id) == PATTERN_SHA  # the bytes are in the cluster

    conn.compute.create_volume_attachment(reader, volume=volume.id)
    _volume(conn, volume.id, "in-use")
    _until(lambda: _seen(hosts["hvb"], reader), within=120, what="the reader saw the volume")
    assert _seen(hosts["hvb"], reader) == [(PATTERN_SHA, volume.id[:20])]
    attached = [a.server_id for a in conn.compute.volume_attachments(reader)]
    assert attached == [reader]
    assert list(conn.compute.volume_attachments(writer)) == []

    conn.compute.delete_volume_attachment(reader, volume.id)
    _volume(conn, volume.id, "available")
    for server_id in (writer, reader):
        conn.compute.delete_server(server_id)
        conn.compute.wait_for_delete(conn.compute.get_server(server_id), wait=120)
    conn.block_storage.delete_volume(volume.id)
