"""Object storage rules: buckets, versions, listings, multipart uploads, access.

Knows nothing of HTTP or XML. Bytes are already durable in the blob store when
a method here records them; a method commits metadata and, only after the
commit, removes the blobs it made unreachable. A crash in between leaves
unreferenced blobs, which `sweep` removes at start.
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import os
import re
import threading
import time
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from decimal import Decimal
from types import SimpleNamespace
from typing import Any

from sqlalchemy import Connection, Table, bindparam, delete, func, insert, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from souverain.common.changes import ChangeCounter
from souverain.common.clock import Clock
from souverain.common.ids import new_id
from souverain.common.metering import NULL_METER, Meter, Reading, gib
from souverain.common.quota import lock_quota_row
from souverain.db.engine import Database
from souverain.identity.service import IdentityService
from souverain.objectstore import models as m
from souverain.objectstore import usage as ledger
from souverain.objectstore.batch import GroupCommit
from souverain.objectstore.metering import MeteredBucket, Noted, PendingMeter
from souverain.objectstore.policy import (
    CANNED_ACLS,
    PolicyError,
    Principal,
    Statement,
    allowed,
    parse_policy,
)
from souverain.objectstore.store import BlobStore, InlineReader, SegmentReader, new_hash
from souverain.objectstore.usage import ADD_USAGE, USAGE

NULL_VERSION = "null"
VERSIONS: Table = m.ObjectVersion.__table__  # type: ignore[assignment]

# The statements every object request runs, built once: SQLAlchemy then reuses their
# compiled form without rebuilding or re-keying them per request.
_V = VERSIONS.c
_THIS_KEY = (_V.bucket_id == bindparam("b_bucket")) & (_V.key == bindparam("b_key"))
READ_LATEST = select(VERSIONS).where(_THIS_KEY, _V.is_latest.is_(True))
READ_VERSION = select(VERSIONS).where(_THIS_KEY, _V.version_id == bindparam("b_version"))
LATEST_MARKER = select(_V.is_delete_marker).where(_THIS_KEY, _V.is_latest.is_(True))
UNSET_LATEST = update(VERSIONS).where(_THIS_KEY, _V.is_latest.is_(True)).values(is_latest=False)
# Deletes return what the bucket's running totals lose with the rows.
_GONE = (_V.segments, _V.size, _V.is_delete_marker)
DROP_NULL_VERSION = (
    delete(VERSIONS).where(_THIS_KEY, _V.version_id == NULL_VERSION).returning(*_GONE)
)
DROP_KEY = delete(VERSIONS).where(_THIS_KEY).returning(*_GONE)
DROP_VERSION = (
    delete(VERSIONS)
    .where(_THIS_KEY, _V.version_id == bindparam("b_version"))
    .returning(*_GONE, _V.is_latest)
)
ADD_VERSION = insert(VERSIONS)
QUOTA_OF = select(m.StorageQuota.max_bytes, m.StorageQuota.max_objects).where(
    m.StorageQuota.project_id == bindparam("b_project")
)
# Listings never carry object bytes.
LISTED = [column for column in VERSIONS.c if column.name != "data"]
MAX_KEY_BYTES = 1024
MAX_TAGS = 10
MAX_BUCKET_TAGS = 50
LIST_BATCH = 1000
BUCKET_CACHE_SECONDS = 1.0

# S3 error codes and their HTTP status; the one table the API renders from.
ERROR_STATUS = {
    "AccessDenied": 403,
    "AuthorizationHeaderMalformed": 400,
    "AuthorizationQueryParametersError": 400,
    "BadDigest": 400,
    "BucketAlreadyExists": 409,
    "BucketAlreadyOwnedByYou": 409,
    "BucketNotEmpty": 409,
    "EntityTooLarge": 400,
    "EntityTooSmall": 400,
    "IllegalLocationConstraintException": 400,
    "IncompleteBody": 400,
    "InsufficientStorage": 507,
    "InternalError": 500,
    "InvalidAccessKeyId": 403,
    "InvalidArgument": 400,
    "InvalidBucketName": 400,
    "InvalidDigest": 400,
    "InvalidPart": 400,
    "InvalidPartOrder": 400,
    "InvalidRange": 416,
    "InvalidStorageClass": 400,
    "InvalidRequest": 400,
    "InvalidTag": 400,
    "InvalidURI": 400,
    "KeyTooLongError": 400,
    "MalformedACLError": 400,
    "MalformedPolicy": 400,
    "MalformedXML": 400,
    "MaxMessageLengthExceeded": 400,
    "MetadataTooLarge": 400,
    "MissingRequestBodyError": 400,
    "InvalidPartNumber": 416,
    "MethodNotAllowed": 405,
    "MissingContentLength": 411,
    "NoSuchBucket": 404,
    "NoSuchBucketPolicy": 404,
    "NoSuchCORSConfiguration": 404,
    "NoSuchKey": 404,
    "NoSuchTagSet": 404,
    "NoSuchUpload": 404,
    "NoSuchVersion": 404,
    "NotImplemented": 501,
    "NotModified": 304,
    "PreconditionFailed": 412,
    "QuotaExceeded": 403,
    "RequestTimeTooSkewed": 403,
    "RequestTimeout": 400,
    "SignatureDoesNotMatch": 403,
    "XAmzContentSHA256Mismatch": 400,
}


class S3Error(Exception):
    """An error in S3's terms: a code from ERROR_STATUS, a message, the resource."""

    def __init__(
        self,
        code: str,
        message: str,
        resource: str = "",
        headers: dict[str, str] | None = None,
        status: int | None = None,
    ) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.resource = resource
        self.headers = headers or {}
        self.status = status or ERROR_STATUS[code]


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


