"""boto3 against the real S3 port: objects in, out and gone, with what S3 keeps beside the bytes."""

from __future__ import annotations

import base64
import datetime as dt
import gzip
import hashlib
import io
import os
import re
import threading
import zlib
from typing import Any

import crc32c
import httpx
import pytest
from boto3.s3.transfer import TransferConfig
from botocore.exceptions import ClientError

from tests.e2e.conftest import Cloud, Tenant, unique
from tests.e2e.s3_support import crc32_b64, md5_b64, md5_hex, new_bucket, s3_error

pytestmark = pytest.mark.e2e

DATA = bytes(range(256)) * 4  # 1 KiB, every byte value


@pytest.fixture(scope="module")
def owner(cloud: Cloud) -> Tenant:
    return cloud.make_tenant("s3objects")


@pytest.fixture(scope="module")
def s3(cloud: Cloud, owner: Tenant) -> Any:
    return cloud.s3(owner)


@pytest.fixture(scope="module")
def bucket(s3: Any) -> str:
    return new_bucket(s3, "objects")


def put(s3: Any, bucket: str, body: bytes = DATA, **params: Any) -> str:
    """Put under a fresh key; the key."""
    key = unique("obj")
    s3.put_object(Bucket=bucket, Key=key, Body=body, **params)
    return key


def absent(s3: Any, bucket: str, key: str) -> bool:
    try:
        s3.head_object(Bucket=bucket, Key=key)
    except ClientError as exc:
        return bool(exc.response["ResponseMetadata"]["HTTPStatusCode"] == 404)
    return False


class OneWayStream:
    """A body that can only be read forward, like a pipe or a socket."""

    def __init__(self, data: bytes, piece: int = 3000) -> None:
        self._data = data
        self._at = 0
        self._piece = piece

    def read(self, size: int = -1) -> bytes:
        size = self._piece if size < 0 else min(size, self._piece)
        chunk = self._data[self._at : self._at + size]
        self._at += len(chunk)
        return chunk


# ---------------------------------------------------------------------- put, get, head, delete


def test_object_round_trips_with_md5_etag(s3: Any, bucket: str) -> None:
    key = unique("dir/round trip é")

    put_answer = s3.put_object(Bucket=bucket, Key=key, Body=DATA)
    got = s3.get_object(Bucket=bucket, Key=key)
    head = s3.head_object(Bucket=bucket, Key=key)

    etag = f'"{md5_hex(DATA)}"'
    assert put_answer["ETag"] == got["ETag"] == head["ETag"] == etag
    assert got["Body"].read() == DATA
    assert got["ContentLength"] == head["ContentLength"] == len(DATA)
    assert got["ContentType"] == "binary/octet-stream"
    assert got["AcceptRanges"] == "bytes"
    assert abs(head["LastModified"] - dt.datetime.now(dt.UTC)) < dt.timedelta(minutes=1)
    assert "VersionId" not in put_answer


def test_empty_object_has_the_md5_of_nothing(s3: Any, bucket: str) -> None:
    key = put(s3, bucket, b"")

    got = s3.get_object(Bucket=bucket, Key=key)

    assert got["Body"].read() == b""
    assert got["ContentLength"] == 0
    assert got["ETag"] == '"d41d8cd98f00b204e9800998ecf8427e"'


def test_put_replaces_the_object_and_delete_removes_it(s3: Any, bucket: str) -> None:
    key = put(s3, bucket, b"first")
    s3.put_object(Bucket=bucket, Key=key, Body=b"second, longer")
    assert s3.get_object(Bucket=bucket, Key=key)["Body"].read() == b"second, longer"

    deleted = s3.delete_object(Bucket=bucket, Key=key)

    assert deleted["ResponseMetadata"]["HTTPStatusCode"] == 204
    assert s3_error(s3.get_object, Bucket=bucket, Key=key) == ("NoSuchKey", 404)
    assert absent(s3, bucket, key)
    # Deleting what is not there succeeds, as on S3.
    again = s3.delete_object(Bucket=bucket, Key=key)
    assert again["ResponseMetadata"]["HTTPStatusCode"] == 204


