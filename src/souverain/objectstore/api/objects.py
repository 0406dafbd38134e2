"""S3 object operations: put, get and head, delete (one or many), copy, tags and ACLs.

Bodies stream between the socket and blob files here: small objects are read
whole and kept inline, large ones hashed and written by a thread while the next
buffer arrives. Every digest the client sent is checked before the service
records anything. Multipart uploads reuse the intake and copy paths below.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
import dataclasses
import hashlib
import hmac
import urllib.parse
from collections.abc import AsyncGenerator
from typing import Any

from souverain.config import ObjectStoreSettings
from souverain.objectstore import lifecycle
from souverain.objectstore import xml as x
from souverain.objectstore.acl import GRANT_HEADERS
from souverain.objectstore.api.buckets import (
    acl_document,
    acl_from_headers,
    acl_from_request,
    parse_tagging,
    tagging_document,
)
from souverain.objectstore.api.conditions import (
    check_conditions,
    check_copy_conditions,
    parse_range,
    part_range,
)
from souverain.objectstore.api.locks import (
    LOCK_HEADERS,
    LockHandlers,
    apply_lock_request,
    lock_headers,
)
from souverain.objectstore.api.sse import (
    COPY_CUSTOMER,
    asks_encryption,
    etag_of,
    read_key,
    seal_for_write,
    sse_headers,
)
from souverain.objectstore.api.wire import (
    Body,
    Call,
    Reply,
    drain,
    has_integrity_header,
    http_date,
    parse_xml,
    quote_etag,
    request_context,
    version_header,
    xml_body,
    xml_reply,
)
from souverain.objectstore.conditional import WriteCondition
from souverain.objectstore.encryption import Seal, apply_seal, blob_writer
from souverain.objectstore.errors import S3Error
from souverain.objectstore.records import NULL_VERSION, BucketInfo, NewObject, ObjectInfo, check_key
from souverain.objectstore.service import ObjectStoreService
from souverain.objectstore.store import CHECKSUM_ALGORITHMS, BlobWriter, Digests

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
MAX_DELETE_KEYS = 1000
CHUNK = 1024 * 1024


class ObjectHandlers:
    """Operations on one object, and the intake and copy paths multipart reuses."""

    def __init__(self, service: ObjectStoreService, settings: ObjectStoreSettings) -> None:
        self.service = service
        self.settings = settings
        self.locks = LockHandlers(service, settings)

    def body(self, call: Call) -> Body:
        """An object or part body, within the size limit, timed out when the client stalls."""
        return Body(call, self.settings.max_object_bytes, self.settings.body_idle_timeout)

    async def receive_blob(
        self, call: Call, body: Body, seal: Seal | None = None, part: int = 0
    ) -> tuple[BlobWriter, dict[str, str]]:
        """Stream the body into a new durable blob (sealed with `seal`'s data key when
        given); verify every digest the client sent (digests are of the plaintext).

        Bodies over 1 MiB are hashed and written by a thread, one buffer at a time,
        while the event loop receives the next: both cores work on a large upload.
        """
        algorithms, md5 = checksum_plan(call)
        writer = blob_writer(self.service.store, seal, algorithms, part)
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
            checksums = verify_checksums(call, writer.digests, algorithms, md5, body)
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
        template = object_template(call)
        self.service.refuse_public_acl(bucket, template.acl, template.grants)
        if any(h in call.headers for h in LOCK_HEADERS) and not has_integrity_header(call):
            raise S3Error(
                "InvalidRequest",
                "Content-MD5 OR x-amz-checksum- HTTP header is required for Put Object requests "
                "with Object Lock parameters",
                call.resource,
            )
        apply_lock_request(call, bucket, template, self.service)
        condition = write_condition(call)
        if condition is not None:
            self.service.check_condition(bucket, call.key, condition)
        seal = await seal_for_write(call, bucket, self.service, self.settings)
        body = self.body(call)
        if body.declared is not None and body.declared <= self.settings.inline_max_bytes:
            # Small: bytes and metadata commit together in the database, no blob file.
            algorithms, md5 = checksum_plan(call)
            digests = Digests(algorithms)
            data = await body.read()
            digests.update(data)
            checksums = verify_checksums(call, digests, algorithms, md5, body)
            template.size, template.etag, template.data = len(data), digests.hex("md5"), data
        else:
            writer, checksums = await self.receive_blob(call, body, seal)
            template.size = writer.size
            template.etag = writer.digests.hex("md5")
            template.segments = [[writer.blob_id, writer.size]]
        template.etag = etag_of(seal, template.etag)
        apply_seal(template, seal)
        template.checksums = checksums
        info = await asyncio.to_thread(
            self.service.put_object, call.principal, bucket, call.key, template, condition
        )
        headers = {"etag": quote_etag(info.etag), **version_header(bucket, info.version_id)}
        headers.update(sse_headers(seal, self.service.region))
        if bucket.lifecycle:
            headers.update(expiration_header(bucket, info))
        for alg, value in checksums.items():
            headers[f"x-amz-checksum-{alg}"] = value
        return Reply(200, headers=headers)

    def _object_headers(self, call: Call, bucket: BucketInfo, obj: ObjectInfo) -> dict[str, str]:
        headers = {
            "etag": quote_etag(obj.etag),
            "last-modified": http_date(obj.last_modified),
            "accept-ranges": "bytes",
            **{name: value for name, value in obj.headers.items()},
            **version_header(bucket, obj.version_id),
        }
        for name, value in obj.user_meta.items():
            headers[f"x-amz-meta-{name}"] = value
        if bucket.lifecycle and obj.is_latest:
            headers.update(expiration_header(bucket, obj))
        if (obj.lock_mode is not None or obj.legal_hold is not None) and self.may_see_locks(
            call, bucket, obj
        ):
            headers.update(lock_headers(obj))
        if obj.tags:
            headers["x-amz-tagging-count"] = str(len(obj.tags))
        if call.header("x-amz-checksum-mode").upper() == "ENABLED":
            for alg, value in obj.checksums.items():
                headers[f"x-amz-checksum-{alg}"] = value
        for param, header in RESPONSE_OVERRIDES.items():
            if param in call.query:
                headers[header] = call.query[param]
        return headers

    def may_see_locks(self, call: Call, bucket: BucketInfo, obj: ObjectInfo) -> bool:
        """As on S3, a GET or HEAD shows Object Lock headers only to callers who may read
        the retention (a public reader of the object does not learn it)."""
        try:
            self.service.authorize(call.principal, bucket, "s3:GetObjectRetention", obj.key)
        except S3Error:
            return False
        return True

    def lookup(self, call: Call, bucket: BucketInfo, action: str) -> ObjectInfo:
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
            obj,
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
        obj = self.lookup(call, bucket, "s3:GetObject")
        customer = read_key(call, obj, self.settings)
        headers = self._object_headers(call, bucket, obj)
        headers.update(sse_headers(obj.sse, self.service.region, customer))
        check_conditions(call.headers, obj, headers)
        start, end, status = 0, obj.size - 1, 200
        part_number = call.query.get("partNumber")
        if part_number is not None:
            start, end = part_range(obj, part_number)
            status = 206 if len(obj.segments) > 1 else 200
            headers["x-amz-mp-parts-count"] = str(max(1, len(obj.segments)))
        elif "range" in call.headers:
            wanted = parse_range(call.header("range"), obj.size)
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
        reader = self.service.reader(obj, customer.key if customer is not None else None)

        async def stream() -> AsyncGenerator[bytes, None]:
            sent = 0
            chunks = reader.chunks(start, end)
            # RADOS: each read waits on the network; in a thread, the worker's other
            # requests go on meanwhile. A local file is read (and a sealed one opened) in
            # place: opening the next MiB in a thread while this one is sent measured slower
            # (bench/s3/sse.py GET 0.36 of plain, against 0.5 in place), as that thread
            # waits for the GIL again after each of its sixteen 64 KiB decrypts.
            blocking = obj.data is None and self.service.store.blocking_reads
            try:
                while True:
                    chunk = (
                        await asyncio.to_thread(next, chunks, None)
                        if blocking
                        else next(chunks, None)
                    )
                    if chunk is None:
                        break
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
        bypass = self.locks.bypass(call, bucket, call.key) if version_id else False
        result = await asyncio.to_thread(
            self.service.delete_object, call.principal, bucket, call.key, version_id, bypass
        )
        headers: dict[str, str] = {}
        if result.version_id is not None:
            headers["x-amz-version-id"] = result.version_id
        if result.delete_marker:
            headers["x-amz-delete-marker"] = "true"
        return Reply(204, headers=headers)

    async def delete_objects(self, call: Call, bucket: BucketInfo) -> Reply:
        body = await xml_body(call, self.settings)
        if (
            "content-md5" not in call.headers
            and not any(h.startswith("x-amz-checksum-") for h in call.headers)
            and not call.header("x-amz-trailer")
        ):
            raise S3Error("InvalidRequest", "Missing required header for this request: Content-MD5")
        _, md5 = checksum_plan(call)
        if md5 is not None:
            actual = base64.b64encode(hashlib.md5(body, usedforsecurity=False).digest()).decode()
            if actual != md5:
                raise S3Error("BadDigest", "The Content-MD5 you specified did not match.")
        element = parse_xml(body, "Delete")
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
                bypass = self.locks.bypass(call, bucket, key) if version_id else False
                result = self.service.delete_object(call.principal, bucket, key, version_id, bypass)
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

    def copy_source(self, call: Call) -> tuple[BucketInfo, ObjectInfo]:
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
        if src_bucket.needs_context and call.principal.context is None:
            # the source's policy conditions test this request too
            call.principal = dataclasses.replace(
                call.principal, context=request_context(call, self.service.clock.now())
            )
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
        obj = self.lookup(src_call, src_bucket, "s3:GetObject")
        check_copy_conditions(call.headers, obj, call.resource)
        return src_bucket, obj

    async def copy_bytes(
        self,
        obj: ObjectInfo,
        start: int,
        end: int,
        seal: Seal | None = None,
        part: int = 0,
        source_key: bytes | None = None,
    ) -> BlobWriter:
        """Bytes `start`..`end` of `obj` (opened with `source_key` when SSE-C) into a new
        blob, sealed with `seal` when given: a copy between modes re-encrypts."""
        algorithms = [a for a in obj.checksums if "-" not in obj.checksums[a]]

        def copy() -> BlobWriter:
            writer = blob_writer(self.service.store, seal, algorithms, part)
            reader = self.service.reader(obj, source_key)
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
        _src_bucket, src = self.copy_source(call)
        self.service.authorize(call.principal, bucket, "s3:PutObject", call.key)
        directive = call.header("x-amz-metadata-directive", "COPY").upper()
        tag_directive = call.header("x-amz-tagging-directive", "COPY").upper()
        if directive not in ("COPY", "REPLACE") or tag_directive not in ("COPY", "REPLACE"):
            raise S3Error("InvalidArgument", "Unknown metadata or tagging directive.")
        source = read_key(call, src, self.settings, COPY_CUSTOMER)
        source_key = source.key if source is not None else None
        seal = await seal_for_write(call, bucket, self.service, self.settings)
        same = src.bucket == bucket.name and src.key == call.key
        if (
            same
            and not asks_encryption(call)
            and directive == "COPY"
            and not bucket.versioning
            and tag_directive == "COPY"
            and "x-amz-acl" not in call.headers
            and not any(h in call.headers for h in GRANT_HEADERS)
        ):
            raise S3Error(
                "InvalidRequest",
                "This copy request is illegal because it is trying to copy an object to itself "
                "without changing the object's metadata, storage class, website redirect "
                "location or encryption attributes.",
                call.resource,
            )
        template = object_template(call)
        if directive == "COPY":
            template.headers = dict(src.headers)
            template.user_meta = dict(src.user_meta)
        if tag_directive == "COPY":
            template.tags = dict(src.tags)
        apply_lock_request(call, bucket, template, self.service)
        self.service.refuse_public_acl(bucket, template.acl, template.grants)
        await drain(call)
        algorithms = [a for a in src.checksums if "-" not in src.checksums[a]]
        if src.size <= self.settings.inline_max_bytes:
            reader = self.service.reader(src, source_key)
            try:
                data = b"".join(reader.chunks(0, src.size - 1)) if src.size else b""
            finally:
                reader.close()
            digests = Digests(algorithms)
            digests.update(data)
            template.data = data
        else:
            writer = await self.copy_bytes(src, 0, src.size - 1, seal, 0, source_key)
            digests = writer.digests
            template.segments = [[writer.blob_id, writer.size]]
        template.size = src.size
        plain_etag = src.etag if "-" not in src.etag and src.sse is None else digests.hex("md5")
        template.etag = etag_of(seal, plain_etag)
        template.checksums = {a: digests.b64(a) for a in digests.others}
        apply_seal(template, seal)
        info = await asyncio.to_thread(
            self.service.put_object, call.principal, bucket, call.key, template
        )
        headers = version_header(bucket, info.version_id)
        if src.version_id != NULL_VERSION:
            headers["x-amz-copy-source-version-id"] = src.version_id
        result = {"ETag": quote_etag(info.etag), "LastModified": info.last_modified}
        for alg, value in template.checksums.items():
            result[f"Checksum{alg.upper()}"] = value
        reply = xml_reply(x.document("CopyObjectResult", result))
        reply.headers.update(headers)
        reply.headers.update(sse_headers(seal, self.service.region))
        return reply

    def get_object_tags(self, call: Call, bucket: BucketInfo) -> Reply:
        obj = self.lookup(call, bucket, "s3:GetObjectTagging")
        reply = xml_reply(tagging_document(obj.tags))
        reply.headers.update(version_header(bucket, obj.version_id))
        return reply

    async def put_object_tags(self, call: Call, bucket: BucketInfo) -> Reply:
        self.service.authorize(call.principal, bucket, "s3:PutObjectTagging", call.key)
        tags = parse_tagging(await xml_body(call, self.settings))
        version = self.service.set_object_tags(bucket, call.key, call.query.get("versionId"), tags)
        return Reply(200, headers=version_header(bucket, version))

    def delete_object_tags(self, call: Call, bucket: BucketInfo) -> Reply:
        self.service.authorize(call.principal, bucket, "s3:PutObjectTagging", call.key)
        version = self.service.set_object_tags(bucket, call.key, call.query.get("versionId"), {})
        return Reply(204, headers=version_header(bucket, version))

    def get_object_acl(self, call: Call, bucket: BucketInfo) -> Reply:
        obj = self.lookup(call, bucket, "s3:GetObjectAcl")
        return acl_document(obj.owner, obj.acl, obj.grants, bucket.project_id)

    async def put_object_acl(self, call: Call, bucket: BucketInfo) -> Reply:
        self.service.authorize(call.principal, bucket, "s3:PutObjectAcl", call.key)
        acl, grants = await acl_from_request(call, self.settings)
        self.service.refuse_public_acl(bucket, acl, grants)
        self.service.set_object_acl(bucket, call.key, call.query.get("versionId"), acl, grants)
        return Reply(200)


def object_template(call: Call) -> NewObject:
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
    acl, grants = acl_from_headers(call)
    tags = _parse_tag_header(call.header("x-amz-tagging"))
    new = NewObject(0, "", [], headers, user_meta, {}, tags, acl or "private")
    new.grants = grants
    return new


def expiration_header(bucket: BucketInfo, obj: ObjectInfo) -> dict[str, str]:
    """`x-amz-expiration`: when a lifecycle rule will expire this current version."""
    found = lifecycle.expiry(bucket.lifecycle, obj.key, obj.tags, obj.size, obj.last_modified)
    if found is None:
        return {}
    when, rule_id = found
    value = f'expiry-date="{http_date(when)}", rule-id="{urllib.parse.quote(rule_id)}"'
    return {"x-amz-expiration": value}


def write_condition(call: Call) -> WriteCondition | None:
    """If-None-Match: * and If-Match on a write (None: unconditional).

    S3 takes only `*` in If-None-Match on writes; any other value is refused, never
    ignored, so a client never believes a condition held that was not checked."""
    none_match = call.header("if-none-match").strip()
    match = call.header("if-match").strip()
    if not none_match and not match:
        return None
    if none_match not in ("", "*"):
        raise S3Error(
            "NotImplemented",
            "A header you provided implies functionality that is not implemented: "
            "If-None-Match on a write takes only '*'.",
            call.resource,
        )
    return WriteCondition(absent=none_match == "*", etag=match or None)


def checksum_plan(call: Call) -> tuple[set[str], str | None]:
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


def verify_checksums(
    call: Call, digests: Digests, algorithms: set[str], md5: str | None, body: Body
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


def _parse_tag_header(value: str) -> dict[str, str]:
    if not value:
        return {}
    pairs = urllib.parse.parse_qsl(value, keep_blank_values=True)
    tags = dict(pairs)
    if len(tags) != len(pairs):
        raise S3Error("InvalidTag", "Cannot provide multiple Tags with the same key")
    return tags
