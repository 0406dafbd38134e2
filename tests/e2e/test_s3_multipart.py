"""boto3 multipart uploads against the real S3 port: parts, copies, completion and its refusals.

Most tests run on a cloud whose smallest part is 5 KiB, to stay fast; two run on the
shared cloud with S3's own 5 MiB minimum.
"""

from __future__ import annotations

import base64
import hashlib
import io
import os
from collections.abc import Iterator
from typing import Any

import pytest
from boto3.s3.transfer import TransferConfig

from tests.e2e.conftest import Cloud, CloudFactory, Tenant, unique
from tests.e2e.s3_support import md5_b64, md5_hex, multipart_etag, new_bucket, s3_error

pytestmark = pytest.mark.e2e

KIB = 1024
MIB = 1024 * KIB
SMALL_MIN_PART = 5 * KIB


@pytest.fixture(scope="module")
def small_cloud(start_cloud: CloudFactory) -> Iterator[Cloud]:
    cloud = start_cloud("s3-small-parts", SOUVERAIN_OBJECTSTORE__MIN_PART_BYTES=str(SMALL_MIN_PART))
    yield cloud
    cloud.stop_and_check()


@pytest.fixture(scope="module")
def s3(small_cloud: Cloud) -> Any:
    owner: Tenant = small_cloud.make_tenant("s3multipart")
    return small_cloud.s3(owner)


@pytest.fixture(scope="module")
def bucket(s3: Any) -> str:
    return new_bucket(s3, "multipart")


def pieces(*sizes: int) -> list[bytes]:
    """Distinct, non-repeating bytes of each size."""
    return [os.urandom(size) for size in sizes]


def start(s3: Any, bucket: str, **params: Any) -> tuple[str, str]:
    key = unique("upload")
    return key, s3.create_multipart_upload(Bucket=bucket, Key=key, **params)["UploadId"]


def send_parts(
    s3: Any, bucket: str, key: str, upload_id: str, parts: list[bytes]
) -> list[dict[str, Any]]:
    """Upload each piece as part 1..N; the list CompleteMultipartUpload wants."""
    done = []
    for number, data in enumerate(parts, start=1):
        answer = s3.upload_part(
            Bucket=bucket, Key=key, UploadId=upload_id, PartNumber=number, Body=data
        )
        assert answer["ETag"] == f'"{md5_hex(data)}"'
        done.append({"PartNumber": number, "ETag": answer["ETag"]})
    return done


def complete(s3: Any, bucket: str, key: str, upload_id: str, parts: list[dict[str, Any]]) -> Any:
    return s3.complete_multipart_upload(
        Bucket=bucket, Key=key, UploadId=upload_id, MultipartUpload={"Parts": parts}
    )


# ---------------------------------------------------------------------- the whole journey


def test_parts_are_joined_in_order_with_the_md5_of_md5s_etag(s3: Any, bucket: str) -> None:
    key, upload_id = start(
        s3, bucket, ContentType="video/mp4", Metadata={"camera": "front"}, Tagging="clip=1"
    )
    parts = pieces(6 * KIB, 7 * KIB, 1000)

    done = send_parts(s3, bucket, key, upload_id, parts)
    listed = s3.list_parts(Bucket=bucket, Key=key, UploadId=upload_id)
    answer = complete(s3, bucket, key, upload_id, done)

    assert [(p["PartNumber"], p["Size"], p["ETag"]) for p in listed["Parts"]] == [
        (n, len(data), f'"{md5_hex(data)}"') for n, data in enumerate(parts, start=1)
    ]
    assert answer["ETag"] == multipart_etag(parts)
    assert answer["Key"] == key
    assert answer["Bucket"] == bucket
    got = s3.get_object(Bucket=bucket, Key=key)
    assert got["Body"].read() == b"".join(parts)
    assert got["ETag"] == multipart_etag(parts)
    assert got["ContentType"] == "video/mp4"
    assert got["Metadata"] == {"camera": "front"}
    assert got["TagCount"] == 1
    assert s3_error(s3.list_parts, Bucket=bucket, Key=key, UploadId=upload_id) == (
        "NoSuchUpload",
        404,
    )


