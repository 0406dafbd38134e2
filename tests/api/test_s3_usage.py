"""A bucket's running totals (bytes, objects) agree with a recount of its rows, whatever
concurrent writers did: PUT, overwrite, DELETE, versioned delete, delete of a version,
multipart complete, abort and a part sent twice. The operator's `souverain s3 recount`
finds totals that drifted and repairs them.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import update
from typer.testing import CliRunner

from souverain import server
from souverain.cli import app as cli_app
from souverain.common.clock import Clock
from souverain.objectstore.models import USAGE_SHARDS, BucketUsage

from .conftest import _fast_tmp_root
from .support import ADMIN_PASSWORD, S3, Cloud, SteppingClock, TestClient, cli_env, settings_for

THREADS = 8
ROUNDS = 6
PART = 5 * 1024 * 1024


@pytest.fixture(scope="module")
def data_dir(database_backend: str) -> Iterator[Path]:
    root = Path(tempfile.mkdtemp(prefix="souverain-usage-", dir=_fast_tmp_root()))
    try:
        yield root / "data"
    finally:
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture(scope="module")
def cloud(data_dir: Path) -> Iterator[Cloud]:
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("SOUVERAIN_ADMIN_PASSWORD", ADMIN_PASSWORD)
        built = server.prepare(settings_for(data_dir), clock=Clock(SteppingClock().now))
    try:
        with TestClient(built.app, base_url="http://testserver") as client:
            yield Cloud(client, built)
    finally:
        built.close()


def ok(response: Any, status: int = 200) -> Any:
    assert response.status_code == status, response.text
    return response


def tag(text: str, name: str) -> str:
    return text.split(f"<{name}>")[1].split(f"</{name}>")[0]


def in_threads(work: Callable[[int], None], count: int = THREADS) -> None:
    """`work(i)` in `count` threads released together; the first failure is raised."""
    start, failures = threading.Barrier(count), []

    def run(index: int) -> None:
        start.wait()
        try:
            work(index)
        except BaseException as exc:
            failures.append(exc)

    threads = [threading.Thread(target=run, args=(i,)) for i in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(120)
    assert not failures, failures


def multipart(s3: S3, path: str, sizes: list[int], complete: bool, resend_first: bool) -> None:
    upload_id = tag(ok(s3.send("POST", f"{path}?uploads")).text, "UploadId")
    parts = []
    for number, size in enumerate(sizes, start=1):
        body = bytes([number]) * size
        if resend_first and number == 1:  # the same part twice: the first copy is replaced
            ok(s3.send("PUT", f"{path}?partNumber=1&uploadId={upload_id}", b"old" * 100))
        etag = ok(s3.send("PUT", f"{path}?partNumber={number}&uploadId={upload_id}", body))
        parts.append((number, etag.headers["etag"]))
    if not complete:
        ok(s3.send("DELETE", f"{path}?uploadId={upload_id}"), 204)
        return
    listed = "".join(f"<Part><PartNumber>{n}</PartNumber><ETag>{e}</ETag></Part>" for n, e in parts)
    xml = f"<CompleteMultipartUpload>{listed}</CompleteMultipartUpload>".encode()
    ok(s3.send("POST", f"{path}?uploadId={upload_id}", xml))


def versions(s3: S3, bucket: str, key: str) -> list[str]:
    listing = ok(s3.send("GET", f"/{bucket}?versions&prefix={key}")).text
    return [chunk.split("</VersionId>")[0] for chunk in listing.split("<VersionId>")[1:]]


def mixed_traffic(s3: S3, bucket: str, versioned: bool) -> Callable[[int], None]:
    """Each thread writes its own keys and one key every thread shares, in every way."""

    def work(thread: int) -> None:
        for n in range(ROUNDS):
            mine = f"/{bucket}/t{thread}/k{n}"
            ok(s3.send("PUT", mine, b"a" * (100 + thread * 7 + n)))
            ok(s3.send("PUT", mine, b"b" * (50 + n)))  # overwrite
            ok(s3.send("PUT", f"/{bucket}/shared", b"s" * (thread + n + 1)))
            if n % 3 == 1:
                ok(s3.send("PUT", f"/{bucket}/t{thread}/copy{n}", **{"x-amz-copy-source": mine}))
            if n % 2:
                ok(s3.send("DELETE", mine), 204)  # a delete marker when versioned
            if versioned and n % 3 == 0:
                for version in versions(s3, bucket, f"t{thread}%2Fk{n}")[:1]:
                    ok(s3.send("DELETE", f"{mine}?versionId={version}"), 204)
        multipart(s3, f"/{bucket}/t{thread}/mp", [PART, 1234], True, thread % 2 == 0)
        multipart(s3, f"/{bucket}/t{thread}/aborted", [PART, 99], False, thread % 2 == 1)
        if thread == 0:  # one upload stays open: its parts are stored bytes too
            upload_id = tag(ok(s3.send("POST", f"/{bucket}/open?uploads")).text, "UploadId")
            ok(s3.send("PUT", f"/{bucket}/open?partNumber=1&uploadId={upload_id}", b"o" * 777))

    return work


def recount(data_dir: Path, *args: str) -> Any:
    return CliRunner().invoke(
        cli_app, ["s3", "recount", *args, "--data-dir", str(data_dir)], env=cli_env(data_dir)
    )


@pytest.mark.parametrize("versioned", [False, True], ids=["unversioned", "versioned"])
def test_totals_agree_with_a_recount_after_concurrent_writes_of_every_kind(
    cloud: Cloud, versioned: bool
) -> None:
    member = cloud.member()
    s3 = S3(cloud, member)
    bucket = cloud.unique("usage").replace("-", "")
    ok(s3.send("PUT", f"/{bucket}"))
    if versioned:
        xml = b"<VersioningConfiguration><Status>Enabled</Status></VersioningConfiguration>"
        ok(s3.send("PUT", f"/{bucket}?versioning", xml))
    in_threads(mixed_traffic(s3, bucket, versioned))
    found = {u.bucket: u for u in cloud.platform.objectstore.recount()}
    usage = found[bucket]
    assert usage.agrees, usage
    assert usage.counted_bytes > THREADS * (PART + 1234)  # completed uploads and the open part
    info = cloud.platform.objectstore.bucket(bucket)
    assert cloud.platform.objectstore.bucket_usage(info) == (
        usage.counted_bytes,
        usage.counted_objects,
    )
    # the project's only bucket: the project's usage, as quotas read it, is the same
    assert cloud.platform.objectstore.usage(member.project_id) == (
        usage.counted_bytes,
        usage.counted_objects,
    )


def test_emptied_bucket_totals_return_to_zero_and_it_can_be_deleted(cloud: Cloud) -> None:
    s3 = S3(cloud, cloud.member())
    bucket = cloud.unique("empty").replace("-", "")
    ok(s3.send("PUT", f"/{bucket}"))
    ok(s3.send("PUT", f"/{bucket}/a", b"x" * 5000))
    ok(s3.send("PUT", f"/{bucket}/a", b"y" * 10))
    ok(s3.send("PUT", f"/{bucket}/b", b""))
    info = cloud.platform.objectstore.bucket(bucket)
    assert cloud.platform.objectstore.bucket_usage(info) == (10, 2)
    ok(s3.send("DELETE", f"/{bucket}/a"), 204)
    ok(s3.send("DELETE", f"/{bucket}/b"), 204)
    assert cloud.platform.objectstore.bucket_usage(info) == (0, 0)
    ok(s3.send("DELETE", f"/{bucket}"), 204)
    assert bucket not in {u.bucket for u in cloud.platform.objectstore.recount()}


def test_recount_command_finds_drift_and_repairs_it(cloud: Cloud, data_dir: Path) -> None:
    s3 = S3(cloud, cloud.member())
    bucket = cloud.unique("drift").replace("-", "")
    ok(s3.send("PUT", f"/{bucket}"))
    ok(s3.send("PUT", f"/{bucket}/a", b"x" * 300))
    clean = recount(data_dir)
    assert clean.exit_code == 0, clean.output
    assert "0 disagreed" in clean.output
    info = cloud.platform.objectstore.bucket(bucket)
    other_shard = (os.getpid() + 1) % USAGE_SHARDS  # not the row this process counts on
    with cloud.platform.db.session() as s:  # what a bug or a hand edit would leave
        s.execute(
            update(BucketUsage)
            .where(BucketUsage.bucket_id == info.id, BucketUsage.shard == other_shard)
            .values(stored_bytes=BucketUsage.stored_bytes + 41, stored_objects=5)
        )
    found = recount(data_dir)
    assert found.exit_code == 1
    assert f"{bucket} (project {info.project_id}): totals 341 bytes, 6 objects" in found.output
    assert "rows 300 bytes, 1 objects" in found.output
    assert "souverain s3 recount --repair" in found.output
    repaired = recount(data_dir, "--repair")
    assert repaired.exit_code == 0 and "(repaired)" in repaired.output
    assert cloud.platform.objectstore.bucket_usage(info) == (300, 1)
    assert recount(data_dir).exit_code == 0
    # the repaired totals go on counting
    ok(s3.send("PUT", f"/{bucket}/b", b"z" * 20))
    assert cloud.platform.objectstore.bucket_usage(info) == (320, 2)
