"""Multipart uploads left unfinished past `objectstore.abort_incomplete_after` are aborted
by the server, as S3 lifecycle's AbortIncompleteMultipartUpload does: gone from the
listing, their parts' bytes out of the bucket's totals, the quota and the next gauge.

The limit is set to 300 s so the stepping clock stays within SigV4's 15 minutes of skew.
"""

from __future__ import annotations

import shutil
import tempfile
import threading
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from souverain import server
from souverain.billing.models import MeterEvent
from souverain.common.clock import Clock
from souverain.common.metering import gib
from souverain.db.leases import LeaseKeeper
from souverain.objectstore.service import set_storage_quota
from souverain.server import SWEEPS_LEASE

from .conftest import _fast_tmp_root
from .support import ADMIN_PASSWORD, S3, Cloud, SteppingClock, TestClient, settings_for

AFTER = 300


@pytest.fixture
def clock() -> SteppingClock:
    return SteppingClock()


@pytest.fixture
def cloud(clock: SteppingClock) -> Iterator[Cloud]:
    root = Path(tempfile.mkdtemp(prefix="souverain-expiry-", dir=_fast_tmp_root()))
    settings = settings_for(root / "data")
    settings.objectstore.abort_incomplete_after = AFTER
    try:
        with pytest.MonkeyPatch.context() as patch:
            patch.setenv("SOUVERAIN_ADMIN_PASSWORD", ADMIN_PASSWORD)
            built = server.prepare(settings, clock=Clock(clock.now))
        try:
            with TestClient(built.app, base_url="http://testserver") as client:
                yield Cloud(client, built)
        finally:
            built.close()
    finally:
        shutil.rmtree(root, ignore_errors=True)


def gauges(cloud: Cloud, bucket: str) -> list[Decimal]:
    """The bucket's `object.gb` gauges, oldest first."""
    with cloud.platform.db.session() as s:
        return [
            Decimal(v)
            for v in s.scalars(
                select(MeterEvent.value)
                .where(MeterEvent.metric == "object.gb", MeterEvent.resource_id == bucket)
                .order_by(MeterEvent.id)
            )
        ]


def ok(response: Any, status: int = 200) -> Any:
    assert response.status_code == status, response.text
    return response


def tag(text: str, name: str) -> str:
    return text.split(f"<{name}>")[1].split(f"</{name}>")[0]


def start(s3: S3, path: str, *sizes: int) -> tuple[str, list[str]]:
    """An upload with parts of these sizes: its id and the parts' ETags."""
    upload_id = tag(ok(s3.send("POST", f"{path}?uploads")).text, "UploadId")
    etags = [
        ok(s3.send("PUT", f"{path}?partNumber={n}&uploadId={upload_id}", b"p" * size)).headers[
            "etag"
        ]
        for n, size in enumerate(sizes, start=1)
    ]
    return upload_id, etags


def completion(etags: list[str]) -> bytes:
    listed = "".join(
        f"<Part><PartNumber>{n}</PartNumber><ETag>{e}</ETag></Part>"
        for n, e in enumerate(etags, start=1)
    )
    return f"<CompleteMultipartUpload>{listed}</CompleteMultipartUpload>".encode()


def no_such_upload(response: Any) -> None:
    assert response.status_code == 404, response.text
    assert "<Code>NoSuchUpload</Code>" in response.text


def new_bucket(cloud: Cloud, name: str) -> tuple[S3, str, str]:
    member = cloud.member()
    s3 = S3(cloud, member)
    bucket = cloud.unique(name).replace("-", "")
    ok(s3.send("PUT", f"/{bucket}"))
    return s3, bucket, member.project_id


