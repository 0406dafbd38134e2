"""Attacks at the edge: tampered and revoked tokens, forged and replayed SigV4 requests,
path traversal in object keys and image names, XML entities in every S3 XML body, and
oversized or deeply nested input. Each attack asserts the refusal, in the API's own
format, and reads the state before and after: the database (every row, hashed), the
bucket's configuration, the data directory's files.
"""

from __future__ import annotations

import base64
import hashlib
import json
import time
from collections.abc import Iterator
from typing import Any
from urllib.parse import quote

import pytest

from ..api.support import Member, assert_keystone_error
from .attack_support import Signer, Stepped, files_under, s3_code, stepped_cloud
from .test_rbac_matrix import Fingerprint

SIXTEEN_MINUTES = 16 * 60


@pytest.fixture(scope="module", params=("sqlite",), autouse=True)
def database_backend() -> str:
    """The attacks' subject is the edge, not the database: SQLite only."""
    return "sqlite"


class Edge:
    """One platform: member A with a bucket and a Swift container, member B, their tokens."""

    def __init__(self, stepped: Stepped) -> None:
        self.stepped = stepped
        self.cloud = cloud = stepped.cloud
        self.a: Member = cloud.member()
        self.b: Member = cloud.member()
        self.s3 = Signer(cloud, self.a)
        self.bucket = "attack-bucket"
        made = self.s3.send(
            "PUT", f"/{self.bucket}", **{"x-amz-bucket-object-lock-enabled": "true"}
        )
        assert made.status_code == 200, made.text
        self.fingerprint = Fingerprint(cloud.platform)

    def api(self, method: str, path: str, token: str, **kw: Any) -> Any:
        headers = {"X-Auth-Token": token, **kw.pop("headers", {})}
        return self.cloud.client.request(method, path, headers=headers, **kw)

    def keys(self) -> list[str]:
        listed = self.s3.send("GET", f"/{self.bucket}?list-type=2")
        assert listed.status_code == 200, listed.text
        return [part.split("</Key>")[0] for part in listed.text.split("<Key>")[1:]]


@pytest.fixture(scope="module")
def edge(database_backend: str) -> Iterator[Edge]:
    with stepped_cloud() as stepped:
        yield Edge(stepped)


# ------------------------------------------------------------------ tokens


