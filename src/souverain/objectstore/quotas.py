"""Per-project storage quotas: the limits in force, and the check a write makes.

A limit is the operator's override (a `s3_quotas` row) or the configured default;
-1 is unlimited. What a project stores is the sum of its buckets' running totals
(see `usage`). Knows nothing of HTTP.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from sqlalchemy import Connection, bindparam, select, update

from souverain.common.clock import Clock
from souverain.common.quota import lock_quota_row
from souverain.db.engine import Database
from souverain.objectstore import models as m
from souverain.objectstore import usage as ledger
from souverain.objectstore.errors import S3Error
from souverain.objectstore.records import utcnow
from souverain.objectstore.usage import USAGE

QUOTA_OF = select(m.StorageQuota.max_bytes, m.StorageQuota.max_objects).where(
    m.StorageQuota.project_id == bindparam("b_project")
)


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
        _lock_quota_row(conn, project_id, utcnow(clock))
        values: dict[str, Any] = {"updated_at": utcnow(clock)}
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


def project_usage(conn: Connection, project_id: str) -> tuple[int, int]:
    """(bytes, objects) the project's buckets hold: every version and part in progress,
    delete markers aside; the sum of their running totals, not of their rows."""
    return ledger.totals(conn, USAGE.c.project_id == project_id)


class Quotas:
    """The limits of each project, read and locked inside the write that must respect them."""

    def __init__(self, clock: Clock, quota_bytes: int = -1, quota_objects: int = -1) -> None:
        self.clock = clock
        # per-project defaults (-1: unlimited); an operator's override is a `s3_quotas` row
        self.quota_bytes = quota_bytes
        self.quota_objects = quota_objects

    def quota_of(self, conn: Connection, project_id: str) -> tuple[int, int]:
        """(bytes, objects) the project may store; -1: unlimited."""
        row = conn.execute(QUOTA_OF, {"b_project": project_id}).first()
        max_bytes = row.max_bytes if row is not None and row.max_bytes is not None else None
        max_objects = row.max_objects if row is not None and row.max_objects is not None else None
        return (
            self.quota_bytes if max_bytes is None else int(max_bytes),
            self.quota_objects if max_objects is None else int(max_objects),
        )

    def lock(self, conn: Connection, project_id: str) -> tuple[int, int]:
        """Take the project's quota row for this transaction when it has a limit; the limits.

        On SQLite every write transaction here already holds the one writer lock
        (BEGIN IMMEDIATE); on PostgreSQL the row lock makes writers of one project
        check and commit one after the other, so together they cannot overshoot."""
        if self.quota_of(conn, project_id) == (-1, -1):
            return (-1, -1)  # the hot path of an unlimited project: no lock, no sum
        _lock_quota_row(conn, project_id, utcnow(self.clock))
        return self.quota_of(conn, project_id)

    def check(self, conn: Connection, project_id: str, limits: tuple[int, int], size: int) -> None:
        """Refuse (QuotaExceeded) when what the project stores, new object included, passes
        a limit; call after `lock` and after recording the object."""
        max_bytes, max_objects = limits
        if max_bytes < 0 and max_objects < 0:
            return
        stored, count = project_usage(conn, project_id)
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
