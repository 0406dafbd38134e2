"""Property: no S3 request body, however odd, makes the object store answer 500.

The parsers first, directly (XML, bucket policy JSON, Swift SLO manifests, POST form
policies): any input is a document or the parser's own refusal. Then every S3 route that
reads a body, through the in-process S3 app with a real signature: documents built from
the elements S3 configurations use, with odd text in them, and policy documents of any
shape; the answer is a 2xx or an S3 error below 500. Derandomized and bounded.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import json
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from souverain.objectstore import post_policy
from souverain.objectstore import xml as s3xml
from souverain.objectstore.api.wire import S3Error
from souverain.objectstore.policy import PolicyError, parse_policy
from souverain.objectstore.swift.manifest import ManifestError, parse_slo

from .attack_support import Signer, s3_code, stepped_cloud
from .test_attacks_edge import XML_ROUTES

FUZZ = settings(max_examples=40, deadline=timedelta(seconds=2), derandomize=True)
HTTP_FUZZ = settings(
    max_examples=6,
    deadline=timedelta(seconds=5),
    derandomize=True,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
DEEP_LIST = b"[" * 5_000 + b"]" * 5_000


@pytest.fixture(scope="module", params=("sqlite",), autouse=True)
def database_backend() -> str:
    """The subject is parsing: SQLite only."""
    return "sqlite"


# ------------------------------------------------------------------ the parsers


@FUZZ
@given(body=st.binary(max_size=200), root=st.sampled_from(["Tagging", "Delete", "a"]))
@example(body=b'<!DOCTYPE Tagging SYSTEM "file:///etc/passwd"><Tagging/>', root="Tagging")
@example(body=b"<a>" * 3000 + b"</a>" * 3000, root="a")
@example(body=b"<Tagging xmlns:x='y'><x:TagSet/></Tagging>", root="Tagging")
def test_xml_parse_is_a_document_or_malformed_xml(body: bytes, root: str) -> None:
    try:
        element = s3xml.parse(body, root)
    except s3xml.MalformedXML:
        return
    assert element.tag == root and b"DOCTYPE" not in body.upper()


JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=12),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=12), inner),
    max_leaves=12,
)
STATEMENT = st.fixed_dictionaries(
    {},
    optional={
        key: JSON | st.text(max_size=20)
        for key in ("Sid", "Effect", "Principal", "Action", "Resource", "Condition", "NotAction")
    },
)
POLICY = st.fixed_dictionaries(
    {"Statement": st.lists(STATEMENT, max_size=3) | JSON},
    optional={"Version": st.sampled_from(["2012-10-17", "2008-10-17", ""]) | JSON, "Id": JSON},
)


@FUZZ
@given(doc=POLICY | JSON)
@example(doc=DEEP_LIST.decode())  # nesting deeper than the stack: was a 500
def test_a_bucket_policy_parses_or_is_a_policy_error(doc: Any) -> None:
    text = doc if isinstance(doc, str) else json.dumps(doc)
    with contextlib.suppress(PolicyError):
        parse_policy(text, "bucket")


@FUZZ
@given(doc=JSON | st.lists(st.dictionaries(st.sampled_from(["path", "etag", "size_bytes"]), JSON)))
@example(doc=DEEP_LIST)  # was a RecursionError
def test_an_slo_manifest_parses_or_is_a_manifest_error(doc: Any) -> None:
    body = doc if isinstance(doc, bytes) else json.dumps(doc).encode()
    with contextlib.suppress(ManifestError):
        parse_slo(body)


@FUZZ
@given(doc=JSON | st.binary(max_size=60))
@example(doc=DEEP_LIST)  # was a RecursionError
def test_a_post_form_policy_decodes_or_is_refused(doc: Any) -> None:
    raw = doc if isinstance(doc, bytes) else json.dumps(doc).encode()
    try:
        post_policy.decode(base64.b64encode(raw).decode())
    except S3Error as refusal:
        assert refusal.status < 500


# ------------------------------------------------------------------ through the S3 app

NAMES = [
    "Rule", "ID", "Status", "Filter", "Prefix", "And", "Tag", "Key", "Value", "TagSet",
    "Expiration", "Days", "Date", "ExpiredObjectDeleteMarker", "NoncurrentVersionExpiration",
    "NoncurrentDays", "AbortIncompleteMultipartUpload", "DaysAfterInitiation", "Transition",
    "StorageClass", "ObjectSizeGreaterThan", "CORSRule", "AllowedOrigin", "AllowedMethod",
    "AllowedHeader", "ExposeHeader", "MaxAgeSeconds", "Object", "VersionId", "Quiet", "Part",
    "PartNumber", "ETag", "AccessControlList", "Grant", "Grantee", "Permission", "Owner",
    "DisplayName", "URI", "EmailAddress", "ObjectLockEnabled", "DefaultRetention", "Mode",
    "Years", "RetainUntilDate", "MfaDelete", "BlockPublicAcls", "IgnorePublicAcls",
    "BlockPublicPolicy", "RestrictPublicBuckets", "LocationConstraint", "ChecksumCRC32",
]  # fmt: skip
TEXTS = st.one_of(
    st.sampled_from(
        [
            "",
            "0",
            "-1",
            "1",
            "36500",
            "99999999999999999999",
            "1e9",
            "Enabled",
            "Suspended",
            "true",
            "false",
            "GET",
            "*",
            "https://*.example",
            "2026-12-31T00:00:00Z",
            "2026-13-45T25:61:61Z",
            "0001-01-01T00:00:00Z",
            "GOVERNANCE",
            "COMPLIANCE",
            "ON",
            "FULL_CONTROL",
            "READ",
            "10000",
            "\u202e",
            "a" * 300,
            "&amp;",
            "x" * 1025,
        ]
    ),
    st.text(max_size=15),
)


@st.composite
def xml_element(draw: st.DrawFn, depth: int = 0) -> str:
    name = draw(st.sampled_from(NAMES))
    if depth >= 3 or draw(st.booleans()):
        body = "".join(c for c in draw(TEXTS) if c.isprintable() and not 0xD800 <= ord(c) <= 0xDFFF)
        inner = body.replace("&", "&amp;").replace("<", "&lt;")
    else:
        children = draw(st.lists(xml_element(depth + 1), max_size=4))
        inner = "".join(children)
    return f"<{name}>{inner}</{name}>"


def _md5(body: bytes) -> str:
    return base64.b64encode(hashlib.md5(body, usedforsecurity=False).digest()).decode()


class Store:
    def __init__(self, signer: Signer) -> None:
        self.s3 = signer
        self.bucket = "fuzz-bucket"
        made = signer.send("PUT", f"/{self.bucket}", **{"x-amz-bucket-object-lock-enabled": "true"})
        assert made.status_code == 200, made.text
        assert signer.send("PUT", f"/{self.bucket}/xml-target", b"t").status_code == 200
        upload = signer.send("POST", f"/{self.bucket}/xml-target?uploads")
        self.upload = upload.text.split("<UploadId>")[1].split("</UploadId>")[0]
        part = signer.send("PUT", f"/{self.bucket}/xml-target?partNumber=1&uploadId={self.upload}",
                           b"p" * 10)  # fmt: skip
        assert part.status_code == 200, part.text

    def send(self, method: str, where: str, body: bytes, **headers: str) -> Any:
        path = f"/{self.bucket}{where.format(upload=self.upload)}"
        return self.s3.send(method, path, body, **{"content-md5": _md5(body), **headers})


@pytest.fixture(scope="module")
def store(database_backend: str) -> Iterator[Store]:
    with stepped_cloud() as stepped:
        yield Store(Signer(stepped.cloud, stepped.cloud.member()))


def _no_500(sent: Any, what: str) -> None:
    assert sent.status_code < 500, f"{what}: {sent.status_code} {sent.text[:300]}"
    if sent.status_code >= 400:
        assert s3_code(sent), sent.text


@pytest.mark.parametrize(("method", "where", "root"), XML_ROUTES, ids=[r[1] for r in XML_ROUTES])
@HTTP_FUZZ
@given(children=st.lists(xml_element(), max_size=4))
def test_any_configuration_document_is_answered_below_500(
    store: Store, method: str, where: str, root: str, children: list[str]
) -> None:
    body = f"<{root}>{''.join(children)}</{root}>".encode()
    _no_500(store.send(method, where, body), body.decode()[:300])


@HTTP_FUZZ
@given(doc=POLICY)
def test_any_bucket_policy_is_answered_below_500(store: Store, doc: Any) -> None:
    body = json.dumps(doc).encode()
    _no_500(store.send("PUT", "?policy", body), body.decode()[:300])