def _utcnow(clock: Clock) -> dt.datetime:
    return clock.now().astimezone(dt.UTC).replace(tzinfo=None)


def _successor(prefix: str) -> str:
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


def _lock_quota_row(conn: Connection, project_id: str, now: dt.datetime) -> None:
    """Take a project's `s3_quotas` row (made when missing) for this transaction."""
    lock_quota_row(conn, m.StorageQuota, project_id, now)


def set_storage_quota(
    db: Database,
    clock: Clock,
    project_id: str,
    max_bytes: int | None,
    max_objects: int | None,
    reset: bool = False,
) -> tuple[int | None, int | None]:
    """The operator's override for a project: None leaves a limit as it is, `reset` puts
    both back to the configured defaults. Returns the override now stored (None: default).
    """
    with db.engine.connect() as conn:
        if conn.dialect.name == "sqlite":
            conn.exec_driver_sql("BEGIN IMMEDIATE")
        _lock_quota_row(conn, project_id, _utcnow(clock))
        values: dict[str, Any] = {"updated_at": _utcnow(clock)}
        if reset:
            values.update(max_bytes=None, max_objects=None)
        if max_bytes is not None:
            values["max_bytes"] = max_bytes
        if max_objects is not None:
            values["max_objects"] = max_objects
        conn.execute(
            update(m.StorageQuota).where(m.StorageQuota.project_id == project_id).values(**values)
        )
        row = conn.execute(
            select(m.StorageQuota.max_bytes, m.StorageQuota.max_objects).where(
                m.StorageQuota.project_id == project_id
            )
        ).one()
        conn.commit()
        return row.max_bytes, row.max_objects


