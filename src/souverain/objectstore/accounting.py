"""The books of object storage: running totals in each change's transaction, the meter.

`count` runs inside the transaction of the change it accounts for; the rest runs
after a commit (`changed`, `egress`: noted in memory) or on the meter's own round
(`flush`, `reconcile`). Knows nothing of HTTP.
"""

from __future__ import annotations

import os
from decimal import Decimal

from sqlalchemy import Connection, func, select

from souverain.common.clock import Clock
from souverain.common.metering import NULL_METER, Meter, Reading, gib
from souverain.db.engine import Database
from souverain.objectstore import models as m
from souverain.objectstore import usage as ledger
from souverain.objectstore.errors import S3Error
from souverain.objectstore.metering import MeteredBucket, Noted, PendingMeter
from souverain.objectstore.quotas import project_usage
from souverain.objectstore.records import BucketInfo
from souverain.objectstore.transactions import connect
from souverain.objectstore.usage import ADD_USAGE, USAGE


def count(conn: Connection, bucket_id: str, size: int, objects: int) -> None:
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


class Accounting:
    """What each bucket stores, as the meter and the quotas see it."""

    def __init__(self, db: Database, clock: Clock, pending: PendingMeter) -> None:
        # billable changes are recorded on it (the billing service's, set by the server)
        self.meter: Meter = NULL_METER
        self.db = db
        self.clock = clock
        self.pending = pending

    def changed(self, bucket: BucketInfo) -> None:
        """After a committed change: the bucket's gauge is due at the next flush."""
        self.pending.changed(MeteredBucket(bucket.id, bucket.project_id, bucket.name))

    def egress(self, bucket: BucketInfo, sent: int) -> None:
        """Bytes of a GET body that left the cloud, added up in memory until the next flush."""
        if sent > 0:
            metered = MeteredBucket(bucket.id, bucket.project_id, bucket.name)
            self.pending.sent(metered, sent, self.clock.now())

    def flush(self) -> int:
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
        with connect(self.db) as conn:
            for start in range(0, len(bucket_ids), 500):
                rows = conn.execute(
                    select(u.bucket_id, func.sum(u.stored_bytes))
                    .where(u.bucket_id.in_(bucket_ids[start : start + 500]))
                    .group_by(u.bucket_id)
                )
                found.update((bucket_id, int(total)) for bucket_id, total in rows)
        return found

    def reconcile(self, last_gauges: dict[tuple[str, str], Decimal]) -> int:
        """At start: gauge every bucket whose last `object.gb` gauge is not its size now
        (a flush a crash cut short); the number of buckets re-gauged."""
        u, b = USAGE.c, m.Bucket.__table__.c
        with connect(self.db) as conn:
            rows = conn.execute(
                select(b.id, b.project_id, b.name, func.sum(u.stored_bytes))
                .join(USAGE, u.bucket_id == b.id)
                .group_by(b.id, b.project_id, b.name)
            ).all()
        for bucket_id, project_id, name, stored in rows:
            if last_gauges.get((project_id, name), Decimal(0)) != gib(int(stored)):
                self.pending.changed(MeteredBucket(bucket_id, project_id, name))
        return self.flush()

    def usage(self, project_id: str) -> tuple[int, int]:
        """(bytes, objects) a project stores: what quotas and metering read."""
        with connect(self.db) as conn:
            return project_usage(conn, project_id)

    def bucket_usage(self, bucket: BucketInfo) -> tuple[int, int]:
        """(bytes, objects) one bucket stores, from its running totals."""
        with connect(self.db) as conn:
            return ledger.totals(conn, USAGE.c.bucket_id == bucket.id)
