"""AWS Signature Version 4 as Amazon S3 checks it: parse, verify, and decode aws-chunked bodies.

Pure logic over raw ASGI values: no I/O, no HTTP framework, no lookup of keys or buckets."""

from __future__ import annotations

import enum
import hashlib
import hmac
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from email.utils import parsedate_to_datetime
from functools import lru_cache
from urllib.parse import quote_from_bytes, unquote_to_bytes

ALGORITHM = "AWS4-HMAC-SHA256"
UNSIGNED_PAYLOAD = "UNSIGNED-PAYLOAD"
STREAMING_SIGNED = "STREAMING-AWS4-HMAC-SHA256-PAYLOAD"
STREAMING_SIGNED_TRAILER = "STREAMING-AWS4-HMAC-SHA256-PAYLOAD-TRAILER"
STREAMING_UNSIGNED_TRAILER = "STREAMING-UNSIGNED-PAYLOAD-TRAILER"
EMPTY_SHA256 = hashlib.sha256(b"").hexdigest()
MAX_EXPIRES = 7 * 24 * 3600  # presigned URLs live at most a week

SIGNATURE_MISMATCH = (
    "The request signature we calculated does not match the signature you provided. "
    "Check your key and signing method."
)
_UNSUPPORTED_MECHANISM = (
    "The authorization mechanism you have provided is not supported. Please use AWS4-HMAC-SHA256."
)
_PAYLOAD_CONSTANTS = frozenset(
    {UNSIGNED_PAYLOAD, STREAMING_SIGNED, STREAMING_SIGNED_TRAILER, STREAMING_UNSIGNED_TRAILER}
)
_QUERY_AUTH_PARAMS = (
    "X-Amz-Algorithm",
    "X-Amz-Credential",
    "X-Amz-Signature",
    "X-Amz-Date",
    "X-Amz-SignedHeaders",
    "X-Amz-Expires",
)
# Any of these in the query makes it a presigned (query-signed) request.
_QUERY_AUTH_MARKERS = frozenset({b"X-Amz-Algorithm", b"X-Amz-Credential", b"X-Amz-Signature"})
_HEX64 = re.compile(r"[0-9a-fA-F]{64}")
_AMZ_DATE = re.compile(r"\d{8}T\d{6}Z")
_SCOPE_DATE = re.compile(r"\d{8}")
_HEADER_NAME = re.compile(r"[!#$%&'*+.^_`|~0-9a-z-]+")


class SigV4Error(Exception):
    """An authentication failure as an S3 error: code ('SignatureDoesNotMatch'), message, status."""

    def __init__(self, code: str, message: str, status: int = 403) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message
        self.status = status


@dataclass(frozen=True)
class Credential:
    """The credential scope of a signature: `access_key/date/region/service/aws4_request`."""

    access_key: str
    date: str
    region: str
    service: str

    @property
    def scope(self) -> str:
        return f"{self.date}/{self.region}/{self.service}/aws4_request"


@dataclass(frozen=True)
class SignedRequest:
    """What a request claims about its signature; `verify` checks the claim against a secret."""

    credential: Credential
    signed_headers: tuple[str, ...]
    signature: str = field(repr=False)  # kept out of logs
    amz_date: str
    timestamp: datetime
    payload_hash: str
    presigned: bool


# Parsing


def parse_request(
    method: str,
    raw_path: bytes,
    query_string: bytes,
    headers: Sequence[tuple[bytes, bytes]],
    now: datetime,
    max_skew: float = 900.0,
) -> SignedRequest | None:
    """The signature a request carries, checked for form and time; None when it carries none."""
    header_map = _header_map(headers)
    params = _parse_query(query_string)
    names = {name for name, _ in params}
    authorization = header_map.get("authorization")
    query_v4 = not names.isdisjoint(_QUERY_AUTH_MARKERS)
    query_v2 = b"AWSAccessKeyId" in names
    if authorization is not None and (query_v4 or query_v2):
        raise SigV4Error(
            "InvalidArgument",
            "Only one auth mechanism allowed; only the X-Amz-Algorithm query parameter, "
            "Signature query string parameter or the Authorization header should be specified",
            400,
        )
    if authorization is not None:
        return _parse_header_auth(authorization, header_map, now, max_skew)
    if query_v4:
        return _parse_query_auth(params, now, max_skew)
    if query_v2:
        raise SigV4Error("InvalidRequest", _UNSUPPORTED_MECHANISM, 400)
    return None


