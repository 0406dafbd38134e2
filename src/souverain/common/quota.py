"""The one quota primitive every service uses: take a project's quota row.

Each service keeps its limits in a table keyed by project (compute_quotas,
volume_quotas, network_quotas, s3_quotas: the overrides an admin set, None for
the configured default). A create first takes that row for its transaction
(INSERT .. ON CONFLICT DO NOTHING, then SELECT .. FOR UPDATE), then counts what
the project holds and refuses what would pass the limit, then inserts, all in
that one transaction: SQLite takes its single writer lock at the first write and
PostgreSQL locks the row, so concurrent creates in any number of processes are
serialised per project and never overshoot; usage is released by the deletes
themselves, since it is counted from the resources.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from sqlalchemy import select
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.engine import Connection
from sqlalchemy.orm import Session


def lock_quota_row(s: Session | Connection, model: Any, project_id: str, now: dt.datetime) -> None:
    """Take the project's row of `model` (made when missing) for this transaction."""
    values = {"project_id": project_id, "updated_at": now}
    dialect = s.dialect.name if isinstance(s, Connection) else s.get_bind().dialect.name
    insert = pg_insert if dialect == "postgresql" else sqlite_insert
    s.execute(insert(model).values(**values).on_conflict_do_nothing())
    s.execute(select(model.project_id).where(model.project_id == project_id).with_for_update())


def effective_limits(
    s: Session, model: Any, project_id: str, defaults: dict[str, int]
) -> dict[str, int]:
    """The configured defaults, each replaced by the project's override where one is set."""
    row = s.get(model, project_id)
    if row is None:
        return dict(defaults)
    return {
        key: default if getattr(row, key) is None else getattr(row, key)
        for key, default in defaults.items()
    }
