"""The meter: readings from every service stored as `billing_events`, one commit a batch.

Events are only ever added; aggregation (aggregation.py) reads them. Nothing here
prices or aggregates.
"""

from __future__ import annotations

from collections.abc import Sequence
from decimal import Decimal
from typing import Literal

from sqlalchemy import func, select

from souverain.billing import models as m
from souverain.billing.catalog import METRICS
from souverain.billing.periods import naive
from souverain.common.clock import Clock
from souverain.common.metering import Reading
from souverain.db.engine import Database


class BillingMeter:
    """What `common.metering.Meter` asks of billing: gauges, counters, batches of readings."""

    def __init__(self, db: Database, clock: Clock) -> None:
        self.db = db
        self.clock = clock

    def record(self, readings: Sequence[Reading]) -> None:
        """Store readings as meter events in one commit (the operator's own are not billed)."""
        for reading in readings:
            if reading.metric not in METRICS:
                raise ValueError(f"unknown metric {reading.metric!r}")
        billed = [r for r in readings if r.project_id]
        if not billed:
            return
        with self.db.session() as s:
            s.add_all(
                m.MeterEvent(
                    at=naive(r.at),
                    project_id=r.project_id,
                    metric=r.metric,
                    resource_id=r.resource_id[:64],
                    kind=r.kind,
                    value=str(Decimal(r.value)),
                    flavor=r.flavor,
                )
                for r in billed
            )

    def gauge(
        self,
        project_id: str,
        metric: str,
        resource_id: str,
        value: Decimal | int,
        flavor: str = "",
    ) -> None:
        self._record_now("gauge", project_id, metric, resource_id, value, flavor)

    def counter(self, project_id: str, metric: str, resource_id: str, value: Decimal | int) -> None:
        self._record_now("counter", project_id, metric, resource_id, value, "")

    def _record_now(
        self,
        kind: Literal["gauge", "counter"],
        project_id: str,
        metric: str,
        resource_id: str,
        value: Decimal | int,
        flavor: str,
    ) -> None:
        now = self.clock.now()
        self.record([Reading(kind, project_id, metric, resource_id, value, now, flavor)])

    def last_gauges(self, metric: str) -> dict[tuple[str, str], Decimal]:
        """The value each resource's latest `metric` gauge left, by (project, resource)."""
        e = m.MeterEvent
        latest = (
            select(func.max(e.id))
            .where(e.metric == metric, e.kind == "gauge")
            .group_by(e.project_id, e.resource_id)
        )
        with self.db.session() as s:
            rows = s.execute(select(e.project_id, e.resource_id, e.value).where(e.id.in_(latest)))
            return {(p, r): Decimal(v) for p, r, v in rows}
