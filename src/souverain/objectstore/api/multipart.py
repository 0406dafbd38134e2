"""S3 multipart uploads: create, upload a part (or copy one), complete, abort.

Parts stream in through the object handlers' intake (`receive_blob`) and copy path
(`copy_bytes`); joining them into an object is the service's `complete_upload`.
"""

from __future__ import annotations

import datetime as dt
import urllib.parse
from typing import Any

from souverain.config import ObjectStoreSettings
from souverain.objectstore import xml as x
from souverain.objectstore.api.conditions import copy_source_range
from souverain.objectstore.api.locks import apply_lock_request
from souverain.objectstore.api.objects import ObjectHandlers, object_template, write_condition
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
from souverain.objectstore.errors import S3Error
from souverain.objectstore.records import BucketInfo, check_key
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
        upload = self.service.upload(bucket, call.key, upload_id)  # NoSuchUpload first
        locked = upload.lock_mode is not None or upload.legal_hold is not None
        if locked and not has_integrity_header(call):
            raise S3Error(
                "InvalidRequest",
                "Content-MD5 OR x-amz-checksum- HTTP header is required for Put Part requests "
                "with Object Lock parameters",
                call.resource,
            )
        writer, checksums = await self.objects.receive_blob(call, self.objects.body(call))
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
        _src_bucket, src = self.objects.copy_source(call)
        start, end = 0, src.size - 1
        wanted = call.header("x-amz-copy-source-range")
        if wanted:
            start, end = copy_source_range(wanted, src.size)
        await drain(call)
        writer = await self.objects.copy_bytes(src, start, end)
        etag = writer.digests.hex("md5")
        self.service.put_part(
            bucket, call.key, upload_id, number, writer.blob_id, writer.size, etag, {}
        )
        result = {"ETag": quote_etag(etag), "LastModified": dt.datetime.now(dt.UTC)}
        return xml_reply(x.document("CopyPartResult", result))

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
        return reply

    def abort_upload(self, call: Call, bucket: BucketInfo) -> Reply:
        self.service.authorize(call.principal, bucket, "s3:AbortMultipartUpload", call.key)
        self.service.abort_upload(bucket, call.key, call.query["uploadId"])
        return Reply(204)
