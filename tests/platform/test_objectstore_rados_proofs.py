"""Proofs of the S3 object bytes in RADOS with real processes: `souverain serve` nodes,
boto3, and Ceph clusters whose OSDs are killed with SIGKILL.

1. An erasure-coded pool (k=2, m=1 over three OSDs) keeps a 100 MiB object as k+m chunks
   per RADOS object; with one OSD killed it is read back byte for byte.
2. An OSD killed during four parallel uploads loses no acknowledged object and causes no
   500; with two of three down a write answers 503 with Retry-After; the cluster heals and
   the start-up sweep leaves no orphan stripe.
3. Two nodes on one database and one pool serve the same bucket.

The kills happen in a private cluster (never in the worker's shared one); each proof is
bounded in time.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from botocore.exceptions import ClientError

from tests.ceph import CephCluster, ceph_cluster
from tests.host_cleanup import kill_guests
from tests.platform.rados_s3 import S3Node, rados_env, rados_objects, s3_client

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.skipif(os.geteuid() != 0, reason="Ceph daemons run as root here"),
]

MIB = 1024 * 1024
# recovery at full speed: the sparse files count as disks, where Ceph sleeps between
# recovery operations to spare client I/O
RECOVERY = {
    "osd_recovery_sleep_hdd": "0",
    "osd_recovery_sleep_hybrid": "0",
    "osd_max_backfills": "8",
    "osd_recovery_max_active": "8",
}


@pytest.fixture(scope="module")
def private() -> Iterator[CephCluster]:
    """A cluster of this module's own, so its OSDs may be killed; on BlueStore, so a
    restarted OSD catches up on what it missed instead of backfilling everything."""
    with ceph_cluster(objectstore="bluestore") as cluster:
        for option, value in RECOVERY.items():
            cluster.command("config", "set", "osd", option, value)
        yield cluster


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def mark_down(cluster: CephCluster, *osds: int) -> None:
    """kill -9 and tell the monitor at once (a test need not wait the heartbeat grace)."""
    for n in osds:
        cluster.kill_osd(n)
    cluster.command("osd", "down", *(str(n) for n in osds))


def drop_pool(cluster: CephCluster, pool: str) -> None:
    if pool in cluster.pools():
        cluster.command("osd", "pool", "delete", pool, pool, "--yes-i-really-really-mean-it")


def stop(*nodes: S3Node) -> None:
    for node in nodes:
        code = node.stop()
        kill_guests(node.server.data_dir)
        assert code == 0


def test_erasure_coded_object_survives_a_killed_osd(private: CephCluster, tmp_path: Path) -> None:
    pool = f"objects-ec-{uuid.uuid4().hex[:6]}"
    env = rados_env(
        private, pool, SOUVERAIN_OBJECTSTORE__RADOS_EC_PROFILE="k=2,m=1,crush-failure-domain=osd"
    )
    node = S3Node(tmp_path / "node", env)
    try:
        profile = private.command("osd", "pool", "get", pool, "erasure_code_profile")
        chunks = private.command(
            "osd", "erasure-code-profile", "get", profile["erasure_code_profile"]
        )
        assert (chunks["k"], chunks["m"]) == ("2", "1")
        # k readable chunks are enough to read; the operator allows writes at k as well
        private.command("osd", "pool", "set", pool, "min_size", "2")
        s3 = s3_client(node.s3_url, *node.credentials(), read_timeout=120)
        s3.create_bucket(Bucket="ec-proof")
        data = os.urandom(100 * MIB)
        s3.put_object(Bucket="ec-proof", Key="big", Body=data)
        stripes = rados_objects(private, pool)
        assert len(stripes) == 25  # 100 MiB in 4 MiB RADOS objects
        placed = private.command("osd", "map", pool, sorted(stripes)[0])
        assert sorted(placed["acting"]) == [0, 1, 2]  # one chunk on each OSD: k + m = 3
        mark_down(private, 0)
        got = s3.get_object(Bucket="ec-proof", Key="big")["Body"].read()
        assert sha(got) == sha(data)
    finally:
        stop(node)
        drop_pool(private, pool)  # before the restart: nothing of it to backfill
        if not private.daemons["osd.0"].alive():
            private.restart_osd(0)


class Uploads:
    """Four threads putting objects of mixed sizes until told to stop."""

    SIZES = (1, 10_000, 300_000, 1 * MIB + 17, 2 * MIB)

    def __init__(self, s3: Any) -> None:
        self.s3 = s3
        self.acked: dict[str, str] = {}
        self.statuses: list[int] = []
        self.retry_after: list[str] = []
        self.done = threading.Event()
        self.lock = threading.Lock()
        self.threads = [threading.Thread(target=self.run, args=(t,)) for t in range(4)]

    def run(self, thread: int) -> None:
        n = 0
        while not self.done.is_set():
            key = f"t{thread}/{n}"
            data = os.urandom(self.SIZES[n % len(self.SIZES)])
            n += 1
            try:
                self.s3.put_object(Bucket="load", Key=key, Body=data)
            except ClientError as exc:
                meta = exc.response["ResponseMetadata"]
                with self.lock:
                    self.statuses.append(meta["HTTPStatusCode"])
                    self.retry_after.append(meta["HTTPHeaders"].get("retry-after", ""))
                continue
            with self.lock:
                self.acked[key] = sha(data)

    def __enter__(self) -> Uploads:
        for thread in self.threads:
            thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.done.set()
        for thread in self.threads:
            thread.join(timeout=120)


def test_killed_osds_during_uploads_lose_no_acknowledged_object(
    private: CephCluster, tmp_path: Path
) -> None:
    pool = f"objects-{uuid.uuid4().hex[:6]}"
    env = rados_env(
        private,
        pool,
        SOUVERAIN_OBJECTSTORE__RADOS_STRIPE_BYTES=str(MIB),
        SOUVERAIN_OBJECTSTORE__RADOS_SWEEP_GRACE="0",
        SOUVERAIN_CEPH__OP_TIMEOUT="4",
    )
    node = S3Node(tmp_path / "node", env)
    try:
        s3 = s3_client(node.s3_url, *node.credentials(), read_timeout=60)
        s3.create_bucket(Bucket="load")
        with Uploads(s3) as load:
            time.sleep(2)
            mark_down(private, 1)  # one of three: the pool stays writable (min_size 2)
            time.sleep(5)
        assert 500 not in load.statuses
        assert all(status == 503 for status in load.statuses), load.statuses
        assert len(load.acked) > 10
        # two of three down: below min_size, a write waits op_timeout and answers 503
        mark_down(private, 2)
        began = time.monotonic()
        with pytest.raises(ClientError) as refused:
            s3.put_object(Bucket="load", Key="refused", Body=os.urandom(2 * MIB))
        meta = refused.value.response["ResponseMetadata"]
        assert meta["HTTPStatusCode"] == 503
        assert refused.value.response["Error"]["Code"] == "ServiceUnavailable"
        assert meta["HTTPHeaders"]["retry-after"] == "5"
        refused_after = time.monotonic() - began
        private.start_osd(1)
        healed = private.restart_osd(2)  # waits until every PG is active+clean again
        print(f"{len(load.acked)} objects acknowledged, {len(load.statuses)} answered 503; "
              f"with two OSDs down a write got 503 after {refused_after:.1f} s; "
              f"healed in {healed:.1f} s")  # fmt: skip
        for key, digest in load.acked.items():
            assert sha(s3.get_object(Bucket="load", Key=key)["Body"].read()) == digest, key
        stop(node)
        node = S3Node(tmp_path / "node", env)  # its start-up sweep removes what no row names
        blobs = {name.rpartition(".")[0] for name in rados_objects(private, pool)}
        assert len(blobs) == len(load.acked)
    finally:
        stop(node)
        drop_pool(private, pool)
        for n in (1, 2):
            if not private.daemons[f"osd.{n}"].alive():
                private.restart_osd(n)


def test_two_nodes_serve_the_same_bucket(ceph: CephCluster, tmp_path: Path) -> None:
    pool = f"objects-{uuid.uuid4().hex[:6]}"
    env = rados_env(ceph, pool)
    node_a = S3Node(tmp_path / "a", env)
    nodes = [node_a]
    try:
        shutil.copytree(tmp_path / "a" / "keys", tmp_path / "b" / "keys")
        env_b = dict(
            env,
            SOUVERAIN_DATABASE__URL=f"sqlite:///{tmp_path / 'a' / 'souverain.db'}",
            SOUVERAIN_NETWORK__DATAPLANE="false",
        )
        node_b = S3Node(tmp_path / "b", env_b)
        nodes.append(node_b)
        access, secret = node_a.credentials()
        via_a, via_b = (
            s3_client(node_a.s3_url, access, secret),
            s3_client(node_b.s3_url, access, secret),
        )
        via_a.create_bucket(Bucket="shared")
        data = os.urandom(9 * MIB + 5)
        via_a.put_object(Bucket="shared", Key="from-a", Body=data)
        assert sha(via_b.get_object(Bucket="shared", Key="from-a")["Body"].read()) == sha(data)
        upload = via_b.create_multipart_upload(Bucket="shared", Key="joined")["UploadId"]
        parts = [os.urandom(5 * MIB), os.urandom(MIB)]
        done = [
            {
                "PartNumber": n,
                "ETag": (via_a if n == 1 else via_b).upload_part(
                    Bucket="shared", Key="joined", UploadId=upload, PartNumber=n, Body=body
                )["ETag"],
            }
            for n, body in enumerate(parts, start=1)
        ]
        via_a.complete_multipart_upload(
            Bucket="shared", Key="joined", UploadId=upload, MultipartUpload={"Parts": done}
        )
        got = via_b.get_object(Bucket="shared", Key="joined")["Body"].read()
        assert got == b"".join(parts)
        via_b.delete_object(Bucket="shared", Key="from-a")
        via_a.delete_object(Bucket="shared", Key="joined")
        assert rados_objects(ceph, pool) == set()
    finally:
        stop(*nodes)
        drop_pool(ceph, pool)
