"""boto3 against a real server: S3 server-side encryption in every mode (SSE-S3, SSE-KMS,
SSE-C), ranges across chunk edges, multipart, copies between modes, bucket default
encryption, Swift on an encrypted container, the refusals S3 answers, and then the proof:
no file of the data dir (blobs, SQLite and its WAL, logs) nor, on RADOS, any raw object
of the pool holds a byte run of the plaintext written."""

from __future__ import annotations

import base64
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.e2e.conftest import Cloud, Tenant
from tests.e2e.s3_support import md5_hex, new_bucket, s3_error

pytestmark = pytest.mark.e2e

MARK = b"SSE-PLAINTEXT-" + os.urandom(12).hex().encode()
CHUNK = 64 * 1024  # the sealed format's chunk: ranges below straddle its edges
MIB = 1024 * 1024


def body(size: int) -> bytes:
    """Random bytes carrying MARK at the start, across the first chunk edge and at the end."""
    data = bytearray(os.urandom(size))
    for at in (0, CHUNK - len(MARK) // 2, size - len(MARK)):
        if 0 <= at <= size - len(MARK):
            data[at : at + len(MARK)] = MARK
    return bytes(data)


def customer(key: bytes, copy: bool = False) -> dict[str, Any]:
    prefix = "CopySourceSSECustomer" if copy else "SSECustomer"
    return {f"{prefix}Algorithm": "AES256", f"{prefix}Key": key}


def files_under(root: Path) -> Iterator[Path]:
    for folder, _dirs, names in os.walk(root):
        for name in names:
            path = Path(folder) / name
            if path.is_file() and not path.is_symlink():
                yield path


def holding(data: bytes, needles: list[bytes]) -> list[bytes]:
    return [n for n in needles if n in data]


def on_disk(root: Path, needles: list[bytes]) -> dict[bytes, Path]:
    """Every file under `root`, read whole (in overlapping pieces): where each needle is."""
    overlap = max(len(n) for n in needles)
    found: dict[bytes, Path] = {}
    for path in files_under(root):
        with path.open("rb") as handle:
            tail = b""
            while piece := handle.read(16 * MIB):
                found.update((n, path) for n in holding(tail + piece, needles))
                tail = piece[-overlap:]
    return found


def symmetric_secret(cloud: Cloud, tenant: Tenant) -> str:
    """A 256-bit key stored in the key manager (Barbican API) by `tenant`; its href."""
    payload = base64.b64encode(os.urandom(32)).decode()
    cloud.secrets.add(payload)
    body = {
        "name": "s3 key", "payload": payload, "payload_content_type": "application/octet-stream",
        "payload_content_encoding": "base64", "secret_type": "symmetric", "algorithm": "aes",
        "bit_length": 256,
    }  # fmt: skip
    made = cloud.api("POST", "/key-manager/v1/secrets/", cloud.token_for(tenant), json=body)
    assert made.status_code == 201, made.text
    return str(made.json()["secret_ref"])


def check_kms_keys(cloud: Cloud, owner: Tenant, s3: Any, bucket: str) -> None:
    """SSE-KMS under the owner's own secret (by href or id); another project's is refused;
    the bucket becomes the secret's consumer."""
    href = symmetric_secret(cloud, owner)
    key_id = href.rsplit("/", 1)[1]
    foreign = symmetric_secret(cloud, cloud.make_tenant("sse-other"))
    data = body(90_000)
    for name in (href, key_id):
        put = s3.put_object(
            Bucket=bucket,
            Key="kms-own",
            Body=data,
            ServerSideEncryption="aws:kms",
            SSEKMSKeyId=name,
        )
        assert put["SSEKMSKeyId"] == key_id
    got = s3.get_object(Bucket=bucket, Key="kms-own")
    assert got["SSEKMSKeyId"] == key_id and got["Body"].read() == data
    for name in (foreign, foreign.rsplit("/", 1)[1]):
        code = s3_error(
            s3.put_object,
            Bucket=bucket,
            Key="kms-foreign",
            Body=MARK,
            ServerSideEncryption="aws:kms",
            SSEKMSKeyId=name,
        )
        assert code == ("KMS.NotFoundException", 400)
        rule = {
            "ApplyServerSideEncryptionByDefault": {
                "SSEAlgorithm": "aws:kms",
                "KMSMasterKeyID": name,
            }
        }
        code = s3_error(
            s3.put_bucket_encryption,
            Bucket=bucket,
            ServerSideEncryptionConfiguration={"Rules": [rule]},
        )
        assert code == ("KMS.NotFoundException", 400)
    rule = {
        "ApplyServerSideEncryptionByDefault": {"SSEAlgorithm": "aws:kms", "KMSMasterKeyID": href}
    }
    s3.put_bucket_encryption(Bucket=bucket, ServerSideEncryptionConfiguration={"Rules": [rule]})
    put = s3.put_object(Bucket=bucket, Key="kms-default", Body=data)
    assert put["ServerSideEncryption"] == "aws:kms" and put["SSEKMSKeyId"] == key_id
    s3.delete_bucket_encryption(Bucket=bucket)
    # the bucket is the key's consumer: the owner's `openstack secret delete` (1.2) is
    # refused while the bucket stands, so its objects stay readable
    assert "has consumers" in cloud.cli_fails("secret", "delete", href, cloud=owner.cloud_name)
    assert s3.get_object(Bucket=bucket, Key="kms-default")["Body"].read() == data


@pytest.fixture(scope="module")
def owner(cloud: Cloud) -> Tenant:
    return cloud.make_tenant("sse")


@pytest.fixture(scope="module")
def s3(cloud: Cloud, owner: Tenant) -> Any:
    return cloud.s3(owner)


def check_modes_and_ranges(s3: Any, bucket: str, key_c: bytes, large: int) -> dict[str, bytes]:
    """PUT, HEAD, GET and ranged GETs in each mode; the bodies written, by key."""
    written: dict[str, bytes] = {}
    for size in (300, large):  # inline in the database, and in blobs
        data = body(size)
        put = s3.put_object(
            Bucket=bucket, Key=f"s3-{size}", Body=data, ServerSideEncryption="AES256"
        )
        assert put["ServerSideEncryption"] == "AES256" and put["ETag"] == f'"{md5_hex(data)}"'
        kms = s3.put_object(
            Bucket=bucket, Key=f"kms-{size}", Body=data, ServerSideEncryption="aws:kms"
        )
        assert kms["ServerSideEncryption"] == "aws:kms" and kms["ETag"] != f'"{md5_hex(data)}"'
        c = s3.put_object(Bucket=bucket, Key=f"c-{size}", Body=data, **customer(key_c))
        assert c["SSECustomerAlgorithm"] == "AES256" and "ServerSideEncryption" not in c
        for mode in ("s3", "kms", "c"):
            written[f"{mode}-{size}"] = data
    for name, data in written.items():
        extra = customer(key_c) if name.startswith("c-") else {}
        head = s3.head_object(Bucket=bucket, Key=name, **extra)
        assert head["ContentLength"] == len(data)
        got = s3.get_object(Bucket=bucket, Key=name, **extra)
        assert got["Body"].read() == data
        if name.startswith("s3-"):
            assert got["ServerSideEncryption"] == "AES256"
        if len(data) > CHUNK:
            for start, end in (
                (CHUNK - 3, CHUNK + 3),
                (5, 3 * CHUNK + 1),
                (len(data) - 9, len(data) - 1),
            ):
                part = s3.get_object(Bucket=bucket, Key=name, Range=f"bytes={start}-{end}", **extra)
                assert part["Body"].read() == data[start : end + 1], (name, start, end)
                assert part["ContentRange"] == f"bytes {start}-{end}/{len(data)}"
    # SSE-C reads: no key 400, another key 403, as S3 answers
    assert s3_error(s3.get_object, Bucket=bucket, Key=f"c-{large}")[1] == 400
    assert s3_error(s3.head_object, Bucket=bucket, Key="c-300")[1] == 400
    assert s3_error(s3.get_object, Bucket=bucket, Key="c-300", **customer(os.urandom(32)))[1] == 403
    # a KMS key that is not there: KMS's own error, nothing stored
    code = s3_error(
        s3.put_object, Bucket=bucket, Key="kms-missing", Body=MARK, ServerSideEncryption="aws:kms",
        SSEKMSKeyId=f"arn:aws:kms:fr-1:000000000000:key/{os.urandom(16).hex()}",
    )  # fmt: skip
    assert code == ("KMS.NotFoundException", 400)
    assert "Contents" not in s3.list_objects_v2(Bucket=bucket, Prefix="kms-missing")
    return written


def check_multipart_and_copies(s3: Any, bucket: str, key_c: bytes, part_size: int) -> None:
    one, two = body(part_size), body(CHUNK + 77)
    joined = one + two
    for name, extra in (("mp-s3", {"ServerSideEncryption": "AES256"}), ("mp-c", customer(key_c))):
        parts_extra = extra if name == "mp-c" else {}
        upload = s3.create_multipart_upload(Bucket=bucket, Key=name, **extra)["UploadId"]
        etags = [
            s3.upload_part(Bucket=bucket, Key=name, UploadId=upload, PartNumber=n, Body=data, **parts_extra)["ETag"]
            for n, data in ((1, one), (2, two))
        ]  # fmt: skip
        done = s3.complete_multipart_upload(
            Bucket=bucket, Key=name, UploadId=upload,
            MultipartUpload={"Parts": [{"PartNumber": n + 1, "ETag": e} for n, e in enumerate(etags)]},
        )  # fmt: skip
        assert done["ETag"].endswith('-2"')
        assert s3.get_object(Bucket=bucket, Key=name, **parts_extra)["Body"].read() == joined
        edge = len(one)
        ranged = s3.get_object(
            Bucket=bucket, Key=name, Range=f"bytes={edge - 10}-{edge + 10}", **parts_extra
        )
        assert ranged["Body"].read() == joined[edge - 10 : edge + 11]
        second = s3.get_object(Bucket=bucket, Key=name, PartNumber=2, **parts_extra)
        assert second["Body"].read() == two
    # a part sent without the upload's customer key is refused
    upload = s3.create_multipart_upload(Bucket=bucket, Key="mp-c2", **customer(key_c))["UploadId"]
    assert (
        s3_error(
            s3.upload_part, Bucket=bucket, Key="mp-c2", UploadId=upload, PartNumber=1, Body=two
        )[1]
        == 400
    )
    # UploadPartCopy from the SSE-C object into that SSE-C upload and into an SSE-S3 one
    last = min(200_099, len(joined) - 1)
    for target, extra in (
        ("mp-c2", customer(key_c)),
        ("mp-copy", {"ServerSideEncryption": "AES256"}),
    ):
        if target == "mp-copy":
            upload = s3.create_multipart_upload(Bucket=bucket, Key=target, **extra)["UploadId"]
        copied = s3.upload_part_copy(
            Bucket=bucket, Key=target, UploadId=upload, PartNumber=1, CopySourceRange=f"bytes=100-{last}",
            CopySource={"Bucket": bucket, "Key": "mp-c"}, **customer(key_c, copy=True),
            **(extra if target == "mp-c2" else {}),
        )  # fmt: skip
        s3.complete_multipart_upload(
            Bucket=bucket, Key=target, UploadId=upload,
            MultipartUpload={"Parts": [{"PartNumber": 1, "ETag": copied["CopyPartResult"]["ETag"]}]},
        )  # fmt: skip
        reads = extra if target == "mp-c2" else {}
        assert (
            s3.get_object(Bucket=bucket, Key=target, **reads)["Body"].read()
            == joined[100 : last + 1]
        )
    # CopyObject between modes re-encrypts: SSE-C -> SSE-S3 -> SSE-KMS -> SSE-C
    steps: list[tuple[str, str, dict[str, Any], dict[str, Any]]] = [
        ("mp-c", "copy-s3", customer(key_c, copy=True), {"ServerSideEncryption": "AES256"}),
        ("copy-s3", "copy-kms", {}, {"ServerSideEncryption": "aws:kms"}),
        ("copy-kms", "copy-c", {}, customer(key_c)),
    ]
    for source, target, reading, writing in steps:
        result = s3.copy_object(Bucket=bucket, Key=target, CopySource={"Bucket": bucket, "Key": source},
                                **reading, **writing)  # fmt: skip
        if "ServerSideEncryption" in writing:
            assert result["ServerSideEncryption"] == writing["ServerSideEncryption"]
    assert s3.get_object(Bucket=bucket, Key="copy-c", **customer(key_c))["Body"].read() == joined
    head = s3.head_object(Bucket=bucket, Key="copy-s3")
    assert head["ServerSideEncryption"] == "AES256" and head["ETag"] == f'"{md5_hex(joined)}"'
    # copying an SSE-C object without its key is refused
    assert (
        s3_error(
            s3.copy_object, Bucket=bucket, Key="nope", CopySource={"Bucket": bucket, "Key": "mp-c"}
        )[1]
        == 400
    )


def test_every_mode_round_trips_and_nothing_plain_reaches_the_disk(
    cloud: Cloud, owner: Tenant, s3: Any
) -> None:
    bucket = new_bucket(s3, "sse")
    key_c = os.urandom(32)
    cloud.secrets.add(base64.b64encode(key_c).decode())  # never in the audit log either
    check_modes_and_ranges(s3, bucket, key_c, 3 * CHUNK + 5000)
    check_multipart_and_copies(s3, bucket, key_c, 5 * MIB)
    check_kms_keys(cloud, owner, s3, bucket)

    # bucket default encryption: objects written without SSE headers are SSE-S3
    defaulted = new_bucket(s3, "sse-default")
    assert s3_error(s3.get_bucket_encryption, Bucket=defaulted) == (
        "ServerSideEncryptionConfigurationNotFoundError", 404,
    )  # fmt: skip
    rule = {
        "ApplyServerSideEncryptionByDefault": {"SSEAlgorithm": "AES256"},
        "BucketKeyEnabled": True,
    }
    s3.put_bucket_encryption(Bucket=defaulted, ServerSideEncryptionConfiguration={"Rules": [rule]})
    shown = s3.get_bucket_encryption(Bucket=defaulted)["ServerSideEncryptionConfiguration"]
    assert shown["Rules"][0]["ApplyServerSideEncryptionByDefault"]["SSEAlgorithm"] == "AES256"
    data = body(200_000)
    put = s3.put_object(Bucket=defaulted, Key="plain-headers", Body=data)
    assert put["ServerSideEncryption"] == "AES256"
    # Swift writes into the encrypted container are encrypted too, and its GETs decrypt
    swift = f"{cloud.base_url}/object-storage/v1/AUTH_{owner.project_id}/{defaulted}"
    token = {"X-Auth-Token": cloud.token_for(owner)}
    swift_data = body(150_000)
    made = httpx.put(f"{swift}/from-swift", content=swift_data, headers=token, timeout=30)
    assert made.status_code == 201 and made.headers["etag"].strip('"') == md5_hex(swift_data)
    assert s3.head_object(Bucket=defaulted, Key="from-swift")["ServerSideEncryption"] == "AES256"
    assert httpx.get(f"{swift}/plain-headers", headers=token, timeout=30).content == data
    got = httpx.get(
        f"{swift}/from-swift", headers={**token, "Range": "bytes=65530-65545"}, timeout=30
    )
    assert got.status_code == 206 and got.content == swift_data[65530:65546]
    s3.put_object(Bucket=defaulted, Key="customer", Body=MARK, **customer(key_c))
    assert httpx.get(f"{swift}/customer", headers=token, timeout=30).status_code == 403
    s3.delete_bucket_encryption(Bucket=defaulted)
    # the control: an object written in clear, which the scan below must find
    control = b"SSE-CONTROL-" + os.urandom(12).hex().encode()
    plain = s3.put_object(Bucket=defaulted, Key="after", Body=control + os.urandom(70_000))
    assert "ServerSideEncryption" not in plain

    needles = [MARK, key_c, base64.b64encode(key_c), control]
    assert list(on_disk(cloud.data_dir, needles)) == [control]


def test_on_rados_the_pool_holds_only_ciphertext(rados_cloud: Cloud) -> None:
    from souverain.common.ceph import bindings
    from tests.ceph import shared_cluster

    tenant = rados_cloud.make_tenant("sse-rados")
    s3 = rados_cloud.s3(tenant)
    bucket = new_bucket(s3, "sse-rados")
    key_c = os.urandom(32)
    check_modes_and_ranges(s3, bucket, key_c, 5 * CHUNK + 321)  # many 64 KiB stripes
    check_multipart_and_copies(s3, bucket, key_c, 5 * 1024 + CHUNK)
    control = b"SSE-CONTROL-" + os.urandom(12).hex().encode()
    s3.put_object(Bucket=bucket, Key="control", Body=control)  # in clear: the scan finds it
    cluster = shared_cluster()
    pool = rados_cloud.server.env["SOUVERAIN_OBJECTSTORE__RADOS_POOL"]
    seen, controls = 0, 0
    rados = bindings("rados")
    with (
        rados.Rados(conffile=str(cluster.conf), rados_id=cluster.user) as handle,
        handle.open_ioctx(pool) as ioctx,
    ):
        for item in ioctx.list_objects():
            raw = ioctx.read(item.key, 64 * MIB)
            assert not holding(raw, [MARK, key_c]), item.key
            controls += control in raw
            seen += 1
    assert seen > 20 and controls == 1
    assert not on_disk(rados_cloud.data_dir, [MARK, key_c])


def test_a_client_leaving_an_encrypted_get_mid_body_leaves_the_server_serving(
    s3: Any,
) -> None:
    """The next chunk is opened in a thread while the current one is sent: a client that
    hangs up after the first MiB ends that read cleanly, and the next GETs get every byte."""
    bucket = new_bucket(s3, "sse-leave")
    data = body(12 * MIB + 7)
    s3.put_object(Bucket=bucket, Key="big", Body=data, ServerSideEncryption="AES256")
    url = s3.generate_presigned_url("get_object", Params={"Bucket": bucket, "Key": "big"})
    for _ in range(3):
        with httpx.stream("GET", url, timeout=30) as response:
            assert response.status_code == 200
            taken = 0
            for piece in response.iter_raw():
                taken += len(piece)
                if taken >= MIB:
                    break
    whole = httpx.get(url, timeout=60)
    assert whole.status_code == 200 and whole.content == data
    got = s3.get_object(Bucket=bucket, Key="big", Range=f"bytes={5 * MIB - 3}-{9 * MIB}")
    assert got["Body"].read() == data[5 * MIB - 3 : 9 * MIB + 1]
