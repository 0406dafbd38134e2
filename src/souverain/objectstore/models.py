"""Object storage tables: buckets, object versions, multipart uploads and their parts.

Rows hold metadata only; bytes live in the blob store under ids that never
derive from keys. Keys compare as bytes (SQLite's BINARY collation on UTF-8),
which is S3's listing order.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import Mapped, mapped_column

from souverain.db.base import Base

# A segment is one blob holding a run of an object's bytes: [blob_id, size].
Segments = list[list[Any]]


class Bucket(Base):
    __tablename__ = "s3_buckets"

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    # S3 names are 3-63 characters; a Swift container's name may reach 256 bytes
    name: Mapped[str] = mapped_column(String(256), unique=True)
    project_id: Mapped[str] = mapped_column(String(64), index=True)
    owner_user_id: Mapped[str] = mapped_column(String(64))
    region: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[dt.datetime] = mapped_column(DateTime)
    versioning: Mapped[str] = mapped_column(String(16), default="")  # "", Enabled, Suspended
    acl: Mapped[str] = mapped_column(String(32), default="private")
    policy: Mapped[str | None] = mapped_column(Text, nullable=True)
    cors: Mapped[list[dict[str, Any]] | None] = mapped_column(JSON, nullable=True)
    tags: Mapped[dict[str, str] | None] = mapped_column(JSON, nullable=True)
    # NULL: Object Lock off. {}: on, no default retention. Else {"Mode", "Days"|"Years"}.
    object_lock: Mapped[dict[str, Any] | None] = mapped_column(JSON, nullable=True)
    # Lifecycle rules as S3's document has them (NULL: none), and the time until which
    # one serving process holds this bucket's lifecycle sweep.
    lifecycle: Mapped[list[dict[str, Any]] | None] = mapped_column(JSON, nullable=True)
    lifecycle_lease: Mapped[dt.datetime | None] = mapped_column(DateTime, nullable=True)
    # BlockPublicAcls, IgnorePublicAcls, BlockPublicPolicy, RestrictPublicBuckets (NULL: none).
    public_access_block: Mapped[dict[str, bool] | None] = mapped_column(JSON, nullable=True)
    # Explicit ACL grants (NULL: the canned `acl` says who may do what).
    grants: Mapped[list[dict[str, str]] | None] = mapped_column(JSON, nullable=True)
    # Default encryption (NULL: none): {"SSEAlgorithm", "KMSMasterKeyID"?, "BucketKeyEnabled"?}.
    encryption: Mapped[dict[str, Any] | None] = mapped_column(JSON, nullable=True)


class ObjectVersion(Base):
    """One version of a key; unversioned buckets keep a single version named `null`."""

    __tablename__ = "s3_objects"
    __table_args__ = (
        UniqueConstraint("bucket_id", "key", "version_id"),
        Index("ix_s3_objects_listing", "bucket_id", "is_latest", "key"),
        Index("ix_s3_objects_history", "bucket_id", "key", "seq"),
    )

    seq: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    bucket_id: Mapped[str] = mapped_column(ForeignKey("s3_buckets.id", ondelete="CASCADE"))
    key: Mapped[str] = mapped_column(Text)
    version_id: Mapped[str] = mapped_column(String(64))
    is_latest: Mapped[bool] = mapped_column(Boolean)
    is_delete_marker: Mapped[bool] = mapped_column(Boolean, default=False)
    size: Mapped[int] = mapped_column(BigInteger, default=0)
    etag: Mapped[str] = mapped_column(String(64), default="")
    segments: Mapped[Segments] = mapped_column(JSON, default=list)
    # Small objects keep their bytes here instead of in a blob: one durable commit
    # stores data and metadata together. NULL for objects held in blobs.
    data: Mapped[bytes | None] = mapped_column(LargeBinary, nullable=True)
    headers: Mapped[dict[str, str]] = mapped_column(JSON, default=dict)  # content-type & co
    user_meta: Mapped[dict[str, str]] = mapped_column(JSON, default=dict)
    checksums: Mapped[dict[str, str]] = mapped_column(JSON, default=dict)
    tags: Mapped[dict[str, str]] = mapped_column(JSON, default=dict)
    acl: Mapped[str] = mapped_column(String(32), default="private")
    owner_project_id: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[dt.datetime] = mapped_column(DateTime)
    # Object Lock: retention (GOVERNANCE|COMPLIANCE until a time) and legal hold
    # (NULL: never set, so GetObjectLegalHold has nothing to show).
    lock_mode: Mapped[str | None] = mapped_column(String(16), nullable=True)
    lock_until: Mapped[dt.datetime | None] = mapped_column(DateTime, nullable=True)
    legal_hold: Mapped[bool | None] = mapped_column(Boolean, nullable=True)
    grants: Mapped[list[dict[str, str]] | None] = mapped_column(JSON, nullable=True)
    # Server-side encryption (NULL mode: plaintext): AES256, aws:kms or SSE-C; the data
    # key as wrapped (never its plaintext), the KMS key named, the SSE-C key's salted HMAC.
    sse_mode: Mapped[str | None] = mapped_column(String(16), nullable=True)
    sse_key_id: Mapped[str | None] = mapped_column(String(255), nullable=True)
    sse_wrapped: Mapped[bytes | None] = mapped_column(LargeBinary, nullable=True)
    sse_customer: Mapped[str | None] = mapped_column(String(128), nullable=True)
    # A completed multipart upload's part numbers, one per segment (sealed with them).
    sse_parts: Mapped[list[int] | None] = mapped_column(JSON, nullable=True)


class Upload(Base):
    """A multipart upload in progress: what the object will carry once completed."""

    __tablename__ = "s3_uploads"
    __table_args__ = (Index("ix_s3_uploads_key", "bucket_id", "key", "created_at"),)

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    bucket_id: Mapped[str] = mapped_column(ForeignKey("s3_buckets.id", ondelete="CASCADE"))
    key: Mapped[str] = mapped_column(Text)
    initiator_user_id: Mapped[str] = mapped_column(String(64))
    owner_project_id: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[dt.datetime] = mapped_column(DateTime)
    headers: Mapped[dict[str, str]] = mapped_column(JSON, default=dict)
    user_meta: Mapped[dict[str, str]] = mapped_column(JSON, default=dict)
    tags: Mapped[dict[str, str]] = mapped_column(JSON, default=dict)
    acl: Mapped[str] = mapped_column(String(32), default="private")
    checksum_algorithm: Mapped[str] = mapped_column(String(16), default="")
    # Object Lock: retention (GOVERNANCE|COMPLIANCE until a time) and legal hold
    # (NULL: never set, so GetObjectLegalHold has nothing to show).
    lock_mode: Mapped[str | None] = mapped_column(String(16), nullable=True)
    lock_until: Mapped[dt.datetime | None] = mapped_column(DateTime, nullable=True)
    legal_hold: Mapped[bool | None] = mapped_column(Boolean, nullable=True)
    grants: Mapped[list[dict[str, str]] | None] = mapped_column(JSON, nullable=True)
    # Server-side encryption (NULL mode: plaintext): AES256, aws:kms or SSE-C; the data
    # key as wrapped (never its plaintext), the KMS key named, the SSE-C key's salted HMAC.
    sse_mode: Mapped[str | None] = mapped_column(String(16), nullable=True)
    sse_key_id: Mapped[str | None] = mapped_column(String(255), nullable=True)
    sse_wrapped: Mapped[bytes | None] = mapped_column(LargeBinary, nullable=True)
    sse_customer: Mapped[str | None] = mapped_column(String(128), nullable=True)


class Part(Base):
    __tablename__ = "s3_parts"

    upload_id: Mapped[str] = mapped_column(
        ForeignKey("s3_uploads.id", ondelete="CASCADE"), primary_key=True
    )
    number: Mapped[int] = mapped_column(Integer, primary_key=True)
    size: Mapped[int] = mapped_column(BigInteger)
    etag: Mapped[str] = mapped_column(String(64))
    blob_id: Mapped[str] = mapped_column(String(32))
    checksums: Mapped[dict[str, str]] = mapped_column(JSON, default=dict)
    created_at: Mapped[dt.datetime] = mapped_column(DateTime)


class StorageQuota(Base):
    """A project's limits on stored bytes and objects (None: the configured default).

    Also the row a write that may pass a limit locks, so concurrent writers of one
    project are checked one after the other."""

    __tablename__ = "s3_quotas"

    project_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    max_bytes: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    max_objects: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    updated_at: Mapped[dt.datetime] = mapped_column(DateTime)


class BucketUsage(Base):
    """Running totals of what a bucket stores, changed in the transaction of each change.

    `stored_bytes` counts every version and every part of an upload in progress;
    `stored_objects` every version but delete markers. A bucket's totals are the sum
    of its USAGE_SHARDS rows: each serving process adds to its own row, so writers
    in different processes never queue on one hot row (PostgreSQL); reading a
    bucket's usage stays a handful of rows however many objects it holds.
    """

    __tablename__ = "s3_bucket_usage"

    bucket_id: Mapped[str] = mapped_column(
        ForeignKey("s3_buckets.id", ondelete="CASCADE"), primary_key=True
    )
    shard: Mapped[int] = mapped_column(Integer, primary_key=True)
    project_id: Mapped[str] = mapped_column(String(64), index=True)
    stored_bytes: Mapped[int] = mapped_column(BigInteger, default=0)
    stored_objects: Mapped[int] = mapped_column(BigInteger, default=0)


# Rows per bucket in `s3_bucket_usage`, made with the bucket.
USAGE_SHARDS = 8


class SwiftAccount(Base):
    """A project's Swift account metadata (X-Account-Meta-*, the temp URL keys)."""

    __tablename__ = "swift_accounts"

    project_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    meta: Mapped[dict[str, str]] = mapped_column(JSON, default=dict)
    created_at: Mapped[dt.datetime] = mapped_column(DateTime)


