"""S3 bucket lifecycle on the wire: Get, Put and DeleteBucketLifecycleConfiguration.

Parses S3's LifecycleConfiguration document into the stored rules (element names as
keys, numbers as numbers) and renders them back; the checks are `lifecycle`'s, the
sweep that acts on them is `expiration`'s.
"""

from __future__ import annotations

from typing import Any
from xml.etree.ElementTree import Element

from souverain.config import ObjectStoreSettings
from souverain.objectstore import lifecycle
from souverain.objectstore import xml as x
from souverain.objectstore.api.wire import (
    Call,
    Reply,
    check_body_md5,
    parse_xml,
    xml_body,
    xml_reply,
)
from souverain.objectstore.errors import S3Error
from souverain.objectstore.records import BucketInfo
from souverain.objectstore.service import ObjectStoreService

RULE_ELEMENTS = frozenset(
    {
        "ID",
        "Prefix",
        "Filter",
        "Status",
        "Expiration",
        "NoncurrentVersionExpiration",
        "AbortIncompleteMultipartUpload",
        "Transition",
        "NoncurrentVersionTransition",
    }
)
FILTER_ELEMENTS = ("Prefix", "Tag", "And", "ObjectSizeGreaterThan", "ObjectSizeLessThan")
SIZES = ("ObjectSizeGreaterThan", "ObjectSizeLessThan")


def _int(element: Element, name: str) -> int:
    text = x.text(element, name).strip()
    try:
        return int(text)
    except ValueError:
        raise S3Error("MalformedXML", f"{name} must be an integer, not {text!r}.") from None


def _tag(element: Element) -> dict[str, str]:
    return {"Key": x.text(element, "Key"), "Value": x.text(element, "Value")}


def parse_filter(element: Element) -> dict[str, Any]:
    """A rule's Filter: at most one condition, or an And of several."""
    present = [child.tag for child in element]
    if len(present) > 1 or any(tag not in FILTER_ELEMENTS for tag in present):
        raise S3Error("MalformedXML", "A Filter holds one of Prefix, Tag, And or a size bound.")
    if not present:
        return {}
    name = present[0]
    if name == "Prefix":
        return {"Prefix": x.text(element, "Prefix")}
    if name == "Tag":
        return {"Tag": _tag(element.find("Tag"))}  # type: ignore[arg-type]
    if name in SIZES:
        return {name: _int(element, name)}
    both = element.find("And")
    assert both is not None
    conditions: dict[str, Any] = {}
    if both.find("Prefix") is not None:
        conditions["Prefix"] = x.text(both, "Prefix")
    tags = [_tag(t) for t in both.findall("Tag")]
    if len({t["Key"] for t in tags}) != len(tags):
        raise S3Error("InvalidRequest", "Duplicate Tag Keys are not allowed.")
    if tags:
        conditions["Tag"] = tags
    for size in SIZES:
        if both.find(size) is not None:
            conditions[size] = _int(both, size)
    return {"And": conditions}


def parse_rule(element: Element) -> dict[str, Any]:
    names = [child.tag for child in element]
    unknown = set(names) - RULE_ELEMENTS
    if unknown:
        raise S3Error("MalformedXML", f"Unknown element in a lifecycle Rule: {sorted(unknown)[0]}.")
    if "Transition" in names or "NoncurrentVersionTransition" in names:
        raise S3Error(
            "InvalidStorageClass",
            "The storage class you specified is not valid: this store offers STANDARD only, "
            "so there is nothing to transition to.",
        )
    if ("Prefix" in names) == ("Filter" in names):
        raise S3Error("MalformedXML", "A Rule takes either a Filter or a Prefix.")
    rule: dict[str, Any] = {}
    if x.text(element, "ID"):
        rule["ID"] = x.text(element, "ID")
    if "Prefix" in names:
        rule["Prefix"] = x.text(element, "Prefix")
    else:
        rule["Filter"] = parse_filter(element.find("Filter"))  # type: ignore[arg-type]
    rule["Status"] = x.text(element, "Status")
    expiration = element.find("Expiration")
    if expiration is not None:
        rule["Expiration"] = _parse_expiration(expiration)
    noncurrent = element.find("NoncurrentVersionExpiration")
    if noncurrent is not None:
        action = {"NoncurrentDays": _int(noncurrent, "NoncurrentDays")}
        if noncurrent.find("NewerNoncurrentVersions") is not None:
            action["NewerNoncurrentVersions"] = _int(noncurrent, "NewerNoncurrentVersions")
        rule["NoncurrentVersionExpiration"] = action
    abort = element.find("AbortIncompleteMultipartUpload")
    if abort is not None:
        rule["AbortIncompleteMultipartUpload"] = {
            "DaysAfterInitiation": _int(abort, "DaysAfterInitiation")
        }
    return rule


def _parse_expiration(element: Element) -> dict[str, Any]:
    action: dict[str, Any] = {}
    if element.find("Days") is not None:
        action["Days"] = _int(element, "Days")
    if element.find("Date") is not None:
        action["Date"] = x.timestamp(lifecycle.parse_date(x.text(element, "Date")))
    if element.find("ExpiredObjectDeleteMarker") is not None:
        flag = x.text(element, "ExpiredObjectDeleteMarker").strip().lower()
        if flag not in ("true", "false"):
            raise S3Error("MalformedXML", "ExpiredObjectDeleteMarker must be true or false.")
        action["ExpiredObjectDeleteMarker"] = flag == "true"
    return action


class LifecycleHandlers:
    """GET, PUT and DELETE ?lifecycle on a bucket: the owning project's to change."""

    def __init__(self, service: ObjectStoreService, settings: ObjectStoreSettings) -> None:
        self.service = service
        self.settings = settings

    def get_lifecycle(self, call: Call, bucket: BucketInfo) -> Reply:
        self.service.owner_only(call.principal, bucket, write=False)
        if not bucket.lifecycle:
            raise S3Error(
                "NoSuchLifecycleConfiguration",
                "The lifecycle configuration does not exist",
                call.resource,
            )
        return xml_reply(x.document("LifecycleConfiguration", {"Rule": bucket.lifecycle}))

    async def put_lifecycle(self, call: Call, bucket: BucketInfo) -> Reply:
        self.service.owner_only(call.principal, bucket)
        body = await xml_body(call, self.settings)
        check_body_md5(call, body)
        element = parse_xml(body, "LifecycleConfiguration")
        rules = [parse_rule(rule) for rule in element.findall("Rule")]
        self.service.set_lifecycle(bucket, rules)
        return Reply(200)

    def delete_lifecycle(self, call: Call, bucket: BucketInfo) -> Reply:
        self.service.owner_only(call.principal, bucket)
        self.service.set_lifecycle(bucket, None)
        return Reply(204)
