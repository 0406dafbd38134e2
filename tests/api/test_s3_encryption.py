"""S3 server-side encryption through the in-process S3 app and the real key manager:
tenancy of KMS keys, who may set a bucket's default encryption, hostile SSE headers
refused with S3's errors and nothing left behind, and `encryption.mandatory`.
"""

from __future__ import annotations

import base64
import hashlib
import os
from dataclasses import replace
from typing import Any

from sqlalchemy import select

from souverain.keymanager.project_keys import KEK_HEAD_BYTES, named_keks
from souverain.objectstore import models as m
from souverain.objectstore.wrapped_keys import StoredDataKeys

from .support import S3, Cloud

SSE = "x-amz-server-side-encryption"
KMS_KEY = "x-amz-server-side-encryption-aws-kms-key-id"
C = "x-amz-server-side-encryption-customer-"
PLAIN = b"api-sse-plaintext-" + os.urandom(8).hex().encode()


def ok(response: Any, status: int = 200) -> Any:
    assert response.status_code == status, response.text
    return response


def code(response: Any) -> str:
    return response.text.split("<Code>")[1].split("</Code>")[0]


def sse_c(key: bytes, prefix: str = C) -> dict[str, str]:
    md5 = base64.b64encode(hashlib.md5(key, usedforsecurity=False).digest()).decode()
    return {
        prefix + "algorithm": "AES256",
        prefix + "key": base64.b64encode(key).decode(),
        prefix + "key-MD5": md5,
    }


def encryption_document(algorithm: str, key_id: str = "") -> bytes:
    key = f"<KMSMasterKeyID>{key_id}</KMSMasterKeyID>" if key_id else ""
    return (
        '<ServerSideEncryptionConfiguration xmlns="http://s3.amazonaws.com/doc/2006-03-01/">'
        f"<Rule><ApplyServerSideEncryptionByDefault><SSEAlgorithm>{algorithm}</SSEAlgorithm>"
        f"{key}</ApplyServerSideEncryptionByDefault><BucketKeyEnabled>true</BucketKeyEnabled>"
        "</Rule></ServerSideEncryptionConfiguration>"
    ).encode()


def md5_header(body: bytes) -> dict[str, str]:
    return {"Content-MD5": base64.b64encode(hashlib.md5(body).digest()).decode()}


def rows(cloud: Cloud, bucket: str) -> list[Any]:
    with cloud.platform.db.session() as s:
        found = s.scalar(select(m.Bucket.id).where(m.Bucket.name == bucket))
        return list(s.execute(select(m.ObjectVersion).where(m.ObjectVersion.bucket_id == found)))


