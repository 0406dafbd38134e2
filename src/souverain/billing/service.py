"""Billing rules: the meter, accounts, hourly aggregation, consumption, invoices. No HTTP.

Every billable change is a row in `billing_events`, written when it happens (see
common/metering.py): usage is exact to the second and survives control-plane
downtime, since a gauge holds its value until the next event says otherwise.
"""

from __future__ import annotations

import datetime as dt
import logging
from decimal import Decimal

from souverain.billing import models as m
from souverain.common.clock import Clock
from souverain.db.engine import Database

log = logging.getLogger("souverain.billing")


def _naive(value: dt.datetime) -> dt.datetime:
    return value.astimezone(dt.UTC).replace(tzinfo=None) if value.tzinfo else value


class BillingService:
    def __init__(self, db: Database, clock: Clock) -> None:
        self.db = db
        self.clock = clock

    # ------------------------------------------------------------------ the meter

    def _record(
        self,
        kind: str,
        project_id: str,
        metric: str,
        resource_id: str,
        value: Decimal | int,
        flavor: str,
    ) -> None:
        if not project_id:
            return  # the operator's own resources are not billed
        with self.db.session() as s:
            s.add(
                m.MeterEvent(
                    at=_naive(self.clock.now()),
                    project_id=project_id,
                    metric=metric,
                    resource_id=resource_id,
                    kind=kind,
                    value=str(Decimal(value)),
                    flavor=flavor,
                )
            )

    def gauge(
        self,
        project_id: str,
        metric: str,
        resource_id: str,
        value: Decimal | int,
        flavor: str = "",
    ) -> None:
        self._record("gauge", project_id, metric, resource_id, value, flavor)

    def counter(self, project_id: str, metric: str, resource_id: str, value: Decimal | int) -> None:
        self._record("counter", project_id, metric, resource_id, value, "")
