"""Buckets: create, delete, their settings, and the per-process cache every request reads.

Bucket settings are read on every request and change rarely: each process caches
them, drops the cache whenever any process on this host bumps `changes`, and
re-reads after BUCKET_CACHE_SECONDS for changes made by API nodes on other hosts.
Knows nothing of HTTP or XML.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

from sqlalchemy import delete, insert, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from souverain.common.changes import ChangeCounter
from souverain.common.clock import Clock
from souverain.common.ids import new_id
from souverain.db.engine import Database
from souverain.objectstore import acl as acl_rules
from souverain.objectstore import lifecycle
from souverain.objectstore import models as m
from souverain.objectstore import usage as ledger
from souverain.objectstore.accounting import Accounting
from souverain.objectstore.acl import CUSTOM
from souverain.objectstore.encryption import Sealer
from souverain.objectstore.errors import S3Error
from souverain.objectstore.policy import (
    CANNED_ACLS,
    PolicyError,
    Principal,
    is_public,
    parse_policy,
)
from souverain.objectstore.records import (
    MAX_BUCKET_TAGS,
    BucketInfo,
    check_bucket_name,
    check_tags,
    utcnow,
)
from souverain.objectstore.store import BlobStore
from souverain.objectstore.transactions import begin_write
from souverain.objectstore.usage import USAGE

BUCKET_CACHE_SECONDS = 1.0


class Buckets:
    """Buckets and their settings; `bucket` answers from the cache on the hot path."""

    def __init__(
        self,
        db: Database,
        store: BlobStore,
        accounting: Accounting,
        region: str,
        clock: Clock,
        changes: ChangeCounter | None,
        sealer: Sealer | None = None,
    ) -> None:
        self.db = db
        self.sealer = sealer  # told when a bucket goes (the key consumers it registered)
        self.store = store
        self.accounting = accounting
        self.region = region
        self.clock = clock
        self.changes = changes
        self._buckets: dict[str, tuple[float, BucketInfo]] = {}
        self._seen_change = changes.value() if changes is not None else -1
        self._cache_lock = threading.Lock()

    def _bucket_row(self, s: Session, name: str) -> m.Bucket:
        row = s.scalars(select(m.Bucket).where(m.Bucket.name == name)).first()
        if row is None:
            raise S3Error("NoSuchBucket", "The specified bucket does not exist", name)
        return row

    def bucket(self, name: str) -> BucketInfo:
        if self.changes is not None:
            current = self.changes.value()
            if current != self._seen_change:
                with self._cache_lock:
                    self._buckets = {}
                    self._seen_change = current
            cached = self._buckets.get(name)
            if cached is not None and time.monotonic() - cached[0] < BUCKET_CACHE_SECONDS:
                return cached[1]
        with self.db.session() as s:
            info = BucketInfo.of(self._bucket_row(s, name))
        if self.changes is not None:
            with self._cache_lock:
                if len(self._buckets) > 10_000:
                    self._buckets = {}
                self._buckets[name] = (time.monotonic(), info)
        return info

    def changed(self) -> None:
        """After a commit that changed a bucket: every process drops its cached copy."""
        with self._cache_lock:
            self._buckets = {}
        if self.changes is not None:
            self.changes.bump()

    def list_buckets(self, who: Principal) -> list[BucketInfo]:
        with self.db.session() as s:
            rows = s.scalars(
                select(m.Bucket)
                .where(m.Bucket.project_id == who.project_id)
                .order_by(m.Bucket.name)
            ).all()
            return [BucketInfo.of(r) for r in rows]

    def create_bucket(
        self,
        who: Principal,
        name: str,
        location: str | None,
        acl: str = "private",
        object_lock: bool = False,
        grants: list[dict[str, str]] | None = None,
        name_rule: Callable[[str], None] = check_bucket_name,
    ) -> BucketInfo:
        """A new bucket of `who`'s project; with Object Lock, versioned from the start.
        `name_rule` refuses a bad name (S3's rule, or Swift's for a container, whose names
        may be longer and hold capitals)."""
        name_rule(name)
        if who.anonymous or not who.can_write:
            raise S3Error("AccessDenied", "Access Denied", name)
        if location not in (None, "", self.region):
            raise S3Error(
                "IllegalLocationConstraintException",
                f"The {location} location constraint is not valid: this cloud keeps data "
                f"in region {self.region} only.",
                name,
            )
        if acl not in CANNED_ACLS and not (acl == CUSTOM and grants is not None):
            raise S3Error("InvalidArgument", f"The canned ACL {acl!r} is not one S3 knows.", name)
        with self.db.session() as s:
            begin_write(s)
            existing = s.scalars(select(m.Bucket).where(m.Bucket.name == name)).first()
            if existing is not None:
                if existing.project_id == who.project_id:
                    raise S3Error(
                        "BucketAlreadyOwnedByYou",
                        "Your previous request to create the named bucket succeeded and "
                        "you already own it.",
                        name,
                    )
                raise S3Error(
                    "BucketAlreadyExists",
                    "The requested bucket name is not available. Please select a different "
                    "name and try again.",
                    name,
                )
            row = m.Bucket(
                id=new_id(),
                name=name,
                project_id=who.project_id,
                owner_user_id=who.user_id,
                region=self.region,
                created_at=utcnow(self.clock),
                versioning="Enabled" if object_lock else "",
                acl=acl,
                object_lock={} if object_lock else None,
                grants=grants,
            )
            s.add(row)
            try:
                s.flush()
            except IntegrityError:
                raise S3Error("BucketAlreadyExists", "The bucket name is taken.", name) from None
            s.execute(insert(USAGE), ledger.new_rows(row.id, row.project_id, 0, 0))
            info = BucketInfo.of(row)
        self.changed()
        return info

    def delete_bucket(self, bucket: BucketInfo) -> None:
        with self.db.session() as s:
            begin_write(s)
            has_object = s.scalar(
                select(m.ObjectVersion.seq).where(m.ObjectVersion.bucket_id == bucket.id).limit(1)
            )
            if has_object is not None:
                raise S3Error(
                    "BucketNotEmpty", "The bucket you tried to delete is not empty", bucket.name
                )
            parts = s.scalars(
                select(m.Part.blob_id).join(m.Upload).where(m.Upload.bucket_id == bucket.id)
            ).all()
            s.execute(
                delete(m.Part).where(
                    m.Part.upload_id.in_(select(m.Upload.id).where(m.Upload.bucket_id == bucket.id))
                )
            )
            s.execute(delete(m.Upload).where(m.Upload.bucket_id == bucket.id))
            s.execute(delete(USAGE).where(USAGE.c.bucket_id == bucket.id))
            s.execute(delete(m.Bucket).where(m.Bucket.id == bucket.id))
        self.changed()
        self.accounting.changed(bucket)  # gauged 0 at the next flush
        self.store.delete(parts)
        if self.sealer is not None:
            self.sealer.release(bucket)

    def _update(self, bucket: BucketInfo, **values: Any) -> None:
        with self.db.session() as s:
            s.execute(update(m.Bucket).where(m.Bucket.id == bucket.id).values(**values))
        self.changed()

    def set_versioning(self, bucket: BucketInfo, status: str) -> None:
        if status not in ("Enabled", "Suspended"):
            raise S3Error("MalformedXML", "Versioning Status must be Enabled or Suspended.")
        if status == "Suspended" and not bucket.versioning:
            return  # never versioned: suspending changes nothing, as on S3
        if status == "Suspended" and bucket.object_lock is not None:
            raise S3Error(
                "InvalidBucketState",
                "An Object Lock configuration is present on this bucket, so the versioning "
                "state cannot be changed.",
                bucket.name,
            )
        self._update(bucket, versioning=status)

    def set_object_lock(self, bucket: BucketInfo, rule: dict[str, Any]) -> None:
        """Turn Object Lock on (for good) with `rule` as default retention ({}: none).

        Only a versioned bucket takes it: locked versions must never be replaced."""
        with self.db.session() as s:
            begin_write(s)
            row = self._bucket_row(s, bucket.name)
            if row.versioning != "Enabled":
                raise S3Error(
                    "InvalidBucketState",
                    "Versioning must be 'Enabled' on the bucket to apply a Object Lock "
                    "configuration. Enable versioning first.",
                    bucket.name,
                )
            row.object_lock = rule
        self.changed()

    def set_bucket_acl(
        self, bucket: BucketInfo, acl: str, grants: list[dict[str, str]] | None = None
    ) -> None:
        """The bucket's canned ACL, or (`acl` "custom") its explicit grants."""
        if acl not in CANNED_ACLS and not (acl == CUSTOM and grants is not None):
            raise S3Error("InvalidArgument", f"The canned ACL {acl!r} is not one S3 knows.")
        if acl_rules.is_public(acl, grants) and bucket.blocks("BlockPublicAcls"):
            raise S3Error("AccessDenied", "Access Denied", bucket.name)
        self._update(bucket, acl=acl, grants=grants)

    def set_policy(self, bucket: BucketInfo, text: str | None) -> None:
        if text is not None:
            try:
                statements = parse_policy(text, bucket.name)
            except PolicyError as exc:
                raise S3Error("MalformedPolicy", str(exc), bucket.name) from None
            if bucket.blocks("BlockPublicPolicy") and is_public(statements):
                raise S3Error("AccessDenied", "Access Denied", bucket.name)
        self._update(bucket, policy=text)

    def set_public_access_block(self, bucket: BucketInfo, flags: dict[str, bool] | None) -> None:
        """The bucket's public access block (None: removed); honoured from the next request."""
        self._update(bucket, public_access_block=flags)

    def set_encryption(self, bucket: BucketInfo, config: dict[str, Any] | None) -> None:
        """The bucket's default encryption (None: removed); applies to the next writes."""
        self._update(bucket, encryption=config)

    def set_cors(self, bucket: BucketInfo, rules: list[dict[str, Any]] | None) -> None:
        self._update(bucket, cors=rules)

    def set_lifecycle(self, bucket: BucketInfo, rules: list[dict[str, Any]] | None) -> None:
        """Replace the bucket's lifecycle rules (None: remove them)."""
        if rules is not None:
            lifecycle.check_rules(rules)
        self._update(bucket, lifecycle=rules)

    def set_bucket_tags(self, bucket: BucketInfo, tags: dict[str, str] | None) -> None:
        if tags is not None:
            check_tags(tags, MAX_BUCKET_TAGS, "Bucket")
        self._update(bucket, tags=tags)