def test_get_by_part_number_returns_that_part(s3: Any, bucket: str) -> None:
    key, upload_id = start(s3, bucket)
    parts = pieces(6 * KIB, 5 * KIB, 2 * KIB)
    complete(s3, bucket, key, upload_id, send_parts(s3, bucket, key, upload_id, parts))

    second = s3.get_object(Bucket=bucket, Key=key, PartNumber=2)

    assert second["Body"].read() == parts[1]
    assert second["PartsCount"] == 3
    assert second["ContentRange"] == f"bytes {6 * KIB}-{11 * KIB - 1}/{13 * KIB}"
    assert s3.head_object(Bucket=bucket, Key=key, PartNumber=3)["ContentLength"] == 2 * KIB


def test_ranges_across_part_boundaries_read_the_joined_bytes(s3: Any, bucket: str) -> None:
    key, upload_id = start(s3, bucket)
    parts = pieces(6 * KIB, 5 * KIB, 3 * KIB)
    complete(s3, bucket, key, upload_id, send_parts(s3, bucket, key, upload_id, parts))
    whole = b"".join(parts)

    for first, last in [(6 * KIB - 10, 6 * KIB + 9), (100, 13 * KIB), (11 * KIB - 1, 11 * KIB)]:
        got = s3.get_object(Bucket=bucket, Key=key, Range=f"bytes={first}-{last}")
        assert got["Body"].read() == whole[first : last + 1]
    assert (
        s3.get_object(Bucket=bucket, Key=key, Range="bytes=-5000")["Body"].read() == whole[-5000:]
    )


def test_listings_show_the_multipart_etag(s3: Any, bucket: str) -> None:
    key, upload_id = start(s3, bucket)
    parts = pieces(6 * KIB, 10)
    complete(s3, bucket, key, upload_id, send_parts(s3, bucket, key, upload_id, parts))

    (listed,) = s3.list_objects_v2(Bucket=bucket, Prefix=key)["Contents"]

    assert listed["ETag"] == multipart_etag(parts)
    assert listed["Size"] == 6 * KIB + 10


def test_copy_of_a_multipart_object_is_one_part_with_a_plain_md5(s3: Any, bucket: str) -> None:
    key, upload_id = start(s3, bucket)
    parts = pieces(6 * KIB, 6 * KIB)
    complete(s3, bucket, key, upload_id, send_parts(s3, bucket, key, upload_id, parts))
    target = unique("flat-copy")

    answer = s3.copy_object(Bucket=bucket, Key=target, CopySource={"Bucket": bucket, "Key": key})

    assert answer["CopyObjectResult"]["ETag"] == f'"{md5_hex(b"".join(parts))}"'
    assert s3.get_object(Bucket=bucket, Key=target)["Body"].read() == b"".join(parts)


def test_list_parts_pages_by_part_number(s3: Any, bucket: str) -> None:
    key, upload_id = start(s3, bucket)
    done = send_parts(s3, bucket, key, upload_id, pieces(*[100] * 5))

    first = s3.list_parts(Bucket=bucket, Key=key, UploadId=upload_id, MaxParts=2)
    paged = [
        p["PartNumber"]
        for page in s3.get_paginator("list_parts").paginate(
            Bucket=bucket, Key=key, UploadId=upload_id, PaginationConfig={"PageSize": 2}
        )
        for p in page.get("Parts", [])
    ]

    assert [p["PartNumber"] for p in first["Parts"]] == [1, 2]
    assert first["IsTruncated"] is True
    assert first["NextPartNumberMarker"] == 2
    assert paged == [d["PartNumber"] for d in done]


