"""SigV4: requests signed by botocore itself verify; tampering, skew, expiry and malformed
authentication are refused with S3's error codes; aws-chunked bodies decode under any split and
refuse bad signatures, bad framing and truncation."""

from __future__ import annotations

import base64
import functools
import hashlib
import hmac
import io
import zlib
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import urlsplit

import boto3
import pytest
from botocore.auth import S3SigV4Auth, S3SigV4QueryAuth
from botocore.awsrequest import AWSPreparedRequest, AWSRequest, AWSResponse
from botocore.config import Config
from botocore.credentials import Credentials
from botocore.httpchecksum import AwsChunkedWrapper, Crc32Checksum
from hypothesis import given, settings
from hypothesis import strategies as st

from souverain.objectstore.sigv4 import (
    SIGNATURE_MISMATCH,
    STREAMING_SIGNED,
    STREAMING_SIGNED_TRAILER,
    STREAMING_UNSIGNED_TRAILER,
    UNSIGNED_PAYLOAD,
    ChunkedPayload,
    SignedRequest,
    SigV4Error,
    parse_request,
    signing_key,
    verify,
)

ACCESS_KEY = "SOUVEXAMPLEACCESSKEY"
SECRET = "s3cr3t/K7MDENG+bPxRfiCYEXAMPLEKEY"
REGION = "fr-1"
HTTP_ENDPOINT = "http://s3.test:8080"
HTTPS_ENDPOINT = "https://s3.test"
AWKWARD_KEYS = [
    "a b",
    "100%",
    "100%25",
    "a+b",
    "été/日本語/😀",
    "a//b",
    "/leading",
    "../../etc/passwd",
    "./.",
    "~tilde",
    "trailing/",
    "q?x=1&y=2#frag",
    "semi;colon,comma:colon=eq",
    "!*'()[]{}$@^`|\\\"<>",
    "tab\there",
]


# The wire: what an ASGI server hands over


@dataclass(frozen=True)
class Wire:
    """A request as the ASGI server sees it: raw path and query bytes, lowercase header names."""

    method: str
    raw_path: bytes
    query_string: bytes
    headers: tuple[tuple[bytes, bytes], ...]
    body: bytes = b""

    def header(self, name: bytes) -> bytes:
        return next(value for key, value in self.headers if key == name)

    def with_header(self, name: bytes, value: bytes) -> Wire:
        kept = tuple((key, old) for key, old in self.headers if key != name)
        return replace(self, headers=(*kept, (name, value)))

    def without_header(self, name: bytes) -> Wire:
        return replace(self, headers=tuple((k, v) for k, v in self.headers if k != name))


def to_wire(prepared: AWSPreparedRequest) -> Wire:
    url = urlsplit(prepared.url)
    headers = [
        (name.lower().encode("latin-1"), value if isinstance(value, bytes) else value.encode())
        for name, value in prepared.headers.items()
    ]
    if not any(name == b"host" for name, _ in headers):
        headers.append((b"host", url.netloc.encode("ascii")))  # as http.client adds it
    body = prepared.body
    if hasattr(body, "read"):
        body = body.read()
    elif isinstance(body, str):
        body = body.encode()
    return Wire(
        prepared.method,
        url.path.encode("ascii"),
        url.query.encode("ascii"),
        tuple(headers),
        body or b"",
    )


class _EmptyBody:
    def stream(self, **kwargs: Any) -> Iterator[bytes]:
        return iter(())


@functools.cache
def _client(endpoint: str) -> tuple[Any, list[AWSPreparedRequest]]:
    """A real boto3 client whose requests are captured instead of sent."""
    sent: list[AWSPreparedRequest] = []
    client = boto3.client(
        "s3",
        endpoint_url=endpoint,
        region_name=REGION,
        aws_access_key_id=ACCESS_KEY,
        aws_secret_access_key=SECRET,
        config=Config(s3={"addressing_style": "path"}, retries={"max_attempts": 1}),
    )

    def capture(request: AWSPreparedRequest, **kwargs: Any) -> AWSResponse:
        sent.append(request)
        return AWSResponse(request.url, 200, {}, _EmptyBody())

    client.meta.events.register("before-send.s3.*", capture)
    return client, sent


def boto(operation: str, endpoint: str = HTTP_ENDPOINT, **params: Any) -> Wire:
    client, sent = _client(endpoint)
    getattr(client, operation)(**params)
    return to_wire(sent[-1])


def presigned(operation: str, expires: int = 3600, **params: Any) -> Wire:
    client, _ = _client(HTTP_ENDPOINT)
    url = urlsplit(client.generate_presigned_url(operation, Params=params, ExpiresIn=expires))
    method = {"get_object": "GET", "put_object": "PUT", "head_object": "HEAD"}[operation]
    headers = ((b"host", url.netloc.encode()),)
    return Wire(method, url.path.encode(), url.query.encode(), headers)


def signed_by_hand(
    method: str,
    url: str,
    headers: dict[str, str] | None = None,
    body: bytes = b"",
    auth_class: type[S3SigV4Auth] = S3SigV4Auth,
) -> Wire:
    """botocore's signer on a request built here, for what the client API will not produce."""
    request = AWSRequest(method=method, url=url, headers=headers or {}, data=body)
    auth_class(Credentials(ACCESS_KEY, SECRET), "s3", REGION).add_auth(request)
    return to_wire(request.prepare())


def authenticate(wire: Wire, secret: str = SECRET, now: datetime | None = None) -> SignedRequest:
    signed = parse_request(
        wire.method, wire.raw_path, wire.query_string, wire.headers, now or datetime.now(UTC)
    )
    assert signed is not None
    verify(signed, secret, wire.method, wire.raw_path, wire.query_string, wire.headers)
    return signed


def refused(wire: Wire, now: datetime | None = None, secret: str = SECRET) -> SigV4Error:
    with pytest.raises(SigV4Error) as caught:
        authenticate(wire, secret=secret, now=now)
    return caught.value


