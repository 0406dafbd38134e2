"""S3 Object Lock on the wire: the bucket's configuration, a version's retention and legal
hold, and the `x-amz-object-lock-*` headers of writes.

Parses and renders S3's documents and headers; the rules (what may be shortened,
what may be deleted) are `locks`' and the service's. Requests that change a lock
must carry Content-MD5 or an `x-amz-checksum-*`, as on S3.
"""

from __future__ import annotations

from souverain.config import ObjectStoreSettings
from souverain.objectstore import locks
from souverain.objectstore import xml as x
from souverain.objectstore.api.wire import (
    Call,
    Reply,
    check_body_md5,
    parse_xml,
    version_header,
    xml_body,
    xml_reply,
)
from souverain.objectstore.errors import S3Error
from souverain.objectstore.records import BucketInfo, NewObject, ObjectInfo, utcnow
from souverain.objectstore.service import ObjectStoreService

MODE = "x-amz-object-lock-mode"
UNTIL = "x-amz-object-lock-retain-until-date"
HOLD = "x-amz-object-lock-legal-hold"
BYPASS = "x-amz-bypass-governance-retention"
LOCK_HEADERS = (MODE, UNTIL, HOLD)


def parse_hold(value: str) -> bool:
    if value not in ("ON", "OFF"):
        raise S3Error("InvalidArgument", "Legal Hold must be either of 'ON' or 'OFF'")
    return value == "ON"


def lock_headers(obj: ObjectInfo) -> dict[str, str]:
    """What GET and HEAD tell of a version's retention and legal hold."""
    headers: dict[str, str] = {}
    if obj.lock_mode and obj.lock_until is not None:
        headers[MODE] = obj.lock_mode
        headers[UNTIL] = x.timestamp(obj.lock_until)
    if obj.legal_hold is not None:
        headers[HOLD] = "ON" if obj.legal_hold else "OFF"
    return headers


def apply_lock_request(
    call: Call, bucket: BucketInfo, template: NewObject, service: ObjectStoreService
) -> None:
    """Take a write's `x-amz-object-lock-*` headers into the new version, checked:
    both retention headers or neither, a known mode, a future date, and the caller
    allowed to set retention and legal holds."""
    if not any(h in call.headers for h in LOCK_HEADERS):
        return
    if bucket.object_lock is None:
        raise S3Error("InvalidRequest", locks.NO_CONFIGURATION, call.resource)
    mode, until = call.header(MODE), call.header(UNTIL)
    if bool(mode) != bool(until):
        raise S3Error(
            "InvalidArgument",
            "x-amz-object-lock-retain-until-date and x-amz-object-lock-mode must both be supplied",
            call.resource,
        )
    if mode:
        service.authorize(call.principal, bucket, "s3:PutObjectRetention", call.key)
        wanted = locks.future_retention(mode, locks.parse_date(until), utcnow(service.clock))
        template.lock_mode, template.lock_until = wanted.mode, wanted.until
    if HOLD in call.headers:
        service.authorize(call.principal, bucket, "s3:PutObjectLegalHold", call.key)
        template.legal_hold = parse_hold(call.header(HOLD))


