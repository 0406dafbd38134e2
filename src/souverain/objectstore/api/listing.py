"""S3 listings: buckets, objects (v1 and v2), versions, multipart uploads and their parts.

Query parameters in, S3's XML out, with S3's markers, continuation tokens and
url encoding; the pages themselves come from the service.
"""

from __future__ import annotations

import base64
import binascii
import urllib.parse
from typing import Any

from souverain.objectstore import xml as x
from souverain.objectstore.api.wire import Call, Reply, quote_etag, xml_reply
from souverain.objectstore.errors import S3Error
from souverain.objectstore.records import BucketInfo
from souverain.objectstore.service import ObjectStoreService


class ListingHandlers:
    """Every S3 list operation, rendered as S3 renders it."""

    def __init__(self, service: ObjectStoreService) -> None:
        self.service = service

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


def _encode_token(key: str) -> str:
    return base64.urlsafe_b64encode(key.encode()).decode()


def _decode_token(token: str) -> str:
    try:
        return base64.urlsafe_b64decode(token.encode()).decode()
    except (ValueError, binascii.Error):
        raise S3Error("InvalidArgument", "The continuation token provided is incorrect") from None
