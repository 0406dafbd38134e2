"""The lifecycle sweep: carry out each bucket's enabled lifecycle rules, once across the cloud.

Every serving process runs the sweep on its meter round; a bucket is swept by the one
process that takes its lease (an atomic compare-and-set on the bucket's row) and by no
other until the lease runs out. Each action re-checks in its own transaction that the
version is still what the sweep saw, so even a sweep whose lease ran out meanwhile
cannot expire an object twice or one written since. Versions Object Lock holds are
left alone. A round does at most `batch` actions of each kind per rule; the rest wait
for the next lease. Knows nothing of HTTP or XML.
"""

from __future__ import annotations

import datetime as dt
import itertools
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Table, or_, select, update

from souverain.common.clock import Clock
from souverain.db.engine import Database
from souverain.objectstore import lifecycle
from souverain.objectstore import models as m
from souverain.objectstore.errors import S3Error
from souverain.objectstore.objects import VERSIONS, Objects
from souverain.objectstore.policy import Principal
from souverain.objectstore.records import BucketInfo, successor, utcnow
from souverain.objectstore.transactions import connect
from souverain.objectstore.uploads import Uploads

log = logging.getLogger("souverain.objectstore.lifecycle")

LEASE_SECONDS = 300
BATCH = 500
_V = VERSIONS.c
BUCKETS: Table = m.Bucket.__table__  # type: ignore[assignment]


@dataclass
class Swept:
    """What one round did, by action."""

    expired: int = 0
    noncurrent: int = 0
    markers: int = 0
    aborted: int = 0

    @property
    def total(self) -> int:
        return self.expired + self.noncurrent + self.markers + self.aborted