def test_a_part_sent_again_replaces_the_earlier_one(s3: Any, bucket: str) -> None:
    key, upload_id = start(s3, bucket)
    first, second, replacement = pieces(6 * KIB, 100, 6 * KIB)
    send_parts(s3, bucket, key, upload_id, [first, second])

    again = s3.upload_part(
        Bucket=bucket, Key=key, UploadId=upload_id, PartNumber=1, Body=replacement
    )
    listed = s3.list_parts(Bucket=bucket, Key=key, UploadId=upload_id)["Parts"]
    complete(
        s3,
        bucket,
        key,
        upload_id,
        [{"PartNumber": 1, "ETag": again["ETag"]}, {"PartNumber": 2, "ETag": listed[1]["ETag"]}],
    )

    assert [p["ETag"] for p in listed] == [f'"{md5_hex(replacement)}"', f'"{md5_hex(second)}"']
    assert s3.get_object(Bucket=bucket, Key=key)["Body"].read() == replacement + second


def test_parts_left_out_of_completion_are_dropped(s3: Any, bucket: str) -> None:
    key, upload_id = start(s3, bucket)
    parts = pieces(6 * KIB, 6 * KIB, 6 * KIB)
    done = send_parts(s3, bucket, key, upload_id, parts)

    answer = complete(s3, bucket, key, upload_id, [done[0], done[2]])

    assert answer["ETag"] == multipart_etag([parts[0], parts[2]])
    assert s3.get_object(Bucket=bucket, Key=key)["Body"].read() == parts[0] + parts[2]


def test_upload_part_copy_takes_byte_ranges_of_another_object(s3: Any, bucket: str) -> None:
    (source_data,) = pieces(20 * KIB)
    source = unique("source")
    s3.put_object(Bucket=bucket, Key=source, Body=source_data)
    key, upload_id = start(s3, bucket)
    (tail,) = pieces(300)

    first = s3.upload_part_copy(
        Bucket=bucket,
        Key=key,
        UploadId=upload_id,
        PartNumber=1,
        CopySource={"Bucket": bucket, "Key": source},
        CopySourceRange="bytes=0-6143",
    )["CopyPartResult"]
    second = s3.upload_part_copy(
        Bucket=bucket,
        Key=key,
        UploadId=upload_id,
        PartNumber=2,
        CopySource=f"{bucket}/{source}",
        CopySourceRange="bytes=10000-16999",
    )["CopyPartResult"]
    whole = s3.upload_part_copy(
        Bucket=bucket,
        Key=key,
        UploadId=upload_id,
        PartNumber=3,
        CopySource={"Bucket": bucket, "Key": source},
    )["CopyPartResult"]
    third = s3.upload_part(Bucket=bucket, Key=key, UploadId=upload_id, PartNumber=4, Body=tail)
    answer = complete(
        s3,
        bucket,
        key,
        upload_id,
        [
            {"PartNumber": 1, "ETag": first["ETag"]},
            {"PartNumber": 2, "ETag": second["ETag"]},
            {"PartNumber": 3, "ETag": whole["ETag"]},
            {"PartNumber": 4, "ETag": third["ETag"]},
        ],
    )

    expected_parts = [source_data[:6144], source_data[10000:17000], source_data, tail]
    assert first["ETag"] == f'"{md5_hex(expected_parts[0])}"'
    assert second["ETag"] == f'"{md5_hex(expected_parts[1])}"'
    assert answer["ETag"] == multipart_etag(expected_parts)
    assert s3.get_object(Bucket=bucket, Key=key)["Body"].read() == b"".join(expected_parts)


