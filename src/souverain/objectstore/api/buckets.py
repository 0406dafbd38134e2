"""S3 bucket operations: create, head, delete, and each configuration sub-resource.

Location, versioning, ACL, policy, CORS rules and tags: parsed from and rendered to
S3's XML (or JSON, for policies) here; the rules live in the service. The ACL and
tagging documents are shared with the object handlers.
"""

from __future__ import annotations

from typing import Any
from xml.sax.saxutils import escape

from souverain.config import ObjectStoreSettings
from souverain.objectstore import acl as acl_rules
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


class BucketHandlers:
    """The bucket itself and its configuration sub-resources."""

    def __init__(self, service: ObjectStoreService, settings: ObjectStoreSettings) -> None:
        self.service = service
        self.settings = settings
        self.region = service.region

    async def create_bucket(self, call: Call) -> Reply:
        body = await xml_body(call, self.settings, required=False)
        location: str | None = None
        if body:
            element = parse_xml(body, "CreateBucketConfiguration")
            location = x.text(element, "LocationConstraint") or None
        acl, grants = acl_from_headers(call)
        lock = call.header("x-amz-bucket-object-lock-enabled").strip().lower()
        if lock not in ("", "true", "false"):
            raise S3Error(
                "InvalidArgument", "x-amz-bucket-object-lock-enabled must be true or false."
            )
        self.service.create_bucket(
            call.principal, call.bucket, location, acl or "private", lock == "true", grants
        )
        return Reply(200, headers={"location": f"/{call.bucket}"})

    def head_bucket(self, call: Call, bucket: BucketInfo) -> Reply:
        self.service.authorize(call.principal, bucket, "s3:ListBucket")
        return Reply(200, headers={"x-amz-bucket-region": self.region})

    def delete_bucket(self, call: Call, bucket: BucketInfo) -> Reply:
        self.service.owner_only(call.principal, bucket)
        self.service.delete_bucket(bucket)
        return Reply(204)

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
        element = parse_xml(await xml_body(call, self.settings), "VersioningConfiguration")
        if x.text(element, "MfaDelete") == "Enabled":
            raise S3Error("NotImplemented", "MFA delete is not supported.")
        self.service.set_versioning(bucket, x.text(element, "Status"))
        return Reply(200)

    def get_bucket_acl(self, call: Call, bucket: BucketInfo) -> Reply:
        self.service.authorize(call.principal, bucket, "s3:GetBucketAcl")
        return acl_document(bucket.project_id, bucket.acl, bucket.grants)

    async def put_bucket_acl(self, call: Call, bucket: BucketInfo) -> Reply:
        self.service.authorize(call.principal, bucket, "s3:PutBucketAcl")
        acl, grants = await acl_from_request(call, self.settings)
        self.service.set_bucket_acl(bucket, acl, grants)
        return Reply(200)

    def get_policy(self, call: Call, bucket: BucketInfo) -> Reply:
        self.service.owner_only(call.principal, bucket, write=False)
        if not bucket.policy:
            raise S3Error("NoSuchBucketPolicy", "The bucket policy does not exist", call.resource)
        return Reply(200, bucket.policy.encode(), {"content-type": "application/json"})

    async def put_policy(self, call: Call, bucket: BucketInfo) -> Reply:
        self.service.owner_only(call.principal, bucket)
        body = await xml_body(call, self.settings)
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
        element = parse_xml(await xml_body(call, self.settings), "CORSConfiguration")
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
        return xml_reply(tagging_document(bucket.tags))

    async def put_bucket_tags(self, call: Call, bucket: BucketInfo) -> Reply:
        self.service.owner_only(call.principal, bucket)
        tags = parse_tagging(await xml_body(call, self.settings))
        self.service.set_bucket_tags(bucket, tags)
        return Reply(204)

    def delete_bucket_tags(self, call: Call, bucket: BucketInfo) -> Reply:
        self.service.owner_only(call.principal, bucket)
        self.service.set_bucket_tags(bucket, None)
        return Reply(204)


PUBLIC_ACCESS_FLAGS = (
    "BlockPublicAcls",
    "IgnorePublicAcls",
    "BlockPublicPolicy",
    "RestrictPublicBuckets",
)


