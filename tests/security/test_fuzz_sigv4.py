"""Property: SigV4 parsing and verification refuse anything odd with an S3 error, never a crash.

Inputs are requests botocore really signs, then mutated: the Authorization header, the
presigned query, the dates, the aws-chunked body. Whatever the mutation, `parse_request`,
`verify` and `ChunkedPayload` either accept or raise `SigV4Error` (which the S3 app turns
into its XML error); a mutation of a signed part is never accepted. Derandomized and
bounded, so a failure reproduces and the run stays short; every crash found is kept as an
`@example`.
"""

from __future__ import annotations

import hashlib
import hmac
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from urllib.parse import quote

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from souverain.objectstore.sigv4 import (
    STREAMING_SIGNED,
    ChunkedPayload,
    SignedRequest,
    SigV4Error,
    parse_request,
    signing_key,
    verify,
)
from tests.unit.test_sigv4 import SECRET, Wire, presigned, signed_by_hand

FUZZ = settings(max_examples=60, deadline=timedelta(seconds=2), derandomize=True)
URL = "http://s3.test:8080/bucket/key"
HEADER_WIRE = signed_by_hand("PUT", URL, {"x-amz-meta-a": "1"}, b"payload")
PRESIGNED_WIRE = presigned("get_object", Bucket="bucket", Key="key")
S3_CODES = {
    "AccessDenied",
    "AuthorizationHeaderMalformed",
    "AuthorizationQueryParametersError",
    "InvalidArgument",
    "InvalidRequest",
    "RequestTimeTooSkewed",
    "SignatureDoesNotMatch",
    "IncompleteBody",
}


@pytest.fixture(params=("sqlite",), autouse=True)
def database_backend() -> str:
    """No database here: one run, not one per backend."""
    return "sqlite"


def _now(wire: Wire) -> datetime:
    """The moment the wire was signed: the wires are made at import, and the run may reach
    these tests long after (past the skew window of the clock on the wall)."""
    signed = parse_request(
        wire.method,
        wire.raw_path,
        wire.query_string,
        wire.headers,
        datetime.now(UTC),
        max_skew=float("inf"),
    )
    assert signed is not None
    return signed.timestamp


def _check(wire: Wire, now: datetime) -> SignedRequest | None:
    """Parse and verify; None when refused (with an S3 error), the request when accepted."""
    try:
        signed = parse_request(wire.method, wire.raw_path, wire.query_string, wire.headers, now)
        if signed is not None:
            verify(signed, SECRET, wire.method, wire.raw_path, wire.query_string, wire.headers)
    except SigV4Error as refusal:
        assert refusal.code in S3_CODES, refusal.code
        assert refusal.status in (400, 403)
        assert SECRET not in refusal.message
        return None
    return signed


def _mutate(text: bytes, position: int, replacement: bytes, cut: int) -> bytes:
    position %= len(text) + 1
    return text[:position] + replacement + text[position + cut :]


BYTES = st.binary(max_size=12)
ODD = st.sampled_from(
    [b"", b"=", b",", b";", b"/", b"\x00", b"\xff", b" ", b"%", b"%zz", b"\r\n", b"A" * 5000]
)
PIECE = st.one_of(BYTES, ODD)


@FUZZ
@given(
    name=st.sampled_from([b"authorization", b"x-amz-date", b"x-amz-content-sha256", b"host"]),
    position=st.integers(min_value=0, max_value=400),
    replacement=PIECE,
    cut=st.integers(min_value=0, max_value=8),
)
@example(name=b"authorization", position=16, replacement=b"", cut=8)
def test_mutated_signed_headers_are_refused_with_an_s3_error(
    name: bytes, position: int, replacement: bytes, cut: int
) -> None:
    now = _now(HEADER_WIRE)
    value = _mutate(HEADER_WIRE.header(name), position, replacement, cut)
    wire = HEADER_WIRE.with_header(name, value)
    accepted = _check(wire, now)
    if accepted is not None:  # only what S3 ignores (spaces, a hash's case) or the access key,
        original = _check(HEADER_WIRE, now)  # which names the secret rather than being signed
        assert original is not None
        assert replace(accepted, credential=original.credential) == original
        assert accepted.credential.scope == original.credential.scope


@FUZZ
@given(headers=st.lists(st.tuples(st.sampled_from(
    [b"authorization", b"x-amz-date", b"date", b"x-amz-content-sha256", b"host", b"X-Amz-Date"]
), st.one_of(PIECE, st.just(HEADER_WIRE.header(b"authorization")))), max_size=6))  # fmt: skip
@example(
    headers=[
        (b"date", b"Fri, 31 Dec 9999 23:59:59 -0100"),  # leaves the calendar in UTC: was a 500
        (b"authorization", HEADER_WIRE.header(b"authorization")),
        (b"x-amz-content-sha256", b"UNSIGNED-PAYLOAD"),
    ]
)
def test_any_authentication_headers_parse_or_are_refused(
    headers: list[tuple[bytes, bytes]],
) -> None:
    wire = Wire("GET", b"/bucket/key", b"", ((b"host", b"s3.test:8080"), *headers))
    _check(wire, datetime.now(UTC))