def _header_malformed(detail: str) -> SigV4Error:
    return SigV4Error(
        "AuthorizationHeaderMalformed", f"The authorization header is malformed; {detail}", 400
    )


def _query_malformed(detail: str) -> SigV4Error:
    return SigV4Error("AuthorizationQueryParametersError", detail, 400)


def _parse_header_auth(
    values: list[bytes], header_map: dict[str, list[bytes]], now: datetime, max_skew: float
) -> SignedRequest:
    if len(values) != 1:
        raise _header_malformed("more than one Authorization header.")
    text = values[0].decode("latin-1").strip()
    scheme, _, rest = text.partition(" ")
    if scheme != ALGORITHM:
        if scheme.startswith("AWS"):  # SigV2 ("AWS AKID:sig") or SigV4a
            raise SigV4Error("InvalidRequest", _UNSUPPORTED_MECHANISM, 400)
        raise SigV4Error("InvalidArgument", "Unsupported Authorization Type", 400)
    fields = _authorization_fields(rest)
    amz_date, timestamp = _header_date(header_map)
    credential = _parse_credential(fields["Credential"], amz_date, _header_malformed)
    signed_headers = _parse_signed_headers(fields["SignedHeaders"], _header_malformed)
    signature = _parse_signature(fields["Signature"], _header_malformed)
    payload_hash = _header_payload_hash(header_map)
    if abs((now - timestamp).total_seconds()) > max_skew:
        raise _too_skewed()
    return SignedRequest(
        credential=credential,
        signed_headers=signed_headers,
        signature=signature,
        amz_date=amz_date,
        timestamp=timestamp,
        payload_hash=payload_hash,
        presigned=False,
    )


def _authorization_fields(text: str) -> dict[str, str]:
    """`Credential=..., SignedHeaders=..., Signature=...`; clients differ on the spaces."""
    fields: dict[str, str] = {}
    for part in text.split(","):
        name, sep, value = part.strip().partition("=")
        if not sep or name not in ("Credential", "SignedHeaders", "Signature") or name in fields:
            raise _header_malformed(
                "expecting Credential=..., SignedHeaders=..., Signature=... once each."
            )
        fields[name] = value.strip()
    if len(fields) != 3:
        raise _header_malformed("expecting Credential=..., SignedHeaders=..., Signature=...")
    return fields


def _header_date(header_map: dict[str, list[bytes]]) -> tuple[str, datetime]:
    """The request time from x-amz-date, else from Date (RFC 1123), as (ISO 8601 basic, UTC)."""
    invalid = SigV4Error(
        "AccessDenied", "AWS authentication requires a valid Date or x-amz-date header", 403
    )
    amz_dates = header_map.get("x-amz-date")
    if amz_dates is not None:
        if len(amz_dates) != 1:
            raise invalid
        timestamp = _parse_amz_date(amz_dates[0].decode("latin-1").strip())
        if timestamp is None:
            raise invalid
        return _format_amz_date(timestamp), timestamp
    dates = header_map.get("date")
    if dates is None or len(dates) != 1:
        raise invalid
    try:
        parsed = parsedate_to_datetime(dates[0].decode("latin-1").strip())
        # a date at the edge of the calendar may leave it once moved to UTC
        timestamp = parsed.replace(tzinfo=UTC) if parsed.tzinfo is None else parsed.astimezone(UTC)
    except (TypeError, ValueError, OverflowError):
        raise invalid from None
    return _format_amz_date(timestamp), timestamp


