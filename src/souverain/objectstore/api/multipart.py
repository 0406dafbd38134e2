"""S3 multipart uploads: create, upload a part (or copy one), complete, abort.

Parts stream in through the object handlers' intake (`receive_blob`) and copy path
(`copy_bytes`); joining them into an object is the service's `complete_upload`.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import urllib.parse
from typing import Any

from souverain.config import ObjectStoreSettings
from souverain.objectstore import xml as x
from souverain.objectstore.api.conditions import copy_source_range
from souverain.objectstore.api.locks import apply_lock_request
from souverain.objectstore.api.objects import ObjectHandlers, object_template, write_condition
from souverain.objectstore.api.sse import (
    COPY_CUSTOMER,
    CustomerKey,
    customer_key,
    read_key,
    sse_headers,
    write_seal,
)
from souverain.objectstore.api.wire import (
    Call,
    Reply,
    drain,
    has_integrity_header,
    parse_xml,
    quote_etag,
    version_header,
    xml_body,
    xml_reply,
)
from souverain.objectstore.encryption import SSE_C, Seal, apply_seal, customer_matches
from souverain.objectstore.errors import S3Error
from souverain.objectstore.records import BucketInfo, UploadInfo, check_key
from souverain.objectstore.service import ObjectStoreService
from souverain.objectstore.store import CHECKSUM_ALGORITHMS

MAX_PART_NUMBER = 10_000


class MultipartHandlers:
    """The multipart operations on a key; bytes come in through `objects`."""

    def __init__(
        self, service: ObjectStoreService, settings: ObjectStoreSettings, objects: ObjectHandlers
    ) -> None:
        self.service = service
        self.settings = settings
        self.objects = objects

    def create_upload(self, call: Call, bucket: BucketInfo) -> Reply:
        check_key(call.key)
        self.service.authorize(call.principal, bucket, "s3:PutObject", call.key)
        template = object_template(call)
        self.service.refuse_public_acl(bucket, template.acl, template.grants)
        apply_lock_request(call, bucket, template, self.service)
        algorithm = (
            call.header("x-amz-checksum-algorithm") or call.header("x-amz-sdk-checksum-algorithm")
        ).lower()
        if algorithm and algorithm not in CHECKSUM_ALGORITHMS:
            raise S3Error("InvalidRequest", f"Checksum algorithm {algorithm!r} is not valid.")
        seal = write_seal(call, bucket, self.service, self.settings)
        apply_seal(template, seal)
        upload = self.service.create_upload(call.principal, bucket, call.key, template, algorithm)
        reply = xml_reply(
            x.document(
                "InitiateMultipartUploadResult",
                {"Bucket": bucket.name, "Key": call.key, "UploadId": upload.id},
            )
        )
        if algorithm:
            reply.headers["x-amz-checksum-algorithm"] = algorithm.upper()
        reply.headers.update(sse_headers(seal, self.service.region))
        return reply

    def part_seal(self, call: Call, upload: UploadInfo) -> tuple[Seal | None, CustomerKey | None]:
        """The upload's data key for a part: every part of an SSE-C upload sends its key."""
        sealed = upload.sse
        given = customer_key(call)
        if sealed is None or sealed.mode != SSE_C:
            if given is not None:
                raise S3Error(
                    "InvalidRequest",
                    "The multipart upload was not initiated with customer-provided encryption "
                    "parameters.",
                    call.resource,
                )
            return (self.service.sealer.reopen(sealed) if sealed is not None else None), None
        if (
            given is None
            or sealed.customer is None
            or not customer_matches(given.key, sealed.customer)
        ):
            raise S3Error(
                "InvalidRequest",
                "The multipart upload was initiated with customer-provided encryption "
                "parameters: each part must send the same key.",
                call.resource,
            )
        return self.service.sealer.reopen(sealed, given.key), given

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
        upload = self.service.upload(bucket, call.key, upload_id)  # NoSuchUpload first
        locked = upload.lock_mode is not None or upload.legal_hold is not None
        if locked and not has_integrity_header(call):
            raise S3Error(
                "InvalidRequest",
                "Content-MD5 OR x-amz-checksum- HTTP header is required for Put Part requests "
                "with Object Lock parameters",
                call.resource,
            )
        seal, given = await asyncio.to_thread(self.part_seal, call, upload)
        body = self.objects.body(call)
        writer, checksums = await self.objects.receive_blob(call, body, seal, number)
        etag = writer.digests.hex("md5")
        self.service.put_part(
            bucket, call.key, upload_id, number, writer.blob_id, writer.size, etag, checksums
        )
        headers = {"etag": quote_etag(etag), **sse_headers(seal, self.service.region, given)}
        for alg, value in checksums.items():
            headers[f"x-amz-checksum-{alg}"] = value
        return Reply(200, headers=headers)

    async def upload_part_copy(self, call: Call, bucket: BucketInfo) -> Reply:
        self.service.authorize(call.principal, bucket, "s3:PutObject", call.key)
        number = self._part_number(call)
        upload_id = call.query["uploadId"]
        upload = self.service.upload(bucket, call.key, upload_id)
        _src_bucket, src = self.objects.copy_source(call)
        source = read_key(call, src, self.settings, COPY_CUSTOMER)
        seal, given = await asyncio.to_thread(self.part_seal, call, upload)
        start, end = 0, src.size - 1
        wanted = call.header("x-amz-copy-source-range")
        if wanted:
            start, end = copy_source_range(wanted, src.size)
        await drain(call)
        writer = await self.objects.copy_bytes(
            src, start, end, seal, number, source.key if source is not None else None
        )
        etag = writer.digests.hex("md5")
        self.service.put_part(
            bucket, call.key, upload_id, number, writer.blob_id, writer.size, etag, {}
        )
        result = {"ETag": quote_etag(etag), "LastModified": dt.datetime.now(dt.UTC)}
        reply = xml_reply(x.document("CopyPartResult", result))
        reply.headers.update(sse_headers(seal, self.service.region, given))
        return reply

    async def complete_upload(self, call: Call, bucket: BucketInfo) -> Reply:
        self.service.authorize(call.principal, bucket, "s3:PutObject", call.key)
        element = parse_xml(await xml_body(call, self.settings), "CompleteMultipartUpload")
        wanted: list[tuple[int, str]] = []
        for part in element.findall("Part"):
            try:
                number = int(x.text(part, "PartNumber"))
            except ValueError:
                raise S3Error("MalformedXML", "PartNumber must be a number.") from None
            wanted.append((number, x.text(part, "ETag")))
        info = self.service.complete_upload(
            call.principal, bucket, call.key, call.query["uploadId"], wanted, write_condition(call)
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
        reply.headers.update(version_header(bucket, info.version_id))
        reply.headers.update(sse_headers(info.sse, self.service.region))
        return reply

    def abort_upload(self, call: Call, bucket: BucketInfo) -> Reply:
        self.service.authorize(call.principal, bucket, "s3:AbortMultipartUpload", call.key)
        self.service.abort_upload(bucket, call.key, call.query["uploadId"])
        return Reply(204)