@FUZZ
@given(
    date=st.one_of(
        st.datetimes(min_value=datetime(1, 1, 2), max_value=datetime(9999, 12, 30)).map(
            lambda d: d.strftime("%a, %d %b %Y %H:%M:%S")
        ),
        st.text(max_size=40),
    ),
    zone=st.sampled_from(["", " GMT", " +0000", " -2359", " +2359", " UT", " XYZ"]),
    amz=st.one_of(st.none(), st.text(alphabet="0123456789TZ", max_size=18)),
)
@example(date="Fri, 31 Dec 9999 23:59:59", zone=" -0100", amz=None)
@example(date="Mon, 01 Jan 0001 00:00:00", zone=" +0100", amz=None)
def test_any_date_is_a_time_or_access_denied(date: str, zone: str, amz: str | None) -> None:
    headers = [
        (b"host", b"s3.test:8080"),
        (b"authorization", HEADER_WIRE.header(b"authorization")),
        (b"x-amz-content-sha256", b"UNSIGNED-PAYLOAD"),
        (b"date", (date + zone).encode("utf-8", "surrogatepass")),
    ]
    if amz is not None:
        headers.append((b"x-amz-date", amz.encode()))
    _check(Wire("GET", b"/bucket/key", b"", tuple(headers)), datetime.now(UTC))


PARAMS = [
    b"X-Amz-Algorithm",
    b"X-Amz-Credential",
    b"X-Amz-Date",
    b"X-Amz-Expires",
    b"X-Amz-SignedHeaders",
    b"X-Amz-Signature",
    b"X-Amz-Content-Sha256",
]


@FUZZ
@given(
    param=st.sampled_from(PARAMS),
    value=st.one_of(PIECE, st.text(max_size=20).map(lambda t: quote(t).encode())),
    extra=st.booleans(),
)
@example(param=b"X-Amz-Expires", value=b"99999999999", extra=False)
@example(param=b"X-Amz-Date", value=b"99991231T235959Z", extra=False)
def test_mutated_presigned_parameters_are_refused(param: bytes, value: bytes, extra: bool) -> None:
    now = _now(PRESIGNED_WIRE)
    pairs = [piece.partition(b"=") for piece in PRESIGNED_WIRE.query_string.split(b"&")]
    query = b"&".join(
        name + b"=" + (value if name == param and not extra else old) for name, _, old in pairs
    )
    if extra or param not in query:
        query += b"&" + param + b"=" + value
    accepted = _check(Wire("GET", PRESIGNED_WIRE.raw_path, query, PRESIGNED_WIRE.headers), now)
    assert accepted is None or query == PRESIGNED_WIRE.query_string


@FUZZ
@given(query=st.binary(max_size=200))
def test_any_query_string_parses_or_is_refused(query: bytes) -> None:
    _check(Wire("GET", b"/b/k", query, ((b"host", b"s3.test"),)), datetime.now(UTC))


# aws-chunked bodies: a body signed here, from the seed signature, as the AWS specification says

DATE, SCOPE = "20261206T120000Z", "20261206/fr-1/s3/aws4_request"
KEY = signing_key(SECRET, "20261206", "fr-1", "s3")
SEED = "a" * 64


def _signed_body(chunks: list[bytes]) -> bytes:
    previous, out = SEED, b""
    for chunk in [*chunks, b""]:
        string_to_sign = "\n".join(
            (
                "AWS4-HMAC-SHA256-PAYLOAD",
                DATE,
                SCOPE,
                previous,
                hashlib.sha256(b"").hexdigest(),
                hashlib.sha256(chunk).hexdigest(),
            )
        )
        previous = hmac.new(KEY, string_to_sign.encode(), hashlib.sha256).hexdigest()
        out += f"{len(chunk):x};chunk-signature={previous}\r\n".encode() + chunk + b"\r\n"
    return out


def _decode(body: bytes, splits: list[int]) -> bytes | None:
    decoder = ChunkedPayload(
        STREAMING_SIGNED, signing_key=KEY, seed_signature=SEED, amz_date=DATE, scope=SCOPE
    )
    decoded, start = b"", 0
    try:
        for cut in [*sorted(s % (len(body) + 1) for s in splits), len(body)]:
            decoded += b"".join(decoder.feed(body[start:cut]))
            start = cut
        decoder.finish()
    except SigV4Error as refusal:
        assert refusal.code in S3_CODES and refusal.status in (400, 403)
        return None
    return decoded


CHUNKS = st.lists(st.binary(min_size=1, max_size=40), min_size=1, max_size=3)
SPLITS = st.lists(st.integers(min_value=0, max_value=10_000), max_size=4)


@FUZZ
@given(chunks=CHUNKS, splits=SPLITS, position=st.integers(min_value=0), flip=st.integers(1, 255))
def test_a_flipped_byte_in_a_signed_chunked_body_is_refused(
    chunks: list[bytes], splits: list[int], position: int, flip: int
) -> None:
    body = _signed_body(chunks)
    assert _decode(body, splits) == b"".join(chunks)
    position %= len(body)
    tampered = body[:position] + bytes([body[position] ^ flip]) + body[position + 1 :]
    decoded = _decode(tampered, splits)
    if decoded is not None:  # a hex digit's case in a signature or size is the same number
        assert decoded == b"".join(chunks) and tampered.lower() == body.lower()


@FUZZ
@given(body=st.binary(max_size=300), splits=SPLITS)
@example(body=b"fffffffffffffffff;chunk-signature=" + b"0" * 64 + b"\r\n", splits=[])
@example(body=b"0;chunk-signature=" + b"g" * 64 + b"\r\n\r\n", splits=[3])
def test_any_chunked_body_decodes_or_is_refused(body: bytes, splits: list[int]) -> None:
    assert _decode(body, splits) in (None, b"")
