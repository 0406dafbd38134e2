"""The S3 ASGI application: decode a request, authenticate it, route it to its handler.

Plain ASGI, because bodies of any size stream through here: uploads go from the
socket to a blob file chunk by chunk, downloads from the file to the socket.
Authentication (SigV4) happens before any byte of the body is read. Routing is by
method, key and query parameter to one handler method, bound once at start; the
handlers live in `buckets`, `listing`, `objects` and `multipart`.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import urllib.parse
from collections.abc import Callable
from typing import Any

from starlette.types import Receive, Scope, Send

from souverain.common.audit import note_target_project
from souverain.common.ceph import StorageUnavailable
from souverain.common.clock import Clock
from souverain.common.ids import new_request_id
from souverain.config import ObjectStoreSettings
from souverain.db.engine import RETRY_AFTER_SECONDS, is_outage
from souverain.objectstore import sigv4
from souverain.objectstore import xml as x
from souverain.objectstore.api.attributes import AttributeHandlers
from souverain.objectstore.api.buckets import BucketHandlers, PublicAccessHandlers
from souverain.objectstore.api.cors import Cors
from souverain.objectstore.api.lifecycle import LifecycleHandlers
from souverain.objectstore.api.listing import ListingHandlers
from souverain.objectstore.api.multipart import MultipartHandlers
from souverain.objectstore.api.objects import ObjectHandlers
from souverain.objectstore.api.post import PostHandlers
from souverain.objectstore.api.sse import EncryptionHandlers
from souverain.objectstore.api.wire import BodyProgress, Call, Reply, raw_path, request_context
from souverain.objectstore.errors import S3Error
from souverain.objectstore.records import BucketInfo
from souverain.objectstore.service import ObjectStoreService
from souverain.objectstore.store import StorageFull

log = logging.getLogger("souverain.objectstore")

# Sub-resources we do not offer: NotImplemented, never a silent success.
UNSUPPORTED = frozenset(
    {
        "accelerate",
        "analytics",
        "intelligent-tiering",
        "inventory",
        "logging",
        "metrics",
        "notification",
        "ownershipControls",
        "replication",
        "requestPayment",
        "restore",
        "select",
        "torrent",
        "website",
        "policyStatus",
    }
)
# Request headers asking for a feature we do not have. Accepting them silently would
# let a customer believe data is encrypted, locked or granted when it is not.
REFUSED_HEADERS = {
    "x-amz-website-redirect-location": (
        "NotImplemented",
        "Static website hosting is not supported by this object store.",
    ),
}
STORAGE_CLASSES = ("STANDARD",)

BucketHandler = Callable[[Call, BucketInfo], Any]


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
        config = BucketHandlers(service, settings)
        listing = ListingHandlers(service)
        objects = ObjectHandlers(service, settings)
        uploads = MultipartHandlers(service, settings, objects)
        cors = Cors(service)
        lifecycle = LifecycleHandlers(service, settings)
        public = PublicAccessHandlers(service, settings)
        encryption = EncryptionHandlers(service, settings)
        # Every handler is bound here, once: routing a request looks up one attribute.
        self._preflight = cors.preflight
        self._cors_headers = cors.headers
        self.list_buckets = listing.list_buckets
        self.create_bucket = config.create_bucket
        self.head_bucket = config.head_bucket
        self.delete_bucket = config.delete_bucket
        self.list_objects = listing.list_objects
        self.put_object = objects.put_object
        self.copy_object = objects.copy_object
        self.get_object = objects.get_object
        self.delete_object = objects.delete_object
        self.get_object_tags = objects.get_object_tags
        self.put_object_tags = objects.put_object_tags
        self.delete_object_tags = objects.delete_object_tags
        self.get_object_acl = objects.get_object_acl
        self.put_object_acl = objects.put_object_acl
        self.get_retention = objects.locks.get_retention
        self.get_attributes = AttributeHandlers(objects).get_attributes
        self.put_retention = objects.locks.put_retention
        self.get_legal_hold = objects.locks.get_legal_hold
        self.put_legal_hold = objects.locks.put_legal_hold
        self.create_upload = uploads.create_upload
        self.upload_part = uploads.upload_part
        self.upload_part_copy = uploads.upload_part_copy
        self.complete_upload = uploads.complete_upload
        self.post_object = PostHandlers(service, settings).post_object
        self.abort_upload = uploads.abort_upload
        self.list_parts = listing.list_parts
        # Bucket sub-resources: (method, query parameter) -> the handler that answers.
        self.bucket_subresources: dict[tuple[str, str], BucketHandler] = {
            ("GET", "location"): config.get_location,
            ("GET", "versioning"): config.get_versioning,
            ("PUT", "versioning"): config.put_versioning,
            ("GET", "acl"): config.get_bucket_acl,
            ("PUT", "acl"): config.put_bucket_acl,
            ("GET", "policy"): config.get_policy,
            ("PUT", "policy"): config.put_policy,
            ("DELETE", "policy"): config.delete_policy,
            ("GET", "cors"): config.get_cors,
            ("PUT", "cors"): config.put_cors,
            ("DELETE", "cors"): config.delete_cors,
            ("GET", "tagging"): config.get_bucket_tags,
            ("PUT", "tagging"): config.put_bucket_tags,
            ("DELETE", "tagging"): config.delete_bucket_tags,
            ("GET", "versions"): listing.list_versions,
            ("GET", "uploads"): listing.list_uploads,
            ("POST", "delete"): objects.delete_objects,
            ("GET", "publicAccessBlock"): public.get_block,
            ("PUT", "publicAccessBlock"): public.put_block,
            ("DELETE", "publicAccessBlock"): public.delete_block,
            ("GET", "lifecycle"): lifecycle.get_lifecycle,
            ("PUT", "lifecycle"): lifecycle.put_lifecycle,
            ("DELETE", "lifecycle"): lifecycle.delete_lifecycle,
            ("GET", "encryption"): encryption.get_encryption,
            ("PUT", "encryption"): encryption.put_encryption,
            ("DELETE", "encryption"): encryption.delete_encryption,
            ("GET", "object-lock"): objects.locks.get_configuration,
            ("PUT", "object-lock"): objects.locks.put_configuration,
        }

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return
        state = scope.setdefault("state", {})
        request_id = state.get("request_id") or new_request_id()
        body = BodyProgress(scope, receive)
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
        except Exception as exc:
            reply = self._failure_reply(exc, request_id, scope["method"])
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

    def _failure_reply(self, exc: Exception, request_id: str, method: str) -> Reply:
        """An unexpected failure: 503 while the database or the storage cluster is away, else
        500."""
        if isinstance(exc, StorageUnavailable):
            log.warning("S3 request %s: storage cluster unavailable (%s)", request_id, exc)
            error = S3Error(
                "ServiceUnavailable",
                "The storage cluster cannot complete this request right now; nothing was "
                "stored. Please retry.",
                headers=dict(exc.headers),
                status=503,
            )
            return self._error_reply(error, request_id, method)
        if is_outage(exc):
            log.warning("S3 request %s: database unreachable", request_id)
            error = S3Error(
                "ServiceUnavailable",
                "The service cannot reach its database right now; please retry.",
                headers={"Retry-After": str(RETRY_AFTER_SECONDS)},
                status=503,
            )
            return self._error_reply(error, request_id, method)
        log.exception("S3 request %s failed", request_id)
        error = S3Error("InternalError", "We encountered an internal error. Please try again.")
        return self._error_reply(error, request_id, method)

    def _error_reply(self, exc: S3Error, request_id: str, method: str) -> Reply:
        if exc.status == 304:
            return Reply(304, b"", dict(exc.headers))
        body = x.error_document(exc.code, exc.message, exc.resource, request_id, exc.details)
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
            path = urllib.parse.unquote(raw_path(scope).decode("latin-1"), errors="strict")
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
        path = raw_path(scope)
        signed = sigv4.parse_request(
            call.method,
            path,
            scope.get("query_string", b""),
            scope["headers"],
            self.clock.now(),
        )
        if signed is None:
            return
        if signed.credential.region != self.region:
            raise self._wrong_region(signed)
        found = self.service.authenticate(signed.credential.access_key)
        if found is None:
            raise S3Error(
                "InvalidAccessKeyId",
                "The AWS Access Key Id you provided does not exist in our records.",
            )
        secret, principal = found
        call.signing_key = sigv4.verify(
            signed, secret, call.method, path, scope.get("query_string", b""), scope["headers"]
        )
        call.signed = signed
        call.principal = principal

    def _wrong_region(self, signed: sigv4.SignedRequest) -> S3Error:
        """S3's answer to a request signed for another region: the region to sign for, in
        the body's <Region> and in x-amz-bucket-region, from which SDKs such as boto3
        re-sign and retry by themselves."""
        wrong = signed.credential.region
        where = {"x-amz-bucket-region": self.region}
        if signed.presigned:
            return S3Error(
                "AuthorizationQueryParametersError",
                f"Error parsing the X-Amz-Credential parameter; the region '{wrong}' is wrong; "
                f"expecting '{self.region}'",
                headers=where,
                details={"Region": self.region},
            )
        return S3Error(
            "AuthorizationHeaderMalformed",
            f"The authorization header is malformed; the region '{wrong}' is wrong; "
            f"expecting '{self.region}'",
            headers=where,
            details={"Region": self.region},
        )

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
        # another account's bucket (a policy or ACL grants it) or the caller's own: its
        # owners see the call in their audit trail
        note_target_project(bucket.project_id)
        expected = call.header("x-amz-expected-bucket-owner")
        if expected and expected != bucket.project_id:
            raise S3Error("AccessDenied", "Access Denied", call.resource)
        if bucket.needs_context:  # its policy has conditions: they test the request
            call.principal = dataclasses.replace(
                call.principal, context=request_context(call, self.clock.now())
            )
        return bucket

    async def _bucket(self, call: Call) -> Reply:
        q, method = call.query, call.method
        if method == "PUT" and not any(
            k in q
            for k in (
                "versioning",
                "acl",
                "policy",
                "cors",
                "tagging",
                "object-lock",
                "lifecycle",
                "publicAccessBlock",
                "encryption",
            )
        ):
            return await self.create_bucket(call)
        bucket = self._bucket_for(call)
        for (verb, sub), handler in self.bucket_subresources.items():
            if verb == method and sub in q:
                result = handler(call, bucket)
                return await result if asyncio.iscoroutine(result) else result  # type: ignore[no-any-return]
        if method == "GET":
            return self.list_objects(call, bucket)
        if method == "HEAD":
            return self.head_bucket(call, bucket)
        if method == "DELETE":
            return self.delete_bucket(call, bucket)
        if method == "POST" and not q:
            return await self.post_object(call, bucket)
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
            if "retention" in q:
                return await self.put_retention(call, bucket)
            if "legal-hold" in q:
                return await self.put_legal_hold(call, bucket)
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
            if "retention" in q and method == "GET":
                return self.get_retention(call, bucket)
            if "legal-hold" in q and method == "GET":
                return self.get_legal_hold(call, bucket)
            if "attributes" in q and method == "GET":
                return self.get_attributes(call, bucket)
            return self.get_object(call, bucket)
        if method == "DELETE":
            if "uploadId" in q:
                return self.abort_upload(call, bucket)
            if "tagging" in q:
                return self.delete_object_tags(call, bucket)
            return await self.delete_object(call, bucket)
        if method == "POST":
            if "uploads" in q:
                return self.create_upload(call, bucket)
            if "uploadId" in q:
                return await self.complete_upload(call, bucket)
        raise S3Error("NotImplemented", "This object operation is not supported.", call.resource)