def _parse_amz_date(text: str) -> datetime | None:
    if not _AMZ_DATE.fullmatch(text):
        return None
    try:
        return datetime.strptime(text, "%Y%m%dT%H%M%SZ").replace(tzinfo=UTC)
    except ValueError:
        return None


def _format_amz_date(timestamp: datetime) -> str:
    return timestamp.strftime("%Y%m%dT%H%M%SZ")


def _header_payload_hash(header_map: dict[str, list[bytes]]) -> str:
    values = header_map.get("x-amz-content-sha256")
    if values is None:
        raise SigV4Error(
            "InvalidRequest", "Missing required header for this request: x-amz-content-sha256", 400
        )
    if len(values) != 1:
        raise _invalid_payload_hash()
    return _check_payload_hash(values[0].decode("latin-1").strip())


def _check_payload_hash(value: str) -> str:
    if value in _PAYLOAD_CONSTANTS:
        return value
    if _HEX64.fullmatch(value):
        return value.lower()
    raise _invalid_payload_hash()


def _invalid_payload_hash() -> SigV4Error:
    return SigV4Error(
        "InvalidArgument",
        "x-amz-content-sha256 must be UNSIGNED-PAYLOAD, STREAMING-AWS4-HMAC-SHA256-PAYLOAD, "
        "STREAMING-AWS4-HMAC-SHA256-PAYLOAD-TRAILER, STREAMING-UNSIGNED-PAYLOAD-TRAILER "
        "or a valid sha256 value.",
        400,
    )


def _too_skewed() -> SigV4Error:
    return SigV4Error(
        "RequestTimeTooSkewed",
        "The difference between the request time and the current time is too large.",
        403,
    )


def _parse_query_auth(
    params: list[tuple[bytes, bytes]], now: datetime, max_skew: float
) -> SignedRequest:
    found: dict[str, str] = {}
    for raw_name, raw_value in params:
        name = raw_name.decode("latin-1")
        if name not in _QUERY_AUTH_PARAMS and name != "X-Amz-Content-Sha256":
            continue
        if name in found:
            raise _query_malformed(f"{name} must be given once.")
        try:
            found[name] = raw_value.decode("utf-8")
        except UnicodeDecodeError:
            raise _query_malformed(f"{name} is not valid UTF-8.") from None
    if any(name not in found for name in _QUERY_AUTH_PARAMS):
        raise _query_malformed(
            "Query-string authentication version 4 requires the X-Amz-Algorithm, "
            "X-Amz-Credential, X-Amz-Signature, X-Amz-Date, X-Amz-SignedHeaders, "
            "and X-Amz-Expires parameters."
        )
    if found["X-Amz-Algorithm"] != ALGORITHM:
        raise _query_malformed('X-Amz-Algorithm only supports "AWS4-HMAC-SHA256"')
    timestamp = _parse_amz_date(found["X-Amz-Date"])
    if timestamp is None:
        raise _query_malformed(
            "X-Amz-Date must be in the ISO8601 Long Format \"yyyyMMdd'T'HHmmss'Z'\""
        )
    amz_date = found["X-Amz-Date"]
    credential = _parse_credential(
        found["X-Amz-Credential"],
        amz_date,
        lambda detail: _query_malformed(f"Error parsing the X-Amz-Credential parameter; {detail}"),
    )
    signed_headers = _parse_signed_headers(found["X-Amz-SignedHeaders"], _query_malformed)
    signature = _parse_signature(found["X-Amz-Signature"], _query_malformed)
    expires = _parse_expires(found["X-Amz-Expires"])
    if (timestamp - now).total_seconds() > max_skew:
        raise _too_skewed()
    if now > timestamp + timedelta(seconds=expires):
        raise SigV4Error("AccessDenied", "Request has expired", 403)
    # A presigned URL cannot know its payload, unless the signer put its hash in the query.
    payload_hash = _check_payload_hash(found.get("X-Amz-Content-Sha256", UNSIGNED_PAYLOAD))
    return SignedRequest(
        credential=credential,
        signed_headers=signed_headers,
        signature=signature,
        amz_date=amz_date,
        timestamp=timestamp,
        payload_hash=payload_hash,
        presigned=True,
    )


