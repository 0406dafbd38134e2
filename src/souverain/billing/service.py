"""Billing: the meter, accounts, hourly aggregation, consumption, invoices, budgets. No HTTP.

Every billable change is a row in `billing_events`, written when it happens (see
common/metering.py): usage is exact to the second and survives control-plane
downtime, since a gauge holds its value until the next event says otherwise.

`BillingService` is the one object the rest of the cloud holds; each resource family
lives in its own module and this facade only wires them and passes calls on:

- meter.py: readings stored as events (what every service's `Meter` calls);
- aggregation.py: events into hourly usage rows, idempotently, and usage read back;
- directory.py: what billing asks of identity (a protocol the server fills);
- accounts.py: accounts, their projects and account roles (who sees what);
- consumption.py: an account's usage and cost estimate;
- invoicing.py: invoices and credit notes, numbered once, never changed;
- budgets.py: budget alerts, once a month;
- views.py: the wire shapes all of them return.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Sequence
from decimal import Decimal
from typing import Any

from sqlalchemy.orm import Session

from souverain.billing import models as m
from souverain.billing.accounts import Accounts
from souverain.billing.aggregation import Aggregation, Progress
from souverain.billing.audit_trail import AuditTrail
from souverain.billing.budgets import BudgetListener, Budgets
from souverain.billing.catalog import Catalog
from souverain.billing.consumption import Consumption
from souverain.billing.directory import SYSTEM, Directory
from souverain.billing.invoicing import Invoicing
from souverain.billing.meter import BillingMeter
from souverain.billing.runs import Event as _Event
from souverain.billing.runs import Run
from souverain.billing.runs import stream_runs as _stream_runs
from souverain.billing.views import invoice_view
from souverain.common.clock import Clock
from souverain.common.context import RequestContext
from souverain.common.metering import Reading
from souverain.db.engine import Database

# SYSTEM (the cli reads consumption as the operator) and the run helpers (unit tests)
# are imported from here by name.
__all__ = ["SYSTEM", "BillingService", "Progress", "_Event", "_stream_runs"]


class BillingService:
    def __init__(
        self,
        db: Database,
        clock: Clock,
        identity: Directory | None = None,
        catalog: Catalog | None = None,
        project_limit: int = 10,
        invoice_prefix: str = "SV",
    ) -> None:
        self.db = db
        self.clock = clock
        self.identity = identity
        self.catalog = catalog or Catalog.default()
        self.project_limit = project_limit
        self.invoice_prefix = invoice_prefix
        # called with (account view, month-to-date estimate) when a budget is crossed
        self.budget_listeners: list[BudgetListener] = []
        self.meter = BillingMeter(db, clock)
        self.aggregation = Aggregation(db, clock)
        self.accounts = Accounts(db, clock, identity, project_limit)
        self.audit_trail = AuditTrail(self.accounts)
        self.reports = Consumption(self.accounts, self.aggregation, self.catalog, clock)
        self.invoicing = Invoicing(
            self.accounts, self.aggregation, self.catalog, clock, identity, invoice_prefix
        )
        self.budgets = Budgets(
            self.accounts, self.aggregation, self.catalog, clock, self.budget_listeners
        )

    # ------------------------------------------------------------------ the meter

    def record(self, readings: Sequence[Reading]) -> None:
        self.meter.record(readings)

    def gauge(
        self,
        project_id: str,
        metric: str,
        resource_id: str,
        value: Decimal | int,
        flavor: str = "",
    ) -> None:
        self.meter.gauge(project_id, metric, resource_id, value, flavor)

    def counter(self, project_id: str, metric: str, resource_id: str, value: Decimal | int) -> None:
        self.meter.counter(project_id, metric, resource_id, value)

    def last_gauges(self, metric: str) -> dict[tuple[str, str], Decimal]:
        return self.meter.last_gauges(metric)

    # ------------------------------------------------------------------ usage

    def aggregate(self, until: dt.datetime | None = None, progress: Progress | None = None) -> int:
        return self.aggregation.aggregate(until, progress)

    def reaggregate(self, start: dt.datetime, end: dt.datetime) -> int:
        return self.aggregation.reaggregate(start, end)

    def usage(
        self, start: dt.datetime, end: dt.datetime, projects: Iterable[str] | None = None
    ) -> list[Run]:
        return self.aggregation.usage(start, end, projects)

    # ------------------------------------------------------------------ accounts

    def account_view(self, s: Session, row: m.Account) -> dict[str, Any]:
        return self.accounts.view(s, row)

    def create_account(self, ctx: RequestContext, body: dict[str, Any]) -> dict[str, Any]:
        return self.accounts.create_account(ctx, body)

    def list_accounts(self, ctx: RequestContext) -> list[dict[str, Any]]:
        return self.accounts.list_accounts(ctx)

    def get_account(self, ctx: RequestContext, account_id: str) -> dict[str, Any]:
        return self.accounts.get_account(ctx, account_id)

    def update_account(
        self, ctx: RequestContext, account_id: str, body: dict[str, Any]
    ) -> tuple[dict[str, Any], bool]:
        return self.accounts.update_account(ctx, account_id, body)

    def delete_account(self, ctx: RequestContext, account_id: str) -> None:
        self.accounts.delete_account(ctx, account_id)

    def grant(self, ctx: RequestContext, account_id: str, user_id: str, role: str) -> None:
        self.accounts.grant(ctx, account_id, user_id, role)

    def revoke(self, ctx: RequestContext, account_id: str, user_id: str, role: str) -> None:
        self.accounts.revoke(ctx, account_id, user_id, role)

    def add_project(
        self, ctx: RequestContext, account_id: str, body: dict[str, Any]
    ) -> dict[str, Any]:
        return self.accounts.add_project(ctx, account_id, body)

    def account_of(self, project_id: str) -> str | None:
        return self.accounts.account_of(project_id)

    # ------------------------------------------------------------------ consumption

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
        return self.reports.consumption(
            ctx, account_id, start, end, project_id, metric, granularity
        )

    # ------------------------------------------------------------------ invoices

    def issue_invoices(
        self, period: str, progress: Progress | None = None, account_id: str | None = None
    ) -> list[dict[str, Any]]:
        return self.invoicing.issue_invoices(period, progress, account_id)

    def credit_note(self, ctx: RequestContext, invoice_id: str) -> dict[str, Any]:
        return self.invoicing.credit_note(ctx, invoice_id)

    def invoice_view(self, row: m.Invoice) -> dict[str, Any]:
        return invoice_view(row)

    def list_invoices(self, ctx: RequestContext, account_id: str) -> list[dict[str, Any]]:
        return self.invoicing.list_invoices(ctx, account_id)

    def get_invoice(
        self, ctx: RequestContext, invoice_id: str
    ) -> tuple[dict[str, Any], dict[str, Any]]:
        return self.invoicing.get_invoice(ctx, invoice_id)

    # ------------------------------------------------------------------ budgets

    def set_budget(self, ctx: RequestContext, account_id: str, amount: Any) -> dict[str, Any]:
        return self.budgets.set_budget(ctx, account_id, amount)

    def check_budgets(self) -> list[tuple[str, Decimal]]:
        return self.budgets.check_budgets()