def test_an_upload_older_than_the_limit_is_aborted_and_a_younger_one_stays(
    cloud: Cloud, clock: SteppingClock
) -> None:
    store = cloud.platform.objectstore
    s3, bucket, project_id = new_bucket(cloud, "expiry")
    set_storage_quota(cloud.platform.db, store.clock, project_id, 2000, None)
    old, old_etags = start(s3, f"/{bucket}/old", 1000, 500)
    info = store.bucket(bucket)
    _, parts, _ = store.list_parts(info, "old", old, 0, 10)
    blobs = [store.store.path(p.blob_id) for p in parts]
    assert all(path.exists() for path in blobs)
    clock.advance(AFTER - 100)
    young, young_etags = start(s3, f"/{bucket}/young", 300)
    assert store.bucket_usage(info) == (1800, 0)
    quota = s3.send("PUT", f"/{bucket}/small", b"s" * 500)  # the parts hold the quota
    assert quota.status_code == 403 and "<Code>QuotaExceeded</Code>" in quota.text
    assert store.abort_expired_uploads() == 0  # nothing old enough yet

    clock.advance(150)  # old: 350 s, past the limit; young: 150 s
    assert store.abort_expired_uploads() == 1
    listed = ok(s3.send("GET", f"/{bucket}?uploads")).text
    assert f"<UploadId>{young}</UploadId>" in listed
    assert old not in listed
    assert store.bucket_usage(info) == (300, 0)
    assert store.usage(project_id) == (300, 0)
    assert not any(path.exists() for path in blobs)
    no_such_upload(s3.send("PUT", f"/{bucket}/old?partNumber=3&uploadId={old}", b"late"))
    no_such_upload(s3.send("POST", f"/{bucket}/old?uploadId={old}", completion(old_etags)))
    no_such_upload(s3.send("GET", f"/{bucket}/old?uploadId={old}"))
    assert store.abort_expired_uploads() == 0
    store.flush_meter()
    assert gauges(cloud, bucket)[-1] == gib(300)
    ok(s3.send("PUT", f"/{bucket}/small", b"s" * 500))  # the quota has the bytes back
    ok(s3.send("POST", f"/{bucket}/young?uploadId={young}", completion(young_etags)))
    assert store.usage(project_id) == (800, 2)


def test_parts_alone_are_gauged_and_each_round_aborts_a_bounded_batch(
    cloud: Cloud, clock: SteppingClock
) -> None:
    store = cloud.platform.objectstore
    s3, bucket, _ = new_bucket(cloud, "batch")
    for i in range(3):
        start(s3, f"/{bucket}/k{i}", 100)
    store.flush_meter()
    assert gauges(cloud, bucket) == [gib(300)]  # parts only, no object yet
    clock.advance(AFTER + 1)
    assert store.uploads.abort_expired(AFTER, limit=2) == 2
    assert store.uploads.abort_expired(AFTER, limit=2) == 1
    assert store.uploads.abort_expired(AFTER, limit=2) == 0
    store.flush_meter()
    assert gauges(cloud, bucket) == [gib(300), 0]


def test_the_meter_round_of_a_running_server_aborts_and_gauges(
    cloud: Cloud, clock: SteppingClock
) -> None:
    platform = cloud.platform
    s3, bucket, _ = new_bucket(cloud, "round")
    upload_id, _ = start(s3, f"/{bucket}/k", 4096)
    clock.advance(AFTER + 1)
    # the sweep is cloud-wide work: this process runs it while it holds its lease
    platform.leases = LeaseKeeper(platform.db, platform.clock, 30.0)
    platform.leases.want(SWEEPS_LEASE)
    assert platform.leases.renew(SWEEPS_LEASE)
    loop = threading.Thread(target=platform._storage_meter_loop, args=(0.05,))
    loop.start()
    try:
        for _ in range(200):
            if gauges(cloud, bucket) == [0]:
                break
            platform._stop.wait(0.05)
    finally:
        platform._stop.set()  # what close() does to every background loop
        loop.join()
    assert gauges(cloud, bucket) == [0]
    no_such_upload(s3.send("GET", f"/{bucket}/k?uploadId={upload_id}"))


def test_zero_keeps_unfinished_uploads(cloud: Cloud, clock: SteppingClock) -> None:
    store = cloud.platform.objectstore
    s3, bucket, _ = new_bucket(cloud, "never")
    upload_id, _ = start(s3, f"/{bucket}/k", 10)
    clock.advance(AFTER + 1)
    store.abort_incomplete_after = 0
    assert store.abort_expired_uploads() == 0
    ok(s3.send("GET", f"/{bucket}/k?uploadId={upload_id}"))