def timestamp_of(wire: Wire) -> datetime:
    signed = parse_request(
        wire.method, wire.raw_path, wire.query_string, wire.headers, datetime.now(UTC)
    )
    assert signed is not None
    return signed.timestamp


# Header-signed requests from botocore


@pytest.mark.parametrize("key", AWKWARD_KEYS)
def test_put_object_signed_by_botocore_verifies_for_awkward_keys(key: str) -> None:
    wire = boto("put_object", Bucket="bkt", Key=key, Body=b"hello")
    signed = authenticate(wire)
    assert signed.credential.access_key == ACCESS_KEY
    assert (signed.credential.region, signed.credential.service) == (REGION, "s3")
    assert signed.payload_hash == hashlib.sha256(b"hello").hexdigest()
    assert not signed.presigned
    assert "host" in signed.signed_headers


def test_paths_are_not_normalised() -> None:
    wire = boto("get_object", Bucket="bkt", Key="../../etc/passwd")
    assert wire.raw_path == b"/bkt/../../etc/passwd"
    authenticate(wire)
    with pytest.raises(SigV4Error):
        authenticate(replace(wire, raw_path=b"/etc/passwd"))
    doubled = boto("get_object", Bucket="bkt", Key="a//b")
    authenticate(doubled)
    assert refused(replace(doubled, raw_path=b"/bkt/a/b")).code == "SignatureDoesNotMatch"


@settings(max_examples=60, deadline=None)
@given(key=st.text(st.characters(codec="utf-8"), min_size=1, max_size=40))
def test_any_unicode_key_verifies(key: str) -> None:
    authenticate(boto("head_object", Bucket="bkt", Key=key))


def test_a_path_spelled_with_different_escapes_means_the_same_key() -> None:
    wire = boto("get_object", Bucket="bkt", Key="a~b-c_d.e")
    assert wire.raw_path == b"/bkt/a~b-c_d.e"
    authenticate(replace(wire, raw_path=b"/bkt/a%7Eb%2Dc_d.e"))


def test_query_values_needing_encoding_verify() -> None:
    wire = boto(
        "list_objects_v2",
        Bucket="bkt",
        Prefix="a b/+x&y=z=é",
        Delimiter="/",
        StartAfter="~!*'()",
    )
    assert b"prefix=a%20b%2F%2Bx%26y%3Dz%3D%C3%A9" in wire.query_string
    authenticate(wire)


@settings(max_examples=60, deadline=None)
@given(prefix=st.text(st.characters(codec="utf-8"), max_size=30))
def test_any_query_value_verifies(prefix: str) -> None:
    authenticate(boto("list_objects_v2", Bucket="bkt", Prefix=prefix, Delimiter="/"))


def test_query_parameters_without_a_value_verify() -> None:
    authenticate(boto("get_bucket_acl", Bucket="bkt"))
    authenticate(signed_by_hand("GET", f"{HTTP_ENDPOINT}/bkt?uploads&prefix=x&acl"))


def test_a_raw_plus_in_the_query_is_a_plus_not_a_space() -> None:
    # Every AWS client escapes '+' as %2B and space as %20; a bare '+' can only mean '+'.
    wire = boto("list_objects_v2", Bucket="bkt", Prefix="a+b")
    assert b"prefix=a%2Bb" in wire.query_string
    authenticate(replace(wire, query_string=wire.query_string.replace(b"%2B", b"+")))
    spaced = replace(wire, query_string=wire.query_string.replace(b"%2B", b"%20"))
    assert refused(spaced).code == "SignatureDoesNotMatch"


def test_raw_path_carrying_the_query_is_tolerated() -> None:
    wire = boto("list_objects_v2", Bucket="bkt", Prefix="x")
    authenticate(replace(wire, raw_path=wire.raw_path + b"?" + wire.query_string))


def test_header_values_are_trimmed_and_inner_spaces_collapsed() -> None:
    wire = signed_by_hand(
        "PUT", f"{HTTP_ENDPOINT}/bkt/k", {"X-Amz-Meta-Note": "  two   spaces\tand tab  "}
    )
    assert wire.header(b"x-amz-meta-note") == b"  two   spaces\tand tab  "
    authenticate(wire)


def test_a_header_sent_twice_is_signed_as_its_values_joined_by_commas() -> None:
    wire = signed_by_hand("PUT", f"{HTTP_ENDPOINT}/bkt/k", {"X-Amz-Meta-List": "a,b"})
    split = wire.without_header(b"x-amz-meta-list")
    split = replace(
        split, headers=(*split.headers, (b"x-amz-meta-list", b"a"), (b"x-amz-meta-list", b"b"))
    )
    authenticate(split)


def test_date_header_stands_in_for_x_amz_date() -> None:
    wire = signed_by_hand("GET", f"{HTTP_ENDPOINT}/bkt/k", {"Date": "placeholder"})
    assert b"x-amz-date" not in dict(wire.headers)
    signed = authenticate(wire)
    assert signed.amz_date == signed.timestamp.strftime("%Y%m%dT%H%M%SZ")
    assert signed.timestamp.tzinfo is not None


def test_https_put_streams_an_unsigned_trailer_body_that_decodes() -> None:
    payload = bytes(range(256)) * 50
    wire = boto("put_object", HTTPS_ENDPOINT, Bucket="bkt", Key="k", Body=payload)
    signed = authenticate(wire)
    assert signed.payload_hash == STREAMING_UNSIGNED_TRAILER
    assert wire.header(b"x-amz-decoded-content-length") == str(len(payload)).encode()
    assert wire.header(b"content-encoding") == b"aws-chunked"
    decoder = ChunkedPayload(
        STREAMING_UNSIGNED_TRAILER, trailer_names=wire.header(b"x-amz-trailer").decode().split(",")
    )
    assert b"".join(decoder.feed(wire.body)) == payload
    assert decoder.finish() == {"x-amz-checksum-crc32": crc32_b64(payload)}
    assert decoder.decoded_length == len(payload)