def test_upload_part_copy_range_outside_the_source_is_refused(s3: Any, bucket: str) -> None:
    source = unique("short-source")
    s3.put_object(Bucket=bucket, Key=source, Body=b"x" * 100)
    key, upload_id = start(s3, bucket)

    # AWS answers "Range specified is not valid for source object of size: 100".
    code = s3_error(
        s3.upload_part_copy,
        Bucket=bucket,
        Key=key,
        UploadId=upload_id,
        PartNumber=1,
        CopySource={"Bucket": bucket, "Key": source},
        CopySourceRange="bytes=50-150",
    )

    assert code == ("InvalidArgument", 400)
    assert "Parts" not in s3.list_parts(Bucket=bucket, Key=key, UploadId=upload_id)


def test_part_checksums_make_a_checksum_of_checksums(s3: Any, bucket: str) -> None:
    key, upload_id = start(s3, bucket, ChecksumAlgorithm="SHA256")
    parts = pieces(6 * KIB, 6 * KIB, 10)
    done = []
    for number, data in enumerate(parts, start=1):
        answer = s3.upload_part(
            Bucket=bucket,
            Key=key,
            UploadId=upload_id,
            PartNumber=number,
            Body=data,
            ChecksumAlgorithm="SHA256",
        )
        assert answer["ChecksumSHA256"] == base64.b64encode(hashlib.sha256(data).digest()).decode()
        done.append(
            {
                "PartNumber": number,
                "ETag": answer["ETag"],
                "ChecksumSHA256": answer["ChecksumSHA256"],
            }
        )

    listed = s3.list_parts(Bucket=bucket, Key=key, UploadId=upload_id)
    complete(s3, bucket, key, upload_id, done)

    assert listed["ChecksumAlgorithm"] == "SHA256"
    assert [p["ChecksumSHA256"] for p in listed["Parts"]] == [d["ChecksumSHA256"] for d in done]
    of_parts = hashlib.sha256(b"".join(hashlib.sha256(p).digest() for p in parts)).digest()
    head = s3.head_object(Bucket=bucket, Key=key, ChecksumMode="ENABLED")
    assert head["ChecksumSHA256"] == f"{base64.b64encode(of_parts).decode()}-3"


# ---------------------------------------------------------------------- refusals


def test_completion_with_a_wrong_etag_is_invalid_part_and_keeps_the_upload(
    s3: Any, bucket: str
) -> None:
    key, upload_id = start(s3, bucket)
    parts = pieces(6 * KIB, 10)
    done = send_parts(s3, bucket, key, upload_id, parts)

    wrong_etag = [done[0], {"PartNumber": 2, "ETag": f'"{md5_hex(b"other")}"'}]
    never_sent = [*done, {"PartNumber": 3, "ETag": done[1]["ETag"]}]
    assert s3_error(complete, s3, bucket, key, upload_id, wrong_etag) == ("InvalidPart", 400)
    assert s3_error(complete, s3, bucket, key, upload_id, never_sent) == ("InvalidPart", 400)

    assert s3_error(s3.head_object, Bucket=bucket, Key=key) == ("404", 404)
    assert len(s3.list_parts(Bucket=bucket, Key=key, UploadId=upload_id)["Parts"]) == 2
    complete(s3, bucket, key, upload_id, done)
    assert s3.get_object(Bucket=bucket, Key=key)["Body"].read() == b"".join(parts)


def test_completion_with_parts_out_of_order_is_invalid_part_order(s3: Any, bucket: str) -> None:
    key, upload_id = start(s3, bucket)
    done = send_parts(s3, bucket, key, upload_id, pieces(6 * KIB, 6 * KIB))

    assert s3_error(complete, s3, bucket, key, upload_id, [done[1], done[0]]) == (
        "InvalidPartOrder",
        400,
    )
    assert s3_error(complete, s3, bucket, key, upload_id, [done[0], done[0]]) == (
        "InvalidPartOrder",
        400,
    )
    assert s3_error(s3.head_object, Bucket=bucket, Key=key) == ("404", 404)