def test_kms_keys_are_the_bucket_owners_and_configs_the_writers(shared_cloud: Cloud) -> None:
    cloud = shared_cloud
    alice = cloud.member()
    mallory = cloud.member()
    reader = cloud.member("reader", project_id=alice.project_id)
    keys = cloud.platform.project_keys
    assert keys is not None
    alice_key = keys.create_secret_key(alice.project_id, alice.id, "bucket key")
    mallory_key = keys.create_secret_key(mallory.project_id, mallory.id, "mine")
    # a reader may not make EC2 credentials: the admin makes the reader's
    s3a, s3m, s3r = (
        S3(cloud, alice),
        S3(cloud, mallory),
        S3(cloud, replace(reader, token=cloud.admin_token)),
    )
    bucket, other = cloud.unique("sse-a"), cloud.unique("sse-m")
    ok(s3a.send("PUT", f"/{bucket}"))
    ok(s3m.send("PUT", f"/{other}"))

    # SSE-KMS with the owner's own secret, named by id or by href or ARN
    for name in (
        alice_key,
        f"http://h/key-manager/v1/secrets/{alice_key}",
        f"arn:aws:kms:r:{alice.project_id}:key/{alice_key}",
    ):
        put = ok(s3a.send("PUT", f"/{bucket}/k", PLAIN, **{SSE: "aws:kms", KMS_KEY: name}))
        assert put.headers[SSE] == "aws:kms" and put.headers[KMS_KEY] == alice_key
        assert put.headers["etag"].strip('"') != hashlib.md5(PLAIN).hexdigest()
    got = ok(s3r.send("GET", f"/{bucket}/k"))  # a reader reads it, decrypted
    assert got.content == PLAIN and got.headers[KMS_KEY] == alice_key
    # another project's secret, or none at all: KMS's own error, nothing stored
    before = len(rows(cloud, bucket))
    for name in (mallory_key, "0" * 32, "not/a/key id"):
        refused = s3a.send("PUT", f"/{bucket}/x", PLAIN, **{SSE: "aws:kms", KMS_KEY: name})
        assert refused.status_code == 400 and code(refused) == "KMS.NotFoundException"
        assert mallory_key not in refused.text or name == mallory_key
    # mallory cannot use alice's secret in her own bucket either
    refused = s3m.send("PUT", f"/{other}/x", PLAIN, **{SSE: "aws:kms", KMS_KEY: alice_key})
    assert refused.status_code == 400 and code(refused) == "KMS.NotFoundException"
    assert len(rows(cloud, bucket)) == before

    # bucket default encryption: the owner's writers set it; a reader reads, cannot set
    ok(s3a.send("GET", f"/{bucket}?encryption"), 404)
    doc = encryption_document("aws:kms", alice_key)
    refused = s3r.send("PUT", f"/{bucket}?encryption", doc, **md5_header(doc))
    assert refused.status_code == 403
    refused = s3m.send("PUT", f"/{bucket}?encryption", doc, **md5_header(doc))
    assert refused.status_code == 403
    assert s3m.send("GET", f"/{bucket}?encryption").status_code == 403  # not even read
    bad = encryption_document("aws:kms", mallory_key)
    refused = s3a.send("PUT", f"/{bucket}?encryption", bad, **md5_header(bad))
    assert code(refused) == "KMS.NotFoundException"
    ok(s3a.send("PUT", f"/{bucket}?encryption", doc, **md5_header(doc)))
    shown = ok(s3r.send("GET", f"/{bucket}?encryption")).text
    assert "<SSEAlgorithm>aws:kms</SSEAlgorithm>" in shown and alice_key in shown
    put = ok(s3a.send("PUT", f"/{bucket}/default", PLAIN))
    assert put.headers[SSE] == "aws:kms" and put.headers[KMS_KEY] == alice_key
    assert ok(s3r.send("DELETE", f"/{bucket}?encryption"), 403)
    ok(s3a.send("DELETE", f"/{bucket}?encryption"), 204)
    missing = s3a.send("GET", f"/{bucket}?encryption")
    assert code(missing) == "ServerSideEncryptionConfigurationNotFoundError"
    plain = ok(s3a.send("PUT", f"/{bucket}/plain", PLAIN))
    assert SSE not in plain.headers
    # in the database: the wrapped key only, never plaintext bytes or a plaintext key
    for row in rows(cloud, bucket):
        (version,) = row
        if version.key == "plain":
            assert version.sse_mode is None and version.data == PLAIN
        else:
            assert version.sse_mode == "aws:kms" and PLAIN not in (version.data or b"")
            assert version.sse_wrapped and len(version.sse_wrapped) > 32