# Refusals of botocore-signed requests


def test_wrong_secret_is_signature_mismatch_and_leaks_nothing() -> None:
    wire = boto("get_object", Bucket="bkt", Key="k")
    error = refused(wire, secret="not-" + SECRET)
    assert (error.code, error.status, error.message) == (
        "SignatureDoesNotMatch",
        403,
        SIGNATURE_MISMATCH,
    )
    signature = wire.header(b"authorization").decode().rpartition("Signature=")[2]
    for text in (str(error), repr(error)):
        assert SECRET not in text
        assert signature not in text


@pytest.mark.parametrize(
    "tamper",
    [
        pytest.param(lambda w: w.with_header(b"x-amz-meta-colour", b"red"), id="signed-header"),
        pytest.param(lambda w: w.with_header(b"host", b"evil.test:8080"), id="host"),
        pytest.param(lambda w: replace(w, raw_path=w.raw_path + b"x"), id="path"),
        pytest.param(lambda w: replace(w, raw_path=w.raw_path.upper()), id="path-case"),
        pytest.param(lambda w: replace(w, query_string=w.query_string + b"&x=1"), id="query-added"),
        pytest.param(lambda w: replace(w, method="DELETE"), id="method"),
        pytest.param(lambda w: w.without_header(b"x-amz-meta-colour"), id="signed-header-gone"),
        pytest.param(
            lambda w: w.with_header(
                b"x-amz-content-sha256", hashlib.sha256(b"evil").hexdigest().encode()
            ),
            id="payload-hash",
        ),
    ],
)
def test_tampered_requests_do_not_verify(tamper: Any) -> None:
    wire = boto("put_object", Bucket="bkt", Key="obj", Body=b"x", Metadata={"colour": "blue"})
    authenticate(wire)
    assert refused(tamper(wire)).code == "SignatureDoesNotMatch"


def test_unsigned_headers_may_change() -> None:
    wire = boto("get_object", Bucket="bkt", Key="k")
    authenticate(wire.with_header(b"user-agent", b"something else"))


def test_a_changed_query_value_does_not_verify() -> None:
    wire = boto("list_objects_v2", Bucket="bkt", Prefix="mine/")
    tampered = wire.query_string.replace(b"prefix=mine%2F", b"prefix=yours%2F")
    assert tampered != wire.query_string
    assert refused(replace(wire, query_string=tampered)).code == "SignatureDoesNotMatch"


@pytest.mark.parametrize("minutes", [-16, 16])
def test_clock_skew_over_fifteen_minutes_is_refused(minutes: int) -> None:
    wire = boto("get_object", Bucket="bkt", Key="k")
    error = refused(wire, now=timestamp_of(wire) + timedelta(minutes=minutes))
    assert (error.code, error.status) == ("RequestTimeTooSkewed", 403)


@pytest.mark.parametrize("minutes", [-14, 14])
def test_clock_skew_under_fifteen_minutes_is_accepted(minutes: int) -> None:
    wire = boto("get_object", Bucket="bkt", Key="k")
    authenticate(wire, now=timestamp_of(wire) + timedelta(minutes=minutes))


# Presigned URLs


@pytest.mark.parametrize("key", AWKWARD_KEYS)
def test_presigned_get_from_boto3_verifies(key: str) -> None:
    wire = presigned("get_object", Bucket="bkt", Key=key)
    signed = authenticate(wire)
    assert signed.presigned
    assert signed.payload_hash == UNSIGNED_PAYLOAD
    assert signed.signed_headers == ("host",)


def test_presigned_put_with_parameters_verifies() -> None:
    wire = presigned("put_object", Bucket="bkt", Key="up load", ContentType="text/plain")
    signed = authenticate(wire.with_header(b"content-type", b"text/plain"))
    assert "content-type" in signed.signed_headers
    assert refused(wire.with_header(b"content-type", b"text/html")).code == "SignatureDoesNotMatch"


def test_presigned_url_from_the_query_signer_verifies() -> None:
    request = AWSRequest(method="GET", url=f"{HTTP_ENDPOINT}/bkt/a%20b?versionId=3%2F4")
    S3SigV4QueryAuth(Credentials(ACCESS_KEY, SECRET), "s3", REGION, expires=60).add_auth(request)
    authenticate(to_wire(request.prepare()))


def test_presigned_url_with_a_changed_parameter_does_not_verify() -> None:
    wire = presigned("get_object", Bucket="bkt", Key="k", ResponseContentType="text/plain")
    changed = wire.query_string.replace(b"text%2Fplain", b"text%2Fhtml")
    assert refused(replace(wire, query_string=changed)).code == "SignatureDoesNotMatch"


def test_presigned_url_is_refused_once_expired() -> None:
    wire = presigned("get_object", expires=60, Bucket="bkt", Key="k")
    signed_at = timestamp_of(wire)
    authenticate(wire, now=signed_at + timedelta(seconds=60))
    error = refused(wire, now=signed_at + timedelta(seconds=61))
    assert (error.code, error.status, error.message) == ("AccessDenied", 403, "Request has expired")


def test_presigned_url_dated_in_the_future_is_refused() -> None:
    wire = presigned("get_object", Bucket="bkt", Key="k")
    signed_at = timestamp_of(wire)
    authenticate(wire, now=signed_at - timedelta(minutes=14))
    assert refused(wire, now=signed_at - timedelta(minutes=16)).code == "RequestTimeTooSkewed"


@pytest.mark.parametrize("expires", [b"0", b"604801", b"-5", b"abc", b"", b"1e3"])
def test_presigned_expiry_outside_one_second_to_a_week_is_refused(expires: bytes) -> None:
    wire = presigned("get_object", Bucket="bkt", Key="k")
    query = wire.query_string.replace(b"X-Amz-Expires=3600", b"X-Amz-Expires=" + expires)
    error = refused(replace(wire, query_string=query))
    assert (error.code, error.status) == ("AuthorizationQueryParametersError", 400)


