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

import boto3
from sqlalchemy import select

from souverain.keymanager.project_keys import KEK_HEAD_BYTES, named_keks
from souverain.objectstore import models as m
from souverain.objectstore.wrapped_keys import StoredDataKeys

from .support import S3, S3_BASE, Cloud, TestClient
from .test_keymanager import error, km

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


def headers_of(response: Any) -> dict[str, str]:
    return {k: v for k, v in response.headers.items() if k.startswith(SSE)}


def test_kms_keys_from_the_bucket_default_are_named_on_every_response(shared_cloud: Cloud) -> None:
    cloud = shared_cloud
    owner = cloud.member()
    s3 = S3(cloud, owner)
    keys = cloud.platform.project_keys
    assert keys is not None
    own_key = keys.create_secret_key(owner.project_id, owner.id, "default key")
    region = cloud.platform.settings.server.region
    # AWS names its aws/s3 key by ARN: ours names the project's key so, and takes it back
    project_arn = f"arn:aws:kms:{region}:{owner.project_id}:alias/aws/s3"
    for key_id, named in (("", project_arn), (own_key, own_key)):
        bucket = cloud.unique("sse-dflt")
        ok(s3.send("PUT", f"/{bucket}"))
        doc = encryption_document("aws:kms", key_id)
        ok(s3.send("PUT", f"/{bucket}?encryption", doc, **md5_header(doc)))
        expected = {SSE: "aws:kms", KMS_KEY: named}
        replies = [ok(s3.send("PUT", f"/{bucket}/k", PLAIN))]
        replies += [ok(s3.send(method, f"/{bucket}/k")) for method in ("HEAD", "GET")]
        replies.append(ok(s3.send("PUT", f"/{bucket}/c", **{"x-amz-copy-source": f"/{bucket}/k"})))
        made = ok(s3.send("POST", f"/{bucket}/m?uploads"))
        upload = made.text.split("<UploadId>")[1].split("<")[0]
        part = ok(s3.send("PUT", f"/{bucket}/m?partNumber=1&uploadId={upload}", PLAIN))
        done = (
            "<CompleteMultipartUpload><Part><PartNumber>1</PartNumber>"
            f"<ETag>{part.headers['etag']}</ETag></Part></CompleteMultipartUpload>"
        ).encode()
        replies += [made, part, ok(s3.send("POST", f"/{bucket}/m?uploadId={upload}", done))]
        for reply in replies:
            assert headers_of(reply) == expected, (reply.request.method, reply.request.url)
        assert ok(s3.send("GET", f"/{bucket}/m")).content == PLAIN
        # the name a response gave, sent back as the key id, is the same key
        again = ok(s3.send("PUT", f"/{bucket}/again", PLAIN, **{SSE: "aws:kms", KMS_KEY: named}))
        assert headers_of(again) == expected
    # an SSE-S3 or plain object names no KMS key
    plain = cloud.unique("sse-none")
    ok(s3.send("PUT", f"/{plain}"))
    assert headers_of(ok(s3.send("PUT", f"/{plain}/p", PLAIN))) == {}
    assert headers_of(ok(s3.send("PUT", f"/{plain}/s", PLAIN, **{SSE: "AES256"}))) == {
        SSE: "AES256"
    }


def form_post(
    cloud: Cloud,
    s3: S3,
    bucket: str,
    key: str,
    fields: dict[str, str],
    conditions: list[Any] | None = None,
    posted: dict[str, str] | None = None,
) -> Any:
    """A browser form signed as boto3 signs one (its policy names every field unless
    `conditions` are given), posted to the in-process S3 app with `posted` fields added."""
    client = boto3.client(
        "s3",
        region_name=s3.region,
        endpoint_url=S3_BASE,
        aws_access_key_id=s3.credentials.access_key,
        aws_secret_access_key=s3.credentials.secret_key,
    )
    if conditions is None:
        conditions = [{name: value} for name, value in fields.items()]
    form = client.generate_presigned_post(bucket, key, Fields=fields, Conditions=conditions)
    return TestClient(cloud.platform.s3_app, base_url=S3_BASE).post(
        f"/{bucket}",
        data={**form["fields"], **(posted or {})},
        files={"file": ("f.bin", PLAIN, "text/plain")},
    )


