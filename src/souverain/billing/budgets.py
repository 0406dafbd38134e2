"""Monthly budget alerts: an account's budget, and the alert raised once a month when
its month-to-date estimate crosses it.

The alert is marked on the account before the listeners hear of it, so a crossing is
announced once however often the check runs; a failing listener is logged, not retried.
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Callable
from decimal import Decimal, InvalidOperation
from typing import Any

from sqlalchemy import select

from souverain.billing import models as m
from souverain.billing.accounts import SEES_INVOICES, Accounts
from souverain.billing.aggregation import Aggregation
from souverain.billing.catalog import Catalog, money, rate
from souverain.billing.periods import month_start, now_of
from souverain.billing.runs import priced_rows
from souverain.common.clock import Clock
from souverain.common.context import RequestContext
from souverain.common.errors import BadRequest

log = logging.getLogger("souverain.billing")

BudgetListener = Callable[[dict[str, Any], Decimal], None]
LARGEST = Decimal("1e9")


class Budgets:
    def __init__(
        self,
        accounts: Accounts,
        aggregation: Aggregation,
        catalog: Catalog,
        clock: Clock,
        listeners: list[BudgetListener],
    ) -> None:
        self.db = accounts.db
        self.accounts = accounts
        self.aggregation = aggregation
        self.catalog = catalog
        self.clock = clock
        # called with (account view, month-to-date estimate) when a budget is crossed
        self.listeners = listeners

    def set_budget(self, ctx: RequestContext, account_id: str, amount: Any) -> dict[str, Any]:
        value = _budget(amount)
        with self.db.session() as s:
            row = self.accounts.find(s, ctx, account_id, SEES_INVOICES)
            row.budget = None if value is None else str(value)
            row.budget_alerted = None
            row.updated_at = now_of(self.clock)
            s.flush()
            return self.accounts.view(s, row)

    def check_budgets(self) -> list[tuple[str, Decimal]]:
        """Raise each budget alert crossed this month, once: returns (account, estimate)."""
        now = now_of(self.clock)
        month = now.strftime("%Y-%m")
        with self.db.session() as s:
            accounts = s.scalars(
                select(m.Account).where(
                    m.Account.budget.is_not(None),
                    (m.Account.budget_alerted.is_(None)) | (m.Account.budget_alerted != month),
                )
            ).all()
            candidates = [(a.id, Decimal(a.budget or "0")) for a in accounts]
        crossed = []
        for account_id, budget in candidates:
            estimate = self._estimate(account_id, now)
            if estimate < budget:
                continue
            view = self._mark(account_id, month)
            if view is None:
                continue
            crossed.append((account_id, estimate))
            self._announce(view, estimate)
            log.warning(
                "budget alert: account %s reached %s EUR of its %s EUR budget for %s",
                account_id,
                estimate,
                budget,
                month,
            )
        return crossed

    def _estimate(self, account_id: str, now: dt.datetime) -> Decimal:
        """The account's cost this month up to `now`."""
        with self.db.session() as s:
            projects = self.accounts.projects_of(s, account_id)
        runs = self.aggregation.usage(month_start(now), now, projects) if projects else []
        lines = rate(priced_rows(runs, self.catalog), self.catalog)
        return sum((line.amount for line in lines), Decimal(0))

    def _mark(self, account_id: str, month: str) -> dict[str, Any] | None:
        """Note the alert on the account; None if it is gone or was alerted meanwhile."""
        with self.db.session() as s:
            row = s.get(m.Account, account_id)
            if row is None or row.budget_alerted == month:
                return None
            row.budget_alerted = month
            return self.accounts.view(s, row)

    def _announce(self, view: dict[str, Any], estimate: Decimal) -> None:
        for listener in self.listeners:
            try:
                listener(view, estimate)
            except Exception:
                log.exception("budget alert listener failed for account %s", view["id"])


def _budget(amount: Any) -> Decimal | None:
    """A budget amount in EUR, to the cent; None clears the budget."""
    if amount is None:
        return None
    try:
        value = Decimal(str(amount))
    except (InvalidOperation, ValueError):
        value = Decimal(-1)
    if not value.is_finite() or value <= 0 or value > LARGEST:
        raise BadRequest('Invalid budget: a positive amount in EUR, e.g. "250.00".')
    return money(value)
