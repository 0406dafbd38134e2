"""Object versions: write, read, delete one key's versions, and change their tags or ACL.

Bytes are already durable in the blob store when a method here records them; a
method commits metadata and, only after the commit, removes the blobs it made
unreachable. A crash in between leaves unreferenced blobs, which `sweep` removes
at start. Knows nothing of HTTP or XML.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import re
from collections.abc import Callable
from types import SimpleNamespace
from typing import Any

from sqlalchemy import Connection, Table, bindparam, delete, func, insert, select, update

from souverain.common.clock import Clock
from souverain.common.ids import new_id
from souverain.db.engine import Database
from souverain.objectstore import conditional, locks
from souverain.objectstore import models as m
from souverain.objectstore.accounting import Accounting, count
from souverain.objectstore.acl import CUSTOM
from souverain.objectstore.batch import GroupCommit
from souverain.objectstore.cipher import OpeningReader, stored_segments
from souverain.objectstore.conditional import WriteCondition
from souverain.objectstore.encryption import Sealer
from souverain.objectstore.errors import S3Error
from souverain.objectstore.policy import CANNED_ACLS, Principal
from souverain.objectstore.quotas import Quotas
from souverain.objectstore.records import (
    NULL_VERSION,
    BucketInfo,
    DeleteResult,
    NewObject,
    ObjectInfo,
    Released,
    check_key,
    check_tags,
    utcnow,
)
from souverain.objectstore.store import BlobStore, InlineReader, SegmentReader
from souverain.objectstore.transactions import connect

VERSIONS: Table = m.ObjectVersion.__table__  # type: ignore[assignment]

# The statements every object request runs, built once: SQLAlchemy then reuses their
# compiled form without rebuilding or re-keying them per request.
_V = VERSIONS.c
_THIS_KEY = (_V.bucket_id == bindparam("b_bucket")) & (_V.key == bindparam("b_key"))
READ_LATEST = select(VERSIONS).where(_THIS_KEY, _V.is_latest.is_(True))
READ_VERSION = select(VERSIONS).where(_THIS_KEY, _V.version_id == bindparam("b_version"))
LATEST_STATE = select(_V.is_delete_marker, _V.etag, _V.created_at).where(
    _THIS_KEY, _V.is_latest.is_(True)
)
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
READ_LATEST_SEQ = select(_V.seq, _V.is_delete_marker).where(_THIS_KEY, _V.is_latest.is_(True))
KEY_VERSIONS = select(_V.version_id, _V.is_delete_marker).where(_THIS_KEY)
READ_LOCK = select(_V.lock_mode, _V.lock_until, _V.legal_hold).where(
    _THIS_KEY, _V.version_id == bindparam("b_version")
)


class Unchanged(Exception):
    """A guarded change found the key no longer as expected, and changed nothing."""


def new_version_id(bucket: BucketInfo) -> str:
    return new_id() if bucket.versioning == "Enabled" else NULL_VERSION


def retire(conn: Connection, bucket: BucketInfo, key: str, version_id: str) -> Released:
    """Make room for a new latest version; what the versions it dropped held."""
    where = {"b_bucket": bucket.id, "b_key": key}
    if bucket.versioning:  # older versions stay, no longer latest
        conn.execute(UNSET_LATEST, where)
    if version_id != NULL_VERSION:
        return Released()
    # The null version is replaced, never kept twice (unversioned buckets have no other).
    return Released().add(conn.execute(DROP_NULL_VERSION, where))


def apply_default_retention(bucket: BucketInfo, new: NewObject, now: dt.datetime) -> None:
    """A new version without retention of its own gets the bucket's default, if any."""
    default = locks.default_retention(bucket.object_lock, now)
    if default is not None:
        new.lock_mode, new.lock_until = default.mode, default.until


def promote(conn: Connection, bucket_id: str, key: str) -> None:
    """The newest remaining version of a key becomes its latest."""
    v = VERSIONS.c
    newest = conn.execute(
        select(func.max(v.seq)).where(v.bucket_id == bucket_id, v.key == key)
    ).scalar()
    if newest is not None:
        conn.execute(update(VERSIONS).where(v.seq == newest).values(is_latest=True))