def test_form_uploads_ask_for_encryption_as_puts_do(shared_cloud: Cloud) -> None:
    cloud = shared_cloud
    owner, other = cloud.member(), cloud.member()
    s3 = S3(cloud, owner)
    keys = cloud.platform.project_keys
    assert keys is not None
    own_key = keys.create_secret_key(owner.project_id, owner.id, "form key")
    foreign_key = keys.create_secret_key(other.project_id, other.id, "not yours")
    bucket = cloud.unique("sse-form")
    ok(s3.send("PUT", f"/{bucket}"))
    customer = os.urandom(32)
    c_fields = {name.lower(): value for name, value in sse_c(customer).items()}
    stored = {
        "s3": ({SSE: "AES256"}, {SSE: "AES256"}),
        "kms": ({SSE: "aws:kms", KMS_KEY: own_key}, {SSE: "aws:kms", KMS_KEY: own_key}),
        "c": (c_fields, {C + "algorithm": "AES256", C + "key-md5": c_fields[C + "key-md5"]}),
    }
    for name, (fields, echoed) in stored.items():
        posted = ok(form_post(cloud, s3, bucket, name, fields), 204)
        assert headers_of(posted) == echoed
        if name == "c":
            assert s3.send("GET", f"/{bucket}/c").status_code == 400  # the key is needed
            assert ok(s3.send("GET", f"/{bucket}/c", **sse_c(customer))).content == PLAIN
        else:
            assert headers_of(ok(s3.send("HEAD", f"/{bucket}/{name}"))) == echoed
            assert ok(s3.send("GET", f"/{bucket}/{name}")).content == PLAIN
    modes = {r.key: r.sse_mode for (r,) in rows(cloud, bucket)}
    assert modes == {"s3": "AES256", "kms": "aws:kms", "c": "SSE-C"}
    for (row,) in rows(cloud, bucket):
        assert PLAIN not in (row.data or b"")

    # hostile fields: S3's errors, nothing stored
    refusals: list[tuple[dict[str, str], int, str]] = [
        ({SSE: "AES128"}, 400, "InvalidArgument"),
        ({SSE: "aws:kms", KMS_KEY: foreign_key}, 400, "KMS.NotFoundException"),
        ({SSE: "AES256", KMS_KEY: own_key}, 400, "InvalidArgument"),
        ({**c_fields, SSE: "AES256"}, 400, "InvalidArgument"),
        ({**c_fields, C + "key-md5": base64.b64encode(b"0" * 16).decode()}, 400, "InvalidArgument"),
        ({SSE + "-context": "e30="}, 501, "NotImplemented"),
    ]
    for fields, status, expected in refusals:
        refused = form_post(cloud, s3, bucket, "bad", fields)
        assert refused.status_code == status and code(refused) == expected, (fields, refused.text)
        assert c_fields[C + "key"] not in refused.text
    # SSE-C over plain HTTP, where the setting refuses it
    settings = cloud.platform.settings.objectstore
    settings.sse_c_allow_http = False
    try:
        refused = form_post(cloud, s3, bucket, "bad", c_fields)
        assert refused.status_code == 400 and code(refused) == "InvalidRequest", refused.text
    finally:
        settings.sse_c_allow_http = True
    assert "bad" not in {r.key for (r,) in rows(cloud, bucket)}

    # the policy holds the SSE fields like any other: a field it does not name, or names
    # otherwise, refuses the form
    loose = ok(form_post(cloud, s3, bucket, "loose", {}), 204)
    assert headers_of(loose) == {}  # no SSE field: the bucket default (none here)
    for swapped in ({SSE: "aws:kms"}, {KMS_KEY: own_key}):
        refused = form_post(
            cloud, s3, bucket, "policy", {SSE: "AES256"}, [{SSE: "AES256"}], swapped
        )
        assert refused.status_code == 403 and code(refused) == "AccessDenied", refused.text
    assert {"loose"} <= {r.key for (r,) in rows(cloud, bucket)}
    assert "policy" not in {r.key for (r,) in rows(cloud, bucket)}


