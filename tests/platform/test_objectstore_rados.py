"""Object bytes in RADOS (objectstore/rados_store.py) against the shared real cluster: blobs
cut into stripes, read back by range, removed whole, swept only when old, and pools made at
start (replicated or erasure-coded) or refused with a message saying what to do."""

from __future__ import annotations

import errno
import hashlib
import os
import subprocess
import time
import uuid
from collections.abc import Iterator

import pytest

from souverain.common import ceph as ceph_
from souverain.config import Settings
from souverain.objectstore.rados_store import LAYOUT_XATTR, RadosBlobStore, stripe_name
from souverain.objectstore.store import StorageFull
from tests.ceph import CephCluster, shared_cluster

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="Ceph daemons run as root here")

STRIPE = 64 * 1024


def connection(cluster: CephCluster) -> ceph_.CephConnection:
    conn = ceph_.connection_from(Settings.model_validate({"ceph": cluster.settings()}))
    assert conn is not None
    return conn


def drop_pool(cluster: CephCluster, pool: str) -> None:
    if pool in cluster.pools():
        cluster.command("osd", "pool", "delete", pool, pool, "--yes-i-really-really-mean-it")


def objects_in(cluster: CephCluster, pool: str) -> set[str]:
    listed = subprocess.run(
        ["rados", "-p", pool, "ls"], env=cluster.env(), capture_output=True, text=True, check=True
    )
    return set(listed.stdout.split())


@pytest.fixture(scope="module")
def store(ceph_session: None) -> Iterator[RadosBlobStore]:
    """One pool for the module (a pool takes seconds to become clean)."""
    ceph = shared_cluster()
    pool = f"objects-{uuid.uuid4().hex[:8]}"
    conn = connection(ceph)
    blobs = RadosBlobStore(conn, pool, stripe_bytes=STRIPE, sweep_grace=0)
    try:
        blobs.setup()
        yield blobs
    finally:
        blobs.close()
        conn.close()
        drop_pool(ceph, pool)


def write(store: RadosBlobStore, data: bytes, piece: int = 10_000) -> str:
    writer = store.writer(["sha256"])
    for at in range(0, len(data), piece):
        writer.write(data[at : at + piece])
    blob_id = writer.commit()
    assert writer.digests.hex("sha256") == hashlib.sha256(data).hexdigest()
    return blob_id


def test_a_blob_is_stripes_with_its_layout_on_the_first(
    ceph: CephCluster, store: RadosBlobStore
) -> None:
    data = os.urandom(3 * STRIPE + 123)
    blob_id = write(store, data)
    mine = {name for name in objects_in(ceph, store.pool) if name.startswith(blob_id)}
    assert mine == {stripe_name(blob_id, n) for n in range(4)}
    layout = subprocess.run(
        ["rados", "-p", store.pool, "getxattr", stripe_name(blob_id, 0), LAYOUT_XATTR],
        env=ceph.env(), capture_output=True, text=True, check=True,
    ).stdout  # fmt: skip
    assert '"stripes": 4' in layout and f'"stripe": {STRIPE}' in layout
    reader = store.open_segments([[blob_id, len(data)]])
    try:
        assert b"".join(reader.chunks(0, len(data) - 1)) == data
    finally:
        reader.close()


@pytest.mark.parametrize(
    ("start", "end"),
    [(0, 0), (STRIPE - 1, STRIPE), (STRIPE, 2 * STRIPE - 1), (100, 3 * STRIPE + 50)],
)
def test_ranges_across_stripes_and_segments_read_the_joined_bytes(
    store: RadosBlobStore, start: int, end: int
) -> None:
    first, second = os.urandom(2 * STRIPE + 7), os.urandom(STRIPE + 99)
    segments = [[write(store, first), len(first)], [write(store, second), len(second)]]
    reader = store.open_segments(segments)
    try:
        got = b"".join(reader.chunks(start, end, chunk=10_000))
    finally:
        reader.close()
    assert got == (first + second)[start : end + 1]


def test_delete_and_abort_leave_no_stripe(ceph: CephCluster, store: RadosBlobStore) -> None:
    before = objects_in(ceph, store.pool)
    blob_id = write(store, os.urandom(5 * STRIPE))
    store.delete([blob_id, "0" * 32])  # an unknown id is no error
    writer = store.writer()
    writer.write(os.urandom(3 * STRIPE))  # two stripes sent, one held back
    writer.abort()
    assert objects_in(ceph, store.pool) == before


def test_an_empty_blob_reads_as_nothing(store: RadosBlobStore) -> None:
    blob_id = write(store, b"")
    reader = store.open_segments([[blob_id, 0]])
    assert list(reader.chunks(0, -1)) == []
    reader.close()


