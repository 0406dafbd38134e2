"""The S3 REST API: requests in S3's wire shapes to service calls, results back to XML.

Plain ASGI, because bodies of any size stream through here: uploads go from the
socket to a blob file chunk by chunk, downloads from the file to the socket.
Authentication (SigV4) happens before any byte of the body is read.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
import datetime as dt
import email.utils
import hashlib
import hmac
import logging
import re
import urllib.parse
from collections.abc import AsyncGenerator, AsyncIterator
from dataclasses import dataclass, field
from typing import Any

from starlette.types import Message, Receive, Scope, Send

from souverain.common.clock import Clock
from souverain.common.ids import new_request_id
from souverain.config import ObjectStoreSettings
from souverain.objectstore import sigv4
from souverain.objectstore import xml as x
from souverain.objectstore.policy import ANONYMOUS, CANNED_ACLS, Principal
from souverain.objectstore.service import (
    NULL_VERSION,
    BucketInfo,
    NewObject,
    ObjectInfo,
    ObjectStoreService,
    S3Error,
    check_key,
)
from souverain.objectstore.store import CHECKSUM_ALGORITHMS, BlobWriter, Digests, StorageFull

log = logging.getLogger("souverain.objectstore")

# Header values kept with an object and returned on GET/HEAD.
STORED_HEADERS = (
    "content-type",
    "cache-control",
    "content-disposition",
    "content-encoding",
    "content-language",
    "expires",
)
RESPONSE_OVERRIDES = {
    "response-content-type": "content-type",
    "response-content-language": "content-language",
    "response-expires": "expires",
    "response-cache-control": "cache-control",
    "response-content-disposition": "content-disposition",
    "response-content-encoding": "content-encoding",
}
# Sub-resources we do not offer: NotImplemented, never a silent success.
UNSUPPORTED = frozenset(
    {
        "accelerate",
        "analytics",
        "encryption",
        "intelligent-tiering",
        "inventory",
        "legal-hold",
        "lifecycle",
        "logging",
        "metrics",
        "notification",
        "object-lock",
        "ownershipControls",
        "publicAccessBlock",
        "replication",
        "requestPayment",
        "restore",
        "retention",
        "select",
        "torrent",
        "website",
        "attributes",
        "policyStatus",
    }
)
# Request headers asking for a feature we do not have. Accepting them silently would
# let a customer believe data is encrypted, locked or granted when it is not.
REFUSED_HEADERS = {
    "x-amz-server-side-encryption": (
        "NotImplemented",
        "Server-side encryption headers are not supported by this object store yet.",
    ),
    "x-amz-server-side-encryption-customer-algorithm": (
        "NotImplemented",
        "Encryption with customer-provided keys is not supported by this object store.",
    ),
    "x-amz-copy-source-server-side-encryption-customer-algorithm": (
        "NotImplemented",
        "Encryption with customer-provided keys is not supported by this object store.",
    ),
    "x-amz-object-lock-mode": (
        "InvalidRequest",
        "Bucket is missing Object Lock Configuration: Object Lock is not available here.",
    ),
    "x-amz-object-lock-retain-until-date": (
        "InvalidRequest",
        "Bucket is missing Object Lock Configuration: Object Lock is not available here.",
    ),
    "x-amz-object-lock-legal-hold": (
        "InvalidRequest",
        "Bucket is missing Object Lock Configuration: Object Lock is not available here.",
    ),
    "x-amz-bucket-object-lock-enabled": (
        "NotImplemented",
        "Object Lock is not supported by this object store.",
    ),
    "x-amz-grant-read": ("NotImplemented", "Only the canned ACLs private and public-read work."),
    "x-amz-grant-write": ("NotImplemented", "Only the canned ACLs private and public-read work."),
    "x-amz-grant-read-acp": (
        "NotImplemented",
        "Only the canned ACLs private and public-read work.",
    ),
    "x-amz-grant-write-acp": (
        "NotImplemented",
        "Only the canned ACLs private and public-read work.",
    ),
    "x-amz-grant-full-control": (
        "NotImplemented",
        "Only the canned ACLs private and public-read work.",
    ),
    "x-amz-website-redirect-location": (
        "NotImplemented",
        "Static website hosting is not supported by this object store.",
    ),
}
STORAGE_CLASSES = ("STANDARD",)
# Bucket sub-resources: (method, query parameter) -> the S3App method that answers.
BUCKET_SUBRESOURCES = {
    ("GET", "location"): "get_location",
    ("GET", "versioning"): "get_versioning",
    ("PUT", "versioning"): "put_versioning",
    ("GET", "acl"): "get_bucket_acl",
    ("PUT", "acl"): "put_bucket_acl",
    ("GET", "policy"): "get_policy",
    ("PUT", "policy"): "put_policy",
    ("DELETE", "policy"): "delete_policy",
    ("GET", "cors"): "get_cors",
    ("PUT", "cors"): "put_cors",
    ("DELETE", "cors"): "delete_cors",
    ("GET", "tagging"): "get_bucket_tags",
    ("PUT", "tagging"): "put_bucket_tags",
    ("DELETE", "tagging"): "delete_bucket_tags",
    ("GET", "versions"): "list_versions",
    ("GET", "uploads"): "list_uploads",
    ("POST", "delete"): "delete_objects",
}
MAX_PART_NUMBER = 10_000
MAX_DELETE_KEYS = 1000
CHUNK = 1024 * 1024


def http_date(value: dt.datetime) -> str:
    return email.utils.format_datetime(value.replace(tzinfo=dt.UTC), usegmt=True)


def _parse_http_date(value: str) -> dt.datetime | None:
    try:
        parsed = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=dt.UTC)
    return parsed.astimezone(dt.UTC).replace(tzinfo=None)


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


class _BodyProgress:
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


class S3App:
    """The ASGI application on the S3 port."""

    def __init__(
        self,
        service: ObjectStoreService,
        settings: ObjectStoreSettings,
        clock: Clock | None = None,
    ) -> None:
        self.service = service
        self.settings = settings
        self.clock = clock or Clock()
        self.region = service.region

    # ------------------------------------------------------------------ entry

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return
        state = scope.setdefault("state", {})
        request_id = state.get("request_id") or new_request_id()
        body = _BodyProgress(scope, receive)
        call: Call | None = None
        try:
            call = self._decode(scope, body.receive, request_id)
            reply = await self._handle(call)
        except S3Error as exc:
            reply = self._error_reply(exc, request_id, scope["method"])
        except sigv4.SigV4Error as exc:
            reply = self._error_reply(
                S3Error(exc.code, exc.message, status=exc.status), request_id, scope["method"]
            )
        except StorageFull:
            reply = self._error_reply(
                S3Error(
                    "InsufficientStorage",
                    "The object store is out of disk space; nothing was stored. Try again "
                    "later or contact the operator.",
                ),
                request_id,
                scope["method"],
            )
        except Exception:
            log.exception("S3 request %s failed", request_id)
            reply = self._error_reply(
                S3Error("InternalError", "We encountered an internal error. Please try again."),
                request_id,
                scope["method"],
            )
        if call is not None:
            reply.headers.update(self._cors_headers(call))
            state["initiator"] = {
                "user_id": call.principal.user_id,
                "project_id": call.principal.project_id,
            }
            state["audit"] = {
                "action": f"s3:{scope['method']}",
                "target": {"bucket": call.bucket or None, "key": call.key or None},
            }
        if body.unread:
            # Answered before the body ended (an early error): a client that sent
            # `Expect: 100-continue` never sends it, so the connection cannot carry on.
            reply.headers["connection"] = "close"
        await self._send(send, reply, request_id, scope["method"] == "HEAD")

    def _error_reply(self, exc: S3Error, request_id: str, method: str) -> Reply:
        if exc.status == 304:
            return Reply(304, b"", dict(exc.headers))
        body = x.error_document(exc.code, exc.message, exc.resource, request_id)
        reply = Reply(exc.status, body, {"content-type": "application/xml", **exc.headers})
        return reply

    async def _send(self, send: Send, reply: Reply, request_id: str, head: bool) -> None:
        headers = [(b"x-amz-request-id", request_id.encode())]
        for name, value in reply.headers.items():
            headers.append((name.encode("latin-1"), value.encode("latin-1", "replace")))
        length = reply.length if reply.length is not None else len(reply.body)
        if reply.status not in (204, 304):
            headers.append((b"content-length", str(length).encode()))
        await send({"type": "http.response.start", "status": reply.status, "headers": headers})
        if head or reply.status in (204, 304):
            if reply.stream is not None:
                await reply.stream.aclose()
            await send({"type": "http.response.body", "body": b""})
            return
        if reply.stream is None:
            await send({"type": "http.response.body", "body": reply.body})
            return
        async for chunk in reply.stream:
            await send({"type": "http.response.body", "body": chunk, "more_body": True})
        await send({"type": "http.response.body", "body": b""})

    def _decode(self, scope: Scope, receive: Receive, request_id: str) -> Call:
        headers: dict[str, str] = {}
        for raw_name, raw_value in scope["headers"]:
            name = raw_name.decode("latin-1").lower()
            value = raw_value.decode("latin-1")
            headers[name] = f"{headers[name]},{value}" if name in headers else value
        try:
            path = urllib.parse.unquote(_raw_path(scope).decode("latin-1"), errors="strict")
        except UnicodeDecodeError:
            raise S3Error("InvalidURI", "Couldn't parse the specified URI.") from None
        query = dict(
            urllib.parse.parse_qsl(
                scope.get("query_string", b"").decode("latin-1"), keep_blank_values=True
            )
        )
        bucket, key = self._bucket_and_key(headers.get("host", ""), path)
        call = Call(scope, receive, scope["method"], bucket, key, query, headers, request_id)
        if bucket and not key and path.endswith("//"):
            call.key = ""
        return call

    def _bucket_and_key(self, host: str, path: str) -> tuple[str, str]:
        domain = self.settings.domain
        hostname = host.rsplit(":", 1)[0].lower() if not host.startswith("[") else host
        if domain and hostname.endswith("." + domain):
            return hostname[: -len(domain) - 1], path[1:]
        trimmed = path[1:]
        if "/" in trimmed:
            bucket, key = trimmed.split("/", 1)
            return bucket, key
        return trimmed, ""

    def _authenticate(self, call: Call) -> None:
        scope = call.scope
        raw_path = _raw_path(scope)
        signed = sigv4.parse_request(
            call.method,
            raw_path,
            scope.get("query_string", b""),
            scope["headers"],
            self.clock.now(),
        )
        if signed is None:
            return
        if signed.credential.region != self.region:
            raise S3Error(
                "AuthorizationHeaderMalformed",
                f"The authorization header is malformed; the region '{signed.credential.region}' "
                f"is wrong; expecting '{self.region}'. Set your client's region to {self.region}.",
            )
        found = self.service.authenticate(signed.credential.access_key)
        if found is None:
            raise S3Error(
                "InvalidAccessKeyId",
                "The AWS Access Key Id you provided does not exist in our records.",
            )
        secret, principal = found
        call.signing_key = sigv4.verify(
            signed, secret, call.method, raw_path, scope.get("query_string", b""), scope["headers"]
        )
        call.signed = signed
        call.principal = principal

    # ------------------------------------------------------------------ routing

    async def _handle(self, call: Call) -> Reply:
        if call.method == "OPTIONS":
            return self._preflight(call)
        self._authenticate(call)
        if call.key:
            try:
                call.key.encode("utf-8")
            except UnicodeEncodeError:
                raise S3Error("InvalidURI", "Object keys must be valid UTF-8.") from None
        for name in call.query:
            if name in UNSUPPORTED:
                raise S3Error(
                    "NotImplemented",
                    f"The '{name}' operation is not supported by this object store.",
                    call.resource,
                )
        self._refuse_unsupported_headers(call)
        if not call.bucket:
            if call.method == "GET":
                return self.list_buckets(call)
            raise S3Error("MethodNotAllowed", "The specified method is not allowed here.")
        if call.key:
            return await self._object(call)
        return await self._bucket(call)

    def _refuse_unsupported_headers(self, call: Call) -> None:
        for name, value in call.headers.items():
            refused = REFUSED_HEADERS.get(name)
            if refused is not None and value.strip() not in ("", "false"):
                raise S3Error(refused[0], refused[1], call.resource)
        storage_class = call.header("x-amz-storage-class", "STANDARD").upper()
        if storage_class not in STORAGE_CLASSES:
            raise S3Error(
                "InvalidStorageClass",
                f"The storage class you specified is not valid: this store offers "
                f"{', '.join(STORAGE_CLASSES)} only.",
                call.resource,
            )

    def _bucket_for(self, call: Call) -> BucketInfo:
        """The bucket named, checked against `x-amz-expected-bucket-owner` when given."""
        bucket = self.service.bucket(call.bucket)
        expected = call.header("x-amz-expected-bucket-owner")
        if expected and expected != bucket.project_id:
            raise S3Error("AccessDenied", "Access Denied", call.resource)
        return bucket

    async def _bucket(self, call: Call) -> Reply:
        q, method = call.query, call.method
        if method == "PUT" and not any(
            k in q for k in ("versioning", "acl", "policy", "cors", "tagging")
        ):
            return await self.create_bucket(call)
        bucket = self._bucket_for(call)
        for (verb, sub), name in BUCKET_SUBRESOURCES.items():
            if verb == method and sub in q:
                result = getattr(self, name)(call, bucket)
                return await result if asyncio.iscoroutine(result) else result  # type: ignore[no-any-return]
        if method == "GET":
            return self.list_objects(call, bucket)
        if method == "HEAD":
            self.service.authorize(call.principal, bucket, "s3:ListBucket")
            return Reply(200, headers={"x-amz-bucket-region": self.region})
        if method == "DELETE":
            self.service.owner_only(call.principal, bucket)
            self.service.delete_bucket(bucket)
            return Reply(204)
        raise S3Error("NotImplemented", "This bucket operation is not supported.", call.resource)

    async def _object(self, call: Call) -> Reply:
        q, method = call.query, call.method
        bucket = self._bucket_for(call)
        if method == "PUT":
            if "partNumber" in q and "uploadId" in q:
                if "x-amz-copy-source" in call.headers:
                    return await self.upload_part_copy(call, bucket)
                return await self.upload_part(call, bucket)
            if "tagging" in q:
                return await self.put_object_tags(call, bucket)
            if "acl" in q:
                return await self.put_object_acl(call, bucket)
            if "x-amz-copy-source" in call.headers:
                return await self.copy_object(call, bucket)
            return await self.put_object(call, bucket)
        if method in ("GET", "HEAD"):
            if "uploadId" in q and method == "GET":
                return self.list_parts(call, bucket)
            if "tagging" in q and method == "GET":
                return self.get_object_tags(call, bucket)
            if "acl" in q and method == "GET":
                return self.get_object_acl(call, bucket)
            return self.get_object(call, bucket)
        if method == "DELETE":
            if "uploadId" in q:
                self.service.authorize(call.principal, bucket, "s3:AbortMultipartUpload", call.key)
                self.service.abort_upload(bucket, call.key, q["uploadId"])
                return Reply(204)
            if "tagging" in q:
                self.service.authorize(call.principal, bucket, "s3:PutObjectTagging", call.key)
                version = self.service.set_object_tags(bucket, call.key, q.get("versionId"), {})
                return Reply(204, headers=self._version_header(bucket, version))
            return await self.delete_object(call, bucket)
        if method == "POST":
            if "uploads" in q:
                return self.create_upload(call, bucket)
            if "uploadId" in q:
                return await self.complete_upload(call, bucket)
        raise S3Error("NotImplemented", "This object operation is not supported.", call.resource)

    # ------------------------------------------------------------------ CORS

    def _cors_rule(
        self, call: Call, origin: str, method: str, wanted_headers: list[str]
    ) -> dict[str, Any] | None:
        if not call.bucket:
            return None
        try:
            bucket = self.service.bucket(call.bucket)
        except S3Error:
            return None
        for rule in bucket.cors or []:
            if not any(_wildcard(o, origin) for o in rule.get("AllowedOrigin", [])):
                continue
            if method not in rule.get("AllowedMethod", []):
                continue
            allowed_headers = [h.lower() for h in rule.get("AllowedHeader", [])]
            if all(any(_wildcard(a, h.lower()) for a in allowed_headers) for h in wanted_headers):
                return rule
        return None

    def _preflight(self, call: Call) -> Reply:
        origin = call.header("origin")
        method = call.header("access-control-request-method")
        if not origin or not method:
            raise S3Error(
                "InvalidRequest",
                "A preflight needs the Origin and Access-Control-Request-Method headers.",
                call.resource,
            )
        wanted = [h.strip() for h in call.header("access-control-request-headers").split(",")]
        wanted = [h for h in wanted if h]
        rule = self._cors_rule(call, origin, method, wanted)
        if rule is None:
            raise S3Error(
                "AccessDenied",
                "CORSResponse: This CORS request is not allowed. This is usually because the "
                "evaluation of Origin, request method / Access-Control-Request-Method or "
                "Access-Control-Request-Headers are not whitelisted by the resource's CORS spec.",
                call.resource,
            )
        headers = _cors_allow(rule, origin)
        headers["vary"] = "Origin, Access-Control-Request-Headers, Access-Control-Request-Method"
        if wanted:
            headers["access-control-allow-headers"] = ", ".join(wanted)
        if rule.get("MaxAgeSeconds"):
            headers["access-control-max-age"] = str(rule["MaxAgeSeconds"])
        return Reply(200, headers=headers)

    def _cors_headers(self, call: Call) -> dict[str, str]:
        origin = call.header("origin")
        if not origin or call.method == "OPTIONS":
            return {}
        rule = self._cors_rule(call, origin, call.method, [])
        if rule is None:
            return {}
        return {**_cors_allow(rule, origin), "vary": "Origin"}

    # ------------------------------------------------------------------ service and buckets

    def list_buckets(self, call: Call) -> Reply:
        if call.principal.anonymous:
            raise S3Error("AccessDenied", "Access Denied")
        owner = {"ID": call.principal.project_id, "DisplayName": call.principal.project_id}
        buckets = self.service.list_buckets(call.principal)
        return xml_reply(
            x.document(
                "ListAllMyBucketsResult",
                {
                    "Owner": owner,
                    "Buckets": {
                        "Bucket": [{"Name": b.name, "CreationDate": b.created_at} for b in buckets]
                    },
                },
            )
        )

    async def create_bucket(self, call: Call) -> Reply:
        body = await self._xml_body(call, required=False)
        location: str | None = None
        if body:
            element = self._parse(body, "CreateBucketConfiguration")
            location = x.text(element, "LocationConstraint") or None
        acl = call.header("x-amz-acl", "private")
        self.service.create_bucket(call.principal, call.bucket, location, acl)
        return Reply(200, headers={"location": f"/{call.bucket}"})

    def get_location(self, call: Call, bucket: BucketInfo) -> Reply:
        self.service.authorize(call.principal, bucket, "s3:GetBucketLocation")
        return xml_reply(x.raw_document("LocationConstraint", self.region))

    def get_versioning(self, call: Call, bucket: BucketInfo) -> Reply:
        self.service.owner_only(call.principal, bucket, write=False)
        return xml_reply(
            x.document("VersioningConfiguration", {"Status": bucket.versioning or None})
        )

    async def put_versioning(self, call: Call, bucket: BucketInfo) -> Reply:
        self.service.owner_only(call.principal, bucket)
        element = self._parse(await self._xml_body(call), "VersioningConfiguration")
        if x.text(element, "MfaDelete") == "Enabled":
            raise S3Error("NotImplemented", "MFA delete is not supported.")
        self.service.set_versioning(bucket, x.text(element, "Status"))
        return Reply(200)

    def _acl_document(self, owner: str, acl: str) -> Reply:
        xsi = 'xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance"'
        grants = (
            f'<Grant><Grantee {xsi} xsi:type="CanonicalUser"><ID>{owner}</ID>'
            f"<DisplayName>{owner}</DisplayName></Grantee>"
            "<Permission>FULL_CONTROL</Permission></Grant>"
        )
        if acl == "public-read":
            grants += (
                f'<Grant><Grantee {xsi} xsi:type="Group">'
                "<URI>http://acs.amazonaws.com/groups/global/AllUsers</URI></Grantee>"
                "<Permission>READ</Permission></Grant>"
            )
        inner = (
            f"<Owner><ID>{owner}</ID><DisplayName>{owner}</DisplayName></Owner>"
            f"<AccessControlList>{grants}</AccessControlList>"
        )
        return xml_reply(x.raw_document("AccessControlPolicy", inner))

    async def _acl_from_request(self, call: Call) -> str:
        canned = call.header("x-amz-acl")
        body = await self._xml_body(call, required=not canned)
        if canned:
            return canned
        element = self._parse(body, "AccessControlPolicy")
        grants = {
            (x.text(g, "Grantee/URI"), x.text(g, "Permission"))
            for g in element.findall("AccessControlList/Grant")
        }
        public = ("http://acs.amazonaws.com/groups/global/AllUsers", "READ")
        others = {g for g in grants if g[0] and g != public}
        if others:
            raise S3Error(
                "NotImplemented", "Only the canned ACLs private and public-read are supported."
            )
        return "public-read" if public in grants else "private"

    def get_bucket_acl(self, call: Call, bucket: BucketInfo) -> Reply:
        self.service.owner_only(call.principal, bucket, write=False)
        return self._acl_document(bucket.project_id, bucket.acl)

    async def put_bucket_acl(self, call: Call, bucket: BucketInfo) -> Reply:
        self.service.owner_only(call.principal, bucket)
        self.service.set_bucket_acl(bucket, await self._acl_from_request(call))
        return Reply(200)

    def get_policy(self, call: Call, bucket: BucketInfo) -> Reply:
        self.service.owner_only(call.principal, bucket, write=False)
        if not bucket.policy:
            raise S3Error("NoSuchBucketPolicy", "The bucket policy does not exist", call.resource)
        return Reply(200, bucket.policy.encode(), {"content-type": "application/json"})

    async def put_policy(self, call: Call, bucket: BucketInfo) -> Reply:
        self.service.owner_only(call.principal, bucket)
        body = await self._xml_body(call)
        try:
            text = body.decode("utf-8")
        except UnicodeDecodeError:
            raise S3Error("MalformedPolicy", "Policies must be UTF-8 JSON.") from None
        self.service.set_policy(bucket, text)
        return Reply(204)

    def delete_policy(self, call: Call, bucket: BucketInfo) -> Reply:
        self.service.owner_only(call.principal, bucket)
        self.service.set_policy(bucket, None)
        return Reply(204)

    def get_cors(self, call: Call, bucket: BucketInfo) -> Reply:
        self.service.owner_only(call.principal, bucket, write=False)
        if not bucket.cors:
            raise S3Error(
                "NoSuchCORSConfiguration", "The CORS configuration does not exist", call.resource
            )
        return xml_reply(x.document("CORSConfiguration", {"CORSRule": bucket.cors}))

    async def put_cors(self, call: Call, bucket: BucketInfo) -> Reply:
        self.service.owner_only(call.principal, bucket)
        element = self._parse(await self._xml_body(call), "CORSConfiguration")
        rules: list[dict[str, Any]] = []
        for node in element.findall("CORSRule"):
            rule: dict[str, Any] = {}
            if x.text(node, "ID"):
                rule["ID"] = x.text(node, "ID")
            for name in ("AllowedOrigin", "AllowedMethod", "AllowedHeader", "ExposeHeader"):
                values = x.texts(node, name)
                if values:
                    rule[name] = values
            if x.text(node, "MaxAgeSeconds"):
                try:
                    rule["MaxAgeSeconds"] = int(x.text(node, "MaxAgeSeconds"))
                except ValueError:
                    raise S3Error("MalformedXML", "MaxAgeSeconds must be a number.") from None
            if not rule.get("AllowedOrigin") or not rule.get("AllowedMethod"):
                raise S3Error("MalformedXML", "A CORS rule needs AllowedOrigin and AllowedMethod.")
            bad = set(rule["AllowedMethod"]) - {"GET", "PUT", "POST", "DELETE", "HEAD"}
            if bad:
                raise S3Error(
                    "InvalidRequest", f"Found unsupported HTTP method in CORS config: {bad.pop()}"
                )
            rules.append(rule)
        if not rules or len(rules) > 100:
            raise S3Error("MalformedXML", "A CORS configuration holds 1 to 100 rules.")
        self.service.set_cors(bucket, rules)
        return Reply(200)

    def delete_cors(self, call: Call, bucket: BucketInfo) -> Reply:
        self.service.owner_only(call.principal, bucket)
        self.service.set_cors(bucket, None)
        return Reply(204)

    def get_bucket_tags(self, call: Call, bucket: BucketInfo) -> Reply:
        self.service.owner_only(call.principal, bucket, write=False)
        if not bucket.tags:
            raise S3Error("NoSuchTagSet", "The TagSet does not exist", call.resource)
        return xml_reply(self._tagging_document(bucket.tags))

    async def put_bucket_tags(self, call: Call, bucket: BucketInfo) -> Reply:
        self.service.owner_only(call.principal, bucket)
        tags = self._parse_tagging(await self._xml_body(call))
        self.service.set_bucket_tags(bucket, tags)
        return Reply(204)

    def delete_bucket_tags(self, call: Call, bucket: BucketInfo) -> Reply:
        self.service.owner_only(call.principal, bucket)
        self.service.set_bucket_tags(bucket, None)
        return Reply(204)

    # ------------------------------------------------------------------ listings

    def _max(self, call: Call, name: str, cap: int = 1000) -> int:
        raw = call.query.get(name, str(cap))
        try:
            value = int(raw)
        except ValueError:
            raise S3Error(
                "InvalidArgument", f"Provided {name} not an integer or within integer range"
            ) from None
        if value < 0:
            raise S3Error("InvalidArgument", f"{name} must be a non-negative number.")
        return min(value, cap)

    def list_objects(self, call: Call, bucket: BucketInfo) -> Reply:
        self.service.authorize(call.principal, bucket, "s3:ListBucket")
        q = call.query
        v2 = q.get("list-type") == "2"
        encoding = q.get("encoding-type", "")
        if encoding not in ("", "url"):
            raise S3Error("InvalidArgument", "Invalid Encoding Method specified in Request")

        def enc(value: str) -> str:
            return urllib.parse.quote(value, safe="/") if encoding == "url" else value

        prefix, delimiter = q.get("prefix", ""), q.get("delimiter", "")
        max_keys = self._max(call, "max-keys")
        if v2:
            token = q.get("continuation-token")
            after = q.get("start-after", "")
            if token is not None:
                after = _decode_token(token)
        else:
            after = q.get("marker", "")
        listing = (
            self.service.list_objects(bucket, prefix, delimiter, after, max_keys)
            if max_keys
            else None
        )
        objects = listing.objects if listing else []
        prefixes = listing.prefixes if listing else []
        truncated = listing.truncated if listing else False
        fetch_owner = not v2 or q.get("fetch-owner") == "true"
        contents = [
            {
                "Key": enc(o.key),
                "LastModified": o.last_modified,
                "ETag": quote_etag(o.etag),
                "ChecksumAlgorithm": [a.upper() for a in o.checksums] or None,
                "Size": o.size,
                "Owner": {"ID": o.owner, "DisplayName": o.owner} if fetch_owner else None,
                "StorageClass": "STANDARD",
            }
            for o in objects
        ]
        common = [{"Prefix": enc(p)} for p in prefixes]
        items: list[tuple[str, Any]] = [("Name", bucket.name), ("Prefix", enc(prefix))]
        if v2:
            items += [
                ("KeyCount", len(objects) + len(prefixes)),
                ("MaxKeys", max_keys),
                ("Delimiter", enc(delimiter) if delimiter else None),
                ("IsTruncated", truncated),
                ("ContinuationToken", q.get("continuation-token")),
                (
                    "NextContinuationToken",
                    _encode_token(listing.next_marker) if listing and truncated else None,
                ),
                ("StartAfter", enc(q["start-after"]) if "start-after" in q else None),
            ]
        else:
            items += [
                ("Marker", enc(q.get("marker", ""))),
                ("MaxKeys", max_keys),
                ("Delimiter", enc(delimiter) if delimiter else None),
                ("IsTruncated", truncated),
                (
                    "NextMarker",
                    enc(listing.next_marker) if listing and truncated and delimiter else None,
                ),
            ]
        items += [("Contents", contents), ("CommonPrefixes", common)]
        if encoding:
            items.append(("EncodingType", encoding))
        return xml_reply(x.document("ListBucketResult", items))

    def list_versions(self, call: Call, bucket: BucketInfo) -> Reply:
        self.service.authorize(call.principal, bucket, "s3:ListBucketVersions")
        q = call.query
        encoding = q.get("encoding-type", "")

        def enc(value: str) -> str:
            return urllib.parse.quote(value, safe="/") if encoding == "url" else value

        prefix, delimiter = q.get("prefix", ""), q.get("delimiter", "")
        key_marker, version_marker = q.get("key-marker", ""), q.get("version-id-marker", "")
        max_keys = self._max(call, "max-keys")
        listing = self.service.list_versions(
            bucket, prefix, delimiter, key_marker, version_marker, max_keys
        )
        items: list[tuple[str, Any]] = [
            ("Name", bucket.name),
            ("Prefix", enc(prefix)),
            ("KeyMarker", enc(key_marker)),
            ("VersionIdMarker", version_marker),
            ("MaxKeys", max_keys),
            ("Delimiter", enc(delimiter) if delimiter else None),
            ("IsTruncated", listing.truncated),
        ]
        if listing.truncated:
            items += [
                ("NextKeyMarker", enc(listing.next_marker)),
                ("NextVersionIdMarker", listing.next_version_marker or None),
            ]
        for o in listing.objects:
            owner = {"ID": o.owner, "DisplayName": o.owner}
            if o.is_delete_marker:
                items.append(
                    (
                        "DeleteMarker",
                        {
                            "Owner": owner,
                            "Key": enc(o.key),
                            "VersionId": o.version_id,
                            "IsLatest": o.is_latest,
                            "LastModified": o.last_modified,
                        },
                    )
                )
            else:
                items.append(
                    (
                        "Version",
                        {
                            "Owner": owner,
                            "Key": enc(o.key),
                            "VersionId": o.version_id,
                            "IsLatest": o.is_latest,
                            "LastModified": o.last_modified,
                            "ETag": quote_etag(o.etag),
                            "Size": o.size,
                            "StorageClass": "STANDARD",
                        },
                    )
                )
        items.append(("CommonPrefixes", [{"Prefix": enc(p)} for p in listing.prefixes]))
        if encoding:
            items.append(("EncodingType", encoding))
        return xml_reply(x.document("ListVersionsResult", items))

    def list_uploads(self, call: Call, bucket: BucketInfo) -> Reply:
        self.service.authorize(call.principal, bucket, "s3:ListBucketMultipartUploads")
        q = call.query
        max_uploads = self._max(call, "max-uploads")
        uploads, truncated = self.service.list_uploads(
            bucket,
            q.get("prefix", ""),
            q.get("key-marker", ""),
            q.get("upload-id-marker", ""),
            max_uploads,
        )
        items: list[tuple[str, Any]] = [
            ("Bucket", bucket.name),
            ("KeyMarker", q.get("key-marker", "")),
            ("UploadIdMarker", q.get("upload-id-marker", "")),
            ("NextKeyMarker", uploads[-1].key if truncated else None),
            ("NextUploadIdMarker", uploads[-1].id if truncated else None),
            ("Prefix", q.get("prefix", "")),
            ("MaxUploads", max_uploads),
            ("IsTruncated", truncated),
        ]
        for u in uploads:
            items.append(
                (
                    "Upload",
                    {
                        "Key": u.key,
                        "UploadId": u.id,
                        "Initiator": {"ID": u.initiator, "DisplayName": u.initiator},
                        "Owner": {"ID": u.owner, "DisplayName": u.owner},
                        "StorageClass": "STANDARD",
                        "Initiated": u.created_at,
                    },
                )
            )
        return xml_reply(x.document("ListMultipartUploadsResult", items))

    def list_parts(self, call: Call, bucket: BucketInfo) -> Reply:
        self.service.authorize(call.principal, bucket, "s3:ListMultipartUploadParts", call.key)
        q = call.query
        max_parts = self._max(call, "max-parts")
        try:
            after = int(q.get("part-number-marker", "0") or 0)
        except ValueError:
            raise S3Error("InvalidArgument", "part-number-marker must be a number.") from None
        upload, parts, truncated = self.service.list_parts(
            bucket, call.key, q["uploadId"], after, max_parts
        )
        items: list[tuple[str, Any]] = [
            ("Bucket", bucket.name),
            ("Key", call.key),
            ("UploadId", upload.id),
            ("Initiator", {"ID": upload.initiator, "DisplayName": upload.initiator}),
            ("Owner", {"ID": upload.owner, "DisplayName": upload.owner}),
            ("StorageClass", "STANDARD"),
            ("PartNumberMarker", after),
            ("NextPartNumberMarker", parts[-1].number if parts else after),
            ("MaxParts", max_parts),
            ("IsTruncated", truncated),
        ]
        if upload.checksum_algorithm:
            items.append(("ChecksumAlgorithm", upload.checksum_algorithm.upper()))
        for p in parts:
            part: dict[str, Any] = {
                "PartNumber": p.number,
                "LastModified": p.last_modified,
                "ETag": quote_etag(p.etag),
                "Size": p.size,
            }
            for alg, value in p.checksums.items():
                part[f"Checksum{alg.upper()}"] = value
            items.append(("Part", part))
        return xml_reply(x.document("ListPartsResult", items))

    # ------------------------------------------------------------------ objects

    def _version_header(self, bucket: BucketInfo, version_id: str) -> dict[str, str]:
        if bucket.versioning or version_id != NULL_VERSION:
            return {"x-amz-version-id": version_id}
        return {}

    def _object_template(self, call: Call) -> NewObject:
        headers = {h: call.headers[h] for h in STORED_HEADERS if h in call.headers}
        headers.setdefault("content-type", "binary/octet-stream")
        if "content-encoding" in headers:  # aws-chunked is the upload's framing, not the object's
            codings = [
                c.strip()
                for c in headers["content-encoding"].split(",")
                if c.strip() and c.strip() != "aws-chunked"
            ]
            if codings:
                headers["content-encoding"] = ", ".join(codings)
            else:
                del headers["content-encoding"]
        user_meta = {
            name[len("x-amz-meta-") :]: value
            for name, value in call.headers.items()
            if name.startswith("x-amz-meta-")
        }
        if sum(len(k) + len(v) for k, v in user_meta.items()) > 2048:
            raise S3Error(
                "MetadataTooLarge",
                "Your metadata headers exceed the maximum allowed metadata size (2 KB).",
            )
        acl = call.header("x-amz-acl", "private")
        if acl not in CANNED_ACLS:
            raise S3Error("NotImplemented", f"The canned ACL {acl!r} is not supported.")
        tags = _parse_tag_header(call.header("x-amz-tagging"))
        return NewObject(0, "", [], headers, user_meta, {}, tags, acl)

    def _checksum_plan(self, call: Call) -> tuple[set[str], str | None]:
        """Which digests to compute, and the Content-MD5 to check (base64) if any."""
        algorithms: set[str] = set()
        for alg in CHECKSUM_ALGORITHMS:
            if f"x-amz-checksum-{alg}" in call.headers:
                algorithms.add(alg)
        for name in ("x-amz-checksum-algorithm", "x-amz-sdk-checksum-algorithm"):
            value = call.header(name).lower()
            if value:
                if value not in CHECKSUM_ALGORITHMS:
                    raise S3Error("InvalidRequest", f"Checksum algorithm {value!r} is not valid.")
                algorithms.add(value)
        for trailer in call.header("x-amz-trailer").split(","):
            name = trailer.strip().lower()
            if name.startswith("x-amz-checksum-"):
                alg = name[len("x-amz-checksum-") :]
                if alg not in CHECKSUM_ALGORITHMS:
                    raise S3Error("InvalidRequest", f"Checksum trailer {name!r} is not valid.")
                algorithms.add(alg)
        md5 = call.header("content-md5") or None
        if md5 is not None:
            try:
                if len(base64.b64decode(md5, validate=True)) != 16:
                    raise ValueError
            except (ValueError, binascii.Error):
                raise S3Error(
                    "InvalidDigest", "The Content-MD5 you specified was invalid.", call.resource
                ) from None
        return algorithms, md5

    def _verify_checksums(
        self, call: Call, digests: Digests, algorithms: set[str], md5: str | None, body: Body
    ) -> dict[str, str]:
        if md5 is not None and not hmac.compare_digest(digests.b64("md5"), md5):
            raise S3Error(
                "BadDigest",
                "The Content-MD5 you specified did not match what we received.",
                call.resource,
            )
        sent = {**call.headers, **body.trailers}
        checksums: dict[str, str] = {}
        for alg in sorted(algorithms):
            computed = digests.b64(alg)
            given = sent.get(f"x-amz-checksum-{alg}")
            if given is not None and not hmac.compare_digest(given.strip(), computed):
                raise S3Error(
                    "BadDigest",
                    f"The {alg.upper()} you specified did not match the calculated checksum.",
                    call.resource,
                )
            checksums[alg] = computed
        return checksums

    def _body(self, call: Call) -> Body:
        """An object or part body, within the size limit, timed out when the client stalls."""
        return Body(call, self.settings.max_object_bytes, self.settings.body_idle_timeout)

    async def _receive_blob(self, call: Call, body: Body) -> tuple[BlobWriter, dict[str, str]]:
        """Stream the body into a new durable blob; verify every digest the client sent.

        Bodies over 1 MiB are hashed and written by a thread, one buffer at a time,
        while the event loop receives the next: both cores work on a large upload.
        """
        algorithms, md5 = self._checksum_plan(call)
        writer = self.service.store.writer(algorithms)
        loop = asyncio.get_running_loop()
        pending: asyncio.Future[None] | None = None
        buffer = bytearray()
        try:
            async for chunk in body.chunks():
                buffer += chunk
                if len(buffer) >= CHUNK:
                    if pending is not None:
                        await pending
                    pending = loop.run_in_executor(None, writer.write, bytes(buffer))
                    buffer.clear()
            if pending is not None:
                await pending
                pending = None
            if buffer:
                writer.write(bytes(buffer))
            checksums = self._verify_checksums(call, writer.digests, algorithms, md5, body)
            # fsyncs wait on the disk: a thread waits, the event loop serves others meanwhile.
            await asyncio.to_thread(writer.commit)
        except BaseException:
            if pending is not None:  # let the thread finish with the file before removing it
                with contextlib.suppress(BaseException):
                    await pending
            writer.abort()
            raise
        return writer, checksums

    async def put_object(self, call: Call, bucket: BucketInfo) -> Reply:
        check_key(call.key)
        self.service.authorize(call.principal, bucket, "s3:PutObject", call.key)
        template = self._object_template(call)
        if_none_match = call.header("if-none-match").strip() == "*"
        body = self._body(call)
        if body.declared is not None and body.declared <= self.settings.inline_max_bytes:
            # Small: bytes and metadata commit together in the database, no blob file.
            algorithms, md5 = self._checksum_plan(call)
            digests = Digests(algorithms)
            data = await body.read()
            digests.update(data)
            checksums = self._verify_checksums(call, digests, algorithms, md5, body)
            template.size, template.etag, template.data = len(data), digests.hex("md5"), data
        else:
            writer, checksums = await self._receive_blob(call, body)
            template.size = writer.size
            template.etag = writer.digests.hex("md5")
            template.segments = [[writer.blob_id, writer.size]]
        template.checksums = checksums
        info = await asyncio.to_thread(
            self.service.put_object, call.principal, bucket, call.key, template, if_none_match
        )
        headers = {"etag": quote_etag(info.etag), **self._version_header(bucket, info.version_id)}
        for alg, value in checksums.items():
            headers[f"x-amz-checksum-{alg}"] = value
        return Reply(200, headers=headers)

    def _object_headers(self, call: Call, bucket: BucketInfo, obj: ObjectInfo) -> dict[str, str]:
        headers = {
            "etag": quote_etag(obj.etag),
            "last-modified": http_date(obj.last_modified),
            "accept-ranges": "bytes",
            **{name: value for name, value in obj.headers.items()},
            **self._version_header(bucket, obj.version_id),
        }
        for name, value in obj.user_meta.items():
            headers[f"x-amz-meta-{name}"] = value
        if obj.tags:
            headers["x-amz-tagging-count"] = str(len(obj.tags))
        if call.header("x-amz-checksum-mode").upper() == "ENABLED":
            for alg, value in obj.checksums.items():
                headers[f"x-amz-checksum-{alg}"] = value
        for param, header in RESPONSE_OVERRIDES.items():
            if param in call.query:
                headers[header] = call.query[param]
        return headers

    def _lookup(self, call: Call, bucket: BucketInfo, action: str) -> ObjectInfo:
        """The object a GET/HEAD/copy reads, after checking the caller may read it."""
        version_id = call.query.get("versionId")
        try:
            obj = self.service.head_object(bucket, call.key, version_id)
        except S3Error as exc:
            # Whether a key exists is itself information: outsiders only learn "denied".
            self.service.authorize(call.principal, bucket, "s3:ListBucket")
            raise exc
        self.service.authorize(
            call.principal,
            bucket,
            "s3:GetObjectVersion" if version_id else action,
            call.key,
            obj.acl,
        )
        if obj.is_delete_marker:
            raise S3Error(
                "MethodNotAllowed",
                "The specified method is not allowed against this resource.",
                call.resource,
                headers={"x-amz-delete-marker": "true", "allow": "DELETE"},
            )
        return obj

    def get_object(self, call: Call, bucket: BucketInfo) -> Reply:
        obj = self._lookup(call, bucket, "s3:GetObject")
        headers = self._object_headers(call, bucket, obj)
        _check_conditions(call.headers, obj, headers)
        start, end, status = 0, obj.size - 1, 200
        part_number = call.query.get("partNumber")
        if part_number is not None:
            start, end = _part_range(obj, part_number)
            status = 206 if len(obj.segments) > 1 else 200
            headers["x-amz-mp-parts-count"] = str(max(1, len(obj.segments)))
        elif "range" in call.headers:
            wanted = _parse_range(call.header("range"), obj.size)
            if wanted is not None:
                start, end = wanted
                status = 206
        if status == 206:
            headers["content-range"] = f"bytes {start}-{end}/{obj.size}"
            headers.pop("x-amz-checksum-crc32", None)
            for alg in CHECKSUM_ALGORITHMS:
                headers.pop(f"x-amz-checksum-{alg}", None)
        length = end - start + 1 if obj.size else 0
        if call.method == "HEAD" or length == 0:
            return Reply(status, b"", headers, length=length)
        reader = self.service.reader(obj)

        async def stream() -> AsyncGenerator[bytes, None]:
            sent = 0
            try:
                for chunk in reader.chunks(start, end):
                    yield chunk
                    sent += len(chunk)  # resumed: the server has taken the chunk
            finally:
                reader.close()
                # egress is what really left, also when the client hung up mid-body
                self.service.egress(bucket, sent)

        return Reply(status, b"", headers, stream=stream(), length=length)

    async def delete_object(self, call: Call, bucket: BucketInfo) -> Reply:
        version_id = call.query.get("versionId")
        action = "s3:DeleteObjectVersion" if version_id else "s3:DeleteObject"
        self.service.authorize(call.principal, bucket, action, call.key)
        result = await asyncio.to_thread(
            self.service.delete_object, call.principal, bucket, call.key, version_id
        )
        headers: dict[str, str] = {}
        if result.version_id is not None:
            headers["x-amz-version-id"] = result.version_id
        if result.delete_marker:
            headers["x-amz-delete-marker"] = "true"
        return Reply(204, headers=headers)

    async def delete_objects(self, call: Call, bucket: BucketInfo) -> Reply:
        body = await self._xml_body(call)
        if (
            "content-md5" not in call.headers
            and not any(h.startswith("x-amz-checksum-") for h in call.headers)
            and not call.header("x-amz-trailer")
        ):
            raise S3Error("InvalidRequest", "Missing required header for this request: Content-MD5")
        _, md5 = self._checksum_plan(call)
        if md5 is not None:
            actual = base64.b64encode(hashlib.md5(body, usedforsecurity=False).digest()).decode()
            if actual != md5:
                raise S3Error("BadDigest", "The Content-MD5 you specified did not match.")
        element = self._parse(body, "Delete")
        quiet = x.text(element, "Quiet").lower() == "true"
        wanted = [
            (x.text(o, "Key"), x.text(o, "VersionId") or None) for o in element.findall("Object")
        ]
        if not wanted or len(wanted) > MAX_DELETE_KEYS:
            raise S3Error("MalformedXML", "A delete request names 1 to 1000 objects.")
        items: list[tuple[str, Any]] = []
        for key, version_id in wanted:
            try:
                check_key(key)
                action = "s3:DeleteObjectVersion" if version_id else "s3:DeleteObject"
                self.service.authorize(call.principal, bucket, action, key)
                result = self.service.delete_object(call.principal, bucket, key, version_id)
            except S3Error as exc:
                items.append(
                    (
                        "Error",
                        {
                            "Key": key,
                            "VersionId": version_id,
                            "Code": exc.code,
                            "Message": exc.message,
                        },
                    )
                )
                continue
            if quiet:
                continue
            deleted: dict[str, Any] = {"Key": key}
            if version_id:
                deleted["VersionId"] = version_id
            if result.delete_marker:
                deleted["DeleteMarker"] = True
                if not version_id:
                    deleted["DeleteMarkerVersionId"] = result.version_id
            items.append(("Deleted", deleted))
        return xml_reply(x.document("DeleteResult", items))

    def _copy_source(self, call: Call) -> tuple[BucketInfo, ObjectInfo]:
        raw = call.header("x-amz-copy-source")
        path, _, query = raw.partition("?")
        path = urllib.parse.unquote(path).lstrip("/")
        if "/" not in path:
            raise S3Error(
                "InvalidArgument",
                "Copy Source must mention the source bucket and key: sourcebucket/sourcekey",
            )
        src_bucket_name, src_key = path.split("/", 1)
        version_id = urllib.parse.parse_qs(query).get("versionId", [None])[0]
        src_bucket = self.service.bucket(src_bucket_name)
        expected = call.header("x-amz-source-expected-bucket-owner")
        if expected and expected != src_bucket.project_id:
            raise S3Error("AccessDenied", "Access Denied", f"/{src_bucket_name}")
        src_call = Call(
            call.scope,
            call.receive,
            "GET",
            src_bucket_name,
            src_key,
            {"versionId": version_id} if version_id else {},
            {},
            call.request_id,
            call.principal,
        )
        obj = self._lookup(src_call, src_bucket, "s3:GetObject")
        conditions = {
            name[len("x-amz-copy-source-") :]: value
            for name, value in call.headers.items()
            if name.startswith("x-amz-copy-source-if-")
        }
        try:
            _check_conditions(conditions, obj, {})
        except S3Error as exc:
            if exc.code == "NotModified":
                raise S3Error(
                    "PreconditionFailed",
                    "At least one of the pre-conditions you specified did not hold",
                    call.resource,
                ) from None
            raise
        return src_bucket, obj

    async def _copy_bytes(self, obj: ObjectInfo, start: int, end: int) -> BlobWriter:
        algorithms = [a for a in obj.checksums if "-" not in obj.checksums[a]]

        def copy() -> BlobWriter:
            writer = self.service.store.writer(algorithms)
            reader = self.service.reader(obj)
            try:
                if obj.size:
                    for chunk in reader.chunks(start, end):
                        writer.write(chunk)
                writer.commit()
            except BaseException:
                writer.abort()
                raise
            finally:
                reader.close()
            return writer

        return await asyncio.to_thread(copy)

    async def copy_object(self, call: Call, bucket: BucketInfo) -> Reply:
        check_key(call.key)
        _src_bucket, src = self._copy_source(call)
        self.service.authorize(call.principal, bucket, "s3:PutObject", call.key)
        directive = call.header("x-amz-metadata-directive", "COPY").upper()
        tag_directive = call.header("x-amz-tagging-directive", "COPY").upper()
        if directive not in ("COPY", "REPLACE") or tag_directive not in ("COPY", "REPLACE"):
            raise S3Error("InvalidArgument", "Unknown metadata or tagging directive.")
        same = src.bucket == bucket.name and src.key == call.key
        if (
            same
            and directive == "COPY"
            and not bucket.versioning
            and tag_directive == "COPY"
            and "x-amz-acl" not in call.headers
        ):
            raise S3Error(
                "InvalidRequest",
                "This copy request is illegal because it is trying to copy an object to itself "
                "without changing the object's metadata, storage class, website redirect "
                "location or encryption attributes.",
                call.resource,
            )
        template = self._object_template(call)
        if directive == "COPY":
            template.headers = dict(src.headers)
            template.user_meta = dict(src.user_meta)
        if tag_directive == "COPY":
            template.tags = dict(src.tags)
        await _drain(call)
        algorithms = [a for a in src.checksums if "-" not in src.checksums[a]]
        if src.size <= self.settings.inline_max_bytes:
            reader = self.service.reader(src)
            try:
                data = b"".join(reader.chunks(0, src.size - 1)) if src.size else b""
            finally:
                reader.close()
            digests = Digests(algorithms)
            digests.update(data)
            template.data = data
        else:
            writer = await self._copy_bytes(src, 0, src.size - 1)
            digests = writer.digests
            template.segments = [[writer.blob_id, writer.size]]
        template.size = src.size
        template.etag = src.etag if "-" not in src.etag else digests.hex("md5")
        template.checksums = {a: digests.b64(a) for a in digests.others}
        info = await asyncio.to_thread(
            self.service.put_object, call.principal, bucket, call.key, template, False
        )
        headers = self._version_header(bucket, info.version_id)
        if src.version_id != NULL_VERSION:
            headers["x-amz-copy-source-version-id"] = src.version_id
        result = {"ETag": quote_etag(info.etag), "LastModified": info.last_modified}
        for alg, value in template.checksums.items():
            result[f"Checksum{alg.upper()}"] = value
        reply = xml_reply(x.document("CopyObjectResult", result))
        reply.headers.update(headers)
        return reply

    # ------------------------------------------------------------------ tagging and ACLs

    def _tagging_document(self, tags: dict[str, str]) -> bytes:
        return x.document(
            "Tagging", {"TagSet": {"Tag": [{"Key": k, "Value": v} for k, v in tags.items()]}}
        )

    def _parse_tagging(self, body: bytes) -> dict[str, str]:
        element = self._parse(body, "Tagging")
        tags: dict[str, str] = {}
        for tag in element.findall("TagSet/Tag"):
            key = x.text(tag, "Key")
            if key in tags:
                raise S3Error("InvalidTag", "Cannot provide multiple Tags with the same key")
            tags[key] = x.text(tag, "Value")
        return tags

    def get_object_tags(self, call: Call, bucket: BucketInfo) -> Reply:
        obj = self._lookup(call, bucket, "s3:GetObjectTagging")
        reply = xml_reply(self._tagging_document(obj.tags))
        reply.headers.update(self._version_header(bucket, obj.version_id))
        return reply

    async def put_object_tags(self, call: Call, bucket: BucketInfo) -> Reply:
        self.service.authorize(call.principal, bucket, "s3:PutObjectTagging", call.key)
        tags = self._parse_tagging(await self._xml_body(call))
        version = self.service.set_object_tags(bucket, call.key, call.query.get("versionId"), tags)
        return Reply(200, headers=self._version_header(bucket, version))

    def get_object_acl(self, call: Call, bucket: BucketInfo) -> Reply:
        obj = self._lookup(call, bucket, "s3:GetObjectAcl")
        return self._acl_document(obj.owner, obj.acl)

    async def put_object_acl(self, call: Call, bucket: BucketInfo) -> Reply:
        self.service.authorize(call.principal, bucket, "s3:PutObjectAcl", call.key)
        acl = await self._acl_from_request(call)
        self.service.set_object_acl(bucket, call.key, call.query.get("versionId"), acl)
        return Reply(200)

    # ------------------------------------------------------------------ multipart

    def create_upload(self, call: Call, bucket: BucketInfo) -> Reply:
        check_key(call.key)
        self.service.authorize(call.principal, bucket, "s3:PutObject", call.key)
        template = self._object_template(call)
        algorithm = (
            call.header("x-amz-checksum-algorithm") or call.header("x-amz-sdk-checksum-algorithm")
        ).lower()
        if algorithm and algorithm not in CHECKSUM_ALGORITHMS:
            raise S3Error("InvalidRequest", f"Checksum algorithm {algorithm!r} is not valid.")
        upload = self.service.create_upload(call.principal, bucket, call.key, template, algorithm)
        reply = xml_reply(
            x.document(
                "InitiateMultipartUploadResult",
                {"Bucket": bucket.name, "Key": call.key, "UploadId": upload.id},
            )
        )
        if algorithm:
            reply.headers["x-amz-checksum-algorithm"] = algorithm.upper()
        return reply

    def _part_number(self, call: Call) -> int:
        try:
            number = int(call.query["partNumber"])
        except ValueError:
            number = 0
        if not 1 <= number <= MAX_PART_NUMBER:
            raise S3Error(
                "InvalidArgument", "Part number must be an integer between 1 and 10000, inclusive"
            )
        return number

    async def upload_part(self, call: Call, bucket: BucketInfo) -> Reply:
        self.service.authorize(call.principal, bucket, "s3:PutObject", call.key)
        number = self._part_number(call)
        upload_id = call.query["uploadId"]
        self.service.upload(bucket, call.key, upload_id)  # NoSuchUpload before any byte
        writer, checksums = await self._receive_blob(call, self._body(call))
        etag = writer.digests.hex("md5")
        self.service.put_part(
            bucket, call.key, upload_id, number, writer.blob_id, writer.size, etag, checksums
        )
        headers = {"etag": quote_etag(etag)}
        for alg, value in checksums.items():
            headers[f"x-amz-checksum-{alg}"] = value
        return Reply(200, headers=headers)

    async def upload_part_copy(self, call: Call, bucket: BucketInfo) -> Reply:
        self.service.authorize(call.principal, bucket, "s3:PutObject", call.key)
        number = self._part_number(call)
        upload_id = call.query["uploadId"]
        self.service.upload(bucket, call.key, upload_id)
        _src_bucket, src = self._copy_source(call)
        start, end = 0, src.size - 1
        wanted = call.header("x-amz-copy-source-range")
        if wanted:
            match = re.fullmatch(r"bytes=(\d+)-(\d+)", wanted.strip())
            if not match or int(match[1]) > int(match[2]) or int(match[2]) >= src.size:
                raise S3Error(
                    "InvalidArgument",
                    "The x-amz-copy-source-range value must be of the form bytes=first-last "
                    "where first and last are the zero-based offsets of the first and last bytes "
                    "to copy, within the source object",
                )
            start, end = int(match[1]), int(match[2])
        await _drain(call)
        writer = await self._copy_bytes(src, start, end)
        etag = writer.digests.hex("md5")
        self.service.put_part(
            bucket, call.key, upload_id, number, writer.blob_id, writer.size, etag, {}
        )
        result = {"ETag": quote_etag(etag), "LastModified": dt.datetime.now(dt.UTC)}
        return xml_reply(x.document("CopyPartResult", result))

    async def complete_upload(self, call: Call, bucket: BucketInfo) -> Reply:
        self.service.authorize(call.principal, bucket, "s3:PutObject", call.key)
        element = self._parse(await self._xml_body(call), "CompleteMultipartUpload")
        wanted: list[tuple[int, str]] = []
        for part in element.findall("Part"):
            try:
                number = int(x.text(part, "PartNumber"))
            except ValueError:
                raise S3Error("MalformedXML", "PartNumber must be a number.") from None
            wanted.append((number, x.text(part, "ETag")))
        info = self.service.complete_upload(
            call.principal, bucket, call.key, call.query["uploadId"], wanted
        )
        result: dict[str, Any] = {
            "Location": f"/{bucket.name}/{urllib.parse.quote(call.key)}",
            "Bucket": bucket.name,
            "Key": call.key,
            "ETag": quote_etag(info.etag),
        }
        for alg, value in info.checksums.items():
            result[f"Checksum{alg.upper()}"] = value
        reply = xml_reply(x.document("CompleteMultipartUploadResult", result))
        reply.headers.update(self._version_header(bucket, info.version_id))
        return reply

    # ------------------------------------------------------------------ bodies

    async def _xml_body(self, call: Call, required: bool = True) -> bytes:
        try:
            body = await Body(
                call, self.settings.max_xml_bytes, self.settings.body_idle_timeout
            ).read()
        except S3Error as exc:
            if exc.code != "EntityTooLarge":
                raise
            raise S3Error(
                "MaxMessageLengthExceeded",
                f"Your request was too big: XML bodies are limited to "
                f"{self.settings.max_xml_bytes} bytes.",
                call.resource,
            ) from None
        if required and not body:
            raise S3Error("MissingRequestBodyError", "Request body is empty.")
        return body

    @staticmethod
    def _parse(body: bytes, root: str) -> Any:
        try:
            return x.parse(body, root)
        except x.MalformedXML as exc:
            raise S3Error("MalformedXML", str(exc)) from None


# ---------------------------------------------------------------------- wire helpers


def _raw_path(scope: Scope) -> bytes:
    """The path exactly as sent (keys may hold `%2F`, `+`, `%`): never the decoded one."""
    raw: bytes | None = scope.get("raw_path")
    if raw is None:
        return urllib.parse.quote(scope["path"], safe="/").encode()
    return raw.split(b"?", 1)[0]


async def _drain(call: Call) -> None:
    """Read and drop a body the operation does not use (a copy has none)."""
    async for _ in Body(call, 1024 * 1024).chunks():
        pass


def _cors_allow(rule: dict[str, Any], origin: str) -> dict[str, str]:
    """The headers a matching CORS rule grants, on a preflight and on the actual request."""
    headers = {
        "access-control-allow-origin": "*" if "*" in rule["AllowedOrigin"] else origin,
        "access-control-allow-methods": ", ".join(rule["AllowedMethod"]),
    }
    if rule.get("ExposeHeader"):
        headers["access-control-expose-headers"] = ", ".join(rule["ExposeHeader"])
    return headers


def _wildcard(pattern: str, value: str) -> bool:
    if "*" not in pattern:
        return pattern == value
    head, _, tail = pattern.partition("*")
    return value.startswith(head) and value.endswith(tail) and len(value) >= len(head + tail)


def _encode_token(key: str) -> str:
    return base64.urlsafe_b64encode(key.encode()).decode()


def _decode_token(token: str) -> str:
    try:
        return base64.urlsafe_b64decode(token.encode()).decode()
    except (ValueError, binascii.Error):
        raise S3Error("InvalidArgument", "The continuation token provided is incorrect") from None


def _parse_tag_header(value: str) -> dict[str, str]:
    if not value:
        return {}
    pairs = urllib.parse.parse_qsl(value, keep_blank_values=True)
    tags = dict(pairs)
    if len(tags) != len(pairs):
        raise S3Error("InvalidTag", "Cannot provide multiple Tags with the same key")
    return tags


def _parse_range(value: str, size: int) -> tuple[int, int] | None:
    """(start, end) inclusive; None to send the whole object; InvalidRange if unsatisfiable."""
    match = re.fullmatch(r"\s*bytes=(\d*)-(\d*)\s*", value)
    if not match or (not match[1] and not match[2]):
        return None  # not a single byte range: ignored, as S3 does
    unsatisfiable = S3Error(
        "InvalidRange",
        "The requested range is not satisfiable",
        headers={"content-range": f"bytes */{size}"},
    )
    if not match[1]:
        suffix = int(match[2])
        if suffix == 0 or size == 0:
            raise unsatisfiable
        return max(0, size - suffix), size - 1
    start = int(match[1])
    end = int(match[2]) if match[2] else size - 1
    if start >= size:
        raise unsatisfiable
    if end < start:
        return None
    return start, min(end, size - 1)


def _part_range(obj: ObjectInfo, raw: str) -> tuple[int, int]:
    try:
        number = int(raw)
    except ValueError:
        number = 0
    segments = obj.segments or [["", 0]]
    if not 1 <= number <= len(segments):
        raise S3Error(
            "InvalidPartNumber",
            "The requested partnumber is not satisfiable",
            headers={"content-range": f"bytes */{obj.size}"},
        )
    start = sum(size for _, size in segments[: number - 1])
    return start, start + segments[number - 1][1] - 1


def _etag_matches(header: str, etag: str) -> bool:
    wanted = [t.strip().removeprefix("W/").strip('"') for t in header.split(",")]
    return "*" in wanted or etag in wanted


def _check_conditions(conditions: dict[str, str], obj: ObjectInfo, headers: dict[str, str]) -> None:
    """RFC 7232 preconditions as S3 applies them: 412 PreconditionFailed or 304."""
    modified = obj.last_modified.replace(microsecond=0)
    failed = S3Error(
        "PreconditionFailed",
        "At least one of the pre-conditions you specified did not hold",
        f"/{obj.bucket}/{obj.key}",
    )
    if_match = conditions.get("if-match")
    if if_match is not None:
        if not _etag_matches(if_match, obj.etag):
            raise failed
    else:
        since = conditions.get("if-unmodified-since")
        when = _parse_http_date(since) if since else None
        if when is not None and modified > when:
            raise failed
    not_modified = S3Error(
        "NotModified",
        "Not Modified",
        headers={k: v for k, v in headers.items() if k in ("etag", "last-modified")},
    )
    if_none_match = conditions.get("if-none-match")
    if if_none_match is not None:
        if _etag_matches(if_none_match, obj.etag):
            raise not_modified
    else:
        since = conditions.get("if-modified-since")
        when = _parse_http_date(since) if since else None
        if when is not None and modified <= when:
            raise not_modified
