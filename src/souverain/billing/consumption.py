"""An account's consumption: usage by hour, day or month, with its cost estimate.

Read-only. The window defaults to the current month to date; viewers, billing and
owners of the account may ask, and only about the account's own projects.
"""

from __future__ import annotations

import datetime as dt
from collections import defaultdict
from decimal import Decimal
from typing import Any

from souverain.billing.accounts import SEES_CONSUMPTION, Accounts
from souverain.billing.aggregation import Aggregation
from souverain.billing.catalog import METRICS, Catalog, rate
from souverain.billing.periods import floor_hour, month_start, naive, now_of
from souverain.billing.runs import periods, priced_rows
from souverain.billing.views import ConsumptionKey, consumption_view
from souverain.common.clock import Clock
from souverain.common.context import RequestContext
from souverain.common.errors import BadRequest, NotFound

GRANULARITIES = ("hour", "day", "month")
LONGEST = dt.timedelta(days=400)


class Consumption:
    def __init__(
        self, accounts: Accounts, aggregation: Aggregation, catalog: Catalog, clock: Clock
    ) -> None:
        self.accounts = accounts
        self.aggregation = aggregation
        self.catalog = catalog
        self.clock = clock

    def consumption(
        self,
        ctx: RequestContext,
        account_id: str,
        start: dt.datetime | None = None,
        end: dt.datetime | None = None,
        project_id: str | None = None,
        metric: str | None = None,
        granularity: str = "day",
    ) -> dict[str, Any]:
        """Usage and its cost estimate; default: the current month to date."""
        now = now_of(self.clock)
        start = floor_hour(naive(start)) if start is not None else month_start(now)
        end = min(naive(end), now) if end is not None else now
        _check_query(start, end, metric, granularity)
        projects = self._projects(ctx, account_id, project_id)
        runs = [
            r for r in self.aggregation.usage(start, end, projects) if metric in (None, r.metric)
        ]
        items: dict[ConsumptionKey, Decimal] = defaultdict(Decimal)
        for run in runs:
            for period, hours in periods(run, granularity):
                key = (run.project_id, run.metric, run.resource_id, run.flavor, period)
                items[key] += run.quantity * hours
        lines = rate(priced_rows(runs, self.catalog), self.catalog)
        return consumption_view(
            account_id,
            (start, end),
            granularity,
            self.catalog.currency,
            sorted(items.items()),
            lines,
        )

    def _projects(self, ctx: RequestContext, account_id: str, project_id: str | None) -> list[str]:
        """The projects asked about: the account's, or the one named if it is the account's."""
        with self.accounts.db.session() as s:
            row = self.accounts.find(s, ctx, account_id, SEES_CONSUMPTION)
            projects = self.accounts.projects_of(s, row.id)
        if project_id is not None:
            if project_id not in projects:
                raise NotFound(f"Project {project_id[:64]} is not in this account.")
            projects = [project_id]
        return projects


def _check_query(
    start: dt.datetime, end: dt.datetime, metric: str | None, granularity: str
) -> None:
    if granularity not in GRANULARITIES:
        raise BadRequest(f"Invalid granularity: one of {', '.join(GRANULARITIES)}.")
    if metric is not None and metric not in METRICS:
        raise BadRequest(f"Invalid resource type {metric[:32]!r}: one of {', '.join(METRICS)}.")
    if end < start:
        raise BadRequest("The period ends before it starts.")
    if (end - start) > LONGEST:
        raise BadRequest("A consumption query covers at most 400 days.")
