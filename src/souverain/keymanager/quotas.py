"""Barbican's project quotas: secrets, orders, containers, consumers; -1 is unlimited and
the default. A create counts the project's rows in its own transaction."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from souverain.common.context import RequestContext
from souverain.common.errors import BadRequest, Forbidden, NotFound
from souverain.keymanager.core import Core, project_of
from souverain.keymanager.models import (
    Container,
    ContainerConsumer,
    Order,
    Quota,
    Secret,
    SecretConsumer,
)

KINDS = ("secrets", "orders", "containers", "consumers")
UNLIMITED = -1
_PROJECT_COLUMNS = {
    "secrets": (Secret.project_id,),
    "orders": (Order.project_id,),
    "containers": (Container.project_id,),
    "consumers": (SecretConsumer.project_id, ContainerConsumer.project_id),
}


@dataclass(frozen=True)
class ProjectQuota:
    project_id: str
    limits: dict[str, int]
    explicit: bool  # set by an administrator (listed by /project-quotas)


class Quotas:
    def __init__(self, core: Core) -> None:
        self.core = core

    def reserve(self, s: Session, project_id: str, kind: str) -> None:
        """Refuse (403, as Barbican) one more `kind` beyond the project's quota."""
        row = s.get(Quota, project_id)
        limit = getattr(row, kind) if row is not None else None
        if limit is None or limit < 0:
            return
        used = sum(
            int(s.scalar(select(func.count()).where(column == project_id)) or 0)
            for column in _PROJECT_COLUMNS[kind]
        )
        if used >= limit:
            raise Forbidden(f"Quota exceeded for {kind}: the project may have {limit}.")

    def effective(self, project_id: str) -> dict[str, int]:
        with self.core.db.session() as s:
            row = s.get(Quota, project_id)
        return {k: _value(row, k) for k in KINDS}

    def mine(self, ctx: RequestContext) -> dict[str, int]:
        return self.effective(project_of(ctx))

    def listed(self, limit: int, offset: int) -> tuple[list[ProjectQuota], int]:
        with self.core.db.session() as s:
            rows = s.scalars(select(Quota).order_by(Quota.project_id)).all()
        page = rows[offset : offset + limit]
        return [ProjectQuota(r.project_id, _explicit(r), True) for r in page], len(rows)

    def of_project(self, project_id: str) -> dict[str, int]:
        with self.core.db.session() as s:
            row = s.get(Quota, project_id)
            if row is None:
                raise NotFound("No quotas are set for this project.")
            return _explicit(row)

    def set(self, project_id: str, limits: dict[str, int]) -> None:
        for kind, value in limits.items():
            if kind not in KINDS:
                raise BadRequest(f"Unknown quota {kind[:32]!r}.")
            if isinstance(value, bool) or not isinstance(value, int) or value < -1:
                raise BadRequest(f"Quota {kind!r} must be an integer, -1 or more.")
        now = self.core.now()
        with self.core.db.session() as s:
            row = s.get(Quota, project_id)
            if row is None:
                row = Quota(project_id=project_id, created_at=now, updated_at=now)
                s.add(row)
            for kind, value in limits.items():
                setattr(row, kind, value)
            row.updated_at = now

    def delete(self, project_id: str) -> None:
        with self.core.db.session() as s:
            row = s.get(Quota, project_id)
            if row is None:
                raise NotFound("No quotas are set for this project.")
            s.delete(row)


def _value(row: Quota | None, kind: str) -> int:
    value = getattr(row, kind) if row is not None else None
    return UNLIMITED if value is None else int(value)


def _explicit(row: Quota) -> dict[str, int]:
    return {k: int(getattr(row, k)) for k in KINDS if getattr(row, k) is not None}