def test_a_bucket_sealing_with_a_kms_key_is_its_consumer_until_deleted(
    shared_cloud: Cloud,
) -> None:
    """The key manager shows a bucket among the consumers of the customer's secret it seals
    with (bucket default or a write naming the key), and refuses a 1.2 plain delete of that
    secret while the bucket stands: the objects stay readable. Deleting the bucket frees
    the key. Another project's bucket never becomes a consumer of the customer's key."""
    cloud = shared_cloud
    alice, mallory = cloud.member(), cloud.member()
    keys = cloud.platform.project_keys
    assert keys is not None
    key = keys.create_secret_key(alice.project_id, alice.id, "consumed")
    s3a, s3m = S3(cloud, alice), S3(cloud, mallory)
    # a name past a UUID's 36 characters, as S3 allows (63)
    by_default = (cloud.unique("sse-consumer-default") + "-" + "x" * 63)[:63]
    by_write, theirs = cloud.unique("sse-consumer-put"), cloud.unique("sse-consumer-m")
    for s3, bucket in ((s3a, by_default), (s3a, by_write), (s3m, theirs)):
        ok(s3.send("PUT", f"/{bucket}"))

    def consumers(who: Any = alice) -> list[dict[str, str]]:
        shown = km(cloud, "GET", f"/v1/secrets/{key}/consumers?limit=100", who)
        assert shown.status_code == 200, shown.text
        return [
            {k: c[k] for k in ("service", "resource_type", "resource_id")}
            for c in shown.json()["consumers"]
        ]

    assert consumers() == []
    doc = encryption_document("aws:kms", key)
    ok(s3a.send("PUT", f"/{by_default}?encryption", doc, **md5_header(doc)))
    assert consumers() == [
        {"service": "object-store", "resource_type": "bucket", "resource_id": by_default}
    ]
    ok(s3a.send("PUT", f"/{by_default}/o", PLAIN))
    for n in range(3):  # registered once, however many writes
        ok(s3a.send("PUT", f"/{by_write}/o{n}", PLAIN, **{SSE: "aws:kms", KMS_KEY: key}))
    assert sorted(c["resource_id"] for c in consumers()) == sorted([by_default, by_write])
    # mallory naming alice's key is refused and registers nothing
    refused = s3m.send("PUT", f"/{theirs}/x", PLAIN, **{SSE: "aws:kms", KMS_KEY: key})
    assert code(refused) == "KMS.NotFoundException"
    refused = s3m.send("PUT", f"/{theirs}?encryption", doc, **md5_header(doc))
    assert code(refused) == "KMS.NotFoundException"
    assert theirs not in {c["resource_id"] for c in consumers()}
    assert km(cloud, "GET", f"/v1/secrets/{key}/consumers", mallory).status_code == 404

    # a 1.2 plain delete is refused while the buckets use the key; the objects still open
    v12 = {"OpenStack-API-Version": "key-manager 1.2"}
    refused = km(cloud, "DELETE", f"/v1/secrets/{key}", alice, headers=v12)
    assert "has consumers" in error(refused, 400)  # Barbican's answer
    assert ok(s3a.send("GET", f"/{by_default}/o")).content == PLAIN
    assert ok(s3a.send("GET", f"/{by_write}/o0")).content == PLAIN

    # the buckets deleted, the key has no consumer left and deletes plainly
    for bucket, names in ((by_default, ["o"]), (by_write, ["o0", "o1", "o2"])):
        for name in names:
            ok(s3a.send("DELETE", f"/{bucket}/{name}"), 204)
        ok(s3a.send("DELETE", f"/{bucket}"), 204)
    assert consumers() == []
    assert km(cloud, "DELETE", f"/v1/secrets/{key}", alice, headers=v12).status_code == 204