def test_sweep_removes_unreferenced_blobs_only_once_past_the_grace(
    ceph: CephCluster, store: RadosBlobStore
) -> None:
    others = {name.rpartition(".")[0] for name in objects_in(ceph, store.pool)}
    kept = write(store, os.urandom(2 * STRIPE))
    write(store, os.urandom(2 * STRIPE + 1))  # no row points at it
    store.sweep_grace = 3600  # an upload another node is about to commit is left alone
    try:
        assert store.sweep({kept, *others}) == 0
        store.sweep_grace = 0
        assert store.sweep({kept, *others}) == 3
    finally:
        store.sweep_grace = 0
    left = {name for name in objects_in(ceph, store.pool) if name.startswith(kept)}
    assert left == {stripe_name(kept, 0), stripe_name(kept, 1)}


def test_a_missing_blob_fails_when_opened_not_mid_body(store: RadosBlobStore) -> None:
    with pytest.raises(OSError) as missing:
        store.open_segments([["f" * 28 + "0001", 10]])
    assert missing.value.errno == errno.ENOENT


def test_a_blob_keeps_the_stripe_size_it_was_written_with(store: RadosBlobStore) -> None:
    data = os.urandom(5 * STRIPE + 1)
    blob_id = write(store, data)
    store.stripe_bytes = 4 * STRIPE  # the operator changed rados_stripe_bytes since
    reader = store.open_segments([[blob_id, len(data)]])
    try:
        assert (
            b"".join(reader.chunks(STRIPE - 3, 4 * STRIPE + 2)) == data[STRIPE - 3 : 4 * STRIPE + 3]
        )
    finally:
        reader.close()
        store.stripe_bytes = STRIPE


def test_an_erasure_coded_pool_is_made_from_k_and_m(ceph: CephCluster) -> None:
    pool = f"objects-ec-{uuid.uuid4().hex[:8]}"
    conn = connection(ceph)
    blobs = RadosBlobStore(conn, pool, ec_profile="k=2,m=1,crush-failure-domain=osd")
    try:
        blobs.setup()
        blobs.setup()  # the second start uses the pool as it is
        details = ceph.command("osd", "pool", "get", pool, "erasure_code_profile")
        profile = ceph.command(
            "osd", "erasure-code-profile", "get", details["erasure_code_profile"]
        )
        assert (profile["k"], profile["m"]) == ("2", "1")
        assert "rados" in ceph.command("osd", "pool", "application", "get", pool)
    finally:
        blobs.close()
        conn.close()
        drop_pool(ceph, pool)
        ceph.command("osd", "erasure-code-profile", "rm", f"souverain-{pool}")


def test_a_pool_that_cannot_be_made_says_what_to_do(ceph: CephCluster) -> None:
    pool = f"objects-bad-{uuid.uuid4().hex[:8]}"
    conn = connection(ceph)
    blobs = RadosBlobStore(conn, pool, ec_profile="no-such-profile")
    try:
        with pytest.raises(RuntimeError, match="Create the pool yourself"):
            blobs.setup()
        assert pool not in ceph.pools()
    finally:
        conn.close()


def test_a_full_pool_refuses_at_once_and_still_takes_deletes(ceph: CephCluster) -> None:
    pool = f"objects-full-{uuid.uuid4().hex[:8]}"
    conn = connection(ceph)
    blobs = RadosBlobStore(conn, pool, stripe_bytes=STRIPE)
    try:
        blobs.setup()
        ceph.command("osd", "pool", "set-quota", pool, "max_objects", "2")
        first = write(blobs, os.urandom(STRIPE + 1))  # two RADOS objects: the quota
        deadline = time.monotonic() + 60
        while "full_quota" not in str(pool_flags(ceph, pool)):  # the monitor notices
            assert time.monotonic() < deadline, "the pool was never marked full"
            time.sleep(0.5)
        conn.rados().wait_for_latest_osdmap()  # the flag reaches the client's map too
        began = time.monotonic()
        with pytest.raises(StorageFull, match="Disk quota exceeded"):
            write(blobs, b"one byte too many")
        assert time.monotonic() - began < 5  # not held until the op timeout
        blobs.delete([first])
        assert objects_in(ceph, pool) == set()
    finally:
        blobs.close()
        conn.close()
        drop_pool(ceph, pool)


def pool_flags(cluster: CephCluster, pool: str) -> list[str]:
    detail = cluster.command("osd", "pool", "ls", "detail")
    return [p.get("flags_names", "") for p in detail if p["pool_name"] == pool]