def test_a_part_below_the_minimum_before_the_last_is_entity_too_small(s3: Any, bucket: str) -> None:
    key, upload_id = start(s3, bucket)
    done = send_parts(s3, bucket, key, upload_id, pieces(SMALL_MIN_PART - 1, 6 * KIB))

    assert s3_error(complete, s3, bucket, key, upload_id, done) == ("EntityTooSmall", 400)
    assert s3_error(s3.head_object, Bucket=bucket, Key=key) == ("404", 404)


def test_a_single_small_part_is_a_whole_object(s3: Any, bucket: str) -> None:
    key, upload_id = start(s3, bucket)
    parts = pieces(10)

    answer = complete(s3, bucket, key, upload_id, send_parts(s3, bucket, key, upload_id, parts))

    assert answer["ETag"] == multipart_etag(parts)
    assert s3.get_object(Bucket=bucket, Key=key)["Body"].read() == parts[0]


def test_part_whose_content_md5_does_not_match_is_refused(s3: Any, bucket: str) -> None:
    key, upload_id = start(s3, bucket)

    code = s3_error(
        s3.upload_part,
        Bucket=bucket,
        Key=key,
        UploadId=upload_id,
        PartNumber=1,
        Body=b"the part",
        ContentMD5=md5_b64(b"another part"),
    )

    assert code == ("BadDigest", 400)
    assert "Parts" not in s3.list_parts(Bucket=bucket, Key=key, UploadId=upload_id)


def test_completion_without_parts_is_malformed(s3: Any, bucket: str) -> None:
    key, upload_id = start(s3, bucket)

    assert s3_error(complete, s3, bucket, key, upload_id, []) == ("MalformedXML", 400)


def test_part_numbers_outside_1_to_10000_are_refused(s3: Any, bucket: str) -> None:
    key, upload_id = start(s3, bucket)

    for number in (0, 10001):
        assert s3_error(
            s3.upload_part,
            Bucket=bucket,
            Key=key,
            UploadId=upload_id,
            PartNumber=number,
            Body=b"x",
        ) == ("InvalidArgument", 400)


def test_aborted_upload_is_gone_for_every_operation(s3: Any, bucket: str) -> None:
    key, upload_id = start(s3, bucket)
    done = send_parts(s3, bucket, key, upload_id, pieces(6 * KIB))

    aborted = s3.abort_multipart_upload(Bucket=bucket, Key=key, UploadId=upload_id)

    assert aborted["ResponseMetadata"]["HTTPStatusCode"] == 204
    same = {"Bucket": bucket, "Key": key, "UploadId": upload_id}
    assert s3_error(s3.list_parts, **same) == ("NoSuchUpload", 404)
    assert s3_error(s3.upload_part, **same, PartNumber=2, Body=b"late") == ("NoSuchUpload", 404)
    assert s3_error(complete, s3, bucket, key, upload_id, done) == ("NoSuchUpload", 404)
    assert s3_error(s3.abort_multipart_upload, **same) == ("NoSuchUpload", 404)
    assert s3_error(s3.head_object, Bucket=bucket, Key=key) == ("404", 404)


def test_upload_id_of_another_key_is_no_such_upload(s3: Any, bucket: str) -> None:
    _key, upload_id = start(s3, bucket)

    assert s3_error(
        s3.upload_part,
        Bucket=bucket,
        Key=unique("other-key"),
        UploadId=upload_id,
        PartNumber=1,
        Body=b"x",
    ) == ("NoSuchUpload", 404)