def test_hostile_sse_headers_are_refused_and_leave_nothing(shared_cloud: Cloud) -> None:
    cloud = shared_cloud
    owner = cloud.member()
    s3 = S3(cloud, owner)
    bucket = cloud.unique("sse-bad")
    ok(s3.send("PUT", f"/{bucket}"))
    key = os.urandom(32)
    good = sse_c(key)
    cases: list[tuple[dict[str, str], str]] = [
        ({SSE: "AES128"}, "InvalidArgument"),
        ({SSE: "aws:kms:dsse"}, "InvalidArgument"),
        ({SSE: "AES256", KMS_KEY: "abc"}, "InvalidArgument"),
        ({**good, SSE: "AES256"}, "InvalidArgument"),
        ({**good, C + "algorithm": "AES128"}, "InvalidEncryptionAlgorithmError"),
        ({**good, C + "key": "***not base64***"}, "InvalidArgument"),
        ({**good, C + "key": base64.b64encode(b"short").decode()}, "InvalidArgument"),
        ({**good, C + "key-MD5": base64.b64encode(b"0" * 16).decode()}, "InvalidArgument"),
        ({C + "algorithm": "AES256"}, "InvalidArgument"),
        ({C + "key": good[C + "key"], C + "key-MD5": good[C + "key-MD5"]}, "InvalidArgument"),
    ]
    for headers, expected in cases:
        refused = s3.send("PUT", f"/{bucket}/bad", PLAIN, **headers)
        assert refused.status_code == 400 and code(refused) == expected, (headers, refused.text)
        assert good[C + "key"] not in refused.text  # a key never comes back
    assert rows(cloud, bucket) == []
    # SSE-C stored; reads without, with another or a malformed key refused as S3 does
    ok(s3.send("PUT", f"/{bucket}/c", PLAIN, **good))
    assert s3.send("GET", f"/{bucket}/c").status_code == 400
    assert s3.send("HEAD", f"/{bucket}/c").status_code == 400
    assert s3.send("GET", f"/{bucket}/c", **sse_c(os.urandom(32))).status_code == 403
    assert s3.send("GET", f"/{bucket}/c", **{**good, C + "key-MD5": "x"}).status_code == 400
    got = ok(s3.send("GET", f"/{bucket}/c", **good, Range="bytes=4-9"), 206)
    assert got.content == PLAIN[4:10] and got.headers[C + "key-md5"] == good[C + "key-MD5"]
    # SSE-C headers on a plain object: not applicable
    ok(s3.send("PUT", f"/{bucket}/p", PLAIN))
    assert code(s3.send("GET", f"/{bucket}/p", **good)) == "InvalidRequest"
    # the bucket configuration document, hostile
    for doc in (
        encryption_document("AES128"),
        encryption_document("AES256", "abc"),
        b"<ServerSideEncryptionConfiguration/>",
        b"<not xml",
    ):
        refused = s3.send("PUT", f"/{bucket}?encryption", doc, **md5_header(doc))
        assert refused.status_code == 400, refused.text
    ok(s3.send("GET", f"/{bucket}?encryption"), 404)
    (stored,) = [r for (r,) in rows(cloud, bucket) if r.key == "c"]
    assert stored.sse_mode == "SSE-C" and key not in (stored.sse_wrapped or b"")
    assert base64.b64encode(key).decode() not in (stored.sse_customer or "")


def test_mandatory_encryption_makes_every_bucket_sse_s3(shared_cloud: Cloud) -> None:
    cloud = shared_cloud
    owner = cloud.member()
    s3 = S3(cloud, owner)
    bucket = cloud.unique("sse-must")
    ok(s3.send("PUT", f"/{bucket}"))
    sealer = cloud.platform.objectstore.sealer
    sealer.mandatory = True  # the real service's switch, as `[encryption] mandatory` sets it
    try:
        shown = ok(s3.send("GET", f"/{bucket}?encryption")).text
        assert "<SSEAlgorithm>AES256</SSEAlgorithm>" in shown
        ok(s3.send("DELETE", f"/{bucket}?encryption"), 204)
        assert "AES256" in ok(s3.send("GET", f"/{bucket}?encryption")).text
        put = ok(s3.send("PUT", f"/{bucket}/k", PLAIN))
        assert put.headers[SSE] == "AES256"
        assert put.headers["etag"].strip('"') == hashlib.md5(PLAIN).hexdigest()
    finally:
        sealer.mandatory = False
    assert ok(s3.send("GET", f"/{bucket}/k")).content == PLAIN
    (stored,) = [r for (r,) in rows(cloud, bucket)]
    assert stored.sse_mode == "AES256" and PLAIN not in (stored.data or b"")
    # the key manager's rotation sees that the object's data key names the owner's KEK
    kms = cloud.platform.keymanager
    assert kms is not None
    kek_id = kms.core.keks.active(owner.project_id)[0]
    heads = StoredDataKeys(cloud.platform.db).wrapped_key_heads(KEK_HEAD_BYTES)
    assert kek_id in named_keks(heads)
    ok(s3.send("DELETE", f"/{bucket}/k"), 204)
    heads = StoredDataKeys(cloud.platform.db).wrapped_key_heads(KEK_HEAD_BYTES)
    assert kek_id not in named_keks(heads)