def test_presigned_expiry_of_a_week_is_accepted() -> None:
    authenticate(presigned("get_object", expires=604800, Bucket="bkt", Key="k"))


@pytest.mark.parametrize(
    "drop",
    [
        b"X-Amz-Algorithm",
        b"X-Amz-Credential",
        b"X-Amz-Date",
        b"X-Amz-SignedHeaders",
        b"X-Amz-Expires",
        b"X-Amz-Signature",
    ],
)
def test_presigned_url_missing_a_parameter_is_refused(drop: bytes) -> None:
    wire = presigned("get_object", Bucket="bkt", Key="k")
    query = b"&".join(p for p in wire.query_string.split(b"&") if not p.startswith(drop + b"="))
    error = refused(replace(wire, query_string=query))
    assert (error.code, error.status) == ("AuthorizationQueryParametersError", 400)


@pytest.mark.parametrize(
    ("old", "new"),
    [
        (b"X-Amz-Algorithm=AWS4-HMAC-SHA256", b"X-Amz-Algorithm=AWS4-HMAC-SHA1"),
        (b"%2Fs3%2F", b"%2Fec2%2F"),
        (b"%2Faws4_request", b"%2Faws5_request"),
        (b"X-Amz-SignedHeaders=host", b"X-Amz-SignedHeaders=x-amz-date"),
        (b"X-Amz-Date=", b"X-Amz-Date=2024"),
        (b"X-Amz-Signature=", b"X-Amz-Signature=zz"),
    ],
)
def test_malformed_presigned_parameters_are_refused(old: bytes, new: bytes) -> None:
    wire = presigned("get_object", Bucket="bkt", Key="k")
    assert old in wire.query_string
    error = refused(replace(wire, query_string=wire.query_string.replace(old, new, 1)))
    assert (error.code, error.status) == ("AuthorizationQueryParametersError", 400)


def test_presigned_url_with_a_repeated_parameter_is_refused() -> None:
    wire = presigned("get_object", Bucket="bkt", Key="k")
    query = wire.query_string + b"&X-Amz-Expires=60"
    assert refused(replace(wire, query_string=query)).code == "AuthorizationQueryParametersError"


# Requests that are not SigV4 at all, or not well-formed SigV4


def test_a_request_without_any_signature_is_anonymous() -> None:
    headers = ((b"host", b"s3.test"), (b"x-amz-date", b"20260101T000000Z"))
    assert (
        parse_request("GET", b"/bkt/k", b"prefix=a&X-Amz-Date=x", headers, datetime.now(UTC))
        is None
    )


def test_sigv2_header_is_refused_as_unsupported() -> None:
    headers = (
        (b"host", b"s3.test"),
        (b"authorization", b"AWS AKIDEXAMPLE:frJIUN8DYpKDtOLCwo//yllqDzg="),
    )
    with pytest.raises(SigV4Error) as caught:
        parse_request("GET", b"/bkt/k", b"", headers, datetime.now(UTC))
    assert (caught.value.code, caught.value.status) == ("InvalidRequest", 400)
    assert "AWS4-HMAC-SHA256" in caught.value.message


def test_sigv2_query_is_refused_as_unsupported() -> None:
    query = b"AWSAccessKeyId=AKIDEXAMPLE&Expires=1700000000&Signature=abc%3D"
    with pytest.raises(SigV4Error) as caught:
        parse_request("GET", b"/bkt/k", query, ((b"host", b"s3.test"),), datetime.now(UTC))
    assert (caught.value.code, caught.value.status) == ("InvalidRequest", 400)


def test_header_and_query_signature_together_are_refused() -> None:
    header_signed = boto("get_object", Bucket="bkt", Key="k")
    query_signed = presigned("get_object", Bucket="bkt", Key="k")
    both = replace(header_signed, query_string=query_signed.query_string)
    error = refused(both)
    assert (error.code, error.status) == ("InvalidArgument", 400)


def test_unknown_authorization_scheme_is_refused() -> None:
    wire = boto("get_object", Bucket="bkt", Key="k").with_header(b"authorization", b"Bearer abc")
    assert refused(wire).code == "InvalidArgument"


def _authorization(wire: Wire) -> str:
    return wire.header(b"authorization").decode()


@pytest.mark.parametrize(
    "rewrite",
    [
        pytest.param(lambda a: a.partition(", Signature=")[0], id="no-signature"),
        pytest.param(lambda a: a.replace("Credential=", "Cred="), id="no-credential"),
        pytest.param(lambda a: a.replace("SignedHeaders=", "Headers="), id="no-signed-headers"),
        pytest.param(lambda a: a.replace("/s3/", "/ec2/"), id="other-service"),
        pytest.param(lambda a: a.replace("/aws4_request", "/aws4_req"), id="bad-terminator"),
        pytest.param(lambda a: a.replace(f"/{REGION}/", "/"), id="short-credential"),
        pytest.param(lambda a: a.replace(f"{ACCESS_KEY}/2", f"{ACCESS_KEY}/1999"), id="bad-date"),
        pytest.param(lambda a: a.replace("Credential=" + ACCESS_KEY, "Credential="), id="no-key"),
        pytest.param(
            lambda a: a.replace("SignedHeaders=host;", "SignedHeaders="), id="host-unsigned"
        ),
        pytest.param(
            lambda a: a.replace("SignedHeaders=host", "SignedHeaders=Host"), id="uppercase-header"
        ),
        pytest.param(
            lambda a: a.replace("SignedHeaders=host;", "SignedHeaders=host;host;"),
            id="duplicate-header",
        ),
        pytest.param(
            lambda a: a.replace("SignedHeaders=host;", "SignedHeaders=;host;"), id="empty-header"
        ),
        pytest.param(lambda a: a[:-1] + "g", id="non-hex-signature"),
        pytest.param(lambda a: a[:-2], id="short-signature"),
        pytest.param(lambda a: a + ", Signature=" + "0" * 64, id="repeated-field"),
        pytest.param(lambda a: a + ", Extra=1", id="unknown-field"),
        pytest.param(lambda a: "AWS4-HMAC-SHA256", id="nothing-after-algorithm"),
        pytest.param(lambda a: a.replace(", ", " "), id="no-commas"),
    ],
)
def test_malformed_authorization_header_is_refused(rewrite: Any) -> None:
    wire = boto("get_object", Bucket="bkt", Key="k")
    error = refused(wire.with_header(b"authorization", rewrite(_authorization(wire)).encode()))
    assert (error.code, error.status) == ("AuthorizationHeaderMalformed", 400)