class LockHandlers:
    """GET/PUT ?object-lock on a bucket, ?retention and ?legal-hold on an object."""

    def __init__(self, service: ObjectStoreService, settings: ObjectStoreSettings) -> None:
        self.service = service
        self.settings = settings

    def bypass(self, call: Call, bucket: BucketInfo, key: str) -> bool:
        """Whether a request asks to override GOVERNANCE retention and may.

        Asked without the permission, the header counts for nothing: the lock holds."""
        if call.header(BYPASS).strip().lower() != "true":
            return False
        return self.service.may_bypass_governance(call.principal, bucket, key)

    @staticmethod
    def _require_lock(call: Call, bucket: BucketInfo) -> None:
        if bucket.object_lock is None:
            raise S3Error("InvalidRequest", locks.NO_CONFIGURATION, call.resource)

    def get_configuration(self, call: Call, bucket: BucketInfo) -> Reply:
        self.service.owner_only(call.principal, bucket, write=False)
        if bucket.object_lock is None:
            raise S3Error(
                "ObjectLockConfigurationNotFoundError",
                "Object Lock configuration does not exist for this bucket",
                call.resource,
            )
        content: dict[str, object] = {"ObjectLockEnabled": "Enabled"}
        if bucket.object_lock:
            content["Rule"] = {"DefaultRetention": dict(bucket.object_lock)}
        return xml_reply(x.document("ObjectLockConfiguration", content))

    async def put_configuration(self, call: Call, bucket: BucketInfo) -> Reply:
        self.service.owner_only(call.principal, bucket)
        body = await xml_body(call, self.settings)
        check_body_md5(call, body)
        element = parse_xml(body, "ObjectLockConfiguration")
        if x.text(element, "ObjectLockEnabled") != "Enabled":
            raise S3Error("MalformedXML", "ObjectLockEnabled must be Enabled.")
        rule: dict[str, object] = {}
        if element.find("Rule") is not None:
            retention = element.find("Rule/DefaultRetention")
            if retention is None:
                raise S3Error("MalformedXML", "An Object Lock Rule needs a DefaultRetention.")
            rule = locks.check_rule(
                x.text(retention, "Mode"), x.text(retention, "Days"), x.text(retention, "Years")
            )
        self.service.set_object_lock(bucket, rule)
        return Reply(200)

    def _version(self, call: Call, bucket: BucketInfo, action: str) -> ObjectInfo:
        self.service.authorize(call.principal, bucket, action, call.key)
        self._require_lock(call, bucket)
        version_id = call.query.get("versionId")
        try:
            obj = self.service.head_object(bucket, call.key, version_id)
        except S3Error:
            self.service.authorize(call.principal, bucket, "s3:ListBucket")
            raise
        self.service.authorize(call.principal, bucket, action, call.key)
        if obj.is_delete_marker:
            raise S3Error(
                "MethodNotAllowed",
                "The specified method is not allowed against this resource.",
                call.resource,
            )
        return obj

    def get_retention(self, call: Call, bucket: BucketInfo) -> Reply:
        obj = self._version(call, bucket, "s3:GetObjectRetention")
        if not obj.lock_mode or obj.lock_until is None:
            raise S3Error(
                "NoSuchObjectLockConfiguration",
                "The specified object does not have a ObjectLock configuration",
                call.resource,
            )
        document = x.document(
            "Retention", {"Mode": obj.lock_mode, "RetainUntilDate": obj.lock_until}
        )
        return xml_reply(document)

    async def put_retention(self, call: Call, bucket: BucketInfo) -> Reply:
        self.service.authorize(call.principal, bucket, "s3:PutObjectRetention", call.key)
        self._require_lock(call, bucket)
        body = await xml_body(call, self.settings)
        check_body_md5(call, body)
        element = parse_xml(body, "Retention")
        mode, until = x.text(element, "Mode"), x.text(element, "RetainUntilDate")
        wanted: locks.Retention | None = None
        if mode or until:
            if not (mode and until):
                raise S3Error("MalformedXML", "A Retention needs both Mode and RetainUntilDate.")
            now = utcnow(self.service.clock)
            wanted = locks.future_retention(mode, locks.parse_date(until), now)
        version = self.service.set_retention(
            bucket,
            call.key,
            call.query.get("versionId"),
            wanted,
            self.bypass(call, bucket, call.key),
        )
        return Reply(200, headers=version_header(bucket, version))

    def get_legal_hold(self, call: Call, bucket: BucketInfo) -> Reply:
        obj = self._version(call, bucket, "s3:GetObjectLegalHold")
        if obj.legal_hold is None:
            raise S3Error(
                "NoSuchObjectLockConfiguration",
                "The specified object does not have a ObjectLock configuration",
                call.resource,
            )
        status = "ON" if obj.legal_hold else "OFF"
        return xml_reply(x.document("LegalHold", {"Status": status}))

    async def put_legal_hold(self, call: Call, bucket: BucketInfo) -> Reply:
        self.service.authorize(call.principal, bucket, "s3:PutObjectLegalHold", call.key)
        self._require_lock(call, bucket)
        body = await xml_body(call, self.settings)
        check_body_md5(call, body)
        on = parse_hold(x.text(parse_xml(body, "LegalHold"), "Status"))
        version = self.service.set_legal_hold(bucket, call.key, call.query.get("versionId"), on)
        return Reply(200, headers=version_header(bucket, version))
