"""GetObjectAttributes and CRC-64/NVME checksums through boto3 on the real S3 port.

botocore computes CRC-64/NVME only with the AWS CRT installed (absent here), so the test
computes the value itself and hands it to boto3 as a customer's code would.
"""

from __future__ import annotations

import base64
from typing import Any

import pytest

from tests.e2e.conftest import Cloud, unique
from tests.e2e.s3_support import md5_hex, new_bucket, s3_error

pytestmark = pytest.mark.e2e

PART = 5 * 1024 * 1024


def _crc_of_byte(byte: int) -> int:
    crc = byte
    for _ in range(8):
        crc = (crc >> 1) ^ 0x9A6C9329AC4BC9B5 if crc & 1 else crc >> 1
    return crc


BYTE_CRCS = [_crc_of_byte(b) for b in range(256)]


def crc64nvme(data: bytes) -> str:
    """CRC-64/NVME (reflected, all-ones in and out) as base64 of its 8 big-endian bytes."""
    crc = 0xFFFFFFFFFFFFFFFF
    for byte in data:
        crc = BYTE_CRCS[(crc ^ byte) & 0xFF] ^ (crc >> 8)
    crc ^= 0xFFFFFFFFFFFFFFFF
    return base64.b64encode(crc.to_bytes(8, "big")).decode()


@pytest.fixture(scope="module")
def s3(cloud: Cloud) -> Any:
    return cloud.s3(cloud.make_tenant("s3attrs"))


@pytest.fixture(scope="module")
def bucket(s3: Any) -> str:
    return new_bucket(s3, "attrs")


def test_the_crc64nvme_of_the_standard_check_string() -> None:
    assert (
        crc64nvme(b"123456789")
        == base64.b64encode((0xAE8B14860A799888).to_bytes(8, "big")).decode()
    )


def test_a_crc64nvme_sent_is_checked_stored_and_returned(s3: Any, bucket: str) -> None:
    key = unique("crc64")
    data = b"checked on arrival" * 100
    checksum = crc64nvme(data)

    put = s3.put_object(Bucket=bucket, Key=key, Body=data, ChecksumCRC64NVME=checksum)

    assert put["ChecksumCRC64NVME"] == checksum
    got = s3.get_object(Bucket=bucket, Key=key, ChecksumMode="ENABLED")
    assert got["ChecksumCRC64NVME"] == checksum
    assert got["Body"].read() == data


def test_a_wrong_crc64nvme_stores_nothing(s3: Any, bucket: str) -> None:
    key = unique("crc64-bad")

    code = s3_error(
        s3.put_object, Bucket=bucket, Key=key, Body=b"data", ChecksumCRC64NVME=crc64nvme(b"other")
    )

    assert code == ("BadDigest", 400)
    assert s3_error(s3.head_object, Bucket=bucket, Key=key)[1] == 404


def test_get_object_attributes_of_a_simple_object(s3: Any, bucket: str) -> None:
    key = unique("simple")
    data = b"attributes without the body"
    s3.put_object(Bucket=bucket, Key=key, Body=data, ChecksumAlgorithm="SHA256")

    found = s3.get_object_attributes(
        Bucket=bucket,
        Key=key,
        ObjectAttributes=["ETag", "Checksum", "ObjectParts", "StorageClass", "ObjectSize"],
    )

    assert found["ETag"] == md5_hex(data)
    assert found["ObjectSize"] == len(data)
    assert found["StorageClass"] == "STANDARD"
    assert found["Checksum"]["ChecksumType"] == "FULL_OBJECT"
    assert "ChecksumSHA256" in found["Checksum"]
    assert "ObjectParts" not in found
    assert "LastModified" in found


def test_get_object_attributes_lists_the_parts_of_a_multipart_object(s3: Any, bucket: str) -> None:
    key = unique("parts")
    upload = s3.create_multipart_upload(Bucket=bucket, Key=key)["UploadId"]
    sizes = [PART, PART, 10]
    parts = [
        {
            "PartNumber": n,
            "ETag": s3.upload_part(
                Bucket=bucket, Key=key, UploadId=upload, PartNumber=n, Body=b"p" * size
            )["ETag"],
        }
        for n, size in enumerate(sizes, start=1)
    ]
    s3.complete_multipart_upload(
        Bucket=bucket, Key=key, UploadId=upload, MultipartUpload={"Parts": parts}
    )

    found = s3.get_object_attributes(
        Bucket=bucket, Key=key, ObjectAttributes=["ObjectParts", "ObjectSize"], MaxParts=2
    )

    assert found["ObjectSize"] == sum(sizes)
    listed = found["ObjectParts"]
    assert listed["TotalPartsCount"] == 3
    assert [(p["PartNumber"], p["Size"]) for p in listed["Parts"]] == [(1, PART), (2, PART)]
    assert listed["IsTruncated"] is True
    rest = s3.get_object_attributes(
        Bucket=bucket,
        Key=key,
        ObjectAttributes=["ObjectParts"],
        PartNumberMarker=listed["NextPartNumberMarker"],
    )["ObjectParts"]
    assert [(p["PartNumber"], p["Size"]) for p in rest["Parts"]] == [(3, 10)]


def test_get_object_attributes_refuses_unknown_names_and_outsiders(
    cloud: Cloud, s3: Any, bucket: str
) -> None:
    key = unique("private")
    s3.put_object(Bucket=bucket, Key=key, Body=b"x")
    stranger = cloud.s3(cloud.make_tenant("s3attrs-stranger"))

    assert s3_error(
        s3.get_object_attributes, Bucket=bucket, Key=key, ObjectAttributes=["Owner"]
    ) == ("InvalidArgument", 400)
    assert s3_error(
        stranger.get_object_attributes, Bucket=bucket, Key=key, ObjectAttributes=["ETag"]
    ) == ("AccessDenied", 403)
    assert s3_error(
        s3.get_object_attributes, Bucket=bucket, Key=unique("nothing"), ObjectAttributes=["ETag"]
    ) == ("NoSuchKey", 404)


def test_a_crc64nvme_upload_gets_the_whole_object_crc(s3: Any, bucket: str) -> None:
    key = unique("crc64-parts")
    parts_data = [b"a" * PART, b"tail of the object"]
    upload = s3.create_multipart_upload(Bucket=bucket, Key=key, ChecksumAlgorithm="CRC64NVME")[
        "UploadId"
    ]
    parts = []
    for number, data in enumerate(parts_data, start=1):
        checksum = crc64nvme(data)
        sent = s3.upload_part(
            Bucket=bucket,
            Key=key,
            UploadId=upload,
            PartNumber=number,
            Body=data,
            ChecksumCRC64NVME=checksum,
        )
        parts.append({"PartNumber": number, "ETag": sent["ETag"], "ChecksumCRC64NVME": checksum})

    done = s3.complete_multipart_upload(
        Bucket=bucket, Key=key, UploadId=upload, MultipartUpload={"Parts": parts}
    )

    whole = crc64nvme(b"".join(parts_data))
    assert done["ChecksumCRC64NVME"] == whole
    found = s3.get_object_attributes(Bucket=bucket, Key=key, ObjectAttributes=["Checksum"])
    assert found["Checksum"] == {"ChecksumCRC64NVME": whole, "ChecksumType": "FULL_OBJECT"}