def test_authorization_without_spaces_after_commas_is_accepted() -> None:
    wire = boto("get_object", Bucket="bkt", Key="k")
    authenticate(
        wire.with_header(b"authorization", _authorization(wire).replace(", ", ",").encode())
    )


def test_credential_date_must_be_the_request_date() -> None:
    wire = boto("get_object", Bucket="bkt", Key="k")
    day_before = timestamp_of(wire) - timedelta(days=1)
    wire = wire.with_header(b"x-amz-date", day_before.strftime("%Y%m%dT%H%M%SZ").encode())
    error = refused(wire, now=day_before)
    assert error.code == "AuthorizationHeaderMalformed"
    assert "Date is not the same as X-Amz-Date" in error.message


def test_missing_content_sha256_header_is_refused() -> None:
    wire = boto("get_object", Bucket="bkt", Key="k").without_header(b"x-amz-content-sha256")
    error = refused(wire)
    assert (error.code, error.status) == ("InvalidRequest", 400)


def test_invalid_content_sha256_header_is_refused() -> None:
    wire = boto("get_object", Bucket="bkt", Key="k").with_header(b"x-amz-content-sha256", b"abc")
    assert refused(wire).code == "InvalidArgument"


@pytest.mark.parametrize("date", [None, b"yesterday", b"20260101T000000"])
def test_missing_or_unreadable_date_is_refused(date: bytes | None) -> None:
    wire = boto("get_object", Bucket="bkt", Key="k").without_header(b"x-amz-date")
    if date is not None:
        wire = wire.with_header(b"x-amz-date", date)
    error = refused(wire)
    assert (error.code, error.status) == ("AccessDenied", 403)


# Signing keys and AWS's published examples


def derive_key(secret: str, date: str, region: str, service: str) -> bytes:
    key = ("AWS4" + secret).encode()
    for part in (date, region, service, "aws4_request"):
        key = hmac.new(key, part.encode(), hashlib.sha256).digest()
    return key


def test_signing_key_matches_the_aws_reference_example() -> None:
    key = signing_key("wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY", "20120215", "us-east-1", "iam")
    assert key.hex() == "f4780e2d9f65fa895f9c67b32ce1baf0b0d8a43505a000a1a9e090d414db404d"


def test_verify_returns_the_signing_key() -> None:
    wire = boto("get_object", Bucket="bkt", Key="k")
    signed = parse_request(
        wire.method, wire.raw_path, wire.query_string, wire.headers, datetime.now(UTC)
    )
    assert signed is not None
    key = verify(signed, SECRET, wire.method, wire.raw_path, wire.query_string, wire.headers)
    assert key == derive_key(SECRET, signed.credential.date, REGION, "s3")


AWS_EXAMPLE_SECRET = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"
AWS_EXAMPLE_SEED = "4f232c4386841ef735655705268965c44a0e4690baa4adea153f7db9fa80a0a9"
AWS_EXAMPLE_CHUNKS = [
    (b"a" * 65536, "ad80c730a21e5b8d04586a2213dd63b9a0e99e0e2307b0ade35a65485a288648"),
    (b"a" * 1024, "0055627c9e194cb4542bae2aa5492e3c1575bbb81b612b7d234b86a503ef5497"),
    (b"", "b6c6ea8a5354eaf15b3cb7646744f4275b71ea724fed81ceb9323e279d449df9"),
]
AWS_EXAMPLE_SCOPE = "20130524/us-east-1/s3/aws4_request"


def aws_example_body(final: bytes = b"\r\n") -> bytes:
    body = b"".join(
        f"{len(data):x};chunk-signature={signature}\r\n".encode() + data + b"\r\n"
        for data, signature in AWS_EXAMPLE_CHUNKS
    )
    return body[: -len(b"\r\n")] + final


def test_the_aws_documented_chunked_upload_verifies_and_decodes() -> None:
    authorization = (
        "AWS4-HMAC-SHA256 Credential=AKIAIOSFODNN7EXAMPLE/20130524/us-east-1/s3/aws4_request,"
        "SignedHeaders=content-encoding;content-length;host;x-amz-content-sha256;x-amz-date;"
        f"x-amz-decoded-content-length;x-amz-storage-class,Signature={AWS_EXAMPLE_SEED}"
    )
    headers = (
        (b"host", b"s3.amazonaws.com"),
        (b"x-amz-date", b"20130524T000000Z"),
        (b"x-amz-storage-class", b"REDUCED_REDUNDANCY"),
        (b"authorization", authorization.encode()),
        (b"x-amz-content-sha256", STREAMING_SIGNED.encode()),
        (b"content-encoding", b"aws-chunked"),
        (b"x-amz-decoded-content-length", b"66560"),
        (b"content-length", b"66824"),
    )
    now = datetime(2013, 5, 24, 0, 5, tzinfo=UTC)
    signed = parse_request("PUT", b"/examplebucket/chunkObject.txt", b"", headers, now)
    assert signed is not None
    key = verify(signed, AWS_EXAMPLE_SECRET, "PUT", b"/examplebucket/chunkObject.txt", b"", headers)
    decoder = ChunkedPayload(
        STREAMING_SIGNED,
        signing_key=key,
        seed_signature=signed.signature,
        amz_date=signed.amz_date,
        scope=signed.credential.scope,
    )
    body = aws_example_body()
    assert len(body) == 66824
    assert b"".join(decoder.feed(body)) == b"a" * 66560
    assert decoder.finish() == {}