def _parse_expires(text: str) -> int:
    if not text.isascii() or not text.isdigit() or len(text) > 10:
        raise _query_malformed("X-Amz-Expires should be a number")
    expires = int(text)
    if expires < 1:
        raise _query_malformed("X-Amz-Expires must be at least 1 second")
    if expires > MAX_EXPIRES:
        raise _query_malformed(
            f"X-Amz-Expires must be less than a week (in seconds) that is {MAX_EXPIRES}"
        )
    return expires


def _parse_credential(
    text: str, amz_date: str, malformed: Callable[[str], SigV4Error]
) -> Credential:
    parts = text.split("/")
    if len(parts) != 5 or not all(parts) or not _SCOPE_DATE.fullmatch(parts[1]):
        raise malformed(
            "the Credential is mal-formed; expecting "
            '"<YOUR-AKID>/YYYYMMDD/REGION/SERVICE/aws4_request".'
        )
    access_key, date, region, service, terminator = parts
    if service != "s3":
        raise malformed("Credential should be scoped to correct service: 's3'.")
    if terminator != "aws4_request":
        raise malformed("Credential should be scoped with a valid terminator: 'aws4_request'.")
    if date != amz_date[:8]:
        raise malformed("Invalid credential date. Date is not the same as X-Amz-Date.")
    return Credential(access_key=access_key, date=date, region=region, service=service)


def _parse_signed_headers(text: str, malformed: Callable[[str], SigV4Error]) -> tuple[str, ...]:
    names = tuple(text.split(";"))
    if not all(_HEADER_NAME.fullmatch(name) for name in names) or len(set(names)) != len(names):
        raise malformed("SignedHeaders must be distinct lowercase header names separated by ';'.")
    if "host" not in names:
        raise malformed("the host header must be signed.")
    return names


def _parse_signature(text: str, malformed: Callable[[str], SigV4Error]) -> str:
    if not _HEX64.fullmatch(text):
        raise malformed("the Signature must be 64 hexadecimal characters.")
    return text.lower()


def _header_map(headers: Sequence[tuple[bytes, bytes]]) -> dict[str, list[bytes]]:
    """Header values by lowercase name, repeated headers in the order received."""
    result: dict[str, list[bytes]] = {}
    for name, value in headers:
        result.setdefault(name.decode("latin-1").lower(), []).append(value)
    return result


def _parse_query(query_string: bytes) -> list[tuple[bytes, bytes]]:
    """Percent-decoded (name, value) pairs; '+' stays a plus, as AWS clients send space as %20."""
    pairs: list[tuple[bytes, bytes]] = []
    for piece in query_string.split(b"&"):
        if not piece:
            continue
        name, _, value = piece.partition(b"=")
        pairs.append((unquote_to_bytes(name), unquote_to_bytes(value)))
    return pairs


# Verification


def signing_key(secret: str, date: str, region: str, service: str) -> bytes:
    """The key derived for one day, region and service; cached, as every request needs one."""
    return _derive_signing_key(secret, date, region, service)


@lru_cache(maxsize=1024)
def _derive_signing_key(secret: str, date: str, region: str, service: str) -> bytes:
    key = ("AWS4" + secret).encode("utf-8")
    for part in (date, region, service, "aws4_request"):
        key = hmac.new(key, part.encode("utf-8"), hashlib.sha256).digest()
    return key


