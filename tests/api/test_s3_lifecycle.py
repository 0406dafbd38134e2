"""Bucket lifecycle, in-process on the stepping clock: each action falls due at the first
midnight UTC after its days have passed, takes only what its filter names, never touches
versions Object Lock holds, and runs once however many processes sweep.

Days pass by advancing the clock; before a signed request the clock is wound back
within SigV4's 15 minutes (`back_to_now`), since boto's signer keeps real time.
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import threading
import zlib
from collections.abc import Iterator
from typing import Any

import pytest

from souverain.db.leases import LeaseKeeper
from souverain.objectstore.expiration import LifecycleSweep, noncurrent_due
from souverain.objectstore.records import BucketInfo
from souverain.server import SWEEPS_LEASE

from .support import S3, Cloud, SteppingClock
from .test_s3_object_lock import stepping_cloud

DAY = 24 * 3600


def md5(body: bytes) -> str:
    return base64.b64encode(hashlib.md5(body, usedforsecurity=False).digest()).decode()


def code_of(response: Any) -> tuple[int, str]:
    text: str = response.text
    return response.status_code, text.split("<Code>")[1].split("</Code>")[0]


@pytest.fixture
def clock() -> SteppingClock:
    return SteppingClock()


@pytest.fixture
def cloud(clock: SteppingClock) -> Iterator[Cloud]:
    yield from stepping_cloud(clock)


class Bucket:
    """A member's bucket, its S3 client, and the cloud's clock."""

    def __init__(self, cloud: Cloud, clock: SteppingClock, versioned: bool = False) -> None:
        self.cloud, self.clock = cloud, clock
        self.s3 = S3(cloud, cloud.member())
        self.name = cloud.unique("life").replace("-", "")
        assert self.s3.send("PUT", f"/{self.name}").status_code == 200
        if versioned:
            body = b"<VersioningConfiguration><Status>Enabled</Status></VersioningConfiguration>"
            assert self.s3.send("PUT", f"/{self.name}?versioning", body).status_code == 200

    def send(self, method: str, path: str, body: bytes = b"", **headers: str) -> Any:
        return self.s3.send(method, f"/{self.name}{path}", body, **headers)

    def put(self, key: str, body: bytes = b"data", **headers: str) -> str:
        done = self.send("PUT", f"/{key}", body, **headers)
        assert done.status_code == 200, done.text
        return str(done.headers.get("x-amz-version-id", "null"))

    def rules(self, *rules: str) -> None:
        body = f"<LifecycleConfiguration>{''.join(rules)}</LifecycleConfiguration>".encode()
        done = self.send("PUT", "?lifecycle", body, **{"content-md5": md5(body)})
        assert done.status_code == 200, done.text

    def sweep_after(self, seconds: float) -> int:
        """Advance the clock, sweep, wind the clock back: how many actions the sweep took."""
        self.clock.advance(seconds)
        try:
            return self.cloud.platform.objectstore.run_lifecycle().total
        finally:
            self.clock.advance(-seconds)
            self.release_lease()

    def release_lease(self) -> None:
        """The next sweep of this test may take the bucket at once."""
        from sqlalchemy import update

        from souverain.objectstore.models import Bucket as Row

        with self.cloud.platform.db.session() as s:
            s.execute(update(Row).where(Row.name == self.name).values(lifecycle_lease=None))

    def exists(self, key: str, version: str | None = None) -> bool:
        query = f"?versionId={version}" if version else ""
        return bool(self.send("HEAD", f"/{key}{query}").status_code == 200)

    def versions(self, key: str) -> str:
        return str(self.send("GET", f"?versions&prefix={key}").text)

    def info(self) -> BucketInfo:
        return self.cloud.platform.objectstore.bucket(self.name)


def rule(actions: str, scope: str = "<Filter></Filter>", status: str = "Enabled") -> str:
    return f"<Rule><ID>r{zlib.crc32(actions.encode()) % 1000}</ID>{scope}<Status>{status}</Status>{actions}</Rule>"


@pytest.fixture
def plain(cloud: Cloud, clock: SteppingClock) -> Iterator[Bucket]:
    yield Bucket(cloud, clock)


@pytest.fixture
def versioned(cloud: Cloud, clock: SteppingClock) -> Iterator[Bucket]:
    yield Bucket(cloud, clock, versioned=True)


def test_expiration_days_falls_due_at_the_midnight_after_and_takes_only_the_prefix(
    plain: Bucket,
) -> None:
    plain.put("tmp/a")
    plain.put("keep/b")
    plain.rules(
        rule("<Expiration><Days>1</Days></Expiration>", "<Filter><Prefix>tmp/</Prefix></Filter>")
    )

    assert plain.sweep_after(DAY - 60) == 0
    assert plain.exists("tmp/a")

    assert plain.sweep_after(2 * DAY) == 1
    assert not plain.exists("tmp/a")
    assert plain.exists("keep/b")
    assert plain.cloud.platform.objectstore.bucket_usage(plain.info())[0] == len(b"data")


def test_a_disabled_rule_does_nothing(plain: Bucket) -> None:
    plain.put("tmp/a")
    plain.rules(rule("<Expiration><Days>1</Days></Expiration>", status="Disabled"))

    assert plain.sweep_after(10 * DAY) == 0
    assert plain.exists("tmp/a")


def test_expiration_by_date_takes_everything_from_that_midnight(plain: Bucket) -> None:
    plain.put("a")
    tomorrow = (plain.clock.now() + dt.timedelta(days=1)).strftime("%Y-%m-%dT00:00:00Z")
    plain.rules(rule(f"<Expiration><Date>{tomorrow}</Date></Expiration>"))

    assert plain.sweep_after(0) == 0
    assert plain.sweep_after(DAY) == 1
    assert not plain.exists("a")


def test_tag_and_size_filters_take_only_matching_objects(plain: Bucket) -> None:
    plain.put("logs/tagged", b"x" * 10, **{"x-amz-tagging": "tier=scratch&team=ops"})
    plain.put("logs/small", b"x", **{"x-amz-tagging": "tier=scratch"})
    plain.put("logs/other", b"x" * 10, **{"x-amz-tagging": "tier=gold"})
    plain.put("elsewhere", b"x" * 10, **{"x-amz-tagging": "tier=scratch"})
    scope = (
        "<Filter><And><Prefix>logs/</Prefix><Tag><Key>tier</Key><Value>scratch</Value></Tag>"
        "<ObjectSizeGreaterThan>5</ObjectSizeGreaterThan></And></Filter>"
    )
    plain.rules(rule("<Expiration><Days>1</Days></Expiration>", scope))

    assert plain.sweep_after(2 * DAY) == 1
    assert not plain.exists("logs/tagged")
    assert all(plain.exists(k) for k in ("logs/small", "logs/other", "elsewhere"))


def test_on_a_versioned_bucket_expiration_stacks_a_marker_and_noncurrent_versions_go(
    versioned: Bucket,
) -> None:
    oldest = versioned.put("doc", b"v1")
    middle = versioned.put("doc", b"v2")
    newest = versioned.put("doc", b"v3")
    versioned.rules(
        rule(
            "<Expiration><Days>3</Days></Expiration><NoncurrentVersionExpiration>"
            "<NoncurrentDays>1</NoncurrentDays><NewerNoncurrentVersions>1"
            "</NewerNoncurrentVersions></NoncurrentVersionExpiration>"
        )
    )

    # day 2: v1 and v2 are noncurrent for a day; the newest noncurrent one (v2) is kept
    assert versioned.sweep_after(2 * DAY) == 1
    assert not versioned.exists("doc", oldest)
    assert versioned.exists("doc", middle) and versioned.exists("doc")

    # day 4: v3 expires behind a delete marker; it is the newest noncurrent now, so kept
    assert versioned.sweep_after(4 * DAY) == 2
    assert not versioned.exists("doc")
    assert versioned.exists("doc", newest)
    assert not versioned.exists("doc", middle)
    assert "<DeleteMarker>" in versioned.versions("doc")


def test_a_delete_marker_left_alone_is_removed_and_one_with_versions_is_kept(
    versioned: Bucket,
) -> None:
    versioned.put("lonely")
    versioned.put("kept")
    lone = versioned.send("GET", "?versions&prefix=lonely").text
    version = lone.split("<VersionId>")[1].split("</VersionId>")[0]
    versioned.send("DELETE", f"/lonely?versionId={version}")
    versioned.put("lonely")
    versioned.send("DELETE", "/lonely")  # marker over one version
    versioned.send("DELETE", "/kept")
    for listed in versioned.versions("lonely").split("<Version>")[1:]:
        vid = listed.split("<VersionId>")[1].split("</VersionId>")[0]
        versioned.send("DELETE", f"/lonely?versionId={vid}")  # now only the marker is left
    versioned.rules(
        rule("<Expiration><ExpiredObjectDeleteMarker>true</ExpiredObjectDeleteMarker></Expiration>")
    )

    assert versioned.sweep_after(60) == 1
    assert "<DeleteMarker>" not in versioned.versions("lonely")
    assert "<DeleteMarker>" in versioned.versions("kept")


def test_incomplete_uploads_under_the_prefix_are_aborted(plain: Bucket) -> None:
    started = plain.send("POST", "/tmp/big?uploads").text
    old = started.split("<UploadId>")[1].split("</UploadId>")[0]
    plain.send("POST", "/keep/big?uploads")
    plain.rules(
        rule(
            "<AbortIncompleteMultipartUpload><DaysAfterInitiation>1</DaysAfterInitiation>"
            "</AbortIncompleteMultipartUpload>",
            "<Prefix>tmp/</Prefix>",
        )
    )

    assert plain.sweep_after(2 * DAY) == 1
    listed = plain.send("GET", "?uploads").text
    assert old not in listed
    assert "<Key>keep/big</Key>" in listed


def test_lifecycle_never_removes_a_version_object_lock_holds(
    cloud: Cloud,
    clock: SteppingClock,
) -> None:
    s3 = S3(cloud, cloud.member())
    name = cloud.unique("lifelock").replace("-", "")
    s3.send("PUT", f"/{name}", **{"x-amz-bucket-object-lock-enabled": "true"})
    bucket = Bucket.__new__(Bucket)
    bucket.cloud, bucket.clock, bucket.s3, bucket.name = cloud, clock, s3, name
    until = (clock.now() + dt.timedelta(days=30)).strftime("%Y-%m-%dT%H:%M:%SZ")
    locked = bucket.put(
        "pack",
        b"p1",
        **{
            "content-md5": md5(b"p1"),
            "x-amz-object-lock-mode": "COMPLIANCE",
            "x-amz-object-lock-retain-until-date": until,
        },
    )
    bucket.put("pack", b"p2")
    bucket.rules(
        rule(
            "<Expiration><Days>1</Days></Expiration><NoncurrentVersionExpiration>"
            "<NoncurrentDays>1</NoncurrentDays></NoncurrentVersionExpiration>"
        )
    )

    bucket.sweep_after(3 * DAY)  # p2 behind a marker; p1 locked, so kept
    bucket.sweep_after(6 * DAY)  # p2 now noncurrent long enough: gone; p1 still kept

    assert bucket.exists("pack", locked)
    assert bucket.versions("pack").count("<Version>") == 1


def test_the_sweep_runs_once_however_many_processes_sweep(
    plain: Bucket,
) -> None:
    for n in range(20):
        plain.put(f"tmp/{n}")
    plain.rules(rule("<Expiration><Days>1</Days></Expiration>"))
    platform = plain.cloud.platform
    store = platform.objectstore
    # a second serving process: its own sweep over the same database
    other = LifecycleSweep(platform.db, store.objects, store.uploads, store.clock)
    plain.clock.advance(2 * DAY)
    results: list[int] = []
    sweeps = [store.lifecycle, other]
    threads = [threading.Thread(target=lambda s=s: results.append(s.run().total)) for s in sweeps]
    for t in threads:
        t.start()
    for t in threads:
        t.join()

    assert sorted(results) == [0, 20]
    assert store.run_lifecycle().total == 0  # the lease holds until it runs out
    plain.clock.advance(-2 * DAY)
    assert not any(plain.exists(f"tmp/{n}") for n in range(20))


def test_an_object_rewritten_after_the_sweep_saw_it_is_not_expired(versioned: Bucket) -> None:
    versioned.put("doc", b"old")
    store = versioned.cloud.platform.objectstore
    info = versioned.info()
    seen = store.head_object(info, "doc")
    versioned.put("doc", b"new")

    from sqlalchemy import select

    from souverain.objectstore.models import ObjectVersion as V

    with versioned.cloud.platform.db.session() as s:
        old_seq = s.scalar(select(V.seq).where(V.version_id == seen.version_id))
    assert old_seq is not None
    assert store.objects.expire_latest(info, "doc", old_seq) is False
    assert versioned.send("GET", "/doc").content == b"new"


def test_noncurrent_due_keeps_the_newest_and_counts_from_the_successor() -> None:
    class V:
        def __init__(self, name: str, day: int) -> None:
            self.name = name
            self.created_at = dt.datetime(2026, 1, day)

    history = [V("v4", 10), V("v3", 8), V("v2", 5), V("v1", 1)]
    cutoff = dt.datetime(2026, 1, 8)

    assert [v.name for v in noncurrent_due(history, cutoff, 0)] == ["v2", "v1"]
    assert [v.name for v in noncurrent_due(history, cutoff, 2)] == ["v1"]
    assert noncurrent_due(history[:1], cutoff, 0) == []


# ---------------------------------------------------------------------- hostile documents


@pytest.mark.parametrize(
    ("rules", "expected"),
    [
        ("", (400, "MalformedXML")),
        (rule("<Expiration><Days>0</Days></Expiration>"), (400, "InvalidArgument")),
        (rule("<Expiration><Days>ten</Days></Expiration>"), (400, "MalformedXML")),
        (
            rule("<Expiration><Date>2030-01-01T12:00:00Z</Date></Expiration>"),
            (400, "InvalidArgument"),
        ),
        (
            rule("<Expiration><Days>1</Days><Date>2030-01-01T00:00:00Z</Date></Expiration>"),
            (400, "MalformedXML"),
        ),
        (rule(""), (400, "InvalidRequest")),
        (rule("<Expiration><Days>1</Days></Expiration>", status="On"), (400, "MalformedXML")),
        (
            rule("<Expiration><Days>1</Days></Expiration>", "<Prefix>a</Prefix><Filter></Filter>"),
            (400, "MalformedXML"),
        ),
        (
            rule(
                "<AbortIncompleteMultipartUpload><DaysAfterInitiation>1</DaysAfterInitiation>"
                "</AbortIncompleteMultipartUpload>",
                "<Filter><Tag><Key>k</Key><Value>v</Value></Tag></Filter>",
            ),
            (400, "InvalidRequest"),
        ),
        (
            rule("<Transition><Days>1</Days><StorageClass>GLACIER</StorageClass></Transition>"),
            (400, "InvalidStorageClass"),
        ),
        (
            "<Rule><ID>same</ID><Filter></Filter><Status>Enabled</Status>"
            "<Expiration><Days>1</Days></Expiration></Rule>" * 2,
            (400, "InvalidArgument"),
        ),
        (
            rule(
                "<Expiration><Days>1</Days></Expiration>",
                "<Filter><Prefix>a</Prefix><Tag><Key>k</Key><Value>v</Value></Tag></Filter>",
            ),
            (400, "MalformedXML"),
        ),
        (rule("<Expiration><Days>1</Days></Expiration>") * 1001, (400, "MalformedXML")),
    ],
)
def test_a_bad_lifecycle_document_changes_nothing(
    plain: Bucket, rules: str, expected: tuple[int, str]
) -> None:
    plain.rules(rule("<Expiration><Days>7</Days></Expiration>"))
    before = plain.send("GET", "?lifecycle").text
    body = f"<LifecycleConfiguration>{rules}</LifecycleConfiguration>".encode()

    done = plain.send("PUT", "?lifecycle", body, **{"content-md5": md5(body)})

    assert code_of(done) == expected
    assert plain.send("GET", "?lifecycle").text == before


def test_a_lifecycle_document_needs_its_digest(plain: Bucket) -> None:
    body = f"<LifecycleConfiguration>{rule('<Expiration><Days>1</Days></Expiration>')}</LifecycleConfiguration>".encode()

    assert code_of(plain.send("PUT", "?lifecycle", body)) == (400, "InvalidRequest")
    assert code_of(plain.send("GET", "?lifecycle")) == (404, "NoSuchLifecycleConfiguration")


def test_the_meter_round_of_a_running_server_sweeps_lifecycle(plain: Bucket) -> None:
    plain.put("tmp/old")
    plain.rules(rule("<Expiration><Days>1</Days></Expiration>"))
    platform = plain.cloud.platform
    store = platform.objectstore
    info = plain.info()
    plain.clock.advance(2 * DAY)
    # the sweep is cloud-wide work: this process runs it while it holds its lease
    platform.leases = LeaseKeeper(platform.db, platform.clock, 30.0)
    platform.leases.want(SWEEPS_LEASE)
    assert platform.leases.renew(SWEEPS_LEASE)
    loop = threading.Thread(target=platform._storage_meter_loop, args=(0.05,))
    loop.start()
    try:
        for _ in range(200):
            if store.bucket_usage(info) == (0, 0):
                break
            platform._stop.wait(0.05)
    finally:
        platform._stop.set()  # what close() does to every background loop
        loop.join()
        plain.clock.advance(-2 * DAY)
    assert not plain.exists("tmp/old")