def test_trailer_signature_matches_the_aws_crt_example() -> None:
    # aws-crt's test vector: the same upload with three trailing headers.
    trailer_signature = "df5735bd9f3295cd9386572292562fefc93ba94e80a0a1ddcbd652c4e0a75e6c"
    body = aws_example_body(
        final=b"first:1st\r\nsecond:2nd\r\nthird:3rd\r\n"
        + f"x-amz-trailer-signature:{trailer_signature}\r\n\r\n".encode()
    )
    decoder = ChunkedPayload(
        STREAMING_SIGNED_TRAILER,
        signing_key=derive_key(AWS_EXAMPLE_SECRET, "20130524", "us-east-1", "s3"),
        seed_signature=AWS_EXAMPLE_SEED,
        amz_date="20130524T000000Z",
        scope=AWS_EXAMPLE_SCOPE,
        trailer_names=["first", "second", "third"],
    )
    assert b"".join(decoder.feed(body)) == b"a" * 66560
    assert decoder.finish() == {"first": "1st", "second": "2nd", "third": "3rd"}


# aws-chunked bodies built here from the AWS specification


def crc32_b64(data: bytes) -> str:
    return base64.b64encode(zlib.crc32(data).to_bytes(4, "big")).decode()


@dataclass(frozen=True)
class Seed:
    """What a signed streaming upload's headers give the body decoder."""

    key: bytes
    signature: str
    amz_date: str
    scope: str


def streaming_seed(mode: str, trailer: str | None = None) -> Seed:
    """A streaming PUT's headers, signed by botocore, then verified here."""

    class StreamingAuth(S3SigV4Auth):
        def payload(self, request: AWSRequest) -> str:
            return mode

    headers = {"Content-Encoding": "aws-chunked", "X-Amz-Decoded-Content-Length": "0"}
    if trailer:
        headers["X-Amz-Trailer"] = trailer
    wire = signed_by_hand("PUT", f"{HTTP_ENDPOINT}/bkt/k", headers, auth_class=StreamingAuth)
    signed = authenticate(wire)
    assert signed.payload_hash == mode
    key = verify(signed, SECRET, wire.method, wire.raw_path, wire.query_string, wire.headers)
    assert key == derive_key(SECRET, signed.credential.date, REGION, "s3")
    return Seed(key, signed.signature, signed.amz_date, signed.credential.scope)


def hmac_hex(key: bytes, text: str) -> str:
    return hmac.new(key, text.encode(), hashlib.sha256).hexdigest()


def signed_body(
    seed: Seed, payload: bytes, chunk_size: int, trailers: dict[str, str] | None = None
) -> bytes:
    """`size;chunk-signature=sig CRLF data CRLF` ..., a signed empty chunk, then for the
    TRAILER mode the trailers and their signature, chained from the empty chunk's signature."""
    chunks = [payload[i : i + chunk_size] for i in range(0, len(payload), chunk_size)] + [b""]
    body = bytearray()
    previous = seed.signature
    for data in chunks:
        previous = hmac_hex(
            seed.key,
            f"AWS4-HMAC-SHA256-PAYLOAD\n{seed.amz_date}\n{seed.scope}\n{previous}\n"
            f"{hashlib.sha256(b'').hexdigest()}\n{hashlib.sha256(data).hexdigest()}",
        )
        body += f"{len(data):x};chunk-signature={previous}\r\n".encode()
        if data or trailers is None:
            body += data + b"\r\n"
    if trailers is not None:
        canonical = "".join(f"{name}:{value}\n" for name, value in sorted(trailers.items()))
        signature = hmac_hex(
            seed.key,
            f"AWS4-HMAC-SHA256-TRAILER\n{seed.amz_date}\n{seed.scope}\n{previous}\n"
            f"{hashlib.sha256(canonical.encode()).hexdigest()}",
        )
        body += canonical.replace("\n", "\r\n").encode()
        body += f"x-amz-trailer-signature:{signature}\r\n\r\n".encode()
    return bytes(body)


def unsigned_body(payload: bytes, chunk_size: int) -> bytes:
    """botocore's own encoder for STREAMING-UNSIGNED-PAYLOAD-TRAILER with a CRC32 trailer."""
    wrapper = AwsChunkedWrapper(
        io.BytesIO(payload),
        checksum_cls=Crc32Checksum,
        checksum_name="x-amz-checksum-crc32",
        chunk_size=chunk_size,
    )
    return bytes(wrapper.read())


def split(body: bytes, sizes: Sequence[int]) -> list[bytes]:
    pieces, start, index = [], 0, 0
    while start < len(body):
        size = sizes[index % len(sizes)] if sizes else len(body)
        pieces.append(body[start : start + size])
        start += size
        index += 1
    return pieces


def decode(decoder: ChunkedPayload, pieces: Sequence[bytes]) -> bytes:
    return b"".join(part for piece in pieces for part in decoder.feed(piece))


def signed_decoder(seed: Seed, mode: str = STREAMING_SIGNED, **kwargs: Any) -> ChunkedPayload:
    return ChunkedPayload(
        mode,
        signing_key=seed.key,
        seed_signature=seed.signature,
        amz_date=seed.amz_date,
        scope=seed.scope,
        **kwargs,
    )


@functools.cache
def seed_for(mode: str) -> Seed:
    return streaming_seed(
        mode, "x-amz-checksum-crc32" if mode == STREAMING_SIGNED_TRAILER else None
    )


