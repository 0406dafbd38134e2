"""Object Lock in-process, on the stepping clock: retention ends when its date passes, and
every hostile or malformed lock request is refused in S3's terms with nothing changed.

Retention here lasts minutes, so advancing the clock stays within SigV4's 15 minutes.
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from souverain import server
from souverain.common.clock import Clock
from souverain.objectstore import locks

from .conftest import _fast_tmp_root
from .support import ADMIN_PASSWORD, S3, Cloud, SteppingClock, TestClient, settings_for

DATA = b"immutable bytes"


@pytest.fixture
def clock() -> SteppingClock:
    return SteppingClock()


@pytest.fixture
def cloud(clock: SteppingClock) -> Iterator[Cloud]:
    yield from stepping_cloud(clock)


def stepping_cloud(clock: SteppingClock) -> Iterator[Cloud]:
    """A fresh platform whose clock is `clock` (the lifecycle tests share it)."""
    root = Path(tempfile.mkdtemp(prefix="souverain-lock-", dir=_fast_tmp_root()))
    settings = settings_for(root / "data")
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


def md5(body: bytes) -> str:
    return base64.b64encode(hashlib.md5(body, usedforsecurity=False).digest()).decode()


def code_of(response: Any) -> tuple[int, str]:
    text: str = response.text
    return response.status_code, text.split("<Code>")[1].split("</Code>")[0]


def at(clock: SteppingClock, seconds: float) -> str:
    """An ISO 8601 time `seconds` after the cloud's now."""
    moment = clock.now().replace(microsecond=0) + dt.timedelta(seconds=seconds)
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


def locked_bucket(cloud: Cloud) -> tuple[S3, str]:
    s3 = S3(cloud, cloud.member())
    bucket = cloud.unique("worm").replace("-", "")
    created = s3.send("PUT", f"/{bucket}", **{"x-amz-bucket-object-lock-enabled": "true"})
    assert created.status_code == 200, created.text
    return s3, bucket


def put(s3: S3, path: str, **headers: str) -> str:
    """PUT DATA with a Content-MD5; the new version id (null when unversioned)."""
    done = s3.send("PUT", path, DATA, **{"content-md5": md5(DATA)}, **headers)
    assert done.status_code == 200, done.text
    return str(done.headers.get("x-amz-version-id", "null"))


def test_a_version_is_deletable_once_its_retention_has_passed(
    cloud: Cloud, clock: SteppingClock
) -> None:
    s3, bucket = locked_bucket(cloud)
    lock = {
        "x-amz-object-lock-mode": "COMPLIANCE",
        "x-amz-object-lock-retain-until-date": at(clock, 120),
    }
    version = put(s3, f"/{bucket}/pack", **lock)

    refused = s3.send("DELETE", f"/{bucket}/pack?versionId={version}")
    assert code_of(refused) == (403, "AccessDenied")
    assert locks.PROTECTED in refused.text

    clock.advance(121)
    assert s3.send("DELETE", f"/{bucket}/pack?versionId={version}").status_code == 204
    assert s3.send("HEAD", f"/{bucket}/pack?versionId={version}").status_code == 404


def test_expired_retention_may_be_set_anew_and_lengthens_only(
    cloud: Cloud, clock: SteppingClock
) -> None:
    s3, bucket = locked_bucket(cloud)
    version = put(
        s3,
        f"/{bucket}/doc",
        **{
            "x-amz-object-lock-mode": "COMPLIANCE",
            "x-amz-object-lock-retain-until-date": at(clock, 60),
        },
    )
    clock.advance(61)
    body = (
        "<Retention><Mode>GOVERNANCE</Mode>"
        f"<RetainUntilDate>{at(clock, 300)}</RetainUntilDate></Retention>"
    ).encode()

    done = s3.send(
        "PUT", f"/{bucket}/doc?retention&versionId={version}", body, **{"content-md5": md5(body)}
    )

    assert done.status_code == 200, done.text
    shown = s3.send("GET", f"/{bucket}/doc?retention").text
    assert "<Mode>GOVERNANCE</Mode>" in shown


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        (b"<Retention><Mode>GOVERNANCE</Mode></Retention>", (400, "MalformedXML")),
        (
            b"<Retention><Mode>GOVERNANCE</Mode><RetainUntilDate>soon</RetainUntilDate>"
            b"</Retention>",
            (400, "InvalidArgument"),
        ),
        (
            b"<Retention><Mode>WORM</Mode><RetainUntilDate>2099-01-01T00:00:00Z"
            b"</RetainUntilDate></Retention>",
            (400, "InvalidArgument"),
        ),
        (
            b"<Retention><Mode>GOVERNANCE</Mode><RetainUntilDate>2000-01-01T00:00:00Z"
            b"</RetainUntilDate></Retention>",
            (400, "InvalidArgument"),
        ),
        (b"<LegalHold><Status>ON</Status></LegalHold>", (400, "MalformedXML")),
        (
            b'<?xml version="1.0"?><!DOCTYPE r [<!ENTITY a "aaaaaaaaaa">'
            b'<!ENTITY b "&a;&a;&a;&a;&a;&a;&a;&a;">]><Retention><Mode>&b;</Mode></Retention>',
            (400, "MalformedXML"),
        ),
    ],
)
def test_a_malformed_retention_changes_nothing(
    cloud: Cloud, body: bytes, expected: tuple[int, str]
) -> None:
    s3, bucket = locked_bucket(cloud)
    put(s3, f"/{bucket}/doc")

    done = s3.send("PUT", f"/{bucket}/doc?retention", body, **{"content-md5": md5(body)})

    assert code_of(done) == expected
    assert code_of(s3.send("GET", f"/{bucket}/doc?retention")) == (
        404,
        "NoSuchObjectLockConfiguration",
    )


