"""S3's wire on our side: a decoded request (`Call`), a reply, and request bodies.

Shared by every S3 handler module. A body is read as payload bytes: aws-chunked
decoded, hashed against the signed SHA-256, bounded and timed out; nothing here
knows what an operation does with it.
"""

from __future__ import annotations

import asyncio
import base64
import datetime as dt
import email.utils
import hashlib
import hmac
import urllib.parse
from collections.abc import AsyncGenerator, AsyncIterator
from dataclasses import dataclass, field
from typing import Any

from starlette.types import Message, Receive, Scope

from souverain.config import ObjectStoreSettings
from souverain.objectstore import sigv4
from souverain.objectstore import xml as x
from souverain.objectstore.errors import S3Error
from souverain.objectstore.policy import ANONYMOUS, Principal
from souverain.objectstore.records import NULL_VERSION, BucketInfo


def http_date(value: dt.datetime) -> str:
    return email.utils.format_datetime(value.replace(tzinfo=dt.UTC), usegmt=True)


def quote_etag(etag: str) -> str:
    return f'"{etag}"'


@dataclass
class Call:
    """One S3 request, decoded: who, which bucket and key, which sub-resource."""

    scope: Scope
    receive: Receive
    method: str
    bucket: str
    key: str
    query: dict[str, str]
    headers: dict[str, str]
    request_id: str
    principal: Principal = ANONYMOUS
    signed: sigv4.SignedRequest | None = None
    signing_key: bytes = b""

    @property
    def resource(self) -> str:
        return f"/{self.bucket}/{self.key}" if self.key else f"/{self.bucket}"

    def header(self, name: str, default: str = "") -> str:
        return self.headers.get(name, default)


@dataclass
class Reply:
    status: int = 200
    body: bytes = b""
    headers: dict[str, str] = field(default_factory=dict)
    stream: AsyncGenerator[bytes, None] | None = None
    length: int | None = None


def xml_reply(body: bytes, status: int = 200) -> Reply:
    return Reply(status, body, {"content-type": "application/xml"})


class Body:
    """The request body as payload bytes: aws-chunked decoded, hashed and bounded."""

    def __init__(self, call: Call, limit: int, idle_timeout: float = 60.0) -> None:
        self.call = call
        self.limit = limit
        self.idle_timeout = idle_timeout
        self.trailers: dict[str, str] = {}
        mode = call.signed.payload_hash if call.signed else sigv4.UNSIGNED_PAYLOAD
        content_sha = call.header("x-amz-content-sha256")
        if call.signed is None and content_sha.startswith("STREAMING-UNSIGNED"):
            mode = content_sha  # anonymous (public) uploads can still stream with trailers
        self.mode = mode
        self.decoder: sigv4.ChunkedPayload | None = None
        self.expected_sha256: str | None = None
        declared = call.header("content-length")
        self.declared: int | None = None
        if mode.startswith("STREAMING-"):
            declared = call.header("x-amz-decoded-content-length", declared)
            trailer_names = [
                t.strip().lower() for t in call.header("x-amz-trailer").split(",") if t.strip()
            ]
            signed = call.signed
            self.decoder = sigv4.ChunkedPayload(
                mode,
                signing_key=call.signing_key or None,
                seed_signature=signed.signature if signed else "",
                amz_date=signed.amz_date if signed else "",
                scope=(
                    f"{signed.credential.date}/{signed.credential.region}/s3/aws4_request"
                    if signed
                    else ""
                ),
                trailer_names=trailer_names,
            )
        elif mode != sigv4.UNSIGNED_PAYLOAD:
            self.expected_sha256 = mode.lower()
        if declared:
            try:
                self.declared = int(declared)
            except ValueError:
                raise S3Error("InvalidArgument", "Content-Length is not a number.") from None
            if self.declared < 0:
                raise S3Error("InvalidArgument", "Content-Length is negative.")
        elif "chunked" not in call.header("transfer-encoding"):
            self.declared = 0
        if self.declared is not None and self.declared > limit:
            raise S3Error(
                "EntityTooLarge",
                f"Your proposed upload exceeds the maximum allowed size of {limit} bytes.",
                call.resource,
            )

    async def chunks(self) -> AsyncIterator[bytes]:
        seen = 0
        sha = hashlib.sha256() if self.expected_sha256 is not None else None
        while True:
            try:
                message = await asyncio.wait_for(self.call.receive(), self.idle_timeout)
            except TimeoutError:
                raise S3Error(
                    "RequestTimeout",
                    "Your socket connection to the server was not read from or written to "
                    "within the timeout period.",
                    self.call.resource,
                ) from None
            if message["type"] == "http.disconnect":
                raise S3Error("IncompleteBody", "The client went away before the body ended.")
            data: bytes = message.get("body", b"")
            pieces = self.decoder.feed(data) if self.decoder is not None and data else [data]
            for piece in pieces:
                if not piece:
                    continue
                seen += len(piece)
                if seen > self.limit or (self.declared is not None and seen > self.declared):
                    raise S3Error(
                        "EntityTooLarge" if seen > self.limit else "IncompleteBody",
                        "The body is longer than declared or allowed.",
                        self.call.resource,
                    )
                if sha is not None:
                    sha.update(piece)
                yield piece
            if not message.get("more_body", False):
                break
        if self.decoder is not None:
            self.trailers = self.decoder.finish()
        if self.declared is not None and seen != self.declared:
            raise S3Error(
                "IncompleteBody",
                "You did not provide the number of bytes specified by the Content-Length "
                "HTTP header.",
                self.call.resource,
            )
        if sha is not None and not hmac.compare_digest(sha.hexdigest(), self.expected_sha256 or ""):
            raise S3Error(
                "XAmzContentSHA256Mismatch",
                "The provided 'x-amz-content-sha256' header does not match what was computed.",
                self.call.resource,
            )

    async def read(self) -> bytes:
        parts = [piece async for piece in self.chunks()]
        return b"".join(parts)