payloads = st.binary(max_size=3000)
chunk_sizes = st.integers(min_value=1, max_value=1200)
splits = st.lists(st.integers(min_value=1, max_value=300), max_size=8)


@settings(max_examples=80, deadline=None)
@given(payload=payloads, chunk_size=chunk_sizes, sizes=splits)
def test_signed_chunks_decode_under_any_split(
    payload: bytes, chunk_size: int, sizes: list[int]
) -> None:
    seed = seed_for(STREAMING_SIGNED)
    decoder = signed_decoder(seed)
    assert decode(decoder, split(signed_body(seed, payload, chunk_size), sizes)) == payload
    assert decoder.finish() == {}
    assert decoder.decoded_length == len(payload)


@settings(max_examples=80, deadline=None)
@given(payload=payloads, chunk_size=chunk_sizes, sizes=splits)
def test_signed_chunks_with_trailer_decode_under_any_split(
    payload: bytes, chunk_size: int, sizes: list[int]
) -> None:
    seed = seed_for(STREAMING_SIGNED_TRAILER)
    trailers = {"x-amz-checksum-crc32": crc32_b64(payload)}
    body = signed_body(seed, payload, chunk_size, trailers)
    decoder = signed_decoder(seed, STREAMING_SIGNED_TRAILER, trailer_names=["x-amz-checksum-crc32"])
    assert decode(decoder, split(body, sizes)) == payload
    assert decoder.finish() == trailers


@settings(max_examples=80, deadline=None)
@given(payload=payloads, chunk_size=chunk_sizes, sizes=splits)
def test_unsigned_trailer_body_from_botocore_decodes_under_any_split(
    payload: bytes, chunk_size: int, sizes: list[int]
) -> None:
    body = unsigned_body(payload, chunk_size)
    decoder = ChunkedPayload(STREAMING_UNSIGNED_TRAILER, trailer_names=["x-amz-checksum-crc32"])
    assert decode(decoder, split(body, sizes)) == payload
    assert decoder.finish() == {"x-amz-checksum-crc32": crc32_b64(payload)}
    assert decoder.decoded_length == len(payload)


def data_positions(body: bytes) -> list[int]:
    """Where the payload bytes sit in an aws-chunked body."""
    positions: list[int] = []
    at = 0
    while True:
        end = body.index(b"\r\n", at)
        size = int(body[at:end].partition(b";")[0], 16)
        if size == 0:
            return positions
        positions.extend(range(end + 2, end + 2 + size))
        at = end + 2 + size + 2


@settings(max_examples=60, deadline=None)
@given(payload=st.binary(min_size=1, max_size=2000), chunk_size=chunk_sizes, data=st.data())
def test_a_flipped_payload_byte_fails_its_chunk_signature(
    payload: bytes, chunk_size: int, data: st.DataObject
) -> None:
    seed = seed_for(STREAMING_SIGNED)
    body = signed_body(seed, payload, chunk_size)
    positions = data_positions(body)
    target = data.draw(st.integers(min_value=0, max_value=len(payload) - 1))
    assert body[positions[target]] == payload[target]
    forged = (
        body[: positions[target]] + bytes([payload[target] ^ 1]) + body[positions[target] + 1 :]
    )
    decoder = signed_decoder(seed)
    with pytest.raises(SigV4Error) as caught:
        decode(decoder, split(forged, [data.draw(st.integers(1, 500))]))
    assert caught.value.code == "SignatureDoesNotMatch"


@pytest.mark.parametrize("mode", [STREAMING_SIGNED, STREAMING_SIGNED_TRAILER])
def test_a_changed_chunk_signature_fails(mode: str) -> None:
    seed = seed_for(mode)
    trailers = {"x-amz-checksum-crc32": crc32_b64(b"x" * 100)} if mode != STREAMING_SIGNED else None
    body = signed_body(seed, b"x" * 100, 40, trailers)
    names = list(trailers or ())
    for start in range(0, len(body)):
        if body[start : start + 16] != b"chunk-signature=":
            continue
        position = start + 16 + 5
        replacement = b"0" if body[position : position + 1] != b"0" else b"1"
        forged = body[:position] + replacement + body[position + 1 :]
        with pytest.raises(SigV4Error) as caught:
            decode(signed_decoder(seed, mode, trailer_names=names), [forged])
        assert caught.value.code == "SignatureDoesNotMatch"


def test_a_changed_trailer_fails_the_trailer_signature() -> None:
    seed = seed_for(STREAMING_SIGNED_TRAILER)
    body = signed_body(seed, b"payload", 4, {"x-amz-checksum-crc32": crc32_b64(b"payload")})
    forged = body.replace(crc32_b64(b"payload").encode(), crc32_b64(b"other").encode())
    decoder = signed_decoder(seed, STREAMING_SIGNED_TRAILER, trailer_names=["x-amz-checksum-crc32"])
    with pytest.raises(SigV4Error) as caught:
        decode(decoder, [forged])
    assert caught.value.code == "SignatureDoesNotMatch"


def test_a_missing_trailer_signature_is_refused() -> None:
    seed = seed_for(STREAMING_SIGNED_TRAILER)
    body = signed_body(seed, b"payload", 4, {"x-amz-checksum-crc32": crc32_b64(b"payload")})
    start = body.index(b"x-amz-trailer-signature:")
    stripped = body[:start] + b"\r\n"
    decoder = signed_decoder(seed, STREAMING_SIGNED_TRAILER, trailer_names=["x-amz-checksum-crc32"])
    with pytest.raises(SigV4Error) as caught:
        decode(decoder, [stripped])
    assert caught.value.code == "SignatureDoesNotMatch"