class LifecycleSweep:
    """Runs the rules of every bucket that has some and whose lease this process takes."""

    def __init__(
        self, db: Database, objects: Objects, uploads: Uploads, clock: Clock, batch: int = BATCH
    ) -> None:
        self.db = db
        self.objects = objects
        self.uploads = uploads
        self.clock = clock
        self.batch = batch

    def run(self) -> Swept:
        swept = Swept()
        now = utcnow(self.clock)
        with self.db.session() as s:
            rows = s.scalars(select(m.Bucket).where(m.Bucket.lifecycle.is_not(None))).all()
            buckets = [BucketInfo.of(r) for r in rows]
        for bucket in buckets:
            if lifecycle.enabled(bucket.lifecycle) and self._take_lease(bucket, now):
                self._sweep(bucket, now, swept)
        return swept

    def _take_lease(self, bucket: BucketInfo, now: dt.datetime) -> bool:
        """Hold the bucket's sweep for LEASE_SECONDS unless another process holds it."""
        b = BUCKETS.c
        with connect(self.db, write=True) as conn:
            taken = conn.execute(
                update(BUCKETS)
                .where(
                    b.id == bucket.id, or_(b.lifecycle_lease.is_(None), b.lifecycle_lease <= now)
                )
                .values(lifecycle_lease=now + dt.timedelta(seconds=LEASE_SECONDS))
            ).rowcount
        return bool(taken)

    def _sweep(self, bucket: BucketInfo, now: dt.datetime, swept: Swept) -> None:
        for rule in lifecycle.enabled(bucket.lifecycle):
            scope = lifecycle.scope_of(rule)
            try:
                expiration = rule.get("Expiration", {})
                if "Days" in expiration or "Date" in expiration:
                    swept.expired += self._expire_current(bucket, scope, expiration, now)
                if expiration.get("ExpiredObjectDeleteMarker"):
                    swept.markers += self._drop_lone_markers(bucket, scope)
                if "NoncurrentVersionExpiration" in rule:
                    swept.noncurrent += self._expire_noncurrent(
                        bucket, scope, rule["NoncurrentVersionExpiration"], now
                    )
                if "AbortIncompleteMultipartUpload" in rule:
                    days = rule["AbortIncompleteMultipartUpload"]["DaysAfterInitiation"]
                    swept.aborted += self._abort_uploads(bucket, scope, days, now)
            except Exception:  # one bucket's trouble must not stop the others
                log.exception("lifecycle rule %r of bucket %s failed", rule.get("ID"), bucket.name)

    def _in_scope(self, scope: lifecycle.Scope) -> list[Any]:
        """SQL conditions for the key prefix (tags and sizes are checked per row)."""
        where = [_V.key >= scope.prefix]
        if scope.prefix:
            where.append(_V.key < successor(scope.prefix))
        return where

    def _expire_current(
        self,
        bucket: BucketInfo,
        scope: lifecycle.Scope,
        expiration: dict[str, Any],
        now: dt.datetime,
    ) -> int:
        if "Date" in expiration:
            if lifecycle.parse_date(expiration["Date"]) > now:
                return 0
            cutoff = now
        else:
            cutoff = lifecycle.started_before(int(expiration["Days"]), now)
        query = (
            select(_V.seq, _V.key, _V.size, _V.tags)
            .where(
                _V.bucket_id == bucket.id,
                _V.is_latest.is_(True),
                _V.is_delete_marker.is_(False),
                _V.created_at <= cutoff,
                *self._in_scope(scope),
            )
            .order_by(_V.key)
            .limit(self.batch)
        )
        done = 0
        for row in self._rows(query):
            if scope.takes(row.key, row.tags, row.size):
                done += self.objects.expire_latest(bucket, row.key, row.seq)
        return done

    def _drop_lone_markers(self, bucket: BucketInfo, scope: lifecycle.Scope) -> int:
        query = (
            select(_V.key, _V.version_id)
            .where(
                _V.bucket_id == bucket.id,
                _V.is_latest.is_(True),
                _V.is_delete_marker.is_(True),
                *self._in_scope(scope),
            )
            .order_by(_V.key)
            .limit(self.batch)
        )
        return sum(
            self.objects.drop_lone_marker(bucket, row.key, row.version_id)
            for row in self._rows(query)
        )

    def _expire_noncurrent(
        self,
        bucket: BucketInfo,
        scope: lifecycle.Scope,
        action: dict[str, Any],
        now: dt.datetime,
    ) -> int:
        cutoff = lifecycle.started_before(int(action["NoncurrentDays"]), now)
        keep = int(action.get("NewerNoncurrentVersions", 0))
        keys = (
            select(_V.key)
            .where(_V.bucket_id == bucket.id, _V.is_latest.is_(False), *self._in_scope(scope))
            .group_by(_V.key)
            .order_by(_V.key)
            .limit(self.batch)
        )
        done = 0
        for (key,) in self._rows(keys):
            history = self._rows(
                select(_V.version_id, _V.created_at, _V.size, _V.tags, _V.is_delete_marker)
                .where(_V.bucket_id == bucket.id, _V.key == key)
                .order_by(_V.seq.desc())
            )
            for due in noncurrent_due(history, cutoff, keep):
                if not (due.is_delete_marker or scope.takes(key, due.tags, due.size)):
                    continue
                done += self._delete_version(bucket, key, due.version_id)
        return done

    def _delete_version(self, bucket: BucketInfo, key: str, version_id: str) -> int:
        try:
            self.objects.delete_object(Principal(), bucket, key, version_id)
        except S3Error as exc:  # Object Lock holds it: lifecycle never removes locked data
            if exc.code != "AccessDenied":
                raise
            return 0
        return 1

    def _abort_uploads(
        self, bucket: BucketInfo, scope: lifecycle.Scope, days: int, now: dt.datetime
    ) -> int:
        u = m.Upload
        where = [u.bucket_id == bucket.id, u.created_at <= lifecycle.started_before(days, now)]
        where.append(u.key >= scope.prefix)
        if scope.prefix:
            where.append(u.key < successor(scope.prefix))
        query = select(u.id, u.key).where(*where).order_by(u.created_at).limit(self.batch)
        done = 0
        for row in self._rows(query):
            try:
                self.uploads.abort_upload(bucket, row.key, row.id)
            except S3Error as exc:  # completed or aborted meanwhile
                if exc.code != "NoSuchUpload":
                    raise
                continue
            done += 1
        return done

    def _rows(self, query: Any) -> Sequence[Any]:
        with self.db.engine.connect() as conn:
            return conn.execute(query).all()


def noncurrent_due(history: Sequence[Any], cutoff: dt.datetime, keep: int) -> list[Any]:
    """The noncurrent versions of one key (newest first in `history`) that have been
    noncurrent since `cutoff` or before, beyond the newest `keep` of them. A version
    becomes noncurrent when the next one is made."""
    due = []
    for rank, (newer, version) in enumerate(itertools.pairwise(history), start=1):
        if rank > keep and newer.created_at <= cutoff:
            due.append(version)
    return due
