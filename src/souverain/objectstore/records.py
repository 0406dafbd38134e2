"""What the object store's rules take and hand back, and the checks on names and tags.

Plain records detached from the database session, so the API can keep them after
the transaction ends. Knows nothing of HTTP or XML.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from souverain.common.clock import Clock
from souverain.objectstore import models as m
from souverain.objectstore.errors import S3Error
from souverain.objectstore.policy import Statement, parse_policy

NULL_VERSION = "null"
MAX_KEY_BYTES = 1024
MAX_TAGS = 10
MAX_BUCKET_TAGS = 50

_BUCKET_NAME = re.compile(r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$")
_IP_LIKE = re.compile(r"^\d+\.\d+\.\d+\.\d+$")


def check_bucket_name(name: str) -> None:
    if (
        not _BUCKET_NAME.match(name)
        or ".." in name
        or ".-" in name
        or "-." in name
        or _IP_LIKE.match(name)
        or name.startswith("xn--")
    ):
        raise S3Error(
            "InvalidBucketName",
            "Bucket names are 3 to 63 lowercase letters, digits, dots and hyphens, "
            "starting and ending with a letter or digit.",
            name,
        )


def check_key(key: str) -> None:
    if not key:
        raise S3Error("InvalidArgument", "The object key must not be empty.")
    if len(key.encode("utf-8", "surrogatepass")) > MAX_KEY_BYTES:
        raise S3Error("KeyTooLongError", "Your key is too long: the limit is 1024 bytes.", key)
    if "\x00" in key:
        raise S3Error("InvalidArgument", "Object keys may not contain NUL characters.", key)


def check_tags(tags: dict[str, str], limit: int = MAX_TAGS, what: str = "Object") -> None:
    if len(tags) > limit:
        raise S3Error("InvalidTag", f"{what} tags cannot be greater than {limit}")
    for k, v in tags.items():
        if not k or len(k) > 128 or len(v) > 256:
            raise S3Error("InvalidTag", "Tag keys are 1-128 characters, values up to 256.")


def utcnow(clock: Clock) -> dt.datetime:
    return clock.now().astimezone(dt.UTC).replace(tzinfo=None)


def successor(prefix: str) -> str:
    """The smallest string greater than every string starting with `prefix`."""
    return prefix[:-1] + chr(ord(prefix[-1]) + 1)


@dataclass
class ObjectInfo:
    """A version as the API shows it (detached from the session)."""

    bucket: str
    key: str
    version_id: str
    is_latest: bool
    is_delete_marker: bool
    size: int
    etag: str
    segments: list[list[Any]]
    headers: dict[str, str]
    user_meta: dict[str, str]
    checksums: dict[str, str]
    tags: dict[str, str]
    acl: str
    owner: str
    last_modified: dt.datetime
    data: bytes | None = None  # the bytes of a small object kept inline
    lock_mode: str | None = None  # Object Lock retention: GOVERNANCE or COMPLIANCE
    lock_until: dt.datetime | None = None
    legal_hold: bool | None = None  # None: never set
    grants: list[dict[str, str]] | None = None  # explicit ACL grants (None: canned `acl`)
    sse: Sealed | None = None  # how its bytes are encrypted (None: plaintext)

    @classmethod
    def of(cls, bucket: str, row: Any) -> ObjectInfo:
        """From an ORM row or a Core row of the versions table."""
        return cls(
            bucket=bucket,
            key=row.key,
            version_id=row.version_id,
            is_latest=row.is_latest,
            is_delete_marker=row.is_delete_marker,
            size=row.size,
            etag=row.etag,
            segments=list(row.segments),
            headers=dict(row.headers),
            user_meta=dict(row.user_meta),
            checksums=dict(row.checksums),
            tags=dict(row.tags),
            acl=row.acl,
            owner=row.owner_project_id,
            last_modified=row.created_at,
            data=getattr(row, "data", None),
            lock_mode=getattr(row, "lock_mode", None),
            lock_until=getattr(row, "lock_until", None),
            legal_hold=getattr(row, "legal_hold", None),
            grants=getattr(row, "grants", None),
            sse=Sealed.of(row),
        )


@dataclass(frozen=True, repr=False)
class Sealed:
    """What a stored version's row says of its encryption (the data key stays wrapped)."""

    mode: str
    wrapped: bytes
    key_id: str | None = None
    customer: str | None = None  # SSE-C: the salted HMAC recognising the customer key
    parts: list[int] | None = None  # multipart: each segment's part number
    project: str = ""  # the bucket owner's project, whose keys open it (set on a lookup)

    @classmethod
    def of(cls, row: Any) -> Sealed | None:
        mode = getattr(row, "sse_mode", None)
        if not mode:
            return None
        parts = getattr(row, "sse_parts", None)
        return cls(
            mode,
            row.sse_wrapped,
            row.sse_key_id,
            row.sse_customer,
            list(parts) if parts is not None else None,
        )