def test_object_in_a_missing_bucket_is_no_such_bucket(s3: Any) -> None:
    missing = unique("nobucket")

    assert s3_error(s3.get_object, Bucket=missing, Key="k") == ("NoSuchBucket", 404)
    assert s3_error(s3.put_object, Bucket=missing, Key="k", Body=b"x") == ("NoSuchBucket", 404)


def test_connection_stays_usable_after_a_put_refused_before_its_body(s3: Any, bucket: str) -> None:
    # boto3 sends `Expect: 100-continue` and holds the body back when the answer is an
    # error; the next request on that kept-alive connection must still be understood.
    refusals: list[tuple[dict[str, Any], tuple[str, int]]] = [
        ({"Bucket": unique("nobucket"), "Key": "k"}, ("NoSuchBucket", 404)),
        ({"Bucket": bucket, "Key": "k" * 1025}, ("KeyTooLongError", 400)),
        ({"Bucket": bucket, "Key": "k", "ContentMD5": "not base64!"}, ("InvalidDigest", 400)),
        ({"Bucket": bucket, "Key": "k", "Metadata": {"m": "v" * 2100}}, ("MetadataTooLarge", 400)),
    ]
    for params, expected in refusals:
        assert s3_error(s3.put_object, Body=DATA, **params) == expected

        key = put(s3, bucket, DATA)

        assert s3.get_object(Bucket=bucket, Key=key)["Body"].read() == DATA


def test_stored_headers_and_user_metadata_come_back(s3: Any, bucket: str) -> None:
    body = gzip.compress(b"<html>souverain</html>")
    expires = dt.datetime(2031, 5, 17, 8, 30, tzinfo=dt.UTC)
    key = put(
        s3,
        bucket,
        body,
        ContentType="text/html; charset=utf-8",
        CacheControl="max-age=3600, public",
        ContentDisposition='attachment; filename="page.html"',
        ContentEncoding="gzip",
        ContentLanguage="fr-FR",
        Expires=expires,
        Metadata={"colour": "bleu", "Mixed-Case": "Valeur Mixte", "empty": ""},
    )

    for answer in (
        s3.head_object(Bucket=bucket, Key=key),
        s3.get_object(Bucket=bucket, Key=key),
    ):
        assert answer["ContentType"] == "text/html; charset=utf-8"
        assert answer["CacheControl"] == "max-age=3600, public"
        assert answer["ContentDisposition"] == 'attachment; filename="page.html"'
        assert answer["ContentEncoding"] == "gzip"
        assert answer["ContentLanguage"] == "fr-FR"
        assert answer["ExpiresString"] == "Sat, 17 May 2031 08:30:00 GMT"
        assert answer["Metadata"] == {"colour": "bleu", "mixed-case": "Valeur Mixte", "empty": ""}
    # Stored as sent: the server neither decompresses nor re-encodes.
    assert s3.get_object(Bucket=bucket, Key=key)["Body"].read() == body


def test_response_overrides_change_the_answer_not_the_object(s3: Any, bucket: str) -> None:
    key = put(s3, bucket, ContentType="application/octet-stream")

    got = s3.get_object(
        Bucket=bucket,
        Key=key,
        ResponseContentType="text/plain",
        ResponseContentDisposition="inline",
        ResponseCacheControl="no-store",
    )

    assert got["ContentType"] == "text/plain"
    assert got["ContentDisposition"] == "inline"
    assert got["CacheControl"] == "no-store"
    assert s3.head_object(Bucket=bucket, Key=key)["ContentType"] == "application/octet-stream"


def test_too_much_user_metadata_is_refused(s3: Any, bucket: str) -> None:
    key = unique("bigmeta")

    code = s3_error(s3.put_object, Bucket=bucket, Key=key, Body=b"x", Metadata={"big": "v" * 2100})

    assert code == ("MetadataTooLarge", 400)
    assert absent(s3, bucket, key)


def test_key_longer_than_1024_bytes_is_refused(s3: Any, bucket: str) -> None:
    assert s3_error(s3.put_object, Bucket=bucket, Key="k" * 1025, Body=b"x") == (
        "KeyTooLongError",
        400,
    )
    # 1024 bytes of UTF-8 is still a key.
    longest = "é" * 512
    s3.put_object(Bucket=bucket, Key=longest, Body=b"ok")
    assert s3.get_object(Bucket=bucket, Key=longest)["Body"].read() == b"ok"