def test_signed_chunk_data_is_held_until_its_signature_checks() -> None:
    seed = seed_for(STREAMING_SIGNED)
    body = signed_body(seed, b"0123456789", 10)
    decoder = signed_decoder(seed)
    header_end = body.index(b"\r\n") + 2
    assert decoder.feed(body[: header_end + 9]) == []
    assert decoder.feed(body[header_end + 9 : header_end + 10]) == []
    assert decoder.feed(body[header_end + 10 : header_end + 12]) == [b"0123456789"]


def test_unsigned_chunk_data_streams_as_it_arrives() -> None:
    decoder = ChunkedPayload(STREAMING_UNSIGNED_TRAILER)
    assert decoder.feed(b"a\r\n01234") == [b"01234"]
    assert decoder.feed(b"56789\r\n0\r\n\r\n") == [b"56789"]
    assert decoder.finish() == {}


def _truncations() -> list[tuple[str, bytes, Any]]:
    seed = seed_for(STREAMING_SIGNED)
    trailer_seed = seed_for(STREAMING_SIGNED_TRAILER)
    trailers = {"x-amz-checksum-crc32": crc32_b64(b"hello world")}
    names = ["x-amz-checksum-crc32"]
    return [
        ("signed", signed_body(seed, b"hello world", 4), lambda: signed_decoder(seed)),
        (
            "signed-trailer",
            signed_body(trailer_seed, b"hello world", 4, trailers),
            lambda: signed_decoder(trailer_seed, STREAMING_SIGNED_TRAILER, trailer_names=names),
        ),
        (
            "unsigned-trailer",
            unsigned_body(b"hello world", 4),
            lambda: ChunkedPayload(STREAMING_UNSIGNED_TRAILER, trailer_names=names),
        ),
    ]


@pytest.mark.parametrize("case", _truncations(), ids=lambda case: case[0])
def test_a_truncated_body_is_an_incomplete_body(case: tuple[str, bytes, Any]) -> None:
    name, body, make = case
    for cut in range(len(body)):
        decoder = make()
        decoder.feed(body[:cut])
        if name != "signed" and cut == len(body) - 2:
            # The trailers' closing empty line may be left out (some SDKs do); all else is there.
            assert decoder.finish()
            continue
        with pytest.raises(SigV4Error) as caught:
            decoder.finish()
        assert (caught.value.code, caught.value.status) == ("IncompleteBody", 400), cut


def test_a_chunk_larger_than_the_limit_is_refused_before_it_is_buffered() -> None:
    decoder = ChunkedPayload(STREAMING_UNSIGNED_TRAILER, max_chunk=1024)
    assert decoder.feed(b"400\r\n" + b"x" * 1024 + b"\r\n") == [b"x" * 1024]
    with pytest.raises(SigV4Error) as caught:
        decoder.feed(b"401\r\n")
    assert (caught.value.code, caught.value.status) == ("InvalidRequest", 400)
    with pytest.raises(SigV4Error):
        decoder.feed(b"more")  # a failed decoder stays failed
    with pytest.raises(SigV4Error):
        decoder.finish()


@pytest.mark.parametrize(
    "body",
    [
        pytest.param(b"zz\r\n", id="bad-size"),
        pytest.param(b"0x10\r\n", id="prefixed-size"),
        pytest.param(b"+5\r\n", id="signed-size"),
        pytest.param(b"\r\n", id="empty-size"),
        pytest.param(b"5;ext=1\r\n", id="extension"),
        pytest.param(b"1" * 5000, id="endless-header"),
        pytest.param(b"3\r\nabcXY", id="no-crlf-after-data"),
        pytest.param(b"0\r\nx-amz-checksum-sha1:abc\r\n\r\n", id="undeclared-trailer"),
        pytest.param(b"0\r\n\r\n", id="declared-trailer-missing"),
        pytest.param(b"0\r\nno colon\r\n\r\n", id="trailer-without-colon"),
        pytest.param(
            b"0\r\nx-amz-checksum-crc32:a\r\nx-amz-checksum-crc32:a\r\n\r\n", id="trailer-twice"
        ),
        pytest.param(b"0\r\nx-amz-checksum-crc32:a\r\n\r\nextra", id="data-after-end"),
        pytest.param(
            b"0\r\nx-amz-checksum-crc32:a\r\nx-amz-trailer-signature:" + b"0" * 64 + b"\r\n\r\n",
            id="signature-in-unsigned-mode",
        ),
    ],
)
def test_malformed_unsigned_framing_is_refused(body: bytes) -> None:
    decoder = ChunkedPayload(STREAMING_UNSIGNED_TRAILER, trailer_names=["x-amz-checksum-crc32"])
    with pytest.raises(SigV4Error) as caught:
        decoder.feed(body)
        decoder.finish()
    assert (caught.value.code, caught.value.status) == ("InvalidRequest", 400)


def test_a_signed_chunk_without_its_signature_is_refused() -> None:
    decoder = signed_decoder(seed_for(STREAMING_SIGNED))
    with pytest.raises(SigV4Error) as caught:
        decoder.feed(b"5\r\nhello\r\n")
    assert caught.value.code == "InvalidRequest"


def test_trailers_are_refused_on_a_body_signed_without_them() -> None:
    seed = seed_for(STREAMING_SIGNED)
    with pytest.raises(SigV4Error) as caught:
        signed_decoder(seed, trailer_names=["x-amz-checksum-crc32"])
    assert caught.value.code == "InvalidRequest"
    body = signed_body(seed, b"abc", 2)
    forged = body[: -len(b"\r\n")] + b"x-amz-checksum-crc32:AAAAAA==\r\n\r\n"
    with pytest.raises(SigV4Error) as refused_trailer:
        decode(signed_decoder(seed), [forged])
    assert refused_trailer.value.code == "InvalidRequest"


def test_a_signed_decoder_needs_the_signing_key() -> None:
    with pytest.raises(ValueError, match="signing key"):
        ChunkedPayload(STREAMING_SIGNED)
    with pytest.raises(ValueError, match="aws-chunked mode"):
        ChunkedPayload(UNSIGNED_PAYLOAD)