class ObjectStoreService:
    def __init__(
        self,
        db: Database,
        store: BlobStore,
        identity: IdentityService,
        region: str,
        clock: Clock | None = None,
        min_part_bytes: int = 5 * 1024 * 1024,
        changes: ChangeCounter | None = None,
        quota_bytes: int = -1,
        quota_objects: int = -1,
    ) -> None:
        # billable changes are recorded on it (the billing service's, set by the server)
        self.meter: Meter = NULL_METER
        self.db = db
        self.store = store
        self.identity = identity
        self.region = region
        self.clock = clock or Clock()
        self.min_part_bytes = min_part_bytes
        # per-project defaults (-1: unlimited); an operator's override is a `s3_quotas` row
        self.quota_bytes = quota_bytes
        self.quota_objects = quota_objects
        # Bucket settings are read on every request and change rarely: cached per
        # process, dropped whenever any process on this host bumps `changes`, and
        # re-read after BUCKET_CACHE_SECONDS for changes made by API nodes on other hosts.
        self.changes = changes
        self._buckets: dict[str, tuple[float, BucketInfo]] = {}
        self._seen_change = changes.value() if changes is not None else -1
        self._cache_lock = threading.Lock()
        self.pending = PendingMeter()
        self.writes = GroupCommit(db.engine)

    # ------------------------------------------------------------------ plumbing

    def _write(self, s: Session) -> None:
        """Take SQLite's write lock at the start: no deadlock when two writers upgrade."""
        if s.get_bind().dialect.name == "sqlite":
            s.connection().exec_driver_sql("BEGIN IMMEDIATE")

    def authenticate(self, access_key: str) -> tuple[str, Principal] | None:
        """(secret, principal) for an access key; None when the key is not usable."""
        found = self.identity.ec2_principal(access_key)
        if found is None:
            return None
        return found.secret, Principal(found.user_id, found.project_id, found.roles)

    def _bucket_row(self, s: Session, name: str) -> m.Bucket:
        row = s.scalars(select(m.Bucket).where(m.Bucket.name == name)).first()
        if row is None:
            raise S3Error("NoSuchBucket", "The specified bucket does not exist", name)
        return row

    @contextmanager
    def _tx(self, write: bool = False) -> Iterator[Connection]:
        """A plain connection for the hot paths: no ORM unit of work per request."""
        with self.db.engine.connect() as conn:
            if write and conn.dialect.name == "sqlite":
                conn.exec_driver_sql("BEGIN IMMEDIATE")
            yield conn
            if write:
                conn.commit()  # a read ends with the connection (rolled back: nothing to keep)

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

    # ------------------------------------------------------------------ usage and meter

    @staticmethod
    def _count(conn: Connection, bucket_id: str, size: int, objects: int) -> None:
        """Add to the bucket's running totals, in the transaction of the change itself."""
        if not size and not objects:
            return
        shard = os.getpid() % m.USAGE_SHARDS  # one row per process: no hot row across them
        params = {"b_bucket": bucket_id, "b_shard": shard, "d_bytes": size, "d_objects": objects}
        if conn.execute(ADD_USAGE, params).rowcount != 1:
            raise S3Error(
                "InternalError",
                "The bucket's usage totals are missing; an operator must run "
                "`souverain s3 recount --repair`.",
            )

    def _meter_bucket(self, bucket: BucketInfo) -> None:
        """After a committed change: the bucket's gauge is due at the next flush."""
        self.pending.changed(MeteredBucket(bucket.id, bucket.project_id, bucket.name))

    def egress(self, bucket: BucketInfo, sent: int) -> None:
        """Bytes of a GET body that left the cloud, added up in memory until the next flush."""
        if sent > 0:
            metered = MeteredBucket(bucket.id, bucket.project_id, bucket.name)
            self.pending.sent(metered, sent, self.clock.now())

    def flush_meter(self) -> int:
        """Write what was noted since the last flush in one commit; the events written.

        Each changed bucket's gauge is read from its running totals now; a bucket gone
        meanwhile gauges 0 (written first, so a bucket of the same name made again
        after it ends on its own size)."""
        noted = self.pending.take()
        try:
            readings = self._readings(noted)
            self.meter.record(readings)
        except BaseException:
            self.pending.give_back(noted)
            raise
        return len(readings)

    def _readings(self, noted: Noted) -> list[Reading]:
        now = self.clock.now()
        totals = self._bucket_bytes(list(noted.changed))
        gone = [b for b in noted.changed.values() if b.id not in totals]
        live = [b for b in noted.changed.values() if b.id in totals]
        readings = [Reading("gauge", b.project_id, "object.gb", b.name, 0, now) for b in gone]
        readings += [
            Reading("gauge", b.project_id, "object.gb", b.name, gib(totals[b.id]), now)
            for b in live
        ]
        readings += [
            Reading("counter", b.project_id, "egress.gb", b.name, gib(sent.size), sent.at)
            for (b, _hour), sent in noted.egress.items()
        ]
        return readings

    def _bucket_bytes(self, bucket_ids: list[str]) -> dict[str, int]:
        """Stored bytes of each bucket that still exists, from its running totals."""
        found: dict[str, int] = {}
        u = USAGE.c
        with self._tx() as conn:
            for start in range(0, len(bucket_ids), 500):
                rows = conn.execute(
                    select(u.bucket_id, func.sum(u.stored_bytes))
                    .where(u.bucket_id.in_(bucket_ids[start : start + 500]))
                    .group_by(u.bucket_id)
                )
                found.update((bucket_id, int(total)) for bucket_id, total in rows)
        return found

    def reconcile_meter(self, last_gauges: dict[tuple[str, str], Decimal]) -> int:
        """At start: gauge every bucket whose last `object.gb` gauge is not its size now
        (a flush a crash cut short); the number of buckets re-gauged."""
        u, b = USAGE.c, m.Bucket.__table__.c
        with self._tx() as conn:
            rows = conn.execute(
                select(b.id, b.project_id, b.name, func.sum(u.stored_bytes))
                .join(USAGE, u.bucket_id == b.id)
                .group_by(b.id, b.project_id, b.name)
            ).all()
        for bucket_id, project_id, name, stored in rows:
            if last_gauges.get((project_id, name), Decimal(0)) != gib(int(stored)):
                self.pending.changed(MeteredBucket(bucket_id, project_id, name))
        return self.flush_meter()

    def recount(self, repair: bool = False) -> list[ledger.BucketUsage]:
        """Every bucket's running totals beside a count of its rows (see `usage.recount`)."""
        return ledger.recount(self.db, repair)

    def _bucket_changed(self) -> None:
        """After a commit that changed a bucket: every process drops its cached copy."""
        with self._cache_lock:
            self._buckets = {}
        if self.changes is not None:
            self.changes.bump()

    def authorize(
        self,
        who: Principal,
        bucket: BucketInfo,
        action: str,
        key: str | None = None,
        object_acl: str | None = None,
    ) -> None:
        if not allowed(
            who,
            action,
            bucket_name=bucket.name,
            bucket_project=bucket.project_id,
            bucket_acl=bucket.acl,
            statements=bucket.statements,
            key=key,
            object_acl=object_acl,
        ):
            raise S3Error("AccessDenied", "Access Denied", f"/{bucket.name}/{key or ''}")

    def owner_only(self, who: Principal, bucket: BucketInfo, write: bool = True) -> None:
        """Bucket configuration belongs to the owning project (writers, for changes)."""
        if who.project_id != bucket.project_id or (write and not who.can_write):
            raise S3Error("AccessDenied", "Access Denied", f"/{bucket.name}")

    # ------------------------------------------------------------------ buckets

    def list_buckets(self, who: Principal) -> list[BucketInfo]:
        with self.db.session() as s:
            rows = s.scalars(
                select(m.Bucket)
                .where(m.Bucket.project_id == who.project_id)
                .order_by(m.Bucket.name)
            ).all()
            return [BucketInfo.of(r) for r in rows]

    def create_bucket(
        self, who: Principal, name: str, location: str | None, acl: str = "private"
    ) -> BucketInfo:
        check_bucket_name(name)
        if who.anonymous or not who.can_write:
            raise S3Error("AccessDenied", "Access Denied", name)
        if location not in (None, "", self.region):
            raise S3Error(
                "IllegalLocationConstraintException",
                f"The {location} location constraint is not valid: this cloud keeps data "
                f"in region {self.region} only.",
                name,
            )
        if acl not in CANNED_ACLS:
            raise S3Error("NotImplemented", f"The canned ACL {acl!r} is not supported.", name)
        with self.db.session() as s:
            self._write(s)
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
                created_at=_utcnow(self.clock),
                versioning="",
                acl=acl,
            )
            s.add(row)
            try:
                s.flush()
            except IntegrityError:
                raise S3Error("BucketAlreadyExists", "The bucket name is taken.", name) from None
            s.execute(insert(USAGE), ledger.new_rows(row.id, row.project_id, 0, 0))
            info = BucketInfo.of(row)
        self._bucket_changed()
        return info

    def delete_bucket(self, bucket: BucketInfo) -> None:
        with self.db.session() as s:
            self._write(s)
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
        self._bucket_changed()
        self._meter_bucket(bucket)  # gauged 0 at the next flush
        self.store.delete(parts)

    def _update_bucket(self, bucket: BucketInfo, **values: Any) -> None:
        with self.db.session() as s:
            s.execute(update(m.Bucket).where(m.Bucket.id == bucket.id).values(**values))
        self._bucket_changed()

    def set_versioning(self, bucket: BucketInfo, status: str) -> None:
        if status not in ("Enabled", "Suspended"):
            raise S3Error("MalformedXML", "Versioning Status must be Enabled or Suspended.")
        if status == "Suspended" and not bucket.versioning:
            return  # never versioned: suspending changes nothing, as on S3
        self._update_bucket(bucket, versioning=status)

    def set_bucket_acl(self, bucket: BucketInfo, acl: str) -> None:
        if acl not in CANNED_ACLS:
            raise S3Error("NotImplemented", f"The canned ACL {acl!r} is not supported.")
        self._update_bucket(bucket, acl=acl)

    def set_policy(self, bucket: BucketInfo, text: str | None) -> None:
        if text is not None:
            try:
                parse_policy(text, bucket.name)
            except PolicyError as exc:
                raise S3Error("MalformedPolicy", str(exc), bucket.name) from None
        self._update_bucket(bucket, policy=text)

    def set_cors(self, bucket: BucketInfo, rules: list[dict[str, Any]] | None) -> None:
        self._update_bucket(bucket, cors=rules)

    def set_bucket_tags(self, bucket: BucketInfo, tags: dict[str, str] | None) -> None:
        if tags is not None:
            check_tags(tags, MAX_BUCKET_TAGS, "Bucket")
        self._update_bucket(bucket, tags=tags)

    # ------------------------------------------------------------------ objects

    def head_object(
        self, bucket: BucketInfo, key: str, version_id: str | None = None
    ) -> ObjectInfo:
        """The version asked for (latest by default); NoSuchKey if the key is gone."""
        where = {"b_bucket": bucket.id, "b_key": key}
        with self._tx() as conn:
            if version_id is None:
                row = conn.execute(READ_LATEST, where).first()
            else:
                row = conn.execute(READ_VERSION, {**where, "b_version": version_id}).first()
        if version_id is not None:
            if row is None:
                raise S3Error(
                    "NoSuchVersion",
                    "The specified version does not exist.",
                    f"/{bucket.name}/{key}",
                )
            return ObjectInfo.of(bucket.name, row)
        if row is None or row.is_delete_marker:
            headers = {}
            if row is not None:
                headers = {"x-amz-delete-marker": "true", "x-amz-version-id": row.version_id}
            raise S3Error(
                "NoSuchKey",
                "The specified key does not exist.",
                f"/{bucket.name}/{key}",
                headers=headers,
            )
        return ObjectInfo.of(bucket.name, row)

    def reader(self, obj: ObjectInfo) -> InlineReader | SegmentReader:
        """Where a version's bytes are read from: its row, or its blobs (opened now)."""
        if obj.data is not None:
            return InlineReader(obj.data)
        return self.store.open_segments(obj.segments)

    def _new_version_id(self, bucket: BucketInfo) -> str:
        return new_id() if bucket.versioning == "Enabled" else NULL_VERSION

    def _retire(self, conn: Connection, bucket: BucketInfo, key: str, version_id: str) -> Released:
        """Make room for a new latest version; what the versions it dropped held."""
        where = {"b_bucket": bucket.id, "b_key": key}
        if bucket.versioning:  # older versions stay, no longer latest
            conn.execute(UNSET_LATEST, where)
        if version_id != NULL_VERSION:
            return Released()
        # The null version is replaced, never kept twice (unversioned buckets have no other).
        return Released().add(conn.execute(DROP_NULL_VERSION, where))

    # ------------------------------------------------------------------ quotas

    def quota_of(self, conn: Connection, project_id: str) -> tuple[int, int]:
        """(bytes, objects) the project may store; -1: unlimited."""
        row = conn.execute(QUOTA_OF, {"b_project": project_id}).first()
        max_bytes = row.max_bytes if row is not None and row.max_bytes is not None else None
        max_objects = row.max_objects if row is not None and row.max_objects is not None else None
        return (
            self.quota_bytes if max_bytes is None else int(max_bytes),
            self.quota_objects if max_objects is None else int(max_objects),
        )

    def _lock_quota(self, conn: Connection, project_id: str) -> tuple[int, int]:
        """Take the project's quota row for this transaction when it has a limit; the limits.

        On SQLite every write transaction here already holds the one writer lock
        (BEGIN IMMEDIATE); on PostgreSQL the row lock makes writers of one project
        check and commit one after the other, so together they cannot overshoot."""
        if self.quota_of(conn, project_id) == (-1, -1):
            return (-1, -1)  # the hot path of an unlimited project: no lock, no sum
        _lock_quota_row(conn, project_id, _utcnow(self.clock))
        return self.quota_of(conn, project_id)

    def _check_quota(
        self, conn: Connection, project_id: str, limits: tuple[int, int], size: int
    ) -> None:
        """Refuse (QuotaExceeded) when what the project stores, new object included, passes
        a limit; call after `_lock_quota` and after recording the object."""
        max_bytes, max_objects = limits
        if max_bytes < 0 and max_objects < 0:
            return
        stored, count = self._stored(conn, project_id)
        if 0 <= max_bytes < stored:
            raise S3Error(
                "QuotaExceeded",
                f"The project's storage quota is {max_bytes} bytes; storing this object "
                f"({size} bytes) would bring it to {stored} bytes.",
            )
        if 0 <= max_objects < count:
            raise S3Error(
                "QuotaExceeded",
                f"The project's quota is {max_objects} objects; storing this one would bring "
                f"it to {count}.",
            )

    @staticmethod
    def _stored(conn: Connection, project_id: str) -> tuple[int, int]:
        """(bytes, objects) the project's buckets hold: every version and part in progress,
        delete markers aside; the sum of their running totals, not of their rows."""
        return ledger.totals(conn, USAGE.c.project_id == project_id)

    def put_object(
        self, who: Principal, bucket: BucketInfo, key: str, new: NewObject, if_none_match: bool
    ) -> ObjectInfo:
        """Record a durable blob as the key's latest version."""
        check_key(key)

        def record(conn: Connection) -> tuple[dict[str, Any], list[str]]:
            if if_none_match:
                latest = conn.execute(LATEST_MARKER, {"b_bucket": bucket.id, "b_key": key}).first()
                if latest is not None and not latest.is_delete_marker:
                    raise S3Error(
                        "PreconditionFailed",
                        "At least one of the pre-conditions you specified did not hold",
                        f"/{bucket.name}/{key}",
                    )
            limits = self._lock_quota(conn, bucket.project_id)
            version_id = self._new_version_id(bucket)
            freed = self._retire(conn, bucket, key, version_id)
            values = self._version_row(who, bucket, key, version_id, new)
            conn.execute(ADD_VERSION, values)
            self._count(conn, bucket.id, new.size - freed.size, 1 - freed.objects)
            self._check_quota(conn, bucket.project_id, limits, new.size)
            return values, freed.blobs

        try:
            values, freed = self.writes.run(record)
        except BaseException:
            self.store.delete(seg[0] for seg in new.segments)
            raise
        self.store.delete(freed)
        self._meter_bucket(bucket)
        return ObjectInfo.of(bucket.name, SimpleNamespace(**values))

    def _version_row(
        self,
        who: Principal,
        bucket: BucketInfo,
        key: str,
        version_id: str,
        new: NewObject | None,
    ) -> dict[str, Any]:
        """The columns of a new latest version; `new` None makes a delete marker."""
        marker = new is None
        new = new or NewObject(0, "", [])
        return {
            "bucket_id": bucket.id,
            "key": key,
            "version_id": version_id,
            "is_latest": True,
            "is_delete_marker": marker,
            "size": new.size,
            "etag": new.etag,
            "segments": new.segments,
            "headers": new.headers,
            "user_meta": new.user_meta,
            "checksums": new.checksums,
            "tags": new.tags,
            "acl": new.acl,
            "data": new.data,
            "owner_project_id": who.project_id or bucket.project_id,
            "created_at": _utcnow(self.clock),
        }

    def delete_object(
        self, who: Principal, bucket: BucketInfo, key: str, version_id: str | None = None
    ) -> DeleteResult:
        where = {"b_bucket": bucket.id, "b_key": key}

        def record(conn: Connection) -> tuple[DeleteResult, list[str]]:
            if version_id is not None:
                gone = conn.execute(DROP_VERSION, {**where, "b_version": version_id}).first()
                if gone is None:
                    if version_id != NULL_VERSION and not re.fullmatch(r"[0-9a-f]{32}", version_id):
                        raise S3Error("InvalidArgument", "Invalid version id specified")
                    return DeleteResult(version_id, False), []
                if gone.is_latest:
                    self._promote(conn, bucket.id, key)
                freed = Released().add([gone])
                result = DeleteResult(version_id, gone.is_delete_marker)
            elif not bucket.versioning:
                freed = Released().add(conn.execute(DROP_KEY, where))
                result = DeleteResult(None, False)
            else:
                marker_id = self._new_version_id(bucket)
                freed = self._retire(conn, bucket, key, marker_id)
                conn.execute(ADD_VERSION, self._version_row(who, bucket, key, marker_id, None))
                result = DeleteResult(marker_id, True)
            self._count(conn, bucket.id, -freed.size, -freed.objects)
            return result, freed.blobs

        result, freed = self.writes.run(record)
        self.store.delete(freed)
        self._meter_bucket(bucket)
        return result

    def _promote(self, conn: Connection, bucket_id: str, key: str) -> None:
        """The newest remaining version of a key becomes its latest."""
        v = VERSIONS.c
        newest = conn.execute(
            select(func.max(v.seq)).where(v.bucket_id == bucket_id, v.key == key)
        ).scalar()
        if newest is not None:
            conn.execute(update(VERSIONS).where(v.seq == newest).values(is_latest=True))

    def set_object_tags(
        self, bucket: BucketInfo, key: str, version_id: str | None, tags: dict[str, str]
    ) -> str:
        check_tags(tags)
        return self._update_version(bucket, key, version_id, tags=tags)

    def set_object_acl(
        self, bucket: BucketInfo, key: str, version_id: str | None, acl: str
    ) -> None:
        if acl not in CANNED_ACLS:
            raise S3Error("NotImplemented", f"The canned ACL {acl!r} is not supported.")
        self._update_version(bucket, key, version_id, acl=acl)

    def _update_version(
        self, bucket: BucketInfo, key: str, version_id: str | None, **values: Any
    ) -> str:
        """Change columns of the version asked for (latest by default); its version id."""
        obj = self.head_object(bucket, key, version_id)  # NoSuchKey / NoSuchVersion
        if obj.is_delete_marker:
            raise S3Error(
                "MethodNotAllowed", "The specified method is not allowed against this resource."
            )
        where = {"b_bucket": bucket.id, "b_key": key, "b_version": obj.version_id}
        with self._tx(write=True) as conn:
            changed = conn.execute(
                update(VERSIONS).where(_THIS_KEY, _V.version_id == bindparam("b_version")),
                {**where, **values},
            ).rowcount
        if not changed:  # deleted meanwhile
            raise S3Error("NoSuchKey", "The specified key does not exist.", f"/{bucket.name}/{key}")
        return obj.version_id

    # ------------------------------------------------------------------ listings

    def list_objects(
        self,
        bucket: BucketInfo,
        prefix: str,
        delimiter: str,
        after: str,
        max_keys: int,
    ) -> Listing:
        """Latest live versions in key order after `after`, rolled up by `delimiter`."""
        objects: list[ObjectInfo] = []
        prefixes: list[str] = []
        lower, inclusive = after, False  # where the next query starts
        last_returned = ""
        v = VERSIONS.c
        with self._tx() as s:
            while True:
                query = select(*LISTED).where(
                    v.bucket_id == bucket.id,
                    v.is_latest.is_(True),
                    v.key >= lower if inclusive else v.key > lower,
                )
                if prefix:
                    query = query.where(v.key >= prefix, v.key < _successor(prefix))
                rows = s.execute(query.order_by(v.key).limit(LIST_BATCH)).all()
                jumped = False
                for row in rows:
                    lower, inclusive = row.key, False
                    common = ""
                    if delimiter:
                        at = row.key.find(delimiter, len(prefix))
                        if at >= 0:
                            common = row.key[: at + len(delimiter)]
                    if common:
                        # The whole group is one entry; the next query starts past it.
                        lower, inclusive, jumped = _successor(common), True, True
                        if common > after:
                            if len(objects) + len(prefixes) >= max_keys:
                                return Listing(objects, prefixes, True, last_returned)
                            prefixes.append(common)
                            last_returned = common
                        break
                    if row.is_delete_marker:
                        continue
                    if len(objects) + len(prefixes) >= max_keys:
                        return Listing(objects, prefixes, True, last_returned)
                    objects.append(ObjectInfo.of(bucket.name, row))
                    last_returned = row.key
                if not jumped and len(rows) < LIST_BATCH:
                    return Listing(objects, prefixes, False, last_returned)

    def list_versions(
        self,
        bucket: BucketInfo,
        prefix: str,
        delimiter: str,
        key_marker: str,
        version_marker: str,
        max_keys: int,
    ) -> Listing:
        """Every version and delete marker, keys ascending, newest version first."""
        v = VERSIONS.c
        objects: list[ObjectInfo] = []
        prefixes: list[str] = []
        with self._tx() as s:
            start_seq: int | None = None
            if key_marker and version_marker:
                start_seq = s.scalar(
                    select(v.seq).where(
                        v.bucket_id == bucket.id,
                        v.key == key_marker,
                        v.version_id == version_marker,
                    )
                )
            base = select(*LISTED).where(v.bucket_id == bucket.id)
            if prefix:
                base = base.where(v.key >= prefix, v.key < _successor(prefix))
            # Where the next query starts (keyset, never OFFSET: each batch is an index seek):
            # after (key, seq) when a version is known, else after or at a key.
            after_key, after_seq, inclusive = key_marker, start_seq, False
            while True:
                query = base
                if after_seq is not None:
                    query = query.where(
                        (v.key > after_key) | ((v.key == after_key) & (v.seq < after_seq))
                    )
                elif after_key:
                    query = query.where(v.key >= after_key if inclusive else v.key > after_key)
                rows = s.execute(query.order_by(v.key, v.seq.desc()).limit(LIST_BATCH)).all()
                jumped = False
                for row in rows:
                    common = ""
                    if delimiter:
                        at = row.key.find(delimiter, len(prefix))
                        if at >= 0:
                            common = row.key[: at + len(delimiter)]
                    if common:
                        # The whole group is one entry; the next query starts past it.
                        if common > key_marker and (not prefixes or prefixes[-1] != common):
                            if len(objects) + len(prefixes) >= max_keys:
                                return self._versions_page(objects, prefixes)
                            prefixes.append(common)
                        after_key, after_seq, inclusive = _successor(common), None, True
                        jumped = True
                        break
                    if len(objects) + len(prefixes) >= max_keys:
                        return self._versions_page(objects, prefixes)
                    objects.append(ObjectInfo.of(bucket.name, row))
                    after_key, after_seq = row.key, row.seq
                if not jumped and len(rows) < LIST_BATCH:
                    return Listing(objects, prefixes, False)

    @staticmethod
    def _versions_page(objects: list[ObjectInfo], prefixes: list[str]) -> Listing:
        last_obj = objects[-1] if objects else None
        last_prefix = prefixes[-1] if prefixes else ""
        if last_obj is not None and last_obj.key >= last_prefix:
            return Listing(objects, prefixes, True, last_obj.key, last_obj.version_id)
        return Listing(objects, prefixes, True, last_prefix, "")

    # ------------------------------------------------------------------ multipart

    def create_upload(
        self, who: Principal, bucket: BucketInfo, key: str, template: NewObject, algorithm: str
    ) -> UploadInfo:
        check_key(key)
        check_tags(template.tags)
        with self.db.session() as s:
            row = m.Upload(
                id=new_id() + new_id(),
                bucket_id=bucket.id,
                key=key,
                initiator_user_id=who.user_id or "",
                owner_project_id=who.project_id or bucket.project_id,
                created_at=_utcnow(self.clock),
                headers=template.headers,
                user_meta=template.user_meta,
                tags=template.tags,
                acl=template.acl,
                checksum_algorithm=algorithm,
            )
            s.add(row)
            s.flush()
            return self._upload_info(bucket.name, row)

    @staticmethod
    def _upload_info(bucket: str, row: m.Upload) -> UploadInfo:
        return UploadInfo(
            row.id,
            bucket,
            row.key,
            row.initiator_user_id,
            row.owner_project_id,
            row.created_at,
            dict(row.headers),
            dict(row.user_meta),
            dict(row.tags),
            row.acl,
            row.checksum_algorithm,
        )

    def _upload_row(self, s: Session, bucket: BucketInfo, key: str, upload_id: str) -> m.Upload:
        row = s.get(m.Upload, upload_id)
        if row is None or row.bucket_id != bucket.id or row.key != key:
            raise S3Error(
                "NoSuchUpload",
                "The specified upload does not exist. The upload ID may be invalid, or the "
                "upload may have been aborted or completed.",
                upload_id,
            )
        return row

    def upload(self, bucket: BucketInfo, key: str, upload_id: str) -> UploadInfo:
        with self.db.session() as s:
            return self._upload_info(bucket.name, self._upload_row(s, bucket, key, upload_id))

    def put_part(
        self,
        bucket: BucketInfo,
        key: str,
        upload_id: str,
        number: int,
        blob_id: str,
        size: int,
        etag: str,
        checksums: dict[str, str],
    ) -> None:
        freed: list[str] = []
        try:
            with self.db.session() as s:
                self._write(s)
                limits = self._lock_quota(s.connection(), bucket.project_id)
                self._upload_row(s, bucket, key, upload_id)
                old = s.get(m.Part, (upload_id, number))
                if old is not None:
                    freed.append(old.blob_id)
                    self._count(s.connection(), bucket.id, -old.size, 0)
                    s.delete(old)
                    s.flush()
                self._count(s.connection(), bucket.id, size, 0)
                self._check_quota(s.connection(), bucket.project_id, limits, size)
                s.add(
                    m.Part(
                        upload_id=upload_id,
                        number=number,
                        size=size,
                        etag=etag,
                        blob_id=blob_id,
                        checksums=checksums,
                        created_at=_utcnow(self.clock),
                    )
                )
        except BaseException:
            self.store.delete([blob_id])
            raise
        self.store.delete(freed)
        self._meter_bucket(bucket)

    def list_parts(
        self, bucket: BucketInfo, key: str, upload_id: str, after: int, max_parts: int
    ) -> tuple[UploadInfo, list[PartInfo], bool]:
        with self.db.session() as s:
            upload = self._upload_info(bucket.name, self._upload_row(s, bucket, key, upload_id))
            rows = s.scalars(
                select(m.Part)
                .where(m.Part.upload_id == upload_id, m.Part.number > after)
                .order_by(m.Part.number)
                .limit(max_parts + 1)
            ).all()
            parts = [
                PartInfo(r.number, r.size, r.etag, r.blob_id, dict(r.checksums), r.created_at)
                for r in rows
            ]
            return upload, parts[:max_parts], len(parts) > max_parts

    def list_uploads(
        self,
        bucket: BucketInfo,
        prefix: str,
        key_marker: str,
        upload_marker: str,
        max_uploads: int,
    ) -> tuple[list[UploadInfo], bool]:
        u = m.Upload
        with self.db.session() as s:
            query = select(u).where(u.bucket_id == bucket.id)
            if prefix:
                query = query.where(u.key >= prefix, u.key < _successor(prefix))
            if key_marker and upload_marker:
                query = query.where(
                    (u.key > key_marker) | ((u.key == key_marker) & (u.id > upload_marker))
                )
            elif key_marker:
                query = query.where(u.key > key_marker)
            rows = s.scalars(query.order_by(u.key, u.id).limit(max_uploads + 1)).all()
            found = [self._upload_info(bucket.name, r) for r in rows]
            return found[:max_uploads], len(found) > max_uploads

    def abort_upload(self, bucket: BucketInfo, key: str, upload_id: str) -> None:
        with self.db.session() as s:
            self._write(s)
            self._upload_row(s, bucket, key, upload_id)
            parts = s.execute(
                select(m.Part.blob_id, m.Part.size).where(m.Part.upload_id == upload_id)
            ).all()
            s.execute(delete(m.Part).where(m.Part.upload_id == upload_id))
            s.execute(delete(m.Upload).where(m.Upload.id == upload_id))
            self._count(s.connection(), bucket.id, -sum(p.size for p in parts), 0)
        self.store.delete(p.blob_id for p in parts)
        self._meter_bucket(bucket)

    def complete_upload(
        self,
        who: Principal,
        bucket: BucketInfo,
        key: str,
        upload_id: str,
        wanted: Sequence[tuple[int, str]],
    ) -> ObjectInfo:
        """Join the listed parts into the key's new version; unlisted parts are dropped."""
        if not wanted:
            raise S3Error(
                "MalformedXML", "You must specify at least one part to complete an upload."
            )
        numbers = [n for n, _ in wanted]
        if numbers != sorted(numbers) or len(set(numbers)) != len(numbers):
            raise S3Error(
                "InvalidPartOrder",
                "The list of parts was not in ascending order. Parts must be ordered by part "
                "number.",
                upload_id,
            )
        freed: list[str] = []
        with self.db.session() as s:
            self._write(s)
            limits = self._lock_quota(s.connection(), bucket.project_id)
            upload = self._upload_row(s, bucket, key, upload_id)
            parts = {
                p.number: p for p in s.scalars(select(m.Part).where(m.Part.upload_id == upload_id))
            }
            chosen: list[m.Part] = []
            for number, etag in wanted:
                part = parts.get(number)
                if part is None or part.etag != etag.strip('"'):
                    raise S3Error(
                        "InvalidPart",
                        "One or more of the specified parts could not be found. The part may "
                        "not have been uploaded, or the specified entity tag may not match "
                        "the part's entity tag.",
                        upload_id,
                    )
                chosen.append(part)
            for part in chosen[:-1]:
                if part.size < self.min_part_bytes:
                    raise S3Error(
                        "EntityTooSmall",
                        "Your proposed upload is smaller than the minimum allowed object size: "
                        f"every part but the last must be at least {self.min_part_bytes} bytes.",
                        upload_id,
                    )
            md5s = b"".join(bytes.fromhex(p.etag) for p in chosen)
            etag = f"{hashlib.md5(md5s, usedforsecurity=False).hexdigest()}-{len(chosen)}"
            checksums = self._composite_checksums(upload.checksum_algorithm, chosen)
            used = {p.number for p in chosen}
            unused = [p for n, p in parts.items() if n not in used]
            version_id = self._new_version_id(bucket)
            retired = self._retire(s.connection(), bucket, key, version_id)
            freed = [p.blob_id for p in unused] + retired.blobs
            # the chosen parts' bytes stay, now counted as the object's
            self._count(
                s.connection(),
                bucket.id,
                -sum(p.size for p in unused) - retired.size,
                1 - retired.objects,
            )
            row = m.ObjectVersion(
                bucket_id=bucket.id,
                key=key,
                version_id=version_id,
                is_latest=True,
                is_delete_marker=False,
                size=sum(p.size for p in chosen),
                etag=etag,
                segments=[[p.blob_id, p.size] for p in chosen],
                headers=dict(upload.headers),
                user_meta=dict(upload.user_meta),
                checksums=checksums,
                tags=dict(upload.tags),
                acl=upload.acl,
                owner_project_id=upload.owner_project_id,
                created_at=_utcnow(self.clock),
            )
            s.add(row)
            s.execute(delete(m.Part).where(m.Part.upload_id == upload_id))
            s.delete(upload)
            s.flush()
            self._check_quota(s.connection(), bucket.project_id, limits, row.size)
            info = ObjectInfo.of(bucket.name, row)
        self.store.delete(freed)
        self._meter_bucket(bucket)
        return info

    @staticmethod
    def _composite_checksums(algorithm: str, parts: Iterable[m.Part]) -> dict[str, str]:
        """S3's checksum of checksums for multipart objects: `base64(H(h1||h2..))-N`."""
        chosen = list(parts)
        if not algorithm or not all(algorithm in p.checksums for p in chosen):
            return {}
        digest = new_hash(algorithm)
        for p in chosen:
            digest.update(base64.b64decode(p.checksums[algorithm]))
        return {algorithm: f"{base64.b64encode(digest.digest()).decode()}-{len(chosen)}"}

    # ------------------------------------------------------------------ maintenance

    def referenced_blobs(self) -> set[str]:
        """Every blob a row points at: what the start-up sweep must keep."""
        with self.db.session() as s:
            found = set(s.scalars(select(m.Part.blob_id)).all())
            for segments in s.scalars(select(m.ObjectVersion.segments)):
                found.update(seg[0] for seg in segments)
            return found

    def sweep(self) -> int:
        """Remove leftovers of interrupted uploads; run before any request is served."""
        return self.store.sweep(self.referenced_blobs())

    def usage(self, project_id: str) -> tuple[int, int]:
        """(bytes, objects) a project stores: what quotas and metering read."""
        with self._tx() as conn:
            return self._stored(conn, project_id)

    def bucket_usage(self, bucket: BucketInfo) -> tuple[int, int]:
        """(bytes, objects) one bucket stores, from its running totals."""
        with self._tx() as conn:
            return ledger.totals(conn, USAGE.c.bucket_id == bucket.id)