class SwiftContainer(Base):
    """What Swift says of a bucket beyond S3: metadata, ACLs, quotas, versions location."""

    __tablename__ = "swift_containers"

    bucket_id: Mapped[str] = mapped_column(
        ForeignKey("s3_buckets.id", ondelete="CASCADE"), primary_key=True
    )
    meta: Mapped[dict[str, str]] = mapped_column(JSON, default=dict)  # X-Container-Meta-*
    # X-Container-Read / -Write, X-Versions-Location / X-History-Location, ...
    settings: Mapped[dict[str, str]] = mapped_column(JSON, default=dict)


class SwiftManifest(Base):
    """The segment list of a static large object, for `multipart-manifest=get` and `=delete`.

    Belongs to the version whose etag it names; a later write of the key leaves it stale,
    and a stale row is ignored."""

    __tablename__ = "swift_manifests"

    bucket_id: Mapped[str] = mapped_column(
        ForeignKey("s3_buckets.id", ondelete="CASCADE"), primary_key=True
    )
    key: Mapped[str] = mapped_column(String(1024), primary_key=True)
    etag: Mapped[str] = mapped_column(String(64))
    segments: Mapped[list[dict[str, Any]]] = mapped_column(JSON, default=list)


class SwiftExpiring(Base):
    """An object Swift deletes at `delete_at` (X-Delete-At): the expirer's queue, so S3
    stops seeing it too. A row whose object no longer carries that time is dropped."""

    __tablename__ = "swift_expiring"

    bucket_id: Mapped[str] = mapped_column(
        ForeignKey("s3_buckets.id", ondelete="CASCADE"), primary_key=True
    )
    key: Mapped[str] = mapped_column(String(1024), primary_key=True)
    delete_at: Mapped[int] = mapped_column(BigInteger, index=True)
