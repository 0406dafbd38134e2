"""Invoices and credit notes: issued once per account and finished month, never changed.

Invoices are numbered from one sequence, unique per account and month; a second
issuer racing for a number or a month loses on the table's unique constraints and
looks again, so issuing twice yields one invoice. Corrections are credit notes; once
a month's invoice is credited, issuing that month for that account gives a corrected
invoice, the next number of the same sequence, which names the one it replaces (its
`corrects`). Rating prices each hour at the price in force then (catalog.py); reverse
charge needs a VAT number the operator verified, as the account stands at issue time.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from decimal import Decimal
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from souverain.billing import models as m
from souverain.billing.accounts import SEES_INVOICES, Accounts
from souverain.billing.aggregation import Aggregation
from souverain.billing.catalog import Catalog, Line, rate, totals, vat_for
from souverain.billing.directory import SYSTEM, Directory
from souverain.billing.periods import floor_hour, now_of, period_bounds
from souverain.billing.runs import priced_rows
from souverain.billing.views import invoice_view, line_view, timestamp
from souverain.common.clock import Clock
from souverain.common.context import RequestContext
from souverain.common.errors import Conflict, Forbidden, NotFound
from souverain.common.ids import new_id

Progress = Callable[[int, int], None]
NUMBERING_ATTEMPTS = 5


class Invoicing:
    def __init__(
        self,
        accounts: Accounts,
        aggregation: Aggregation,
        catalog: Catalog,
        clock: Clock,
        identity: Directory | None,
        prefix: str,
    ) -> None:
        self.db = accounts.db
        self.accounts = accounts
        self.aggregation = aggregation
        self.catalog = catalog
        self.clock = clock
        self.identity = identity
        self.prefix = prefix

    def issue_invoices(
        self, period: str, progress: Progress | None = None, account_id: str | None = None
    ) -> list[dict[str, Any]]:
        """Invoice every account (or one) for a finished month; an account invoiced for it
        already keeps the invoice it has (issuing twice yields one invoice)."""
        start, end = period_bounds(period)
        if end > floor_hour(now_of(self.clock)):
            raise Conflict(f"The month {period} is not over yet: invoices are issued after it.")
        self.aggregation.aggregate(until=end)
        with self.db.session() as s:
            stmt = select(m.Account.id).order_by(m.Account.created_at, m.Account.id)
            if account_id is not None:
                stmt = stmt.where(m.Account.id == account_id)
            accounts = list(s.scalars(stmt).all())
        issued = []
        for index, account in enumerate(accounts, start=1):
            # a credited month is issued again only for the account named: a credit
            # note may cancel a month for good, and a run over every account keeps it so
            view = self._issue_one(account, period, start, end, reissue=account_id is not None)
            if view is not None:
                issued.append(view)
            if progress is not None:
                progress(index, len(accounts))
        return issued

    def _lines(self, account_id: str, start: dt.datetime, end: dt.datetime) -> list[Line]:
        with self.db.session() as s:
            projects = self.accounts.projects_of(s, account_id)
        if not projects:
            return []
        usage = self.aggregation.usage(start, end, projects)
        return rate(priced_rows(usage, self.catalog), self.catalog)

    def _issue_one(
        self, account_id: str, period: str, start: dt.datetime, end: dt.datetime, reissue: bool
    ) -> dict[str, Any] | None:
        with self.db.session() as s:
            existing = _invoice_of(s, account_id, period)
            if existing is not None and not (reissue and _credited(s, existing)):
                return invoice_view(existing)
            replaces = existing.id if existing is not None else None
        lines = self._lines(account_id, start, end)
        if not lines:
            return None
        for _ in range(NUMBERING_ATTEMPTS):
            try:
                with self.db.session() as s:
                    account = s.get(m.Account, account_id)
                    assert account is not None
                    corrects = s.get(m.Invoice, replaces) if replaces is not None else None
                    return self._write(s, account, period, lines, "invoice", corrects)
            except IntegrityError:  # another issuer took the number or the month
                with self.db.session() as s:
                    latest = _invoice_of(s, account_id, period)
                    if latest is not None and latest.id != replaces:
                        return invoice_view(latest)  # the month: theirs is the invoice
        raise Conflict("Could not number the invoice: too much contention; try again.")

    def _write(
        self,
        s: Session,
        account: m.Account,
        period: str,
        lines: list[Line],
        kind: str,
        corrects: m.Invoice | None,
    ) -> dict[str, Any]:
        # a second invoice for the month, or a number taken meanwhile, fails the flush
        # below on the table's unique constraints (IntegrityError): the caller looks again
        sequence = (s.scalar(select(func.max(m.Invoice.sequence))) or 0) + 1
        now = now_of(self.clock)
        number = f"{self.prefix}-{now.year}-{sequence:06d}"
        if kind == "credit_note" and corrects is not None:
            vat_rate, note = Decimal(corrects.vat_rate), corrects.vat_note
            customer = dict(corrects.document["customer"])
        else:
            verified = account.vat_number if account.vat_verified else None
            vat_rate, note = vat_for(account.country, verified, self.catalog)
            customer = _customer(account)
        subtotal, vat, total = totals(lines, vat_rate)
        names = self._project_names({line.project_id for line in lines})
        document = {
            "number": number,
            "kind": kind,
            "corrects": corrects.number if corrects is not None else "",
            "period": period,
            "issued_at": timestamp(now),
            "currency": self.catalog.currency,
            "seller": dict(self.catalog.seller),
            "customer": customer,
            "lines": [
                {**line_view(line), "project_name": names.get(line.project_id, "")}
                for line in lines
            ],
            "subtotal": str(subtotal),
            "vat_rate": str(vat_rate),
            "vat": str(vat),
            "vat_note": note,
            "total": str(total),
        }
        row = m.Invoice(
            id=new_id(),
            number=number,
            sequence=sequence,
            kind=kind,
            corrects=corrects.id if corrects is not None else "",
            account_id=account.id,
            period=period,
            issued_at=now,
            currency=self.catalog.currency,
            subtotal=str(subtotal),
            vat_rate=str(vat_rate),
            vat=str(vat),
            total=str(total),
            vat_note=note,
            document=document,
        )
        s.add(row)
        s.flush()
        return invoice_view(row)

    def _project_names(self, project_ids: set[str]) -> dict[str, str]:
        names: dict[str, str] = {}
        if self.identity is None:
            return names
        for project_id in project_ids:
            try:
                names[project_id] = str(self.identity.get_project(SYSTEM, project_id)["name"])
            except NotFound:
                names[project_id] = ""
        return names

    def credit_note(self, ctx: RequestContext, invoice_id: str) -> dict[str, Any]:
        """Cancel an issued invoice in full: a credit note with every line negated."""
        if not ctx.is_admin:
            raise Forbidden("Only the operator issues credit notes.")
        with self.db.session() as s:
            original = s.get(m.Invoice, invoice_id)
            if original is None or original.kind != "invoice":
                raise NotFound(f"Could not find invoice: {invoice_id[:64]}.")
            done = s.scalar(
                select(m.Invoice).where(
                    m.Invoice.corrects == original.id, m.Invoice.kind == "credit_note"
                )
            )
            if done is not None:
                return invoice_view(done)
            account = s.get(m.Account, original.account_id)
            assert account is not None
            lines = [_negated(line) for line in original.document["lines"]]
            return self._write(s, account, original.period, lines, "credit_note", original)

    def list_invoices(self, ctx: RequestContext, account_id: str) -> list[dict[str, Any]]:
        with self.db.session() as s:
            row = self.accounts.find(s, ctx, account_id, SEES_INVOICES)
            rows = s.scalars(
                select(m.Invoice).where(m.Invoice.account_id == row.id).order_by(m.Invoice.sequence)
            ).all()
            return [invoice_view(r) for r in rows]

    def get_invoice(
        self, ctx: RequestContext, invoice_id: str
    ) -> tuple[dict[str, Any], dict[str, Any]]:
        """The invoice's view and its frozen document (for the exports)."""
        with self.db.session() as s:
            row = s.get(m.Invoice, invoice_id) if isinstance(invoice_id, str) else None
            if row is None:
                raise NotFound(f"Could not find invoice: {str(invoice_id)[:64]}.")
            try:
                self.accounts.find(s, ctx, row.account_id, SEES_INVOICES)
            except NotFound:
                raise NotFound(f"Could not find invoice: {invoice_id[:64]}.") from None
            return invoice_view(row), dict(row.document)