class BodyProgress:
    """Whether the request body has been read to its end."""

    def __init__(self, scope: Scope, receive: Receive) -> None:
        self._receive = receive
        self.unread = any(
            name == b"transfer-encoding" or (name == b"content-length" and value.strip() != b"0")
            for name, value in scope["headers"]
        )

    async def receive(self) -> Message:
        message = await self._receive()
        if not message.get("more_body", False):
            self.unread = False
        return message


# Request headers and query parameters bucket policy conditions may test, by key.
_CONTEXT_HEADERS = {
    "aws:useragent": "user-agent",
    "aws:referer": "referer",
    "s3:x-amz-acl": "x-amz-acl",
    "s3:x-amz-content-sha256": "x-amz-content-sha256",
    "s3:x-amz-copy-source": "x-amz-copy-source",
    "s3:x-amz-metadata-directive": "x-amz-metadata-directive",
    "s3:x-amz-storage-class": "x-amz-storage-class",
    "s3:x-amz-server-side-encryption": "x-amz-server-side-encryption",
    "s3:x-amz-server-side-encryption-aws-kms-key-id": "x-amz-server-side-encryption-aws-kms-key-id",
}
_CONTEXT_QUERY = {
    "s3:prefix": "prefix",
    "s3:delimiter": "delimiter",
    "s3:max-keys": "max-keys",
    "s3:versionid": "versionId",
}


def request_context(call: Call, now: dt.datetime) -> dict[str, str]:
    """What bucket policy conditions can test about a request (keys in lower case).

    The source address is the peer of the connection: a proxy in front must be the one
    the operator's policies name, as headers such as X-Forwarded-For can be forged."""
    client = call.scope.get("client")
    who = call.principal
    context = {
        "aws:sourceip": client[0] if client else "",
        "aws:securetransport": "true" if call.scope.get("scheme") == "https" else "false",
        "aws:currenttime": now.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "aws:epochtime": str(int(now.timestamp())),
        "aws:principaltype": "Anonymous" if who.anonymous else "User",
        "aws:userid": who.user_id or "",
        "aws:principalaccount": who.project_id or "",
    }
    for key, header in _CONTEXT_HEADERS.items():
        if header in call.headers:
            context[key] = call.headers[header]
    for key, param in _CONTEXT_QUERY.items():
        if param in call.query:
            context[key] = call.query[param]
    return {k: v for k, v in context.items() if v}


def raw_path(scope: Scope) -> bytes:
    """The path exactly as sent (keys may hold `%2F`, `+`, `%`): never the decoded one."""
    raw: bytes | None = scope.get("raw_path")
    if raw is None:
        return urllib.parse.quote(scope["path"], safe="/").encode()
    return raw.split(b"?", 1)[0]


async def drain(call: Call) -> None:
    """Read and drop a body the operation does not use (a copy has none)."""
    async for _ in Body(call, 1024 * 1024).chunks():
        pass


async def xml_body(call: Call, settings: ObjectStoreSettings, required: bool = True) -> bytes:
    """A configuration or request document: small, read whole, over the limit refused."""
    try:
        body = await Body(call, settings.max_xml_bytes, settings.body_idle_timeout).read()
    except S3Error as exc:
        if exc.code != "EntityTooLarge":
            raise
        raise S3Error(
            "MaxMessageLengthExceeded",
            f"Your request was too big: XML bodies are limited to {settings.max_xml_bytes} bytes.",
            call.resource,
        ) from None
    if required and not body:
        raise S3Error("MissingRequestBodyError", "Request body is empty.")
    return body


def has_integrity_header(call: Call) -> bool:
    """Content-MD5, an `x-amz-checksum-*` value, or a checksum sent as a trailer."""
    return (
        "content-md5" in call.headers
        or any(h.startswith("x-amz-checksum-") for h in call.headers)
        or "x-amz-checksum-" in call.header("x-amz-trailer").lower()
    )


def check_body_md5(call: Call, body: bytes) -> None:
    """A configuration document must come with a digest; a Content-MD5 must match it."""
    if not has_integrity_header(call):
        raise S3Error(
            "InvalidRequest",
            "Missing required header for this request: Content-MD5 (or an x-amz-checksum-*).",
            call.resource,
        )
    md5 = call.header("content-md5")
    if md5:
        actual = base64.b64encode(hashlib.md5(body, usedforsecurity=False).digest()).decode()
        if not hmac.compare_digest(actual, md5.strip()):
            raise S3Error("BadDigest", "The Content-MD5 you specified did not match.")


def parse_xml(body: bytes, root: str) -> Any:
    """The document's root element; MalformedXML unless it is `root`."""
    try:
        return x.parse(body, root)
    except x.MalformedXML as exc:
        raise S3Error("MalformedXML", str(exc)) from None


def version_header(bucket: BucketInfo, version_id: str) -> dict[str, str]:
    """`x-amz-version-id`, sent once a bucket has versioning or the version is not null."""
    if bucket.versioning or version_id != NULL_VERSION:
        return {"x-amz-version-id": version_id}
    return {}
