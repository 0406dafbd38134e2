"""Each bucket's running totals (stored bytes and objects) and their recount.

The service adds to the totals inside the transaction of each change (`ADD_USAGE`);
quotas and the meter read them (`totals`); `recount` compares them with what the
rows add up to, for the operator's `souverain s3 recount`. Knows nothing of HTTP.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy import (
    ColumnElement,
    Connection,
    Table,
    bindparam,
    delete,
    func,
    insert,
    select,
    update,
)

from souverain.db.engine import Database
from souverain.objectstore import models as m

USAGE: Table = m.BucketUsage.__table__  # type: ignore[assignment]
_U = USAGE.c
ADD_USAGE = (
    update(USAGE)
    .where(_U.bucket_id == bindparam("b_bucket"), _U.shard == bindparam("b_shard"))
    .values(
        stored_bytes=_U.stored_bytes + bindparam("d_bytes"),
        stored_objects=_U.stored_objects + bindparam("d_objects"),
    )
)


@dataclass
class BucketUsage:
    """A bucket's running totals beside what its rows add up to (a recount)."""

    bucket: str
    project_id: str
    stored_bytes: int
    stored_objects: int
    counted_bytes: int
    counted_objects: int

    @property
    def agrees(self) -> bool:
        return (self.stored_bytes, self.stored_objects) == (
            self.counted_bytes,
            self.counted_objects,
        )


def totals(conn: Connection, which: ColumnElement[bool]) -> tuple[int, int]:
    """(bytes, objects) summed over the totals rows `which` selects (a bucket, a project)."""
    row = conn.execute(
        select(
            func.coalesce(func.sum(_U.stored_bytes), 0),
            func.coalesce(func.sum(_U.stored_objects), 0),
        ).where(which)
    ).one()
    return int(row[0]), int(row[1])


def new_rows(bucket_id: str, project_id: str, size: int, objects: int) -> list[dict[str, Any]]:
    """A bucket's USAGE_SHARDS totals rows: the first holds the totals, the others zero."""
    return [
        {
            "bucket_id": bucket_id,
            "shard": shard,
            "project_id": project_id,
            "stored_bytes": size if shard == 0 else 0,
            "stored_objects": objects if shard == 0 else 0,
        }
        for shard in range(m.USAGE_SHARDS)
    ]


def recount(db: Database, repair: bool = False) -> list[BucketUsage]:
    """Every bucket's running totals beside a count of its rows, in one snapshot; with
    `repair`, totals that disagree are set to the count (exact on SQLite, where this holds
    the write lock; on PostgreSQL, run it while the bucket is quiet)."""
    with db.engine.connect() as conn:
        if repair and conn.dialect.name == "sqlite":
            conn.exec_driver_sql("BEGIN IMMEDIATE")
        found = [BucketUsage(*row) for row in conn.execute(_RECOUNT)]
        if repair:
            for usage in found:
                if not usage.agrees:
                    _reset(conn, usage)
            conn.commit()
    return found


def _reset(conn: Connection, usage: BucketUsage) -> None:
    bucket_id = conn.execute(select(m.Bucket.id).where(m.Bucket.name == usage.bucket)).scalar_one()
    conn.execute(delete(USAGE).where(_U.bucket_id == bucket_id))
    rows = new_rows(bucket_id, usage.project_id, usage.counted_bytes, usage.counted_objects)
    conn.execute(insert(USAGE), rows)


def _recount_query() -> Any:
    """Per bucket: its totals, and what its versions and parts add up to, in one statement
    (one snapshot, whatever writers do meanwhile)."""
    b, v = m.Bucket.__table__.c, m.ObjectVersion.__table__.c
    p, up = m.Part.__table__.c, m.Upload.__table__.c
    return select(
        b.name,
        b.project_id,
        select(func.coalesce(func.sum(_U.stored_bytes), 0))
        .where(_U.bucket_id == b.id)
        .scalar_subquery(),
        select(func.coalesce(func.sum(_U.stored_objects), 0))
        .where(_U.bucket_id == b.id)
        .scalar_subquery(),
        select(func.coalesce(func.sum(v.size), 0)).where(v.bucket_id == b.id).scalar_subquery()
        + select(func.coalesce(func.sum(p.size), 0))
        .select_from(m.Part.__table__.join(m.Upload.__table__, p.upload_id == up.id))
        .where(up.bucket_id == b.id)
        .scalar_subquery(),
        select(func.count())
        .where(v.bucket_id == b.id, v.is_delete_marker.is_(False))
        .scalar_subquery(),
    ).order_by(b.name)


_RECOUNT = _recount_query()