def test_put_if_none_match_star_refuses_to_overwrite(s3: Any, bucket: str) -> None:
    key = unique("create-only")
    s3.put_object(Bucket=bucket, Key=key, Body=b"first", IfNoneMatch="*")

    code = s3_error(s3.put_object, Bucket=bucket, Key=key, Body=b"second", IfNoneMatch="*")

    assert code == ("PreconditionFailed", 412)
    assert s3.get_object(Bucket=bucket, Key=key)["Body"].read() == b"first"


@pytest.mark.parametrize(
    "key",
    [
        "with space.txt",
        "plus+sign",
        "percent%2Fliteral",
        "ünïcødé/ключ",
        "a&b=c?d#e",
        "~tilde*",
        "double//slash",
        "trailing/",
    ],
)
def test_odd_keys_survive_put_copy_and_presigned_get(s3: Any, bucket: str, key: str) -> None:
    source = f"{unique('odd')}/{key}"
    target = f"{source} (copy)"
    s3.put_object(Bucket=bucket, Key=source, Body=key.encode())

    s3.copy_object(Bucket=bucket, Key=target, CopySource={"Bucket": bucket, "Key": source})
    url = s3.generate_presigned_url(
        "get_object", Params={"Bucket": bucket, "Key": target}, ExpiresIn=60
    )
    fetched = httpx.get(url, timeout=30)

    assert s3.get_object(Bucket=bucket, Key=target)["Body"].read() == key.encode()
    assert fetched.status_code == 200, fetched.text
    assert fetched.content == key.encode()
    listed = s3.list_objects_v2(Bucket=bucket, Prefix=source)["Contents"]
    assert [o["Key"] for o in listed] == [source, target]


def test_dot_segments_are_part_of_the_key_not_a_path(s3: Any, bucket: str) -> None:
    folder = unique("dots")
    keys = [f"{folder}/a/../b", f"{folder}/./c", f"{folder}/.."]
    for key in keys:
        s3.put_object(Bucket=bucket, Key=key, Body=key.encode())

    listed = [o["Key"] for o in s3.list_objects_v2(Bucket=bucket, Prefix=folder)["Contents"]]

    assert listed == sorted(keys)
    for key in keys:
        assert s3.get_object(Bucket=bucket, Key=key)["Body"].read() == key.encode()
    assert absent(s3, bucket, f"{folder}/b")
    assert absent(s3, bucket, f"{folder}/c")


# ---------------------------------------------------------------------- promises we cannot keep


@pytest.mark.parametrize(
    "lock",
    [
        {"ObjectLockMode": "COMPLIANCE", "ObjectLockRetainUntilDate": dt.datetime(2040, 1, 1)},
        {"ObjectLockLegalHoldStatus": "ON"},
    ],
)
def test_object_lock_on_a_bucket_without_it_is_refused(
    s3: Any, bucket: str, lock: dict[str, Any]
) -> None:
    # What S3 answers for a bucket without Object Lock: the object would not be protected.
    key = unique("locked")

    assert s3_error(s3.put_object, Bucket=bucket, Key=key, Body=DATA, **lock) == (
        "InvalidRequest",
        400,
    )
    assert absent(s3, bucket, key)


# ---------------------------------------------------------------------- digests and checksums


def test_content_md5_that_matches_is_accepted(s3: Any, bucket: str) -> None:
    key = put(s3, bucket, ContentMD5=md5_b64(DATA))

    assert s3.get_object(Bucket=bucket, Key=key)["Body"].read() == DATA


def test_content_md5_that_does_not_match_stores_nothing(s3: Any, bucket: str) -> None:
    fresh = unique("badmd5")
    existing = put(s3, bucket, b"the old bytes")
    wrong = md5_b64(b"something else")

    assert s3_error(s3.put_object, Bucket=bucket, Key=fresh, Body=DATA, ContentMD5=wrong) == (
        "BadDigest",
        400,
    )
    assert s3_error(s3.put_object, Bucket=bucket, Key=existing, Body=DATA, ContentMD5=wrong) == (
        "BadDigest",
        400,
    )

    assert absent(s3, bucket, fresh)
    assert s3.get_object(Bucket=bucket, Key=existing)["Body"].read() == b"the old bytes"


