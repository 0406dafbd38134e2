"""S3 access control lists: canned ACLs as grants, explicit grants, and what each permits.

A grant gives one grantee one permission: a project (S3's canonical user id is the
project id), everyone (AllUsers) or every signed-in caller (AuthenticatedUsers). A
bucket or object keeps its canned ACL by name, or its explicit grants; ownership still
gives the owning project everything, whatever the grants say. Pure rules: no HTTP.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from souverain.objectstore.errors import S3Error

GROUPS = "http://acs.amazonaws.com/groups/"
ALL_USERS = GROUPS + "global/AllUsers"
AUTHENTICATED_USERS = GROUPS + "global/AuthenticatedUsers"
LOG_DELIVERY = GROUPS + "s3/LogDelivery"
KNOWN_GROUPS = frozenset({ALL_USERS, AUTHENTICATED_USERS, LOG_DELIVERY})
PERMISSIONS = ("READ", "WRITE", "READ_ACP", "WRITE_ACP", "FULL_CONTROL")
CANNED = (
    "private",
    "public-read",
    "public-read-write",
    "authenticated-read",
    "bucket-owner-read",
    "bucket-owner-full-control",
    "log-delivery-write",
)
CUSTOM = "custom"  # the `acl` column of a bucket or object with explicit grants
MAX_GRANTS = 100
GRANT_HEADERS = {
    "x-amz-grant-read": "READ",
    "x-amz-grant-write": "WRITE",
    "x-amz-grant-read-acp": "READ_ACP",
    "x-amz-grant-write-acp": "WRITE_ACP",
    "x-amz-grant-full-control": "FULL_CONTROL",
}
_PROJECT_ID = re.compile(r"[0-9a-zA-Z_-]{1,64}")
_GRANTEE = re.compile(r'\s*(id|uri|emailAddress)\s*=\s*"([^"]*)"\s*(?:,|$)', re.IGNORECASE)

# What each permission lets a grantee do, on a bucket and on an object.
BUCKET_ACTIONS = {
    "READ": frozenset({"s3:ListBucket", "s3:ListBucketVersions", "s3:ListBucketMultipartUploads"}),
    "WRITE": frozenset(
        {
            "s3:PutObject",
            "s3:DeleteObject",
            "s3:DeleteObjectVersion",
            "s3:AbortMultipartUpload",
            "s3:ListMultipartUploadParts",
        }
    ),
    "READ_ACP": frozenset({"s3:GetBucketAcl"}),
    "WRITE_ACP": frozenset({"s3:PutBucketAcl"}),
}
OBJECT_ACTIONS = {
    "READ": frozenset(
        {
            "s3:GetObject",
            "s3:GetObjectVersion",
            "s3:GetObjectAttributes",
            "s3:GetObjectVersionAttributes",
        }
    ),
    "READ_ACP": frozenset({"s3:GetObjectAcl", "s3:GetObjectVersionAcl"}),
    "WRITE_ACP": frozenset({"s3:PutObjectAcl", "s3:PutObjectVersionAcl"}),
}


@dataclass(frozen=True)
class Grant:
    """`grantee` is a project id ("CanonicalUser") or a group URI ("Group")."""

    kind: str
    grantee: str
    permission: str

    def to_json(self) -> dict[str, str]:
        return {"Type": self.kind, "Grantee": self.grantee, "Permission": self.permission}

    @classmethod
    def of(cls, data: dict[str, Any]) -> Grant:
        return cls(data["Type"], data["Grantee"], data["Permission"])


def canned(acl: str, owner: str, bucket_owner: str | None = None) -> list[Grant]:
    """The grants a canned ACL stands for (`bucket_owner`: of the object's bucket)."""
    grants = [Grant("CanonicalUser", owner, "FULL_CONTROL")]
    if acl in ("public-read", "public-read-write"):
        grants.append(Grant("Group", ALL_USERS, "READ"))
    if acl == "public-read-write":
        grants.append(Grant("Group", ALL_USERS, "WRITE"))
    if acl == "authenticated-read":
        grants.append(Grant("Group", AUTHENTICATED_USERS, "READ"))
    owner_grant = acl in ("bucket-owner-read", "bucket-owner-full-control")
    if owner_grant and bucket_owner and bucket_owner != owner:
        permission = "READ" if acl == "bucket-owner-read" else "FULL_CONTROL"
        grants.append(Grant("CanonicalUser", bucket_owner, permission))
    if acl == "log-delivery-write":
        grants += [Grant("Group", LOG_DELIVERY, "WRITE"), Grant("Group", LOG_DELIVERY, "READ_ACP")]
    return grants


def check_canned(acl: str) -> str:
    if acl not in CANNED:
        raise S3Error("InvalidArgument", f"The canned ACL {acl!r} is not one S3 knows.")
    return acl


def grantee(kind: str, value: str) -> Grant:
    """A grantee as a request names it (permission left empty), checked."""
    kind = kind.lower()
    if kind in ("emailaddress", "amazoncustomerbyemail"):
        raise S3Error(
            "UnresolvableGrantByEmailAddress",
            "The e-mail address you provided does not match any account on record: grant "
            "to a project id instead.",
        )
    if kind in ("id", "canonicaluser"):
        if not _PROJECT_ID.fullmatch(value):
            raise S3Error("InvalidArgument", f"Invalid id: {value!r} is not a project id.")
        return Grant("CanonicalUser", value, "")
    if kind in ("uri", "group"):
        if value not in KNOWN_GROUPS:
            raise S3Error("InvalidArgument", f"Invalid group uri: {value!r}")
        return Grant("Group", value, "")
    raise S3Error("InvalidArgument", f"Unknown grantee type {kind!r}.")


def from_headers(headers: dict[str, str]) -> list[Grant] | None:
    """The grants of `x-amz-grant-*` headers (None when there are none)."""
    grants: list[Grant] = []
    for header, permission in GRANT_HEADERS.items():
        value = headers.get(header)
        if value is None:
            continue
        matches = list(_GRANTEE.finditer(value))
        if not matches or sum(len(m.group(0)) for m in matches) != len(value):
            raise S3Error(
                "InvalidArgument", f'{header} takes id="...", uri="..." grantees, comma separated.'
            )
        for match in matches:
            found = grantee(match.group(1), match.group(2))
            grants.append(Grant(found.kind, found.grantee, permission))
    if not grants:
        return None
    return check_grants(grants)


def check_grants(grants: list[Grant]) -> list[Grant]:
    if len(grants) > MAX_GRANTS:
        raise S3Error("MalformedACLError", f"An access control list holds at most {MAX_GRANTS}.")
    for g in grants:
        if g.permission not in PERMISSIONS:
            raise S3Error("MalformedACLError", f"Unknown permission {g.permission!r}.")
    return grants


def grants_of(
    acl: str, stored: list[dict[str, Any]] | None, owner: str, bucket_owner: str | None = None
) -> list[Grant]:
    """What a bucket or object grants: its explicit grants, or its canned ACL's."""
    if stored is not None:
        return [Grant.of(g) for g in stored]
    return canned(acl, owner, bucket_owner)


def is_public(acl: str, stored: list[dict[str, Any]] | None) -> bool:
    """Whether an ACL grants anything to everyone or to every signed-in caller."""
    if stored is None:
        return acl in ("public-read", "public-read-write", "authenticated-read")
    return any(g["Grantee"] in (ALL_USERS, AUTHENTICATED_USERS) for g in stored)


def _applies(g: Grant, project_id: str | None, ignore_public: bool) -> bool:
    if g.kind == "CanonicalUser":
        return project_id is not None and g.grantee == project_id
    if ignore_public:
        return False
    return g.grantee == ALL_USERS or (g.grantee == AUTHENTICATED_USERS and project_id is not None)


def permits(
    grants: list[Grant],
    project_id: str | None,
    action: str,
    table: dict[str, frozenset[str]],
    ignore_public: bool = False,
) -> bool:
    """Whether any grant to this caller (a project, or None: anonymous) allows `action`."""
    for g in grants:
        if not _applies(g, project_id, ignore_public):
            continue
        if g.permission == "FULL_CONTROL":
            if any(action in actions for actions in table.values()):
                return True
        elif action in table.get(g.permission, frozenset()):
            return True
    return False