def _invoice_of(s: Session, account_id: str, period: str) -> m.Invoice | None:
    """The account's latest invoice for the month (the last correction), if issued."""
    return s.scalar(
        select(m.Invoice)
        .where(
            m.Invoice.account_id == account_id,
            m.Invoice.period == period,
            m.Invoice.kind == "invoice",
        )
        .order_by(m.Invoice.sequence.desc())
        .limit(1)
    )


def _credited(s: Session, invoice: m.Invoice) -> bool:
    """Whether a credit note cancels the invoice."""
    note = s.scalar(
        select(m.Invoice.id).where(
            m.Invoice.corrects == invoice.id, m.Invoice.kind == "credit_note"
        )
    )
    return note is not None


def _customer(account: m.Account) -> dict[str, str]:
    """The customer as the invoice freezes it."""
    return {
        "account_id": account.id,
        "name": account.name,
        "billing_contact": account.billing_contact,
        "country": account.country,
        "vat_number": account.vat_number or "",
    }


def _negated(line: dict[str, Any]) -> Line:
    """An invoice line, as its credit note carries it."""
    return Line(
        line["project_id"],
        line["metric"],
        line["flavor"],
        line["unit"],
        -Decimal(line["quantity"]),
        Decimal(line["unit_price"]),
        -Decimal(line["amount"]),
    )