def test_content_md5_that_is_not_an_md5_is_invalid_digest(s3: Any, bucket: str) -> None:
    key = unique("notmd5")

    for value in ("not base64!", base64.b64encode(b"short").decode()):
        assert s3_error(s3.put_object, Bucket=bucket, Key=key, Body=DATA, ContentMD5=value) == (
            "InvalidDigest",
            400,
        )
    assert absent(s3, bucket, key)


def checksums_of(data: bytes) -> dict[str, str]:
    """What S3 reports as ChecksumCRC32, ChecksumCRC32C, ... for these bytes."""
    return {
        "CRC32": crc32_b64(data),
        "CRC32C": base64.b64encode(crc32c.crc32c(data).to_bytes(4, "big")).decode(),
        "SHA1": base64.b64encode(hashlib.sha1(data, usedforsecurity=False).digest()).decode(),
        "SHA256": base64.b64encode(hashlib.sha256(data).digest()).decode(),
    }


CHECKSUMS = checksums_of(DATA)


@pytest.mark.parametrize("algorithm", ["CRC32", "SHA1", "SHA256"])
def test_checksum_computed_by_boto3_is_stored_and_returned_on_request(
    s3: Any, bucket: str, algorithm: str
) -> None:
    key = unique(f"sum-{algorithm.lower()}")

    put_answer = s3.put_object(Bucket=bucket, Key=key, Body=DATA, ChecksumAlgorithm=algorithm)
    head = s3.head_object(Bucket=bucket, Key=key, ChecksumMode="ENABLED")
    got = s3.get_object(Bucket=bucket, Key=key, ChecksumMode="ENABLED")

    field = f"Checksum{algorithm}"
    assert put_answer[field] == head[field] == got[field] == CHECKSUMS[algorithm]
    assert got["Body"].read() == DATA  # boto3 checked the body against it too


def test_crc32c_sent_as_a_header_is_stored_and_returned(s3: Any, bucket: str) -> None:
    # boto3 computes CRC32C only with awscrt; a customer can still send the value.
    key = put(s3, bucket, ChecksumCRC32C=CHECKSUMS["CRC32C"])

    head = s3.head_object(Bucket=bucket, Key=key, ChecksumMode="ENABLED")

    assert head["ChecksumCRC32C"] == CHECKSUMS["CRC32C"]


def test_checksums_are_not_shown_unless_asked_for(s3: Any, bucket: str) -> None:
    key = put(s3, bucket, ChecksumAlgorithm="SHA256")

    head = s3.head_object(Bucket=bucket, Key=key)

    assert "ChecksumSHA256" not in head


@pytest.mark.parametrize("algorithm", ["CRC32", "CRC32C", "SHA1", "SHA256"])
def test_wrong_checksum_value_is_refused_and_stores_nothing(
    s3: Any, bucket: str, algorithm: str
) -> None:
    key = unique("wrongsum")
    wrong = checksums_of(bytes(reversed(DATA)))[algorithm]

    code = s3_error(
        s3.put_object, Bucket=bucket, Key=key, Body=DATA, **{f"Checksum{algorithm}": wrong}
    )

    assert code == ("BadDigest", 400)
    assert absent(s3, bucket, key)


# ---------------------------------------------------------------------- streaming bodies


@pytest.fixture
def trailer_s3(cloud: Cloud, owner: Tenant) -> tuple[Any, list[dict[str, str]]]:
    """A client that sends bodies as boto3 does over TLS: aws-chunked with a CRC32 trailer.

    boto3 only streams with a trailing checksum on https; the hook flips that one
    decision so the same code path runs against this plain-http endpoint. The
    headers of every request sent are recorded for the test to inspect.
    """
    client = cloud.s3(owner)
    sent: list[dict[str, str]] = []

    def stream_with_trailer(params: dict[str, Any], **_: Any) -> None:
        algorithm = params["context"].get("checksum", {}).get("request_algorithm")
        if isinstance(algorithm, dict):
            algorithm["in"] = "trailer"

    def record(request: Any, **_: Any) -> None:
        sent.append(
            {
                k.lower(): v.decode() if isinstance(v, bytes) else v
                for k, v in request.headers.items()
            }
        )

    client.meta.events.register("before-call.s3.PutObject", stream_with_trailer)
    client.meta.events.register("before-call.s3.UploadPart", stream_with_trailer)
    client.meta.events.register("before-send.s3", record)
    return client, sent


