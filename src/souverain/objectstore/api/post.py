"""S3 POST Object: a browser form upload signed with a SigV4 POST policy.

The fields before the file are read first and checked (signature over the policy,
then every policy condition) before any byte of the file is taken; the file streams
into a blob, held to the policy's content-length-range. The SSE fields ask for an
encryption as a PUT's SSE headers do (else the bucket default applies). The answer
follows the form's success_action_redirect or success_action_status, as S3's does.
"""

from __future__ import annotations

import asyncio
import dataclasses
import datetime as dt
import hashlib
import hmac
import urllib.parse

from souverain.config import ObjectStoreSettings
from souverain.objectstore import post_policy, sigv4
from souverain.objectstore import xml as x
from souverain.objectstore.api.buckets import parse_tagging
from souverain.objectstore.api.form import FormData, boundary_of
from souverain.objectstore.api.objects import STORED_HEADERS, object_template
from souverain.objectstore.api.sse import (
    CUSTOMER,
    KMS_KEY,
    SSE,
    etag_of,
    seal_for_write,
    sse_headers,
)
from souverain.objectstore.api.wire import (
    Body,
    Call,
    Reply,
    quote_etag,
    request_context,
    version_header,
)
from souverain.objectstore.encryption import Seal, apply_seal, blob_writer
from souverain.objectstore.errors import S3Error
from souverain.objectstore.policy import ANONYMOUS, Principal
from souverain.objectstore.records import BucketInfo, NewObject, check_key, check_tags
from souverain.objectstore.service import ObjectStoreService
from souverain.objectstore.store import BlobWriter

FIELD_LIMIT = 64 * 1024  # all fields before the file together
SIGNED_FIELDS = ("x-amz-algorithm", "x-amz-credential", "x-amz-date", "x-amz-signature")
# The SSE fields a form may carry, as a PUT's headers (bucket policies see the first two).
SSE_FIELDS = (SSE, KMS_KEY, CUSTOMER + "algorithm", CUSTOMER + "key", CUSTOMER + "key-md5")
REFUSED_PREFIXES = (
    SSE,  # but SSE_FIELDS
    "x-amz-object-lock",
    "x-amz-grant",
    "x-amz-checksum",
)


def missing(name: str) -> S3Error:
    return S3Error(
        "InvalidArgument",
        f"Bucket POST must contain a field named '{name}'.  If it is specified, please check "
        "the order of the fields.",
    )


