"""Conditional writes through boto3 on the real S3 port: If-None-Match: * creates only,
If-Match replaces only the ETag named, on PutObject and CompleteMultipartUpload; a write
that loses a race while its body is still coming gets 409 ConditionalRequestConflict.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from botocore.auth import S3SigV4Auth
from botocore.awsrequest import AWSRequest

from tests.e2e.conftest import REGION, Cloud, unique
from tests.e2e.s3_support import error_document, new_bucket, s3_error

pytestmark = pytest.mark.e2e

PART = 5 * 1024 * 1024


@pytest.fixture(scope="module")
def s3(cloud: Cloud) -> Any:
    return cloud.s3(cloud.make_tenant("s3cond"))


@pytest.fixture(scope="module")
def bucket(s3: Any) -> str:
    return new_bucket(s3, "cond")


def body_of(s3: Any, bucket: str, key: str) -> bytes:
    data: bytes = s3.get_object(Bucket=bucket, Key=key)["Body"].read()
    return data


def test_if_none_match_creates_once(s3: Any, bucket: str) -> None:
    key = unique("once")
    s3.put_object(Bucket=bucket, Key=key, Body=b"first", IfNoneMatch="*")

    assert s3_error(s3.put_object, Bucket=bucket, Key=key, Body=b"second", IfNoneMatch="*") == (
        "PreconditionFailed",
        412,
    )
    assert body_of(s3, bucket, key) == b"first"


def test_if_match_replaces_only_the_etag_it_names(s3: Any, bucket: str) -> None:
    key = unique("swap")
    etag = s3.put_object(Bucket=bucket, Key=key, Body=b"v1")["ETag"]
    newer = s3.put_object(Bucket=bucket, Key=key, Body=b"v2", IfMatch=etag)["ETag"]
    assert body_of(s3, bucket, key) == b"v2"

    assert s3_error(s3.put_object, Bucket=bucket, Key=key, Body=b"v3", IfMatch=etag) == (
        "PreconditionFailed",
        412,
    )
    assert body_of(s3, bucket, key) == b"v2"
    s3.put_object(Bucket=bucket, Key=key, Body=b"v3", IfMatch=newer)
    assert body_of(s3, bucket, key) == b"v3"


def test_if_match_on_a_missing_key_is_no_such_key(s3: Any, bucket: str) -> None:
    key = unique("missing")

    assert s3_error(
        s3.put_object,
        Bucket=bucket,
        Key=key,
        Body=b"x",
        IfMatch='"0123456789abcdef0123456789abcdef"',
    ) == ("NoSuchKey", 404)
    assert s3_error(s3.head_object, Bucket=bucket, Key=key)[1] == 404


def test_if_none_match_other_than_a_star_is_refused_on_a_write(s3: Any, bucket: str) -> None:
    key = unique("etag-none")

    assert s3_error(s3.put_object, Bucket=bucket, Key=key, Body=b"x", IfNoneMatch='"abc"') == (
        "NotImplemented",
        501,
    )
    assert s3_error(s3.head_object, Bucket=bucket, Key=key)[1] == 404


def start_upload(s3: Any, bucket: str, key: str) -> tuple[str, list[dict[str, Any]]]:
    upload = s3.create_multipart_upload(Bucket=bucket, Key=key)["UploadId"]
    etag = s3.upload_part(Bucket=bucket, Key=key, UploadId=upload, PartNumber=1, Body=b"m" * 10)[
        "ETag"
    ]
    return upload, [{"PartNumber": 1, "ETag": etag}]


def complete(s3: Any, bucket: str, key: str, upload: str, parts: Any, **condition: str) -> Any:
    return s3.complete_multipart_upload(
        Bucket=bucket, Key=key, UploadId=upload, MultipartUpload={"Parts": parts}, **condition
    )


def test_complete_multipart_honours_if_none_match_and_if_match(s3: Any, bucket: str) -> None:
    key = unique("mpu")
    existing = s3.put_object(Bucket=bucket, Key=key, Body=b"before")["ETag"]
    upload, parts = start_upload(s3, bucket, key)

    assert s3_error(complete, s3, bucket, key, upload, parts, IfNoneMatch="*") == (
        "PreconditionFailed",
        412,
    )
    assert s3_error(
        complete, s3, bucket, key, upload, parts, IfMatch='"ffffffffffffffffffffffffffffffff"'
    ) == ("PreconditionFailed", 412)
    # a failed condition leaves the upload to retry
    done = complete(s3, bucket, key, upload, parts, IfMatch=existing)
    assert body_of(s3, bucket, key) == b"m" * 10
    assert done["ETag"].endswith('-1"')


def test_a_key_written_during_a_multipart_upload_is_a_conflict(s3: Any, bucket: str) -> None:
    key = unique("mpu-race")
    upload, parts = start_upload(s3, bucket, key)
    s3.put_object(Bucket=bucket, Key=key, Body=b"won the race")

    assert s3_error(complete, s3, bucket, key, upload, parts, IfNoneMatch="*") == (
        "ConditionalRequestConflict",
        409,
    )
    assert body_of(s3, bucket, key) == b"won the race"


def test_a_put_that_loses_the_race_while_its_body_comes_is_a_conflict(
    cloud: Cloud, s3: Any, bucket: str
) -> None:
    key = unique("put-race")
    url = f"{cloud.s3_url}/{bucket}/{key}"
    data = b"a" * 4096 + b"b" * 4096
    request = AWSRequest(method="PUT", url=url, data=data, headers={"if-none-match": "*"})
    credentials = s3._request_signer._credentials
    S3SigV4Auth(credentials, "s3", REGION).add_auth(request)
    headers = {k: v for k, v in request.headers.items() if k.lower() != "content-length"}

    def slow_body() -> Iterator[bytes]:
        yield data[:4096]
        s3.put_object(Bucket=bucket, Key=key, Body=b"the other writer")  # wins meanwhile
        yield data[4096:]

    headers["content-length"] = str(len(data))
    response = httpx.put(url, content=slow_body(), headers=headers, timeout=30)

    assert response.status_code == 409, response.text
    assert error_document(response)["Code"] == "ConditionalRequestConflict"
    assert body_of(s3, bucket, key) == b"the other writer"