def test_non_seekable_stream_is_uploaded_as_aws_chunked_with_a_checksum_trailer(
    trailer_s3: tuple[Any, list[dict[str, str]]], bucket: str, s3: Any
) -> None:
    client, sent = trailer_s3
    data = bytes(range(251)) * 400  # ~100 KB, many chunks, an odd size
    key = unique("streamed")

    answer = client.put_object(Bucket=bucket, Key=key, Body=OneWayStream(data))

    request = sent[-1]
    assert request["x-amz-content-sha256"] == "STREAMING-UNSIGNED-PAYLOAD-TRAILER"
    assert "aws-chunked" in request["content-encoding"]
    assert request["x-amz-trailer"] == "x-amz-checksum-crc32"
    assert answer["ETag"] == f'"{md5_hex(data)}"'
    got = s3.get_object(Bucket=bucket, Key=key, ChecksumMode="ENABLED")
    assert got["Body"].read() == data
    assert got["ChecksumCRC32"] == crc32_b64(data)
    assert got["ContentLength"] == len(data)
    assert "ContentEncoding" not in got  # aws-chunked is transport, not the object's encoding


def test_seekable_file_is_uploaded_as_aws_chunked_with_its_declared_length(
    trailer_s3: tuple[Any, list[dict[str, str]]], bucket: str, s3: Any, tmp_path: Any
) -> None:
    client, sent = trailer_s3
    data = zlib.compress(bytes(range(256)) * 300) * 3
    path = tmp_path / "upload.bin"
    path.write_bytes(data)
    key = unique("streamed-file")

    with path.open("rb") as body:
        client.put_object(Bucket=bucket, Key=key, Body=body, ContentType="application/zlib")

    assert sent[-1]["x-amz-decoded-content-length"] == str(len(data))
    got = s3.get_object(Bucket=bucket, Key=key)
    assert got["Body"].read() == data
    assert got["ContentType"] == "application/zlib"


def test_managed_multipart_upload_streams_each_part_with_a_trailer(
    trailer_s3: tuple[Any, list[dict[str, str]]], bucket: str, s3: Any
) -> None:
    client, sent = trailer_s3
    data = os.urandom(10 * 1024 * 1024 + 1)  # parts of 5 MiB, 5 MiB and 1 byte
    key = unique("streamed-parts")
    config = TransferConfig(
        multipart_threshold=5 * 1024 * 1024, multipart_chunksize=5 * 1024 * 1024
    )

    client.upload_fileobj(io.BytesIO(data), bucket, key, Config=config)

    streamed = [h for h in sent if h.get("x-amz-trailer") == "x-amz-checksum-crc32"]
    assert len(streamed) == 3
    assert all(h["x-amz-content-sha256"] == "STREAMING-UNSIGNED-PAYLOAD-TRAILER" for h in streamed)
    assert s3.get_object(Bucket=bucket, Key=key)["Body"].read() == data


class WrongTrailer:
    """An aws-chunked body whose trailing CRC32 is replaced after boto3 computed it."""

    def __init__(self, chunked: Any) -> None:
        self._chunked = chunked
        self._rest: io.BytesIO | None = None

    def read(self, size: int | None = None) -> bytes:
        if self._rest is None:
            whole = self._chunked.read()
            wrong = crc32_b64(b"not the payload").encode()
            altered = re.sub(rb"(x-amz-checksum-crc32:)[A-Za-z0-9+/=]+", rb"\1" + wrong, whole)
            assert altered != whole
            self._rest = io.BytesIO(altered)
        return self._rest.read(-1 if size is None else size)


def test_wrong_checksum_in_the_trailer_is_refused_and_stores_nothing(
    trailer_s3: tuple[Any, list[dict[str, str]]], bucket: str, s3: Any
) -> None:
    client, _sent = trailer_s3
    key = unique("bad-trailer")

    def corrupt(request: Any, **_: Any) -> None:
        request.body = WrongTrailer(request.body)

    client.meta.events.register("before-send.s3.PutObject", corrupt)

    code = s3_error(client.put_object, Bucket=bucket, Key=key, Body=OneWayStream(DATA * 10))

    assert code == ("BadDigest", 400)
    assert absent(s3, bucket, key)