class PostHandlers:
    """POST on a bucket with a multipart/form-data body."""

    def __init__(self, service: ObjectStoreService, settings: ObjectStoreSettings) -> None:
        self.service = service
        self.settings = settings

    async def post_object(self, call: Call, bucket: BucketInfo) -> Reply:
        boundary = boundary_of(call.header("content-type"))
        limit = self.settings.max_object_bytes + FIELD_LIMIT
        body = Body(call, limit, self.settings.body_idle_timeout)
        form = FormData(body.chunks(), boundary, FIELD_LIMIT)
        fields = await form.fields()
        if not fields.get("key"):
            raise missing("key")
        fields["key"] = fields["key"].replace("${filename}", form.filename)
        key = fields["key"]
        check_key(key)
        principal, size = self._authenticate(fields, bucket)
        call.principal = principal
        if bucket.needs_context:  # the form's fields are its request's acl and SSE headers
            context = request_context(call, self.service.clock.now())
            for name in ("acl", SSE, KMS_KEY):
                if name in fields:
                    context["s3:x-amz-acl" if name == "acl" else f"s3:{name}"] = fields[name]
            principal = call.principal = dataclasses.replace(principal, context=context)
        self.service.authorize(principal, bucket, "s3:PutObject", key)
        as_put = self._as_put(call, fields)
        template = self._template(as_put, fields)
        self.service.refuse_public_acl(bucket, template.acl, template.grants)
        seal = await seal_for_write(as_put, bucket, self.service, self.settings)
        writer = await self._receive(form, fields, size, seal)
        await form.drain()
        template.size, template.etag = writer.size, etag_of(seal, writer.digests.hex("md5"))
        template.segments = [[writer.blob_id, writer.size]]
        apply_seal(template, seal)
        info = await asyncio.to_thread(self.service.put_object, principal, bucket, key, template)
        reply = self._reply(call, bucket, key, info.etag, info.version_id, fields)
        reply.headers.update(sse_headers(seal, self.service.region))
        return reply

    def _authenticate(
        self, fields: dict[str, str], bucket: BucketInfo
    ) -> tuple[Principal, post_policy.SizeRange | None]:
        """Who signed the form, and the size its policy allows; anonymous without a policy."""
        if "policy" not in fields and not any(f in fields for f in SIGNED_FIELDS):
            return ANONYMOUS, None
        for name in ("policy", *SIGNED_FIELDS):
            if not fields.get(name):
                raise missing(name)
        if fields["x-amz-algorithm"] != sigv4.ALGORITHM:
            raise S3Error("InvalidArgument", f"x-amz-algorithm must be {sigv4.ALGORITHM}.")
        parts = fields["x-amz-credential"].split("/")
        if len(parts) != 5 or parts[3:] != ["s3", "aws4_request"] or not parts[0]:
            raise S3Error(
                "InvalidArgument",
                'x-amz-credential must be "<ACCESS-KEY>/YYYYMMDD/REGION/s3/aws4_request".',
            )
        access_key, date, region = parts[:3]
        if region != self.service.region:
            raise S3Error(
                "InvalidArgument",
                f"the region '{region}' is wrong; expecting '{self.service.region}'",
                details={"Region": self.service.region},
            )
        if date != fields["x-amz-date"][:8]:
            raise S3Error("InvalidArgument", "The credential date is not the x-amz-date's.")
        found = self.service.authenticate(access_key)
        if found is None:
            raise S3Error(
                "InvalidAccessKeyId",
                "The AWS Access Key Id you provided does not exist in our records.",
            )
        secret, principal = found
        signing_key = sigv4.signing_key(secret, date, region, "s3")
        expected = hmac.new(signing_key, fields["policy"].encode(), hashlib.sha256).hexdigest()
        if not hmac.compare_digest(expected, fields["x-amz-signature"].strip().lower()):
            raise S3Error("SignatureDoesNotMatch", sigv4.SIGNATURE_MISMATCH)
        document = post_policy.decode(fields["policy"])
        now = self.service.clock.now().astimezone(dt.UTC)
        return principal, post_policy.check(document, fields, bucket.name, now)

    @staticmethod
    def _as_put(call: Call, fields: dict[str, str]) -> Call:
        """The form as the PUT it stands for: its fields as that PUT's headers."""
        refused = [f for f in fields if f.startswith(REFUSED_PREFIXES) and f not in SSE_FIELDS]
        if refused:
            raise S3Error(
                "NotImplemented",
                f"The form field {refused[0]!r} asks for what form uploads here do not offer.",
            )
        if fields.get("x-amz-storage-class", "STANDARD").upper() != "STANDARD":
            raise S3Error("InvalidStorageClass", "The storage class you specified is not valid")
        headers = {name: fields[name] for name in (*STORED_HEADERS, *SSE_FIELDS) if name in fields}
        headers.update({n: v for n, v in fields.items() if n.startswith("x-amz-meta-")})
        if "acl" in fields:
            headers["x-amz-acl"] = fields["acl"]
        return Call(
            call.scope,
            call.receive,
            "PUT",
            call.bucket,
            fields["key"],
            {},
            headers,
            call.request_id,
            call.principal,
        )

    @staticmethod
    def _template(as_put: Call, fields: dict[str, str]) -> NewObject:
        """What the new version carries, from the form's fields as a PUT's headers."""
        template = object_template(as_put)
        if "tagging" in fields:
            template.tags = parse_tagging(fields["tagging"].encode())
            check_tags(template.tags)
        return template

    async def _receive(
        self,
        form: FormData,
        fields: dict[str, str],
        size: post_policy.SizeRange | None,
        seal: Seal | None = None,
    ) -> BlobWriter:
        """The file into a durable blob, within the policy's size range and Content-MD5."""
        writer = blob_writer(self.service.store, seal)
        try:
            async for chunk in form.file_chunks():
                if size is not None and writer.size + len(chunk) > size.most:
                    raise S3Error(
                        "EntityTooLarge",
                        "Your proposed upload exceeds the maximum allowed size",
                    )
                await asyncio.to_thread(writer.write, chunk)
            if size is not None and writer.size < size.least:
                raise S3Error(
                    "EntityTooSmall",
                    "Your proposed upload is smaller than the minimum allowed size",
                )
            md5 = fields.get("content-md5")
            if md5 is not None and not hmac.compare_digest(writer.digests.b64("md5"), md5.strip()):
                raise S3Error("BadDigest", "The Content-MD5 you specified did not match.")
            await asyncio.to_thread(writer.commit)
        except BaseException:
            writer.abort()
            raise
        return writer

    @staticmethod
    def _reply(
        call: Call, bucket: BucketInfo, key: str, etag: str, version_id: str, fields: dict[str, str]
    ) -> Reply:
        scheme = call.scope.get("scheme", "http")
        location = f"{scheme}://{call.header('host')}/{bucket.name}/{urllib.parse.quote(key)}"
        headers = {"etag": quote_etag(etag), "location": location}
        headers.update(version_header(bucket, version_id))
        redirect = fields.get("success_action_redirect") or fields.get("redirect", "")
        if urllib.parse.urlsplit(redirect).scheme in ("http", "https"):
            query = urllib.parse.urlencode(
                {"bucket": bucket.name, "key": key, "etag": quote_etag(etag)}
            )
            joiner = "&" if urllib.parse.urlsplit(redirect).query else "?"
            headers["location"] = f"{redirect}{joiner}{query}"
            return Reply(303, headers=headers)
        status = fields.get("success_action_status", "204")
        if status == "201":
            document = x.document(
                "PostResponse",
                {"Location": location, "Bucket": bucket.name, "Key": key, "ETag": quote_etag(etag)},
            )
            return Reply(201, document, {**headers, "content-type": "application/xml"})
        return Reply(200 if status == "200" else 204, headers=headers)