class PublicAccessHandlers:
    """GET, PUT and DELETE ?publicAccessBlock: the owning project's to change."""

    def __init__(self, service: ObjectStoreService, settings: ObjectStoreSettings) -> None:
        self.service = service
        self.settings = settings

    def get_block(self, call: Call, bucket: BucketInfo) -> Reply:
        self.service.owner_only(call.principal, bucket, write=False)
        if bucket.public_access_block is None:
            raise S3Error(
                "NoSuchPublicAccessBlockConfiguration",
                "The public access block configuration was not found",
                call.resource,
            )
        flags = {f: bucket.public_access_block.get(f, False) for f in PUBLIC_ACCESS_FLAGS}
        return xml_reply(x.document("PublicAccessBlockConfiguration", flags))

    async def put_block(self, call: Call, bucket: BucketInfo) -> Reply:
        self.service.owner_only(call.principal, bucket)
        body = await xml_body(call, self.settings)
        check_body_md5(call, body)
        element = parse_xml(body, "PublicAccessBlockConfiguration")
        flags: dict[str, bool] = {}
        for name in PUBLIC_ACCESS_FLAGS:
            value = x.text(element, name, "false").strip().lower()
            if value not in ("true", "false"):
                raise S3Error("MalformedXML", f"{name} must be true or false.")
            flags[name] = value == "true"
        self.service.set_public_access_block(bucket, flags)
        return Reply(200)

    def delete_block(self, call: Call, bucket: BucketInfo) -> Reply:
        self.service.owner_only(call.principal, bucket)
        self.service.set_public_access_block(bucket, None)
        return Reply(204)


_XSI = "http://www.w3.org/2001/XMLSchema-instance"


def acl_document(
    owner: str, acl: str, grants: list[dict[str, str]] | None, bucket_owner: str | None = None
) -> Reply:
    """GetBucketAcl / GetObjectAcl: the owner and every grant (canned ACLs as grants)."""
    rendered = []
    for g in acl_rules.grants_of(acl, grants, owner, bucket_owner):
        if g.kind == "CanonicalUser":
            who = f"<ID>{escape(g.grantee)}</ID><DisplayName>{escape(g.grantee)}</DisplayName>"
        else:
            who = f"<URI>{escape(g.grantee)}</URI>"
        rendered.append(
            f'<Grant><Grantee xmlns:xsi="{_XSI}" xsi:type="{g.kind}">{who}</Grantee>'
            f"<Permission>{g.permission}</Permission></Grant>"
        )
    inner = (
        f"<Owner><ID>{escape(owner)}</ID><DisplayName>{escape(owner)}</DisplayName></Owner>"
        f"<AccessControlList>{''.join(rendered)}</AccessControlList>"
    )
    return xml_reply(x.raw_document("AccessControlPolicy", inner))


def acl_from_headers(call: Call) -> tuple[str | None, list[dict[str, str]] | None]:
    """A write's x-amz-acl or x-amz-grant-* headers: (canned ACL, explicit grants)."""
    canned = call.header("x-amz-acl") or None
    grants = acl_rules.from_headers(call.headers)
    if canned is not None and grants is not None:
        raise S3Error(
            "InvalidRequest", "Specifying both Canned ACLs and Header Grants is not allowed"
        )
    if grants is not None:
        return acl_rules.CUSTOM, [g.to_json() for g in grants]
    if canned is not None:
        acl_rules.check_canned(canned)
    return canned, None


def _grant_type(element: Any) -> str:
    for name, value in element.attrib.items():
        if name == "type" or name.endswith("}type"):
            return str(value)
    return ""


def parse_access_control_policy(body: bytes) -> list[dict[str, str]]:
    """An AccessControlPolicy document's grants, checked."""
    element = parse_xml(body, "AccessControlPolicy")
    grants: list[acl_rules.Grant] = []
    for node in element.findall("AccessControlList/Grant"):
        grantee_node = node.find("Grantee")
        if grantee_node is None:
            raise S3Error("MalformedACLError", "Every Grant needs a Grantee.")
        kind = _grant_type(grantee_node)
        value = (
            x.text(grantee_node, "ID")
            or x.text(grantee_node, "URI")
            or x.text(grantee_node, "EmailAddress")
        )
        found = acl_rules.grantee(kind or "id", value)
        grants.append(acl_rules.Grant(found.kind, found.grantee, x.text(node, "Permission")))
    return [g.to_json() for g in acl_rules.check_grants(grants)]


async def acl_from_request(
    call: Call, settings: ObjectStoreSettings
) -> tuple[str, list[dict[str, str]] | None]:
    """PutBucketAcl / PutObjectAcl: a canned ACL, grant headers, or an ACL document."""
    canned, grants = acl_from_headers(call)
    body = await xml_body(call, settings, required=canned is None)
    if canned is not None:
        if body:
            raise S3Error(
                "UnexpectedContent", "This request does not support content with an ACL header."
            )
        return canned, grants
    return acl_rules.CUSTOM, parse_access_control_policy(body)


def tagging_document(tags: dict[str, str]) -> bytes:
    return x.document(
        "Tagging", {"TagSet": {"Tag": [{"Key": k, "Value": v} for k, v in tags.items()]}}
    )


def parse_tagging(body: bytes) -> dict[str, str]:
    element = parse_xml(body, "Tagging")
    tags: dict[str, str] = {}
    for tag in element.findall("TagSet/Tag"):
        key = x.text(tag, "Key")
        if key in tags:
            raise S3Error("InvalidTag", "Cannot provide multiple Tags with the same key")
        tags[key] = x.text(tag, "Value")
    return tags