def test_managed_upload_from_a_pipe_stores_every_byte(s3: Any, bucket: str) -> None:
    data = hashlib.sha256(b"seed").digest() * 2000  # 64 KB
    key = unique("managed-pipe")
    read_end, write_end = os.pipe()

    def produce() -> None:
        with os.fdopen(write_end, "wb") as pipe:
            for at in range(0, len(data), 4096):
                pipe.write(data[at : at + 4096])

    producer = threading.Thread(target=produce)
    producer.start()
    with os.fdopen(read_end, "rb") as pipe:
        assert not pipe.seekable()
        s3.upload_fileobj(pipe, bucket, key, Config=TransferConfig(use_threads=False))
    producer.join()

    out = io.BytesIO()
    s3.download_fileobj(bucket, key, out)
    assert out.getvalue() == data
    assert s3.head_object(Bucket=bucket, Key=key)["ETag"] == f'"{md5_hex(data)}"'


# ---------------------------------------------------------------------- batch delete


def test_batch_delete_reports_each_key_including_missing_ones(s3: Any, bucket: str) -> None:
    present = [put(s3, bucket, b"x") for _ in range(3)]
    missing = [unique("never"), unique("never")]
    survivor = put(s3, bucket, b"keep")

    answer = s3.delete_objects(
        Bucket=bucket, Delete={"Objects": [{"Key": k} for k in present + missing]}
    )

    assert sorted(d["Key"] for d in answer["Deleted"]) == sorted(present + missing)
    assert "Errors" not in answer
    assert all(absent(s3, bucket, k) for k in present)
    assert s3.get_object(Bucket=bucket, Key=survivor)["Body"].read() == b"keep"


def test_quiet_batch_delete_answers_nothing_and_deletes_everything(s3: Any, bucket: str) -> None:
    keys = [put(s3, bucket, b"x") for _ in range(4)]

    answer = s3.delete_objects(
        Bucket=bucket,
        Delete={"Objects": [{"Key": k} for k in [*keys, unique("missing")]], "Quiet": True},
    )

    assert "Deleted" not in answer
    assert "Errors" not in answer
    assert all(absent(s3, bucket, k) for k in keys)


def test_batch_delete_of_nothing_is_malformed(cloud: Cloud, s3: Any, bucket: str) -> None:
    assert s3_error(s3.delete_objects, Bucket=bucket, Delete={"Objects": []}) == (
        "MalformedXML",
        400,
    )


def test_batch_delete_of_more_than_1000_keys_is_malformed(s3: Any, bucket: str) -> None:
    keep = put(s3, bucket, b"keep")
    objects = [{"Key": keep}] + [{"Key": f"k{i}"} for i in range(1000)]

    code = s3_error(s3.delete_objects, Bucket=bucket, Delete={"Objects": objects})

    assert code == ("MalformedXML", 400)
    assert s3.get_object(Bucket=bucket, Key=keep)["Body"].read() == b"keep"


# ---------------------------------------------------------------------- copy


def test_copy_within_a_bucket_keeps_bytes_etag_and_metadata(s3: Any, bucket: str) -> None:
    source = put(s3, bucket, ContentType="image/png", Metadata={"origin": "camera"})
    target = unique("copy")

    answer = s3.copy_object(Bucket=bucket, Key=target, CopySource={"Bucket": bucket, "Key": source})

    assert answer["CopyObjectResult"]["ETag"] == f'"{md5_hex(DATA)}"'
    got = s3.get_object(Bucket=bucket, Key=target)
    assert got["Body"].read() == DATA
    assert got["ContentType"] == "image/png"
    assert got["Metadata"] == {"origin": "camera"}


def test_copy_across_buckets_with_metadata_copy_ignores_new_metadata(s3: Any, bucket: str) -> None:
    other = new_bucket(s3, "copy-target")
    source = put(s3, bucket, Metadata={"kept": "yes"}, ContentType="text/csv")

    s3.copy_object(
        Bucket=other,
        Key="copied.csv",
        CopySource=f"{bucket}/{source}",
        MetadataDirective="COPY",
        Metadata={"ignored": "yes"},
        ContentType="text/plain",
    )

    head = s3.head_object(Bucket=other, Key="copied.csv")
    assert head["Metadata"] == {"kept": "yes"}
    assert head["ContentType"] == "text/csv"
    assert s3.get_object(Bucket=other, Key="copied.csv")["Body"].read() == DATA