def test_uploads_in_progress_are_listed_and_paged(s3: Any) -> None:
    bucket = new_bucket(s3, "uploads")
    keys = ["a/one", "a/two", "a/two", "b/three"]
    started = [(k, s3.create_multipart_upload(Bucket=bucket, Key=k)["UploadId"]) for k in keys]

    listed = s3.list_multipart_uploads(Bucket=bucket)
    under_a = s3.list_multipart_uploads(Bucket=bucket, Prefix="a/")
    paged = [
        (u["Key"], u["UploadId"])
        for page in s3.get_paginator("list_multipart_uploads").paginate(
            Bucket=bucket, PaginationConfig={"PageSize": 1}
        )
        for u in page.get("Uploads", [])
    ]

    wanted = sorted(started)
    assert [(u["Key"], u["UploadId"]) for u in listed["Uploads"]] == wanted
    assert [(u["Key"], u["UploadId"]) for u in under_a["Uploads"]] == wanted[:3]
    assert paged == wanted
    assert all(u["Initiated"] for u in listed["Uploads"])

    for key, upload_id in started:
        s3.abort_multipart_upload(Bucket=bucket, Key=key, UploadId=upload_id)
    assert "Uploads" not in s3.list_multipart_uploads(Bucket=bucket)


def test_deleting_a_bucket_drops_its_unfinished_uploads(s3: Any) -> None:
    bucket = new_bucket(s3, "abandoned")
    key, upload_id = start(s3, bucket)
    send_parts(s3, bucket, key, upload_id, pieces(6 * KIB))

    s3.delete_bucket(Bucket=bucket)

    assert s3_error(s3.list_parts, Bucket=bucket, Key=key, UploadId=upload_id) == (
        "NoSuchBucket",
        404,
    )


# ---------------------------------------------------------------------- S3's real 5 MiB minimum


@pytest.fixture(scope="module")
def shared_s3(cloud: Cloud) -> Any:
    return cloud.s3(cloud.make_tenant("s3multipart-shared"))


@pytest.fixture(scope="module")
def shared_bucket(shared_s3: Any) -> str:
    return new_bucket(shared_s3, "multipart-5mib")


def test_two_parts_of_five_mib_complete_under_the_default_minimum(
    shared_s3: Any, shared_bucket: str
) -> None:
    key, upload_id = start(shared_s3, shared_bucket)
    parts = pieces(5 * MIB, 5 * MIB)

    too_small = send_parts(
        shared_s3, shared_bucket, key, upload_id, [parts[0][: 5 * MIB - 1], parts[1]]
    )
    assert s3_error(complete, shared_s3, shared_bucket, key, upload_id, too_small) == (
        "EntityTooSmall",
        400,
    )
    done = send_parts(shared_s3, shared_bucket, key, upload_id, parts)
    answer = complete(shared_s3, shared_bucket, key, upload_id, done)

    assert answer["ETag"] == multipart_etag(parts)
    got = shared_s3.get_object(Bucket=shared_bucket, Key=key)
    assert got["ContentLength"] == 10 * MIB
    assert got["Body"].read() == b"".join(parts)


def test_managed_transfer_uploads_and_downloads_in_parts(cloud: Cloud) -> None:
    client = cloud.s3(cloud.make_tenant("s3managed"))
    bucket = new_bucket(client, "managed")
    sent: list[tuple[str, str, str]] = []

    def record(request: Any, **_: Any) -> None:
        wanted = request.headers.get("Range", b"")
        wanted = wanted.decode() if isinstance(wanted, bytes) else wanted
        sent.append((request.method, request.url, wanted))

    client.meta.events.register("before-send.s3", record)
    data = os.urandom(11 * MIB + 12345)
    config = TransferConfig(
        multipart_threshold=5 * MIB, multipart_chunksize=5 * MIB, max_concurrency=3
    )

    client.upload_fileobj(io.BytesIO(data), bucket, "big.bin", Config=config)
    out = io.BytesIO()
    client.download_fileobj(bucket, "big.bin", out, Config=config)

    chunks = [data[i : i + 5 * MIB] for i in range(0, len(data), 5 * MIB)]
    assert client.head_object(Bucket=bucket, Key="big.bin")["ETag"] == multipart_etag(chunks)
    assert out.getvalue() == data
    part_puts = [url for method, url, _ in sent if method == "PUT" and "partNumber=" in url]
    ranged_gets = [r for method, _, r in sent if method == "GET" and r]
    assert len(part_puts) == 3
    assert len(ranged_gets) >= 2