def verify(
    request: SignedRequest,
    secret: str,
    method: str,
    raw_path: bytes,
    query_string: bytes,
    headers: Sequence[tuple[bytes, bytes]],
) -> bytes:
    """Check the signature; return the signing key (needed to verify streaming chunks)."""
    canonical = canonical_request(request, method, raw_path, query_string, headers)
    string_to_sign = "\n".join(
        (
            ALGORITHM,
            request.amz_date,
            request.credential.scope,
            hashlib.sha256(canonical).hexdigest(),
        )
    )
    credential = request.credential
    key = signing_key(secret, credential.date, credential.region, credential.service)
    _check_signature(key, string_to_sign, request.signature)
    return key


def _check_signature(key: bytes, string_to_sign: str, claimed: str) -> None:
    expected = hmac.new(key, string_to_sign.encode("utf-8"), hashlib.sha256).hexdigest()
    if not hmac.compare_digest(expected, claimed):
        raise SigV4Error("SignatureDoesNotMatch", SIGNATURE_MISMATCH, 403)


def canonical_request(
    request: SignedRequest,
    method: str,
    raw_path: bytes,
    query_string: bytes,
    headers: Sequence[tuple[bytes, bytes]],
) -> bytes:
    """The canonical request S3 signs. Header values stay the bytes received (S3 wants ASCII)."""
    header_map = _header_map(headers)
    header_lines = b"".join(
        name.encode("ascii")
        + b":"
        + b",".join(b" ".join(value.split()) for value in header_map.get(name, ()))
        + b"\n"
        for name in request.signed_headers
    )
    return b"\n".join(
        (
            method.encode("latin-1"),
            _canonical_uri(raw_path),
            _canonical_query(query_string, request.presigned),
            header_lines,
            ";".join(request.signed_headers).encode("ascii"),
            request.payload_hash.encode("ascii"),
        )
    )


def _canonical_uri(raw_path: bytes) -> bytes:
    """S3 does not normalise paths: `a//b` and `..` stay; each byte is encoded exactly once."""
    # Some ASGI servers leave the query in raw_path; a '?' can only start the query.
    path = unquote_to_bytes(raw_path.partition(b"?")[0]) or b"/"
    return quote_from_bytes(path, safe="/").encode("ascii")


def _canonical_query(query_string: bytes, presigned: bool) -> bytes:
    pairs = sorted(
        (quote_from_bytes(name, safe=""), quote_from_bytes(value, safe=""))
        for name, value in _parse_query(query_string)
        if not (presigned and name == b"X-Amz-Signature")
    )
    return "&".join(f"{name}={value}" for name, value in pairs).encode("ascii")


# aws-chunked bodies

_MAX_LINE = 4096  # a chunk header or trailer line; real ones are under 100 bytes
_MAX_TRAILER_BYTES = 16 * 1024
_CHUNK_SIGNATURE = b"chunk-signature="
_TRAILER_SIGNATURE = "x-amz-trailer-signature"
_CHUNK_SIZE = re.compile(rb"[0-9a-fA-F]{1,16}")


class _Part(enum.Enum):
    """What the decoder expects next."""

    CHUNK_HEADER = enum.auto()
    CHUNK_DATA = enum.auto()
    CHUNK_END = enum.auto()
    TRAILER = enum.auto()
    DONE = enum.auto()


def _framing_error(detail: str) -> SigV4Error:
    return SigV4Error("InvalidRequest", f"Malformed aws-chunked body: {detail}", 400)