@dataclass
class BucketInfo:
    id: str
    name: str
    project_id: str
    created_at: dt.datetime
    versioning: str
    acl: str
    policy: str | None
    cors: list[dict[str, Any]] | None
    tags: dict[str, str] | None
    statements: list[Statement] = field(default_factory=list)
    # Object Lock: None while off; {} when on; {"Mode", "Days"|"Years"} with a default.
    object_lock: dict[str, Any] | None = None
    lifecycle: list[dict[str, Any]] | None = None  # the rules, as S3's document has them
    public_access_block: dict[str, bool] | None = None
    # Whether the policy has conditions, so requests must carry their context.
    needs_context: bool = False
    grants: list[dict[str, str]] | None = None  # explicit ACL grants (None: canned `acl`)
    encryption: dict[str, Any] | None = None  # default encryption (None: none set)

    def blocks(self, flag: str) -> bool:
        """One public access block flag (BlockPublicAcls, IgnorePublicAcls, ...)."""
        return bool(self.public_access_block and self.public_access_block.get(flag))

    @classmethod
    def of(cls, row: m.Bucket) -> BucketInfo:
        statements = parse_policy(row.policy, row.name) if row.policy else []
        return cls(
            row.id,
            row.name,
            row.project_id,
            row.created_at,
            row.versioning,
            row.acl,
            row.policy,
            row.cors,
            row.tags,
            statements,
            dict(row.object_lock) if row.object_lock is not None else None,
            list(row.lifecycle) if row.lifecycle is not None else None,
            dict(row.public_access_block) if row.public_access_block is not None else None,
            any(s.conditions for s in statements),
            list(row.grants) if row.grants is not None else None,
            dict(row.encryption) if row.encryption is not None else None,
        )


@dataclass
class Released:
    """What rows a change removed held: blobs to delete once committed, and their count."""

    blobs: list[str] = field(default_factory=list)
    size: int = 0
    objects: int = 0

    def add(self, rows: Iterable[Any]) -> Released:
        """Count deleted version rows (segments, size, is_delete_marker)."""
        for row in rows:
            self.blobs.extend(seg[0] for seg in row.segments)
            self.size += row.size
            self.objects += 0 if row.is_delete_marker else 1
        return self


@dataclass
class NewObject:
    """What a PUT, copy or completed upload records for a key."""

    size: int
    etag: str
    segments: list[list[Any]]
    headers: dict[str, str] = field(default_factory=dict)
    user_meta: dict[str, str] = field(default_factory=dict)
    checksums: dict[str, str] = field(default_factory=dict)
    tags: dict[str, str] = field(default_factory=dict)
    acl: str = "private"
    data: bytes | None = None  # a small object's bytes, stored inline instead of in blobs
    lock_mode: str | None = None
    lock_until: dt.datetime | None = None
    legal_hold: bool | None = None
    grants: list[dict[str, str]] | None = None
    # Server-side encryption: the row's sse_* columns (a Seal's `columns()`), and a
    # completed upload's part numbers. Empty: plaintext.
    sse: dict[str, Any] = field(default_factory=dict)


@dataclass
class Listing:
    objects: list[ObjectInfo]
    prefixes: list[str]
    truncated: bool
    next_marker: str = ""
    next_version_marker: str = ""


@dataclass
class DeleteResult:
    version_id: str | None
    delete_marker: bool


@dataclass
class PartInfo:
    number: int
    size: int
    etag: str
    blob_id: str
    checksums: dict[str, str]
    last_modified: dt.datetime


@dataclass
class UploadInfo:
    id: str
    bucket: str
    key: str
    initiator: str
    owner: str
    created_at: dt.datetime
    headers: dict[str, str]
    user_meta: dict[str, str]
    tags: dict[str, str]
    acl: str
    checksum_algorithm: str
    lock_mode: str | None = None
    lock_until: dt.datetime | None = None
    legal_hold: bool | None = None
    sse: Sealed | None = None