def _tampered(token: str) -> list[str]:
    raw = bytearray(base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)))
    out = []
    for index in (0, 1, 5, 17, len(raw) // 2, len(raw) - 1):
        flipped = bytearray(raw)
        flipped[index] ^= 0x01
        out.append(base64.urlsafe_b64encode(bytes(flipped)).rstrip(b"=").decode())
    return [*out, token[:-1], token[:20], token + "AAAA", "", " ", token.upper(), "\x00" + token]


def test_tampered_tokens_are_refused_and_change_nothing(edge: Edge) -> None:
    before = edge.fingerprint()
    keypair = {"keypair": {"name": "forged", "type": "ssh"}}
    for forged in _tampered(edge.a.token):
        where = repr(forged[:30])
        if forged.strip():
            checked = edge.api(
                "GET", "/identity/v3/auth/tokens", edge.a.token, headers={"X-Subject-Token": forged}
            )
            assert_keystone_error(checked, 404)
            used = edge.api("GET", "/identity/v3/auth/tokens", forged,
                            headers={"X-Subject-Token": edge.a.token})  # fmt: skip
            assert_keystone_error(used, 401)
        made = edge.api("POST", "/compute/v2.1/os-keypairs", forged, json=keypair)
        assert made.status_code == 401, f"{where}: {made.status_code}"
        listed = edge.api("GET", "/volume/v3/volumes", forged)
        assert listed.status_code == 401, f"{where}: {listed.status_code}"
    assert edge.fingerprint() == before


def test_a_revoked_token_cannot_be_replayed(edge: Edge) -> None:
    token = edge.cloud.token_for(edge.a.id, edge.a.password, edge.a.project_id)
    assert edge.api("GET", "/compute/v2.1/os-keypairs", token).status_code == 200
    revoked = edge.api(
        "DELETE", "/identity/v3/auth/tokens", edge.a.token, headers={"X-Subject-Token": token}
    )
    assert revoked.status_code == 204, revoked.text
    before = edge.fingerprint()
    assert_keystone_error(edge.api("GET", "/identity/v3/auth/projects", token), 401)
    subject = {"X-Subject-Token": token}
    assert_keystone_error(
        edge.api("GET", "/identity/v3/auth/tokens", edge.a.token, headers=subject), 404
    )
    again = edge.api("DELETE", "/identity/v3/auth/tokens", edge.a.token, headers=subject)
    assert_keystone_error(again, 404)
    renewed = edge.cloud.issue(
        {"auth": {"identity": {"methods": ["token"], "token": {"id": token}}}}
    )
    assert renewed.status_code in (401, 404)
    assert_keystone_error(renewed, renewed.status_code)
    made = edge.api("POST", "/compute/v2.1/os-keypairs", token,
                    json={"keypair": {"name": "replayed", "type": "ssh"}})  # fmt: skip
    assert made.status_code == 401
    assert edge.fingerprint() == before


def test_a_token_of_another_scope_reaches_nothing_of_that_project(edge: Edge) -> None:
    """A's token on B's Swift account, B's project in Keystone, B's quota; unscoped on compute."""
    before = edge.fingerprint()
    b_account = f"/object-storage/v1/AUTH_{edge.b.project_id}"
    assert edge.api("GET", b_account, edge.a.token).status_code == 403
    assert edge.api("PUT", f"{b_account}/planted", edge.a.token).status_code == 403
    assert_keystone_error(edge.api("GET", f"/identity/v3/projects/{edge.b.project_id}",
                                   edge.a.token), 404)  # fmt: skip
    unscoped = edge.cloud.token_for(edge.a.id, edge.a.password, None)
    refused = edge.api("GET", "/compute/v2.1/servers", unscoped)
    assert refused.status_code == 403, refused.text
    assert edge.fingerprint() == before


# ------------------------------------------------------------------ SigV4


def _forged(edge: Edge, method: str, path: str, body: bytes, **headers: str) -> Any:
    return edge.s3.client.request(method, path, content=body, headers=headers)


def test_forged_sigv4_requests_are_refused_with_s3_codes_and_store_nothing(edge: Edge) -> None:
    path, body = f"/{edge.bucket}/forged", b"forged bytes"
    before, keys = edge.fingerprint(), edge.keys()
    wrong_secret = edge.s3.sign("PUT", path, body, secret="not-the-secret-" + "x" * 25)
    signed = {k.lower(): v for k, v in edge.s3.sign("PUT", path, body,
                                                    **{"x-amz-meta-owner": "a"}).items()}  # fmt: skip
    altered_header = {**signed, "x-amz-meta-owner": "mallory"}
    cases = [
        (wrong_secret, body, 403, "SignatureDoesNotMatch"),
        (altered_header, body, 403, "SignatureDoesNotMatch"),
        # the signed hash is of `body`: another payload under it
        (signed, b"other bytes!", 400, "XAmzContentSHA256Mismatch"),
        # a hash for the other payload, under the signature made for `body`
        (
            {**signed, "x-amz-content-sha256": hashlib.sha256(b"other").hexdigest()},
            b"other",
            403,
            "SignatureDoesNotMatch",
        ),
        (
            {
                **signed,
                "authorization": signed["authorization"].replace("Signature=", "Signature=0"),
            },
            body,
            400,
            "AuthorizationHeaderMalformed",
        ),
    ]
    for headers, payload, status, code in cases:
        sent = _forged(edge, "PUT", path, payload, **headers)
        assert (sent.status_code, s3_code(sent)) == (status, code), sent.text
        assert edge.s3.secret not in sent.text
    assert edge.keys() == keys
    assert edge.fingerprint() == before


def test_sigv4_replayed_outside_the_window_is_refused(edge: Edge) -> None:
    path = f"/{edge.bucket}/replayed"
    clock = edge.stepped.clock
    signed = edge.s3.sign("PUT", path, b"late")
    presigned_get = edge.s3.presign("GET", f"/{edge.bucket}/anything", expires=60)
    before, keys = edge.fingerprint(), edge.keys()
    try:
        for offset in (SIXTEEN_MINUTES, -SIXTEEN_MINUTES):
            clock.advance(offset)
            sent = _forged(edge, "PUT", path, b"late", **signed)
            clock.advance(-offset)
            assert (sent.status_code, s3_code(sent)) == (403, "RequestTimeTooSkewed"), sent.text
        clock.advance(120)
        expired = edge.s3.client.get(presigned_get)
        assert (expired.status_code, s3_code(expired)) == (403, "AccessDenied"), expired.text
        assert "expired" in expired.text
    finally:
        clock.offset = type(clock.offset)()
    assert edge.keys() == keys
    assert edge.fingerprint() == before


# ------------------------------------------------------------------ path traversal

TRAVERSALS = [
    "../../etc/passwd",
    "../../../../../../../../etc/passwd",
    "..%2f..%2fetc%2fpasswd",
    "%2e%2e/%2e%2e/escaped",
    "/etc/passwd",
    "//absolute",
    "a/../../b",
    "./.",
    "..",
    "..\\..\\windows",
    "nul\x01byte",
    "k" * 1024,
]


def test_object_keys_that_look_like_paths_are_only_keys(edge: Edge) -> None:
    """Stored under the data dir and served back as the key, whatever the key says."""
    root, data_dir = edge.stepped.root, edge.stepped.data_dir
    tree = files_under(root)
    for index, key in enumerate(TRAVERSALS):
        body = f"object {index}".encode()
        path = f"/{edge.bucket}/{quote(key, safe='/')}"
        put = edge.s3.send_raw("PUT", path, body)
        assert put.status_code == 200, (key, put.text)
        got = edge.s3.send_raw("GET", path)
        assert (got.status_code, got.content) == (200, body), key
    for key in ("k" * 1025, "nul\x00byte"):
        refused = edge.s3.send_raw("PUT", f"/{edge.bucket}/{quote(key)}", b"x")
        assert refused.status_code == 400, (key[:10], refused.text)
    assert set(TRAVERSALS) <= set(edge.keys())
    swift = f"/object-storage/v1/AUTH_{edge.a.project_id}/traversal"
    assert edge.api("PUT", swift, edge.a.token).status_code == 201
    for key in TRAVERSALS[:8]:
        name = quote(key, safe="/").replace(".", "%2E")  # httpx would resolve a literal `..`
        put = edge.api("PUT", f"{swift}/{name}", edge.a.token, content=b"swift")
        assert put.status_code == 201, (key, put.status_code)
        got = edge.api("GET", f"{swift}/{name}", edge.a.token)
        assert got.content == b"swift", key
    new = set(files_under(root)) - set(tree)
    assert [p for p in new if not p.startswith(str(data_dir) + "/")] == []
    assert not (root / "etc").exists() and not (data_dir.parent / "escaped").exists()


def test_image_names_and_ids_that_look_like_paths_stay_names(edge: Edge) -> None:
    root, data_dir = edge.stepped.root, edge.stepped.data_dir
    tree = files_under(root)
    before = edge.fingerprint()
    for bad_id in ("../../etc/passwd", "%2e%2e", "/etc/passwd", "a\x00b"):
        body = {"id": bad_id, "name": "x", "disk_format": "raw", "container_format": "bare"}
        refused = edge.api("POST", "/image/v2/images", edge.a.token, json=body)
        assert refused.status_code == 400, (bad_id, refused.text)
    assert edge.fingerprint() == before
    for name in TRAVERSALS[:6]:
        body = {"name": name, "disk_format": "raw", "container_format": "bare"}
        made = edge.api("POST", "/image/v2/images", edge.a.token, json=body)
        assert made.status_code == 201, made.text
        image = made.json()
        assert image["name"] == name
        put = edge.api("PUT", f"/image/v2/images/{image['id']}/file", edge.a.token,
                       content=b"img", headers={"Content-Type": "application/octet-stream"})  # fmt: skip
        assert put.status_code == 204, put.text
        got = edge.api("GET", f"/image/v2/images/{image['id']}/file", edge.a.token)
        assert got.content == b"img"
    for weird in ("..%2F..%2Fetc%2Fpasswd", "..", "%00"):
        got = edge.api("GET", f"/image/v2/images/{weird}/file", edge.a.token)
        assert got.status_code == 404, (weird, got.status_code)
    new = set(files_under(root)) - set(tree)
    assert [p for p in new if not p.startswith(str(data_dir) + "/")] == []


# ------------------------------------------------------------------ XML entities

BILLION_LAUGHS = (
    b'<?xml version="1.0"?><!DOCTYPE lolz [<!ENTITY lol "lol">'
    + b"".join(
        f'<!ENTITY lol{i} "{("&lol" + (str(i - 1) if i > 1 else "") + ";") * 10}">'.encode()
        for i in range(1, 10)
    )
    + b"]><ROOT>&lol9;</ROOT>"
)
EXTERNAL = (
    b'<?xml version="1.0"?><!DOCTYPE r [<!ENTITY x SYSTEM "file:///etc/passwd">]><ROOT>&x;</ROOT>'
)
PARAMETER = (
    b'<?xml version="1.0"?><!DOCTYPE r [<!ENTITY % p SYSTEM "http://127.0.0.1:1/x.dtd">%p;]><ROOT/>'
)
DTD_ONLY = b'<?xml version="1.0"?><!DOCTYPE ROOT SYSTEM "file:///etc/passwd"><ROOT/>'
HOSTILE = {"billion laughs": BILLION_LAUGHS, "external": EXTERNAL,
           "parameter": PARAMETER, "dtd": DTD_ONLY}  # fmt: skip

# (method, path under the bucket, root element): every S3 route that reads an XML body
XML_ROUTES = [
    ("PUT", "?versioning", "VersioningConfiguration"),
    ("PUT", "?acl", "AccessControlPolicy"),
    ("PUT", "?cors", "CORSConfiguration"),
    ("PUT", "?tagging", "Tagging"),
    ("PUT", "?publicAccessBlock", "PublicAccessBlockConfiguration"),
    ("PUT", "?lifecycle", "LifecycleConfiguration"),
    ("PUT", "?object-lock", "ObjectLockConfiguration"),
    ("POST", "?delete", "Delete"),
    ("PUT", "/xml-target?tagging", "Tagging"),
    ("PUT", "/xml-target?acl", "AccessControlPolicy"),
    ("PUT", "/xml-target?retention", "Retention"),
    ("PUT", "/xml-target?legal-hold", "LegalHold"),
    ("POST", "/xml-target?uploadId={upload}", "CompleteMultipartUpload"),
]


def _md5(body: bytes) -> str:
    return base64.b64encode(hashlib.md5(body, usedforsecurity=False).digest()).decode()


def _upload(edge: Edge) -> str:
    made = edge.s3.send("POST", f"/{edge.bucket}/xml-target?uploads")
    assert made.status_code == 200, made.text
    return made.text.split("<UploadId>")[1].split("</UploadId>")[0]


def test_xml_entities_and_dtds_are_malformed_xml_in_every_s3_body(edge: Edge) -> None:
    assert edge.s3.send("PUT", f"/{edge.bucket}/xml-target", b"target").status_code == 200
    upload = _upload(edge)
    before, keys = edge.fingerprint(), edge.keys()
    for method, where, root in XML_ROUTES:
        path = f"/{edge.bucket}{where.format(upload=upload)}"
        for name, template in HOSTILE.items():
            body = template.replace(b"ROOT", root.encode())
            started = time.monotonic()
            sent = edge.s3.send(method, path, body, **{"content-md5": _md5(body)})
            assert time.monotonic() - started < 2, f"{name} on {where} took long"
            assert (sent.status_code, s3_code(sent)) == (400, "MalformedXML"), (
                name,
                where,
                sent.text,
            )
            assert "root:" not in sent.text and "lollol" not in sent.text
    created = edge.s3.send(
        "PUT", "/attack-entity-bucket", EXTERNAL.replace(b"ROOT", b"CreateBucketConfiguration")
    )
    assert (created.status_code, s3_code(created)) == (400, "MalformedXML")
    assert edge.keys() == keys
    assert edge.fingerprint() == before


# ------------------------------------------------------------------ oversized input


def _still_serving(edge: Edge) -> None:
    assert edge.api("GET", "/compute/v2.1/os-keypairs", edge.a.token).status_code == 200


def test_oversized_and_deeply_nested_input_is_a_4xx_and_the_server_keeps_serving(
    edge: Edge,
) -> None:
    swift = f"/object-storage/v1/AUTH_{edge.a.project_id}/deep"
    assert edge.api("PUT", swift, edge.a.token).status_code == 201
    before = edge.fingerprint()
    limit = edge.cloud.platform.settings.server.max_body_bytes
    huge = b'{"keypair": {"name": "' + b"k" * (limit + 1) + b'"}}'
    deep = b'{"server": ' + b"[" * 100_000 + b"]" * 100_000 + b"}"
    deep_object = b'{"network": ' + b'{"a":' * 50_000 + b"1" + b"}" * 50_000 + b"}"
    bodies = [
        ("POST", "/compute/v2.1/os-keypairs", huge),
        ("POST", "/compute/v2.1/servers", deep),
        ("POST", "/network/v2.0/networks", deep_object),
        ("POST", "/volume/v3/volumes", deep),
        ("POST", "/identity/v3/auth/tokens", deep),
        ("PATCH", "/image/v2/images/00000000-0000-0000-0000-000000000000", deep),
        ("POST", "/billing/v1/accounts", deep_object),
    ]
    for method, path, body in bodies:
        sent = edge.api(method, path, edge.a.token, content=body,
                        headers={"Content-Type": "application/json"})  # fmt: skip
        assert 400 <= sent.status_code < 500, (path, sent.status_code, sent.text[:200])
        _still_serving(edge)
    long_url = "/compute/v2.1/servers?name=" + "a" * 60_000
    assert edge.api("GET", long_url, edge.a.token).status_code < 500
    many = {f"X-Junk-{i}": "v" * 100 for i in range(300)}
    assert edge.api("GET", "/compute/v2.1/servers", edge.a.token, headers=many).status_code == 200
    big_header = edge.api("GET", "/volume/v3/volumes", edge.a.token,
                          headers={"X-Junk": "v" * 60_000})  # fmt: skip
    assert big_header.status_code < 500
    xml_limit = edge.cloud.platform.settings.objectstore.max_xml_bytes
    tags = b"<Tagging><TagSet>" + b"<Tag><Key>k</Key><Value>v</Value></Tag>" * (xml_limit // 30)
    sent = edge.s3.send("PUT", f"/{edge.bucket}?tagging", tags + b"</TagSet></Tagging>",
                        **{"content-md5": _md5(tags)})  # fmt: skip
    assert (sent.status_code, s3_code(sent)) == (400, "MaxMessageLengthExceeded"), sent.text
    policy = json.dumps({"Statement": [[[[]]]] * 10, "Version": "2012-10-17"}).encode()
    for deep_policy in (b"[" * 50_000 + b"]" * 50_000, b"[" * 5_000 + b"]" * 5_000,
                        b'{"Statement": ' + b"[" * 5_000 + b"]" * 5_000 + b"}"):  # fmt: skip
        sent = edge.s3.send("PUT", f"/{edge.bucket}?policy", deep_policy)
        assert (sent.status_code, s3_code(sent)) == (400, "MalformedPolicy"), sent.text
    slo = edge.api("PUT", f"{swift}/slo?multipart-manifest=put", edge.a.token,
                   content=b"[" * 5_000 + b"]" * 5_000)  # fmt: skip
    assert slo.status_code == 400, slo.text
    sent = edge.s3.send("PUT", f"/{edge.bucket}?policy", policy)
    assert 400 <= sent.status_code < 500, sent.text
    _still_serving(edge)
    assert edge.fingerprint() == before