class ChunkedPayload:
    """Decodes an aws-chunked request body incrementally; verifies chunk signatures when signed.

    Signed chunks are released only once their signature is checked, so at most one chunk is
    held; unsigned chunks are released as they arrive."""

    def __init__(
        self,
        mode: str,
        *,
        signing_key: bytes | None = None,
        seed_signature: str = "",
        amz_date: str = "",
        scope: str = "",
        trailer_names: Sequence[str] = (),
        max_chunk: int = 16 * 1024 * 1024,
    ) -> None:
        if mode not in (STREAMING_SIGNED, STREAMING_SIGNED_TRAILER, STREAMING_UNSIGNED_TRAILER):
            raise ValueError(f"not an aws-chunked mode: {mode!r}")
        self._mode = mode
        self._signed = mode != STREAMING_UNSIGNED_TRAILER
        if self._signed and signing_key is None:
            raise ValueError("a signed aws-chunked body needs the request's signing key")
        self._key = signing_key or b""
        self._amz_date = amz_date
        self._scope = scope
        self._previous_signature = seed_signature
        self._expected_trailers = frozenset(
            name.strip().lower() for name in trailer_names if name.strip()
        )
        if mode == STREAMING_SIGNED and self._expected_trailers:
            raise SigV4Error(
                "InvalidRequest",
                f"x-amz-trailer requires x-amz-content-sha256: {STREAMING_SIGNED_TRAILER}",
                400,
            )
        self._max_chunk = max_chunk
        self._buffer = bytearray()
        self._part = _Part.CHUNK_HEADER
        self._remaining = 0
        self._chunk = bytearray()
        self._chunk_hash = hashlib.sha256()
        self._chunk_signature = ""
        self._trailers: dict[str, str] = {}
        self._trailer_signature: str | None = None
        self._trailer_bytes = 0
        self._error: SigV4Error | None = None
        self.decoded_length = 0

    def feed(self, data: bytes) -> list[bytes]:
        """Take the next bytes as received; return the payload bytes decoded so far."""
        if self._error is not None:
            raise self._error
        self._buffer += data
        decoded: list[bytes] = []
        try:
            while self._step(decoded):
                pass
        except SigV4Error as error:
            self._error = error
            raise
        self.decoded_length += sum(len(piece) for piece in decoded)
        return decoded

    def finish(self) -> dict[str, str]:
        """Call at end of body; returns the trailers (lowercase names -> values)."""
        if self._error is not None:
            raise self._error
        if self._part is _Part.TRAILER and not self._buffer and self._trailers_complete():
            # Some SDKs leave out the empty line that closes the trailers.
            self._end_trailers()
        if self._part is not _Part.DONE:
            self._error = SigV4Error(
                "IncompleteBody", "The request body ended before the final aws-chunked chunk.", 400
            )
            raise self._error
        return dict(self._trailers)

    def _step(self, decoded: list[bytes]) -> bool:
        """Consume one part of the framing if enough bytes are buffered; False when waiting."""
        if self._part is _Part.CHUNK_HEADER:
            line = self._take_line()
            if line is None:
                return False
            self._start_chunk(line)
        elif self._part is _Part.CHUNK_DATA:
            if not self._buffer:
                return False
            size = min(self._remaining, len(self._buffer))
            piece = bytes(self._buffer[:size])
            del self._buffer[:size]
            self._remaining -= size
            if self._signed:
                self._chunk += piece
                self._chunk_hash.update(piece)
            else:
                decoded.append(piece)
            if self._remaining == 0:
                self._part = _Part.CHUNK_END
        elif self._part is _Part.CHUNK_END:
            if len(self._buffer) < 2:
                return False
            if self._buffer[:2] != b"\r\n":
                raise _framing_error("chunk data is not followed by CRLF.")
            del self._buffer[:2]
            if self._signed:
                self._check_chunk_signature()
                decoded.append(bytes(self._chunk))
                self._chunk.clear()
            self._part = _Part.CHUNK_HEADER
        elif self._part is _Part.TRAILER:
            line = self._take_line()
            if line is None:
                return False
            self._take_trailer(line)
        elif self._buffer:
            raise _framing_error("data after the final chunk.")
        else:
            return False
        return True

    def _take_line(self) -> bytes | None:
        end = self._buffer.find(b"\r\n", 0, _MAX_LINE + 2)
        if end < 0:
            if len(self._buffer) > _MAX_LINE:
                raise _framing_error("line too long.")
            return None
        line = bytes(self._buffer[:end])
        del self._buffer[: end + 2]
        return line

    def _start_chunk(self, line: bytes) -> None:
        size_text = line
        if self._signed:
            size_text, _, extension = line.partition(b";")
            if not extension.startswith(_CHUNK_SIGNATURE):
                raise _framing_error("chunk header lacks chunk-signature.")
            signature = extension[len(_CHUNK_SIGNATURE) :].decode("latin-1")
            if not _HEX64.fullmatch(signature):
                raise SigV4Error("SignatureDoesNotMatch", SIGNATURE_MISMATCH, 403)
            self._chunk_signature = signature.lower()
            self._chunk_hash = hashlib.sha256()
        if not _CHUNK_SIZE.fullmatch(size_text):
            raise _framing_error("invalid chunk size.")
        size = int(size_text, 16)
        if size > self._max_chunk:
            raise _framing_error(f"chunk larger than {self._max_chunk} bytes.")
        if size:
            self._remaining = size
            self._part = _Part.CHUNK_DATA
            return
        if self._signed:
            self._check_chunk_signature()
        self._part = _Part.TRAILER

    def _check_chunk_signature(self) -> None:
        string_to_sign = "\n".join(
            (
                "AWS4-HMAC-SHA256-PAYLOAD",
                self._amz_date,
                self._scope,
                self._previous_signature,
                EMPTY_SHA256,
                self._chunk_hash.hexdigest(),
            )
        )
        _check_signature(self._key, string_to_sign, self._chunk_signature)
        self._previous_signature = self._chunk_signature

    def _take_trailer(self, line: bytes) -> None:
        if not line:
            self._end_trailers()
            return
        self._trailer_bytes += len(line)
        if self._trailer_bytes > _MAX_TRAILER_BYTES:
            raise _framing_error("trailers too long.")
        raw_name, colon, raw_value = line.partition(b":")
        name = raw_name.strip().decode("latin-1").lower()
        value = b" ".join(raw_value.split()).decode("latin-1")
        if not colon or not _HEADER_NAME.fullmatch(name):
            raise _framing_error("a trailer is not 'name:value'.")
        if self._trailer_signature is not None:
            raise _framing_error("trailer after x-amz-trailer-signature.")
        if name == _TRAILER_SIGNATURE and self._mode == STREAMING_SIGNED_TRAILER:
            self._trailer_signature = value
        elif name not in self._expected_trailers:
            raise _framing_error(f"trailer {name!r} was not declared in x-amz-trailer.")
        elif name in self._trailers:
            raise _framing_error(f"trailer {name!r} sent twice.")
        else:
            self._trailers[name] = value

    def _trailers_complete(self) -> bool:
        """Every declared trailer, and its signature when signed, has arrived."""
        if not self._trailers or self._expected_trailers - self._trailers.keys():
            return False
        return self._mode != STREAMING_SIGNED_TRAILER or self._trailer_signature is not None

    def _end_trailers(self) -> None:
        missing = self._expected_trailers - self._trailers.keys()
        if missing:
            raise _framing_error(f"trailer {sorted(missing)[0]!r} declared but not sent.")
        if self._mode == STREAMING_SIGNED_TRAILER and (
            self._trailers or self._trailer_signature is not None
        ):
            self._check_trailer_signature()
        self._part = _Part.DONE

    def _check_trailer_signature(self) -> None:
        claimed = self._trailer_signature
        if claimed is None or not _HEX64.fullmatch(claimed):
            raise SigV4Error("SignatureDoesNotMatch", SIGNATURE_MISMATCH, 403)
        canonical = "".join(f"{name}:{value}\n" for name, value in sorted(self._trailers.items()))
        string_to_sign = "\n".join(
            (
                "AWS4-HMAC-SHA256-TRAILER",
                self._amz_date,
                self._scope,
                self._previous_signature,
                hashlib.sha256(canonical.encode("latin-1")).hexdigest(),
            )
        )
        _check_signature(self._key, string_to_sign, claimed.lower())
