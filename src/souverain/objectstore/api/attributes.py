"""S3 GetObjectAttributes: a version's ETag, checksum, parts, storage class and size in
one document, without its body. Reads the version row only; no bytes are opened.
"""

from __future__ import annotations

from typing import Any

from souverain.objectstore import xml as x
from souverain.objectstore.api.objects import ObjectHandlers
from souverain.objectstore.api.wire import Call, Reply, http_date, version_header, xml_reply
from souverain.objectstore.errors import S3Error
from souverain.objectstore.records import BucketInfo, ObjectInfo

ATTRIBUTES = ("ETag", "Checksum", "ObjectParts", "StorageClass", "ObjectSize")
MAX_PARTS = 1000


def wanted_attributes(call: Call) -> list[str]:
    """The attributes `x-amz-object-attributes` names, checked."""
    names = [n.strip() for n in call.header("x-amz-object-attributes").split(",") if n.strip()]
    if not names:
        raise S3Error(
            "InvalidArgument",
            "The x-amz-object-attributes header specifying the attributes to be retrieved "
            "is either missing or empty",
            call.resource,
        )
    for name in names:
        if name not in ATTRIBUTES:
            raise S3Error("InvalidArgument", f"Invalid attribute name specified: {name}")
    return names


def _number(call: Call, header: str, default: int) -> int:
    text = call.header(header)
    if not text:
        return default
    if not text.isdigit():
        raise S3Error("InvalidArgument", f"{header} must be a non-negative integer.")
    return int(text)


def _checksum(obj: ObjectInfo) -> dict[str, Any] | None:
    if not obj.checksums:
        return None
    found: dict[str, Any] = {}
    composite = False
    for alg, value in sorted(obj.checksums.items()):
        digest, dash, _ = value.partition("-")
        composite = composite or bool(dash)
        found[f"Checksum{alg.upper()}"] = digest
    found["ChecksumType"] = "COMPOSITE" if composite else "FULL_OBJECT"
    return found


def _parts(call: Call, obj: ObjectInfo) -> dict[str, Any] | None:
    """The parts of an object made by a multipart upload (others have none to show)."""
    if "-" not in obj.etag:
        return None
    marker = _number(call, "x-amz-part-number-marker", 0)
    most = min(_number(call, "x-amz-max-parts", MAX_PARTS), MAX_PARTS)
    sizes = [segment[1] for segment in obj.segments]
    shown = [
        {"PartNumber": n, "Size": size} for n, size in enumerate(sizes, start=1) if n > marker
    ][:most]
    truncated = bool(shown) and shown[-1]["PartNumber"] < len(sizes)
    parts: dict[str, Any] = {
        "PartsCount": len(sizes),
        "PartNumberMarker": marker,
        "NextPartNumberMarker": shown[-1]["PartNumber"] if shown else marker,
        "MaxParts": most,
        "IsTruncated": truncated,
        "Part": shown,
    }
    return parts


class AttributeHandlers:
    """GET ?attributes on an object."""

    def __init__(self, objects: ObjectHandlers) -> None:
        self.objects = objects

    def get_attributes(self, call: Call, bucket: BucketInfo) -> Reply:
        names = wanted_attributes(call)
        action = (
            "s3:GetObjectVersionAttributes"
            if "versionId" in call.query
            else ("s3:GetObjectAttributes")
        )
        obj = self.objects.lookup(call, bucket, action)
        values: dict[str, Any] = {
            "ETag": obj.etag,
            "Checksum": _checksum(obj),
            "ObjectParts": _parts(call, obj),
            "StorageClass": "STANDARD",
            "ObjectSize": obj.size,
        }
        content = [(name, values[name]) for name in ATTRIBUTES if name in names]
        reply = xml_reply(x.document("GetObjectAttributesResponse", content))
        reply.headers["last-modified"] = http_date(obj.last_modified)
        reply.headers.update(version_header(bucket, obj.version_id))
        return reply