def test_copy_with_metadata_replace_takes_the_new_metadata(s3: Any, bucket: str) -> None:
    source = put(s3, bucket, Metadata={"old": "1"}, ContentType="text/csv")
    target = unique("replaced")

    s3.copy_object(
        Bucket=bucket,
        Key=target,
        CopySource={"Bucket": bucket, "Key": source},
        MetadataDirective="REPLACE",
        Metadata={"new": "2"},
        ContentType="application/json",
        CacheControl="no-cache",
    )

    head = s3.head_object(Bucket=bucket, Key=target)
    assert head["Metadata"] == {"new": "2"}
    assert head["ContentType"] == "application/json"
    assert head["CacheControl"] == "no-cache"
    assert s3.head_object(Bucket=bucket, Key=source)["Metadata"] == {"old": "1"}


def test_copy_onto_itself_needs_a_change(s3: Any, bucket: str) -> None:
    key = put(s3, bucket, Metadata={"v": "1"})
    source = {"Bucket": bucket, "Key": key}

    assert s3_error(s3.copy_object, Bucket=bucket, Key=key, CopySource=source) == (
        "InvalidRequest",
        400,
    )

    s3.copy_object(
        Bucket=bucket, Key=key, CopySource=source, MetadataDirective="REPLACE", Metadata={"v": "2"}
    )
    head = s3.head_object(Bucket=bucket, Key=key)
    assert head["Metadata"] == {"v": "2"}
    assert s3.get_object(Bucket=bucket, Key=key)["Body"].read() == DATA


def test_copy_of_a_missing_source_is_no_such_key(s3: Any, bucket: str) -> None:
    code = s3_error(
        s3.copy_object,
        Bucket=bucket,
        Key=unique("target"),
        CopySource={"Bucket": bucket, "Key": unique("missing")},
    )

    assert code == ("NoSuchKey", 404)


def test_copy_preconditions_refuse_with_precondition_failed(s3: Any, bucket: str) -> None:
    source_key = put(s3, bucket)
    source = {"Bucket": bucket, "Key": source_key}
    etag = s3.head_object(Bucket=bucket, Key=source_key)["ETag"]
    past = dt.datetime.now(dt.UTC) - dt.timedelta(days=1)
    future = dt.datetime.now(dt.UTC) + dt.timedelta(days=1)
    target = unique("conditional-copy")

    failing: list[dict[str, Any]] = [
        {"CopySourceIfMatch": '"0123456789abcdef0123456789abcdef"'},
        {"CopySourceIfNoneMatch": etag},
        {"CopySourceIfModifiedSince": future},
        {"CopySourceIfUnmodifiedSince": past},
    ]
    for condition in failing:
        code = s3_error(s3.copy_object, Bucket=bucket, Key=target, CopySource=source, **condition)
        assert code == ("PreconditionFailed", 412), condition
    assert absent(s3, bucket, target)

    holding: list[dict[str, Any]] = [
        {"CopySourceIfMatch": etag},
        {"CopySourceIfNoneMatch": '"0123456789abcdef0123456789abcdef"'},
        {"CopySourceIfModifiedSince": past},
        {"CopySourceIfUnmodifiedSince": future},
    ]
    for condition in holding:
        s3.copy_object(Bucket=bucket, Key=target, CopySource=source, **condition)
        assert s3.head_object(Bucket=bucket, Key=target)["ETag"] == etag


# ---------------------------------------------------------------------- ranges and conditions


@pytest.fixture(scope="module")
def ranged(s3: Any, bucket: str) -> str:
    return put(s3, bucket, DATA)


@pytest.mark.parametrize(
    ("header", "first", "last"),
    [
        ("bytes=0-0", 0, 0),
        ("bytes=10-19", 10, 19),
        ("bytes=-100", 924, 1023),
        ("bytes=1000-", 1000, 1023),
        ("bytes=1000-5000", 1000, 1023),
        ("bytes=-5000", 0, 1023),
    ],
)
def test_range_get_returns_partial_content(
    s3: Any, bucket: str, ranged: str, header: str, first: int, last: int
) -> None:
    got = s3.get_object(Bucket=bucket, Key=ranged, Range=header)

    assert got["ResponseMetadata"]["HTTPStatusCode"] == 206
    assert got["ContentRange"] == f"bytes {first}-{last}/{len(DATA)}"
    assert got["ContentLength"] == last - first + 1
    assert got["Body"].read() == DATA[first : last + 1]