def found_in(bucket: BucketInfo, row: Any) -> ObjectInfo:
    """A version looked up in `bucket`: its encryption names the project whose keys open it."""
    info = ObjectInfo.of(bucket.name, row)
    if info.sse is not None:
        info.sse = dataclasses.replace(info.sse, project=bucket.project_id)
    return info


class Objects:
    """One key's versions: each write is one group-committed transaction with its books."""

    def __init__(
        self,
        db: Database,
        store: BlobStore,
        accounting: Accounting,
        quotas: Quotas,
        writes: GroupCommit,
        clock: Clock,
        sealer: Sealer | None = None,
    ) -> None:
        self.db = db
        self.store = store
        self.sealer = sealer or Sealer(None)
        self.accounting = accounting
        self.quotas = quotas
        self.writes = writes
        self.clock = clock

    def head_object(
        self, bucket: BucketInfo, key: str, version_id: str | None = None
    ) -> ObjectInfo:
        """The version asked for (latest by default); NoSuchKey if the key is gone."""
        where = {"b_bucket": bucket.id, "b_key": key}
        with connect(self.db) as conn:
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
            return found_in(bucket, row)
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
        return found_in(bucket, row)

    def reader(
        self, obj: ObjectInfo, customer_key: bytes | None = None
    ) -> InlineReader | SegmentReader | OpeningReader:
        """Where a version's bytes are read from: its row, or its blobs (opened now); an
        encrypted version's are opened under its data key (SSE-C: `customer_key`'s)."""
        sealed = obj.sse
        if sealed is None:
            if obj.data is not None:
                return InlineReader(obj.data)
            return self.store.open_segments(obj.segments)
        key = self.sealer.open(
            sealed.project, sealed.mode, sealed.wrapped, sealed.customer, customer_key
        )
        sizes = [int(seg[1]) for seg in obj.segments]
        inner: InlineReader | SegmentReader
        if obj.data is not None:
            inner, sizes = InlineReader(obj.data), [obj.size]
        else:
            inner = self.store.open_segments(stored_segments(obj.segments))
        parts = sealed.parts if sealed.parts is not None else [0] * len(sizes)
        return OpeningReader(inner, key, sizes, parts)

    def check_condition(self, bucket: BucketInfo, key: str, condition: WriteCondition) -> None:
        """Refuse a conditional write before its body is taken (412, or 404 for If-Match)."""
        with connect(self.db) as conn:
            latest = conn.execute(LATEST_STATE, {"b_bucket": bucket.id, "b_key": key}).first()
        code = conditional.failure(latest, condition)
        if code is not None:
            raise conditional.refuse(code, f"/{bucket.name}/{key}")

    def put_object(
        self,
        who: Principal,
        bucket: BucketInfo,
        key: str,
        new: NewObject,
        condition: WriteCondition | None = None,
    ) -> ObjectInfo:
        """Record a durable blob as the key's latest version.

        `condition` was checked before the body came (`check_condition`); failing now
        means another write won the race: 409 ConditionalRequestConflict."""
        check_key(key)
        if bucket.object_lock and new.lock_mode is None:
            apply_default_retention(bucket, new, utcnow(self.clock))

        def record(conn: Connection) -> tuple[dict[str, Any], list[str]]:
            if condition is not None:
                latest = conn.execute(LATEST_STATE, {"b_bucket": bucket.id, "b_key": key}).first()
                if conditional.failure(latest, condition) is not None:
                    raise conditional.refuse("ConditionalRequestConflict", f"/{bucket.name}/{key}")
            limits = self.quotas.lock(conn, bucket.project_id)
            version_id = new_version_id(bucket)
            freed = retire(conn, bucket, key, version_id)
            values = self._version_row(who, bucket, key, version_id, new)
            conn.execute(ADD_VERSION, values)
            count(conn, bucket.id, new.size - freed.size, 1 - freed.objects)
            self.quotas.check(conn, bucket.project_id, limits, new.size)
            return values, freed.blobs

        try:
            values, freed = self.writes.run(record)
        except BaseException:
            self.store.delete(seg[0] for seg in new.segments)
            raise
        self.store.delete(freed)
        self.accounting.changed(bucket)
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
            "created_at": utcnow(self.clock),
            "lock_mode": new.lock_mode,
            "lock_until": new.lock_until,
            "legal_hold": new.legal_hold,
            "grants": new.grants,
            **new.sse,
        }

    def delete_object(
        self,
        who: Principal,
        bucket: BucketInfo,
        key: str,
        version_id: str | None = None,
        bypass: bool = False,
        guard: Callable[[Connection], bool] | None = None,
    ) -> DeleteResult:
        """Delete a version (or, without one, the key: a delete marker when versioned).

        `bypass`: the caller may and asked to override GOVERNANCE retention. `guard`:
        checked first in the transaction; False leaves everything as it is and raises
        `Unchanged` (lifecycle acts only on what it saw, never on what replaced it)."""
        where = {"b_bucket": bucket.id, "b_key": key}

        def record(conn: Connection) -> tuple[DeleteResult, list[str]]:
            if guard is not None and not guard(conn):
                raise Unchanged
            if version_id is not None and bucket.object_lock is not None:
                self._check_unlocked(conn, bucket, key, version_id, bypass)
            if version_id is not None:
                gone = conn.execute(DROP_VERSION, {**where, "b_version": version_id}).first()
                if gone is None:
                    if version_id != NULL_VERSION and not re.fullmatch(r"[0-9a-f]{32}", version_id):
                        raise S3Error("InvalidArgument", "Invalid version id specified")
                    return DeleteResult(version_id, False), []
                if gone.is_latest:
                    promote(conn, bucket.id, key)
                freed = Released().add([gone])
                result = DeleteResult(version_id, gone.is_delete_marker)
            elif not bucket.versioning:
                freed = Released().add(conn.execute(DROP_KEY, where))
                result = DeleteResult(None, False)
            else:
                marker_id = new_version_id(bucket)
                freed = retire(conn, bucket, key, marker_id)
                conn.execute(ADD_VERSION, self._version_row(who, bucket, key, marker_id, None))
                result = DeleteResult(marker_id, True)
            count(conn, bucket.id, -freed.size, -freed.objects)
            return result, freed.blobs

        result, freed = self.writes.run(record)
        self.store.delete(freed)
        self.accounting.changed(bucket)
        return result

    def expire_latest(self, bucket: BucketInfo, key: str, seq: int) -> bool:
        """Lifecycle expiration of the current version `seq`: a delete marker on a versioned
        bucket, gone otherwise. False when `seq` is no longer the key's live latest."""
        where = {"b_bucket": bucket.id, "b_key": key}

        def still_latest(conn: Connection) -> bool:
            row = conn.execute(READ_LATEST_SEQ, where).first()
            return row is not None and row.seq == seq and not row.is_delete_marker

        try:
            self.delete_object(Principal(), bucket, key, guard=still_latest)
        except Unchanged:
            return False
        return True

    def drop_lone_marker(self, bucket: BucketInfo, key: str, version_id: str) -> bool:
        """Remove a delete marker that is all a key has left (ExpiredObjectDeleteMarker)."""
        where = {"b_bucket": bucket.id, "b_key": key}

        def alone(conn: Connection) -> bool:
            rows = conn.execute(KEY_VERSIONS.limit(2), where).all()
            return len(rows) == 1 and rows[0].is_delete_marker and rows[0].version_id == version_id

        try:
            self.delete_object(Principal(), bucket, key, version_id, guard=alone)
        except Unchanged:
            return False
        return True

    def _check_unlocked(
        self, conn: Connection, bucket: BucketInfo, key: str, version_id: str, bypass: bool
    ) -> None:
        """Refuse, inside the deleting transaction, to drop a version Object Lock holds."""
        row = conn.execute(
            READ_LOCK, {"b_bucket": bucket.id, "b_key": key, "b_version": version_id}
        ).first()
        if row is not None:
            locks.check_delete(
                row.lock_mode,
                row.lock_until,
                row.legal_hold,
                utcnow(self.clock),
                bypass,
                f"/{bucket.name}/{key}",
            )

    def set_retention(
        self,
        bucket: BucketInfo,
        key: str,
        version_id: str | None,
        wanted: locks.Retention | None,
        bypass: bool,
    ) -> str:
        """Set or remove a version's retention, as far as the current one allows."""

        def change(row: Any) -> dict[str, Any]:
            current = None
            if row.lock_mode and row.lock_until is not None:
                current = locks.Retention(row.lock_mode, row.lock_until)
            locks.check_retention_change(current, wanted, utcnow(self.clock), bypass)
            if wanted is None:
                return {"lock_mode": None, "lock_until": None}
            return {"lock_mode": wanted.mode, "lock_until": wanted.until}

        return self._change_version(bucket, key, version_id, change)

    def set_legal_hold(self, bucket: BucketInfo, key: str, version_id: str | None, on: bool) -> str:
        return self._change_version(bucket, key, version_id, lambda _row: {"legal_hold": on})

    def _change_version(
        self,
        bucket: BucketInfo,
        key: str,
        version_id: str | None,
        change: Callable[[Any], dict[str, Any]],
    ) -> str:
        """Read the version asked for (latest by default) and write what `change` makes of
        it, in one transaction holding its row; its version id."""
        where = {"b_bucket": bucket.id, "b_key": key}
        with connect(self.db, write=True) as conn:
            if version_id is None:
                row = conn.execute(READ_LATEST.with_for_update(), where).first()
            else:
                row = conn.execute(
                    READ_VERSION.with_for_update(), {**where, "b_version": version_id}
                ).first()
            if row is None or (version_id is None and row.is_delete_marker):
                if version_id is not None:
                    raise S3Error(
                        "NoSuchVersion",
                        "The specified version does not exist.",
                        f"/{bucket.name}/{key}",
                    )
                raise S3Error(
                    "NoSuchKey", "The specified key does not exist.", f"/{bucket.name}/{key}"
                )
            if row.is_delete_marker:
                raise S3Error(
                    "MethodNotAllowed",
                    "The specified method is not allowed against this resource.",
                )
            conn.execute(
                update(VERSIONS).where(_V.seq == row.seq).values(**change(row)),
            )
        return str(row.version_id)

    def set_object_tags(
        self, bucket: BucketInfo, key: str, version_id: str | None, tags: dict[str, str]
    ) -> str:
        check_tags(tags)
        return self._update_version(bucket, key, version_id, tags=tags)

    def set_object_acl(
        self,
        bucket: BucketInfo,
        key: str,
        version_id: str | None,
        acl: str,
        grants: list[dict[str, str]] | None = None,
    ) -> None:
        """A version's canned ACL, or (`acl` "custom") its explicit grants."""
        if acl not in CANNED_ACLS and not (acl == CUSTOM and grants is not None):
            raise S3Error("InvalidArgument", f"The canned ACL {acl!r} is not one S3 knows.")
        self._update_version(bucket, key, version_id, acl=acl, grants=grants)

    def set_metadata(
        self, bucket: BucketInfo, key: str, headers: dict[str, str], user_meta: dict[str, str]
    ) -> str:
        """Replace the latest version's stored headers and user metadata (Swift's POST)."""
        return self._update_version(bucket, key, None, headers=headers, user_meta=user_meta)

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
        with connect(self.db, write=True) as conn:
            changed = conn.execute(
                update(VERSIONS).where(_THIS_KEY, _V.version_id == bindparam("b_version")),
                {**where, **values},
            ).rowcount
        if not changed:  # deleted meanwhile
            raise S3Error("NoSuchKey", "The specified key does not exist.", f"/{bucket.name}/{key}")
        return obj.version_id