def test_lock_documents_need_a_digest_that_matches(cloud: Cloud) -> None:
    s3, bucket = locked_bucket(cloud)
    put(s3, f"/{bucket}/doc")
    hold = b"<LegalHold><Status>ON</Status></LegalHold>"
    config = (
        b"<ObjectLockConfiguration><ObjectLockEnabled>Enabled</ObjectLockEnabled><Rule>"
        b"<DefaultRetention><Mode>COMPLIANCE</Mode><Days>1</Days></DefaultRetention>"
        b"</Rule></ObjectLockConfiguration>"
    )

    assert code_of(s3.send("PUT", f"/{bucket}/doc?legal-hold", hold)) == (400, "InvalidRequest")
    wrong = {"content-md5": md5(b"other")}
    assert code_of(s3.send("PUT", f"/{bucket}/doc?legal-hold", hold, **wrong)) == (
        400,
        "BadDigest",
    )
    assert code_of(s3.send("PUT", f"/{bucket}?object-lock", config)) == (400, "InvalidRequest")
    assert code_of(s3.send("GET", f"/{bucket}/doc?legal-hold"))[1] == (
        "NoSuchObjectLockConfiguration"
    )
    assert "<Rule>" not in s3.send("GET", f"/{bucket}?object-lock").text


@pytest.mark.parametrize("status", ["on", "", "TRUE"])
def test_a_legal_hold_is_on_or_off_and_nothing_else(cloud: Cloud, status: str) -> None:
    s3, bucket = locked_bucket(cloud)
    put(s3, f"/{bucket}/doc")
    body = f"<LegalHold><Status>{status}</Status></LegalHold>".encode()

    done = s3.send("PUT", f"/{bucket}/doc?legal-hold", body, **{"content-md5": md5(body)})

    assert code_of(done) == (400, "InvalidArgument")


def test_locks_on_a_delete_marker_or_a_missing_version_are_refused(cloud: Cloud) -> None:
    s3, bucket = locked_bucket(cloud)
    put(s3, f"/{bucket}/doc")
    marker = s3.send("DELETE", f"/{bucket}/doc").headers["x-amz-version-id"]
    body = b"<LegalHold><Status>ON</Status></LegalHold>"
    digest = {"content-md5": md5(body)}

    on_marker = s3.send("PUT", f"/{bucket}/doc?legal-hold&versionId={marker}", body, **digest)
    assert code_of(on_marker) == (405, "MethodNotAllowed")
    assert code_of(s3.send("PUT", f"/{bucket}/doc?legal-hold", body, **digest)) == (
        404,
        "NoSuchKey",
    )
    missing = "0" * 32
    assert code_of(
        s3.send("PUT", f"/{bucket}/doc?legal-hold&versionId={missing}", body, **digest)
    ) == (404, "NoSuchVersion")


@pytest.mark.parametrize("value", ["yes", "1", "Enabled"])
def test_an_unclear_object_lock_flag_creates_no_bucket(cloud: Cloud, value: str) -> None:
    s3 = S3(cloud, cloud.member())
    bucket = cloud.unique("worm").replace("-", "")

    done = s3.send("PUT", f"/{bucket}", **{"x-amz-bucket-object-lock-enabled": value})

    assert code_of(done) == (400, "InvalidArgument")
    assert s3.send("HEAD", f"/{bucket}").status_code == 404


def test_a_plain_bucket_keeps_no_lock_and_answers_as_before(cloud: Cloud) -> None:
    s3 = S3(cloud, cloud.member())
    bucket = cloud.unique("plain").replace("-", "")
    assert s3.send("PUT", f"/{bucket}").status_code == 200
    put(s3, f"/{bucket}/doc")

    head = s3.send("HEAD", f"/{bucket}/doc")

    assert head.status_code == 200
    assert not [h for h in head.headers if h.startswith("x-amz-object-lock")]
    assert cloud.platform.objectstore.bucket(bucket).object_lock is None