def test_range_beyond_the_end_is_invalid_range(s3: Any, bucket: str, ranged: str) -> None:
    for header in ("bytes=1024-", "bytes=5000-6000"):
        assert s3_error(s3.get_object, Bucket=bucket, Key=ranged, Range=header) == (
            "InvalidRange",
            416,
        )


def test_conditional_get_answers_304_and_412_as_s3_does(s3: Any, bucket: str, ranged: str) -> None:
    head = s3.head_object(Bucket=bucket, Key=ranged)
    etag, modified = head["ETag"], head["LastModified"]
    other_etag = '"0123456789abcdef0123456789abcdef"'
    earlier = modified - dt.timedelta(days=1)
    later = modified + dt.timedelta(days=1)

    assert s3.get_object(Bucket=bucket, Key=ranged, IfMatch=etag)["Body"].read() == DATA
    assert s3.get_object(Bucket=bucket, Key=ranged, IfNoneMatch=other_etag)["ETag"] == etag
    assert s3.get_object(Bucket=bucket, Key=ranged, IfModifiedSince=earlier)["ETag"] == etag
    assert s3.get_object(Bucket=bucket, Key=ranged, IfUnmodifiedSince=later)["ETag"] == etag

    def get(**condition: Any) -> tuple[str, int]:
        return s3_error(s3.get_object, Bucket=bucket, Key=ranged, **condition)

    assert get(IfMatch=other_etag) == ("PreconditionFailed", 412)
    assert get(IfUnmodifiedSince=earlier) == ("PreconditionFailed", 412)
    assert get(IfNoneMatch=etag) == ("304", 304)
    assert get(IfModifiedSince=modified) == ("304", 304)
    assert get(IfModifiedSince=later) == ("304", 304)
    # If-Match wins over If-Unmodified-Since; If-None-Match over If-Modified-Since.
    assert s3.get_object(Bucket=bucket, Key=ranged, IfMatch=etag, IfUnmodifiedSince=earlier)
    assert get(IfNoneMatch=etag, IfModifiedSince=earlier) == ("304", 304)
    assert s3_error(s3.head_object, Bucket=bucket, Key=ranged, IfNoneMatch=etag) == ("304", 304)
    assert s3_error(s3.head_object, Bucket=bucket, Key=ranged, IfMatch=other_etag) == (
        "412",
        412,
    )


# ---------------------------------------------------------------------- tags


def test_object_tags_set_on_put_are_counted_read_replaced_and_removed(s3: Any, bucket: str) -> None:
    key = put(s3, bucket, Tagging="project=souverain&tier=gold%20plus")

    assert s3.get_object(Bucket=bucket, Key=key)["TagCount"] == 2
    tags = s3.get_object_tagging(Bucket=bucket, Key=key)["TagSet"]
    assert sorted((t["Key"], t["Value"]) for t in tags) == [
        ("project", "souverain"),
        ("tier", "gold plus"),
    ]

    s3.put_object_tagging(
        Bucket=bucket, Key=key, Tagging={"TagSet": [{"Key": "état", "Value": "revu"}]}
    )
    assert s3.get_object_tagging(Bucket=bucket, Key=key)["TagSet"] == [
        {"Key": "état", "Value": "revu"}
    ]

    s3.delete_object_tagging(Bucket=bucket, Key=key)
    assert s3.get_object_tagging(Bucket=bucket, Key=key)["TagSet"] == []
    assert "TagCount" not in s3.head_object(Bucket=bucket, Key=key)


def test_object_tags_beyond_ten_are_refused(s3: Any, bucket: str) -> None:
    key = put(s3, bucket)
    tags = [{"Key": f"k{i}", "Value": "v"} for i in range(11)]

    code = s3_error(s3.put_object_tagging, Bucket=bucket, Key=key, Tagging={"TagSet": tags})

    assert code == ("InvalidTag", 400)


def test_tags_of_a_missing_object_are_no_such_key(s3: Any, bucket: str) -> None:
    assert s3_error(s3.get_object_tagging, Bucket=bucket, Key=unique("gone")) == (
        "NoSuchKey",
        404,
    )
