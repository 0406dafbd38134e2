"""Billing tables: customer accounts, meter events, hourly usage, invoices.

Amounts and quantities are Decimal values stored as text (exact on SQLite and
PostgreSQL alike); times are naive UTC. Meter events are append-only: nothing
ever updates or deletes one, so usage can always be recomputed from them.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from sqlalchemy import JSON, Boolean, DateTime, ForeignKey, Integer, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from souverain.db.base import Base


class Account(Base):
    """A customer: a company that owns projects and receives one invoice a month."""

    __tablename__ = "billing_accounts"

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    name: Mapped[str] = mapped_column(String(255))
    billing_contact: Mapped[str] = mapped_column(String(255), default="")
    country: Mapped[str] = mapped_column(String(2))  # ISO 3166-1 alpha-2
    vat_number: Mapped[str | None] = mapped_column(String(32), nullable=True)
    # set by the operator once the number is checked; only then is reverse charge applied
    vat_verified: Mapped[bool] = mapped_column(Boolean, default=False)
    currency: Mapped[str] = mapped_column(String(3), default="EUR")
    project_limit: Mapped[int] = mapped_column(Integer)
    # month-to-date cost (EUR, Decimal text) that raises a budget alert; None: no alert
    budget: Mapped[str | None] = mapped_column(String(32), nullable=True)
    budget_alerted: Mapped[str | None] = mapped_column(String(7), nullable=True)  # "YYYY-MM"
    created_at: Mapped[dt.datetime] = mapped_column(DateTime)
    updated_at: Mapped[dt.datetime] = mapped_column(DateTime)


class AccountProject(Base):
    """A project belongs to at most one account."""

    __tablename__ = "billing_account_projects"

    project_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    account_id: Mapped[str] = mapped_column(ForeignKey("billing_accounts.id"), index=True)
    created_at: Mapped[dt.datetime] = mapped_column(DateTime)


class AccountRole(Base):
    """A user's role on an account: owner, billing or viewer (not a project role)."""

    __tablename__ = "billing_account_roles"

    account_id: Mapped[str] = mapped_column(ForeignKey("billing_accounts.id"), primary_key=True)
    user_id: Mapped[str] = mapped_column(String(64), primary_key=True, index=True)
    role: Mapped[str] = mapped_column(String(16), primary_key=True)


class MeterEvent(Base):
    """One billable change, recorded when it happens.

    A gauge (`kind` "gauge") says: from `at` on, this resource's metric is `value` (an
    instance running with a flavor is 1, stopped or deleted 0; a volume's GiB; a project's
    stored object GiB). A counter ("counter") says: `value` more units happened at `at`
    (GiB sent out of the cloud).
    """

    __tablename__ = "billing_events"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    at: Mapped[dt.datetime] = mapped_column(DateTime, index=True)
    project_id: Mapped[str] = mapped_column(String(64), index=True)
    metric: Mapped[str] = mapped_column(String(32))
    resource_id: Mapped[str] = mapped_column(String(64))
    kind: Mapped[str] = mapped_column(String(8))
    value: Mapped[str] = mapped_column(String(40))
    flavor: Mapped[str] = mapped_column(String(255), default="")


class HourlyUsage(Base):
    """Usage of one resource per hour: hours, GiB-hours or GiB, by metric.

    Run-length encoded: `quantity` in each of the `hours` consecutive hours from `hour`
    (a volume held all month is one row, not 720); a partial hour is a run of one.
    """

    __tablename__ = "billing_usage_hourly"

    project_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    metric: Mapped[str] = mapped_column(String(32), primary_key=True)
    resource_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    flavor: Mapped[str] = mapped_column(String(255), primary_key=True)
    hour: Mapped[dt.datetime] = mapped_column(DateTime, primary_key=True, index=True)
    hours: Mapped[int] = mapped_column(Integer)
    quantity: Mapped[str] = mapped_column(String(40))


class AggregationMark(Base):
    """Up to which hour (exclusive) usage has been aggregated; one row."""

    __tablename__ = "billing_aggregation"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    done_until: Mapped[dt.datetime] = mapped_column(DateTime)


class Invoice(Base):
    """An issued invoice or credit note: immutable once written."""

    __tablename__ = "billing_invoices"
    # one invoice per account and month; credit notes carry the id they cancel, and the
    # corrected invoice issued after one carries the id it replaces
    __table_args__ = (UniqueConstraint("account_id", "period", "kind", "corrects"),)

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    number: Mapped[str] = mapped_column(String(32), unique=True)
    sequence: Mapped[int] = mapped_column(Integer, unique=True)
    kind: Mapped[str] = mapped_column(String(16))  # "invoice" | "credit_note"
    corrects: Mapped[str] = mapped_column(String(36), default="")  # an invoice's id or ""
    account_id: Mapped[str] = mapped_column(ForeignKey("billing_accounts.id"), index=True)
    period: Mapped[str] = mapped_column(String(7))  # "YYYY-MM"
    issued_at: Mapped[dt.datetime] = mapped_column(DateTime)
    currency: Mapped[str] = mapped_column(String(3))
    subtotal: Mapped[str] = mapped_column(String(40))
    vat_rate: Mapped[str] = mapped_column(String(16))
    vat: Mapped[str] = mapped_column(String(40))
    total: Mapped[str] = mapped_column(String(40))
    vat_note: Mapped[str] = mapped_column(String(255), default="")
    # the customer as billed and every line, frozen at issue time
    document: Mapped[dict[str, Any]] = mapped_column(JSON)
