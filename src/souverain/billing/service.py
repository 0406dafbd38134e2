"""Billing rules: the meter, accounts, hourly aggregation, consumption, invoices. No HTTP.

Every billable change is a row in `billing_events`, written when it happens (see
common/metering.py): usage is exact to the second and survives control-plane
downtime, since a gauge holds its value until the next event says otherwise.

Aggregation turns events into hourly usage, run-length encoded (`hours` equal
hours from `hour`), never across a month boundary. It recomputes a window from
the events alone and replaces the window's rows in one transaction, so running
it again never double-counts. Rating prices each hour at the price in force then
(catalog.py: one half-up rounding to the cent, per invoice line). Invoices are
numbered from one sequence, unique per account and month, and never change;
corrections are credit notes.

Account roles (`owner`, `billing`, `viewer`) are the billing service's own, apart
from project roles: viewers see consumption; billing also sees invoices and sets
the budget; owners also create projects and grant account roles. Admins do all.
"""

from __future__ import annotations

import datetime as dt
import itertools
import logging
import re
from collections import defaultdict
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from typing import Any, Literal

from sqlalchemy import delete, func, insert, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from souverain.billing import models as m
from souverain.billing.catalog import (
    ISO_COUNTRIES,
    METRICS,
    Catalog,
    Line,
    UsageRow,
    money,
    rate,
    totals,
    vat_for,
)
from souverain.common.clock import Clock
from souverain.common.context import RequestContext
from souverain.common.errors import BadRequest, Conflict, Forbidden, NotFound
from souverain.common.ids import new_id
from souverain.common.metering import Reading
from souverain.db.batching import id_batches
from souverain.db.engine import Database
from souverain.identity.service import IdentityService

log = logging.getLogger("souverain.billing")

ROLES = ("owner", "billing", "viewer")
SEES_CONSUMPTION = frozenset(ROLES)
SEES_INVOICES = frozenset({"owner", "billing"})
MANAGES = frozenset({"owner"})
GRANULARITIES = ("hour", "day", "month")
HOUR = dt.timedelta(hours=1)
INSERT_BATCH = 5000
PERIOD_RE = re.compile(r"^(\d{4})-(0[1-9]|1[0-2])$")
VAT_RE = re.compile(r"^[A-Z]{2}[A-Z0-9]{2,14}$")
SYSTEM = RequestContext(user_id="souverain", user_domain_id="default", roles=frozenset({"admin"}))

Progress = Callable[[int, int], None]


def _naive(value: dt.datetime) -> dt.datetime:
    return value.astimezone(dt.UTC).replace(tzinfo=None) if value.tzinfo else value


def floor_hour(t: dt.datetime) -> dt.datetime:
    return t.replace(minute=0, second=0, microsecond=0)


def month_start(t: dt.datetime) -> dt.datetime:
    return t.replace(day=1, hour=0, minute=0, second=0, microsecond=0)


def next_month(t: dt.datetime) -> dt.datetime:
    first = month_start(t)
    return (first + dt.timedelta(days=32)).replace(day=1)


def period_bounds(period: str) -> tuple[dt.datetime, dt.datetime]:
    match = PERIOD_RE.match(period) if isinstance(period, str) else None
    if match is None:
        raise BadRequest(f"Invalid period {str(period)[:16]!r}: YYYY-MM expected.")
    start = dt.datetime(int(match[1]), int(match[2]), 1)
    return start, next_month(start)


# ---------------------------------------------------------------------- usage as runs


@dataclass(frozen=True)
class Run:
    """`quantity` in each of `hours` consecutive hours from `hour` (within one month)."""

    project_id: str
    metric: str
    resource_id: str
    flavor: str
    hour: dt.datetime
    hours: int
    quantity: Decimal

    @property
    def end(self) -> dt.datetime:
        return self.hour + self.hours * HOUR


@dataclass(frozen=True)
class _Event:
    at: dt.datetime
    kind: str
    value: Decimal
    flavor: str


def _seconds(a: dt.datetime, b: dt.datetime) -> Decimal:
    delta = b - a
    return Decimal(delta.days * 86400 + delta.seconds) + Decimal(delta.microseconds) / 1_000_000


def _stream_runs(
    key: tuple[str, str, str],
    before: _Event | None,
    events: list[_Event],
    start: dt.datetime,
    end: dt.datetime,
) -> list[Run]:
    """One resource's usage in [start, end) as runs (start is an hour boundary)."""
    project_id, metric, resource_id = key
    partial: dict[tuple[str, dt.datetime], Decimal] = defaultdict(Decimal)
    full: list[tuple[str, dt.datetime, int, Decimal]] = []
    counters = [e for e in events if e.kind == "counter"]
    for event in counters:
        partial[("", floor_hour(event.at))] += event.value
    gauges = [e for e in events if e.kind == "gauge"]
    value, flavor, since = Decimal(0), "", start
    if before is not None:
        value, flavor = before.value, before.flavor

    def span(a: dt.datetime, b: dt.datetime, v: Decimal, f: str) -> None:
        if v == 0 or b <= a:
            return
        head, last_full = floor_hour(a), floor_hour(b)
        if head == last_full:  # within one hour
            partial[(f, head)] += v * _seconds(a, b) / 3600
            return
        first_full = head
        if a > head:
            first_full = head + HOUR
            partial[(f, head)] += v * _seconds(a, first_full) / 3600
        cursor = first_full
        while cursor < last_full:  # full hours, cut at month boundaries
            stop = min(last_full, next_month(cursor))
            hours = int(_seconds(cursor, stop) // 3600)
            full.append((f, cursor, hours, v))
            cursor = stop
        if last_full < b:
            partial[(f, last_full)] += v * _seconds(last_full, b) / 3600

    for event in gauges:
        span(since, event.at, value, flavor)
        value, flavor, since = event.value, event.flavor, event.at
    span(since, end, value, flavor)
    pieces = [(f, h, 1, q) for (f, h), q in partial.items() if q != 0]
    pieces += full
    pieces.sort(key=lambda p: (p[0], p[1]))
    runs: list[Run] = []
    for f, h, n, q in pieces:
        last = runs[-1] if runs else None
        if (
            last is not None
            and last.flavor == f
            and last.end == h
            and last.quantity == q
            and month_start(last.hour) == month_start(h)
        ):
            runs[-1] = Run(project_id, metric, resource_id, f, last.hour, last.hours + n, q)
        else:
            runs.append(Run(project_id, metric, resource_id, f, h, n, q))
    return runs


def _clip(run: Run, start: dt.datetime, end: dt.datetime) -> Run | None:
    a, b = max(run.hour, start), min(run.end, end)
    if b <= a:
        return None
    return Run(
        run.project_id,
        run.metric,
        run.resource_id,
        run.flavor,
        a,
        int(_seconds(a, b) // 3600) or 1,
        run.quantity,
    )


def _priced_rows(runs: Iterable[Run], catalog: Catalog) -> Iterator[UsageRow]:
    """Runs as rating rows: cut where a price comes into force, quantity summed per piece."""
    cuts = sorted({dt.datetime.combine(p.effective_from, dt.time()) for p in catalog.prices})
    for run in runs:
        a = run.hour
        for cut in [c for c in cuts if run.hour < c < run.end] + [run.end]:
            hours = int(_seconds(a, cut) // 3600) or 1
            yield UsageRow(
                run.project_id, run.metric, run.resource_id, run.flavor, a, run.quantity * hours
            )
            a = cut


# ---------------------------------------------------------------------- the service


class BillingService:
    def __init__(
        self,
        db: Database,
        clock: Clock,
        identity: IdentityService | None = None,
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
        self.budget_listeners: list[Callable[[dict[str, Any], Decimal], None]] = []

    def _now(self) -> dt.datetime:
        return _naive(self.clock.now())

    # ------------------------------------------------------------------ the meter

    def _record(
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
                    at=_naive(r.at),
                    project_id=r.project_id,
                    metric=r.metric,
                    resource_id=r.resource_id[:64],
                    kind=r.kind,
                    value=str(Decimal(r.value)),
                    flavor=r.flavor,
                )
                for r in billed
            )

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

    # ------------------------------------------------------------------ usage

    def _runs(
        self,
        s: Session,
        start: dt.datetime,
        end: dt.datetime,
        projects: Iterable[str] | None = None,
    ) -> Iterator[Run]:
        """Usage in [start, end) computed from the events alone (start: an hour boundary)."""
        wanted = None if projects is None else list(projects)
        last = (
            select(func.max(m.MeterEvent.id))
            .where(m.MeterEvent.at < start, m.MeterEvent.kind == "gauge")
            .group_by(m.MeterEvent.project_id, m.MeterEvent.metric, m.MeterEvent.resource_id)
        )
        if wanted is not None:
            last = last.where(m.MeterEvent.project_id.in_(wanted))
        before: dict[tuple[str, str, str], _Event] = {}
        for row in s.scalars(select(m.MeterEvent).where(m.MeterEvent.id.in_(last))):
            key = (row.project_id, row.metric, row.resource_id)
            before[key] = _Event(row.at, row.kind, Decimal(row.value), row.flavor)
        window = (
            select(
                m.MeterEvent.project_id,
                m.MeterEvent.metric,
                m.MeterEvent.resource_id,
                m.MeterEvent.at,
                m.MeterEvent.kind,
                m.MeterEvent.value,
                m.MeterEvent.flavor,
            )
            .where(m.MeterEvent.at >= start, m.MeterEvent.at < end)
            .order_by(
                m.MeterEvent.project_id,
                m.MeterEvent.metric,
                m.MeterEvent.resource_id,
                m.MeterEvent.at,
                m.MeterEvent.id,
            )
        )
        if wanted is not None:
            window = window.where(m.MeterEvent.project_id.in_(wanted))
        seen: set[tuple[str, str, str]] = set()
        rows = s.execute(window)
        for key, group in itertools.groupby(rows, key=lambda r: (r[0], r[1], r[2])):
            seen.add(key)
            events = [_Event(r[3], r[4], Decimal(r[5]), r[6]) for r in group]
            yield from _stream_runs(key, before.get(key), events, start, end)
        for key, event in before.items():
            if key not in seen and event.value != 0:
                yield from _stream_runs(key, event, [], start, end)

    def aggregate(self, until: dt.datetime | None = None, progress: Progress | None = None) -> int:
        """Hourly usage for every complete hour up to `until` (default: now); returns the
        number of usage rows written. Hours already aggregated are done again only when
        `until` is before the mark (see `reaggregate`)."""
        limit = floor_hour(_naive(until) if until is not None else self._now())
        with self.db.session() as s:
            mark = s.get(m.AggregationMark, 1)
            if mark is not None:
                start = mark.done_until
            else:
                first = s.scalar(select(func.min(m.MeterEvent.at)))
                start = floor_hour(first) if first is not None else limit
        return self._aggregate_window(start, limit, progress)

    def reaggregate(self, start: dt.datetime, end: dt.datetime) -> int:
        """Recompute [start, end) from the events; the rows are replaced, never added to."""
        return self._aggregate_window(floor_hour(_naive(start)), floor_hour(_naive(end)), None)

    def _aggregate_window(
        self, start: dt.datetime, end: dt.datetime, progress: Progress | None
    ) -> int:
        if end <= start:
            return 0
        written = 0
        # a month at a time: bounded memory, and progress an operator can follow
        months = []
        cursor = start
        while cursor < end:
            stop = min(end, next_month(cursor))
            months.append((cursor, stop))
            cursor = stop
        for index, (a, b) in enumerate(months, start=1):
            with self.db.session() as s:
                s.execute(
                    delete(m.HourlyUsage).where(m.HourlyUsage.hour >= a, m.HourlyUsage.hour < b)
                )
                batch: list[dict[str, Any]] = []
                for run in self._runs(s, a, b):
                    batch.append(
                        {
                            "project_id": run.project_id,
                            "metric": run.metric,
                            "resource_id": run.resource_id,
                            "flavor": run.flavor,
                            "hour": run.hour,
                            "hours": run.hours,
                            "quantity": str(run.quantity),
                        }
                    )
                    if len(batch) >= INSERT_BATCH:
                        s.execute(insert(m.HourlyUsage), batch)
                        written += len(batch)
                        batch = []
                if batch:
                    s.execute(insert(m.HourlyUsage), batch)
                    written += len(batch)
                mark = s.get(m.AggregationMark, 1)
                if mark is None:
                    s.add(m.AggregationMark(id=1, done_until=b))
                elif mark.done_until < b:
                    mark.done_until = b
            if progress is not None:
                progress(index, len(months))
        return written

    def usage(
        self, start: dt.datetime, end: dt.datetime, projects: Iterable[str] | None = None
    ) -> list[Run]:
        """Usage in [start, end): aggregated hours from the table, later ones live."""
        start, end = floor_hour(_naive(start)), _naive(end)
        wanted = None if projects is None else list(projects)
        with self.db.session() as s:
            mark = s.get(m.AggregationMark, 1)
            done = min(mark.done_until, end) if mark is not None else start
            done = max(done, start)
            out: list[Run] = []
            if done > start:
                stmt = select(m.HourlyUsage).where(
                    m.HourlyUsage.hour < done,
                    m.HourlyUsage.hour >= month_start(start),
                )
                if wanted is not None:
                    stmt = stmt.where(m.HourlyUsage.project_id.in_(wanted))
                for row in s.scalars(stmt):
                    run = Run(
                        row.project_id,
                        row.metric,
                        row.resource_id,
                        row.flavor,
                        row.hour,
                        row.hours,
                        Decimal(row.quantity),
                    )
                    clipped = _clip(run, start, done)
                    if clipped is not None:
                        out.append(clipped)
            if end > done:
                out.extend(self._runs(s, floor_hour(done), end, wanted))
        return out

    # ------------------------------------------------------------------ accounts

    def _roles_on(self, s: Session, ctx: RequestContext, account_id: str) -> set[str]:
        if ctx.is_admin:
            return set(ROLES)
        return set(
            s.scalars(
                select(m.AccountRole.role).where(
                    m.AccountRole.account_id == account_id, m.AccountRole.user_id == ctx.user_id
                )
            ).all()
        )

    def _account(
        self, s: Session, ctx: RequestContext, account_id: Any, need: frozenset[str]
    ) -> m.Account:
        row = s.get(m.Account, account_id) if isinstance(account_id, str) else None
        roles = self._roles_on(s, ctx, row.id) if row is not None else set()
        if row is None or not roles:
            raise NotFound(f"Could not find account: {str(account_id)[:64]}.")
        if not roles & need:
            raise Forbidden(
                f"Your account roles ({', '.join(sorted(roles))}) do not allow this; "
                f"it needs one of: {', '.join(sorted(need))}."
            )
        return row

    def account_view(self, s: Session, row: m.Account) -> dict[str, Any]:
        return self._account_views(s, [row])[0]

    def _account_views(self, s: Session, rows: list[m.Account]) -> list[dict[str, Any]]:
        """Views of accounts with their projects and roles: two queries for the whole list."""
        ids = [row.id for row in rows]
        projects: dict[str, list[str]] = defaultdict(list)
        roles: dict[str, list[dict[str, str]]] = defaultdict(list)
        for batch in id_batches(ids):
            for account_id, project_id in s.execute(
                select(m.AccountProject.account_id, m.AccountProject.project_id)
                .where(m.AccountProject.account_id.in_(batch))
                .order_by(m.AccountProject.created_at)
            ):
                projects[account_id].append(project_id)
            for account_id, user_id, role in s.execute(
                select(m.AccountRole.account_id, m.AccountRole.user_id, m.AccountRole.role)
                .where(m.AccountRole.account_id.in_(batch))
                .order_by(m.AccountRole.user_id, m.AccountRole.role)
            ):
                roles[account_id].append({"user_id": user_id, "role": role})
        return [
            {
                "id": row.id,
                "name": row.name,
                "billing_contact": row.billing_contact,
                "country": row.country,
                "vat_number": row.vat_number,
                "currency": row.currency,
                "project_limit": row.project_limit,
                "projects": projects[row.id],
                "roles": roles[row.id],
                "budget": row.budget,
                "created_at": row.created_at.strftime("%Y-%m-%dT%H:%M:%SZ"),
            }
            for row in rows
        ]

    def _account_fields(self, body: dict[str, Any], creating: bool) -> dict[str, Any]:
        allowed = {"name", "billing_contact", "country", "vat_number", "project_limit"}
        unknown = set(body) - allowed - ({"owner_user_id"} if creating else set())
        if unknown:
            raise BadRequest(f"Unknown account field(s): {', '.join(sorted(unknown))[:128]}.")
        out: dict[str, Any] = {}
        for name in ("name", "billing_contact"):
            if name in body or (creating and name == "name"):
                value = body.get(name)
                if not isinstance(value, str) or len(value) > 255 or (name == "name" and not value):
                    raise BadRequest(f"Invalid {name}: a string of 1 to 255 characters.")
                out[name] = value
        if "country" in body or creating:
            country = body.get("country")
            if not isinstance(country, str) or country not in ISO_COUNTRIES:
                raise BadRequest(
                    f"Invalid country {str(country)[:8]!r}: an ISO 3166 code such as FR."
                )
            out["country"] = country
        if "vat_number" in body:
            vat = body["vat_number"]
            if vat is not None and (not isinstance(vat, str) or not VAT_RE.match(vat)):
                raise BadRequest(
                    f"Invalid vat_number {str(vat)[:20]!r}: a country prefix and 2 to 14 "
                    "letters or digits, e.g. DE123456789."
                )
            out["vat_number"] = vat
        if "project_limit" in body:
            limit = body["project_limit"]
            if not isinstance(limit, int) or isinstance(limit, bool) or not 0 <= limit <= 10000:
                raise BadRequest("Invalid project_limit: an integer from 0 to 10000.")
            out["project_limit"] = limit
        return out

    def create_account(self, ctx: RequestContext, body: dict[str, Any]) -> dict[str, Any]:
        if not ctx.is_admin:
            raise Forbidden("Only the operator creates customer accounts.")
        fields = self._account_fields(body, creating=True)
        owner = body.get("owner_user_id")
        if owner is not None:
            self._check_user(owner)
        now = self._now()
        with self.db.session() as s:
            row = m.Account(
                id=new_id(),
                currency="EUR",
                billing_contact="",
                vat_number=None,
                project_limit=self.project_limit,
                created_at=now,
                updated_at=now,
            )
            for key, value in fields.items():
                setattr(row, key, value)
            s.add(row)
            s.flush()
            if owner is not None:
                s.add(m.AccountRole(account_id=row.id, user_id=owner, role="owner"))
                s.flush()
            return self.account_view(s, row)

    def _check_user(self, user_id: Any) -> None:
        if not isinstance(user_id, str) or self.identity is None:
            raise BadRequest("Invalid user id.")
        try:
            self.identity.get_user(SYSTEM, user_id)
        except NotFound:
            raise BadRequest(f"Could not find user: {user_id[:64]}.") from None

    def list_accounts(self, ctx: RequestContext) -> list[dict[str, Any]]:
        with self.db.session() as s:
            stmt = select(m.Account).order_by(m.Account.created_at, m.Account.id)
            if not ctx.is_admin:
                mine = select(m.AccountRole.account_id).where(m.AccountRole.user_id == ctx.user_id)
                stmt = stmt.where(m.Account.id.in_(mine))
            return self._account_views(s, list(s.scalars(stmt).all()))

    def get_account(self, ctx: RequestContext, account_id: str) -> dict[str, Any]:
        with self.db.session() as s:
            return self.account_view(s, self._account(s, ctx, account_id, SEES_CONSUMPTION))

    def update_account(
        self, ctx: RequestContext, account_id: str, body: dict[str, Any]
    ) -> dict[str, Any]:
        with self.db.session() as s:
            row = self._account(s, ctx, account_id, MANAGES)
            fields = self._account_fields(body, creating=False)
            if "project_limit" in fields and not ctx.is_admin:
                raise Forbidden("Only the operator changes an account's project limit.")
            for key, value in fields.items():
                setattr(row, key, value)
            row.updated_at = self._now()
            s.flush()
            return self.account_view(s, row)

    def delete_account(self, ctx: RequestContext, account_id: str) -> None:
        if not ctx.is_admin:
            raise Forbidden("Only the operator deletes customer accounts.")
        with self.db.session() as s:
            row = self._account(s, ctx, account_id, MANAGES)
            has = s.scalar(
                select(func.count()).select_from(m.Invoice).where(m.Invoice.account_id == row.id)
            ) or s.scalar(
                select(func.count())
                .select_from(m.AccountProject)
                .where(m.AccountProject.account_id == row.id)
            )
            if has:
                raise Conflict(
                    f"Account {row.id} still has projects or invoices: detach its projects "
                    "first; invoiced accounts are kept."
                )
            s.execute(delete(m.AccountRole).where(m.AccountRole.account_id == row.id))
            s.delete(row)

    def grant(self, ctx: RequestContext, account_id: str, user_id: str, role: str) -> None:
        if role not in ROLES:
            raise BadRequest(f"Invalid account role {role[:16]!r}: one of {', '.join(ROLES)}.")
        self._check_user(user_id)
        with self.db.session() as s:
            row = self._account(s, ctx, account_id, MANAGES)
            if s.get(m.AccountRole, (row.id, user_id, role)) is None:
                s.add(m.AccountRole(account_id=row.id, user_id=user_id, role=role))

    def revoke(self, ctx: RequestContext, account_id: str, user_id: str, role: str) -> None:
        with self.db.session() as s:
            row = self._account(s, ctx, account_id, MANAGES)
            found = s.get(m.AccountRole, (row.id, user_id, role))
            if found is None:
                raise NotFound(f"User {user_id[:64]} has no role {role[:16]} on this account.")
            owners = s.scalar(
                select(func.count())
                .select_from(m.AccountRole)
                .where(m.AccountRole.account_id == row.id, m.AccountRole.role == "owner")
            )
            if role == "owner" and owners == 1 and not ctx.is_admin:
                raise Conflict("An account keeps at least one owner.")
            s.delete(found)

    def add_project(
        self, ctx: RequestContext, account_id: str, body: dict[str, Any]
    ) -> dict[str, Any]:
        """An owner creates a project in the account (within its project limit); an admin
        may also attach an existing project by id."""
        if self.identity is None:
            raise Conflict("This cloud runs no identity service for billing.")
        with self.db.session() as s:
            row = self._account(s, ctx, account_id, MANAGES)
            account = row.id
            count = s.scalar(
                select(func.count())
                .select_from(m.AccountProject)
                .where(m.AccountProject.account_id == account)
            )
            if (count or 0) >= row.project_limit:
                raise Forbidden(
                    f"Quota exceeded for projects: the account has {count} of "
                    f"{row.project_limit}. Ask the operator for a higher limit."
                )
        if "project_id" in body:
            if not ctx.is_admin:
                raise Forbidden("Only the operator attaches an existing project.")
            project = self.identity.get_project(SYSTEM, str(body["project_id"]))
        else:
            name = body.get("name")
            if not isinstance(name, str) or not 0 < len(name) <= 64:
                raise BadRequest("Invalid name: a project name of 1 to 64 characters.")
            project = self.identity.create_project(
                SYSTEM,
                {"name": name, "description": str(body.get("description", ""))[:255]},
            )
            member = self.identity.list_roles(SYSTEM, {"name": "member"})
            if member and not ctx.is_admin:
                self.identity.create_grant(
                    SYSTEM, "user", ctx.user_id, "project", project["id"], member[0]["id"]
                )
        try:
            with self.db.session() as s:
                s.add(
                    m.AccountProject(
                        project_id=project["id"], account_id=account, created_at=self._now()
                    )
                )
        except IntegrityError:
            raise Conflict(f"Project {project['id']} already belongs to an account.") from None
        return project

    def account_of(self, project_id: str) -> str | None:
        with self.db.session() as s:
            row = s.get(m.AccountProject, project_id)
            return row.account_id if row is not None else None

    # ------------------------------------------------------------------ consumption

    def _projects_of(self, s: Session, account_id: str) -> list[str]:
        return list(
            s.scalars(
                select(m.AccountProject.project_id).where(m.AccountProject.account_id == account_id)
            ).all()
        )

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
        now = self._now()
        start = floor_hour(_naive(start)) if start is not None else month_start(now)
        end = min(_naive(end), now) if end is not None else now
        if granularity not in GRANULARITIES:
            raise BadRequest(f"Invalid granularity: one of {', '.join(GRANULARITIES)}.")
        if metric is not None and metric not in METRICS:
            raise BadRequest(f"Invalid resource type {metric[:32]!r}: one of {', '.join(METRICS)}.")
        if end < start:
            raise BadRequest("The period ends before it starts.")
        if (end - start) > dt.timedelta(days=400):
            raise BadRequest("A consumption query covers at most 400 days.")
        with self.db.session() as s:
            row = self._account(s, ctx, account_id, SEES_CONSUMPTION)
            projects = self._projects_of(s, row.id)
        if project_id is not None:
            if project_id not in projects:
                raise NotFound(f"Project {project_id[:64]} is not in this account.")
            projects = [project_id]
        runs = [r for r in self.usage(start, end, projects) if metric in (None, r.metric)]
        items: dict[tuple[str, str, str, str, dt.datetime], Decimal] = defaultdict(Decimal)
        for run in runs:
            for period, hours in _periods(run, granularity):
                key = (run.project_id, run.metric, run.resource_id, run.flavor, period)
                items[key] += run.quantity * hours
        lines = rate(_priced_rows(runs, self.catalog), self.catalog)
        out = []
        for (project, met, resource, flavor, period), quantity in sorted(items.items()):
            out.append(
                {
                    "project_id": project,
                    "resource_type": met,
                    "resource_id": resource,
                    "flavor": flavor,
                    "period_start": period.strftime("%Y-%m-%dT%H:%M:%SZ"),
                    "quantity": str(quantity),
                    "unit": METRICS[met][0],
                }
            )
        return {
            "account_id": account_id,
            "start": start.strftime("%Y-%m-%dT%H:%M:%SZ"),
            "end": end.strftime("%Y-%m-%dT%H:%M:%SZ"),
            "granularity": granularity,
            "currency": self.catalog.currency,
            "items": out,
            "cost": [_line_view(line) for line in lines],
            "total_estimate": str(sum((line.amount for line in lines), Decimal(0))),
        }

    # ------------------------------------------------------------------ invoices

    def _invoice_lines(self, account_id: str, start: dt.datetime, end: dt.datetime) -> list[Line]:
        with self.db.session() as s:
            projects = self._projects_of(s, account_id)
        if not projects:
            return []
        return rate(_priced_rows(self.usage(start, end, projects), self.catalog), self.catalog)

    def issue_invoices(
        self, period: str, progress: Progress | None = None, account_id: str | None = None
    ) -> list[dict[str, Any]]:
        """Invoice every account (or one) for a finished month; an account invoiced for it
        already keeps the invoice it has (issuing twice yields one invoice)."""
        start, end = period_bounds(period)
        if end > floor_hour(self._now()):
            raise Conflict(f"The month {period} is not over yet: invoices are issued after it.")
        self.aggregate(until=end)
        with self.db.session() as s:
            stmt = select(m.Account.id).order_by(m.Account.created_at, m.Account.id)
            if account_id is not None:
                stmt = stmt.where(m.Account.id == account_id)
            accounts = list(s.scalars(stmt).all())
        issued = []
        for index, account in enumerate(accounts, start=1):
            view = self._issue_one(account, period, start, end)
            if view is not None:
                issued.append(view)
            if progress is not None:
                progress(index, len(accounts))
        return issued

    def _issue_one(
        self, account_id: str, period: str, start: dt.datetime, end: dt.datetime
    ) -> dict[str, Any] | None:
        with self.db.session() as s:
            existing = _invoice_of(s, account_id, period)
            if existing is not None:
                return self.invoice_view(existing)
        lines = self._invoice_lines(account_id, start, end)
        if not lines:
            return None
        for _ in range(5):
            try:
                with self.db.session() as s:
                    account = s.get(m.Account, account_id)
                    assert account is not None
                    return self._write_invoice(s, account, period, lines, "invoice", None)
            except IntegrityError:
                continue  # another issuer took the number or the month: look again
        with self.db.session() as s:
            existing = _invoice_of(s, account_id, period)
            if existing is None:
                raise Conflict("Could not number the invoice: too much contention; try again.")
            return self.invoice_view(existing)

    def _write_invoice(
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
        now = self._now()
        number = f"{self.invoice_prefix}-{now.year}-{sequence:06d}"
        if corrects is not None:
            vat_rate, note = Decimal(corrects.vat_rate), corrects.vat_note
            customer = dict(corrects.document["customer"])
        else:
            vat_rate, note = vat_for(account.country, account.vat_number, self.catalog)
            customer = {
                "account_id": account.id,
                "name": account.name,
                "billing_contact": account.billing_contact,
                "country": account.country,
                "vat_number": account.vat_number or "",
            }
        subtotal, vat, total = totals(lines, vat_rate)
        names = self._project_names({line.project_id for line in lines})
        document = {
            "number": number,
            "kind": kind,
            "corrects": corrects.number if corrects is not None else "",
            "period": period,
            "issued_at": now.strftime("%Y-%m-%dT%H:%M:%SZ"),
            "currency": self.catalog.currency,
            "seller": dict(self.catalog.seller),
            "customer": customer,
            "lines": [
                {**_line_view(line), "project_name": names.get(line.project_id, "")}
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
        return self.invoice_view(row)

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
            done = s.scalar(select(m.Invoice).where(m.Invoice.corrects == original.id))
            if done is not None:
                return self.invoice_view(done)
            account = s.get(m.Account, original.account_id)
            assert account is not None
            lines = [
                Line(
                    line["project_id"],
                    line["metric"],
                    line["flavor"],
                    line["unit"],
                    -Decimal(line["quantity"]),
                    Decimal(line["unit_price"]),
                    -Decimal(line["amount"]),
                )
                for line in original.document["lines"]
            ]
            return self._write_invoice(s, account, original.period, lines, "credit_note", original)

    def invoice_view(self, row: m.Invoice) -> dict[str, Any]:
        return {
            "id": row.id,
            "number": row.number,
            "kind": row.kind,
            "corrects": row.document.get("corrects", ""),
            "account_id": row.account_id,
            "period": row.period,
            "issued_at": row.issued_at.strftime("%Y-%m-%dT%H:%M:%SZ"),
            "currency": row.currency,
            "subtotal": row.subtotal,
            "vat_rate": row.vat_rate,
            "vat": row.vat,
            "total": row.total,
            "vat_note": row.vat_note,
            "lines": row.document["lines"],
        }

    def list_invoices(self, ctx: RequestContext, account_id: str) -> list[dict[str, Any]]:
        with self.db.session() as s:
            row = self._account(s, ctx, account_id, SEES_INVOICES)
            rows = s.scalars(
                select(m.Invoice).where(m.Invoice.account_id == row.id).order_by(m.Invoice.sequence)
            ).all()
            return [self.invoice_view(r) for r in rows]

    def get_invoice(
        self, ctx: RequestContext, invoice_id: str
    ) -> tuple[dict[str, Any], dict[str, Any]]:
        """The invoice's view and its frozen document (for the exports)."""
        with self.db.session() as s:
            row = s.get(m.Invoice, invoice_id) if isinstance(invoice_id, str) else None
            if row is None:
                raise NotFound(f"Could not find invoice: {str(invoice_id)[:64]}.")
            try:
                self._account(s, ctx, row.account_id, SEES_INVOICES)
            except NotFound:
                raise NotFound(f"Could not find invoice: {invoice_id[:64]}.") from None
            return self.invoice_view(row), dict(row.document)

    # ------------------------------------------------------------------ budgets

    def set_budget(self, ctx: RequestContext, account_id: str, amount: Any) -> dict[str, Any]:
        value: Decimal | None
        if amount is None:
            value = None
        else:
            try:
                value = Decimal(str(amount))
            except (InvalidOperation, ValueError):
                value = Decimal(-1)
            if not value.is_finite() or value <= 0 or value > Decimal("1e9"):
                raise BadRequest('Invalid budget: a positive amount in EUR, e.g. "250.00".')
            value = money(value)
        with self.db.session() as s:
            row = self._account(s, ctx, account_id, SEES_INVOICES)
            row.budget = None if value is None else str(value)
            row.budget_alerted = None
            row.updated_at = self._now()
            s.flush()
            return self.account_view(s, row)

    def check_budgets(self) -> list[tuple[str, Decimal]]:
        """Raise each budget alert crossed this month, once: returns (account, estimate)."""
        now = self._now()
        month = now.strftime("%Y-%m")
        crossed = []
        with self.db.session() as s:
            accounts = s.scalars(
                select(m.Account).where(
                    m.Account.budget.is_not(None),
                    (m.Account.budget_alerted.is_(None)) | (m.Account.budget_alerted != month),
                )
            ).all()
            candidates = [(a.id, Decimal(a.budget or "0")) for a in accounts]
        for account_id, budget in candidates:
            with self.db.session() as s:
                projects = self._projects_of(s, account_id)
            runs = self.usage(month_start(now), now, projects) if projects else []
            lines = rate(_priced_rows(runs, self.catalog), self.catalog)
            estimate = sum((line.amount for line in lines), Decimal(0))
            if estimate < budget:
                continue
            with self.db.session() as s:
                row = s.get(m.Account, account_id)
                if row is None or row.budget_alerted == month:
                    continue
                row.budget_alerted = month
                view = self.account_view(s, row)
            crossed.append((account_id, estimate))
            for listener in self.budget_listeners:
                try:
                    listener(view, estimate)
                except Exception:
                    log.exception("budget alert listener failed for account %s", account_id)
            log.warning(
                "budget alert: account %s reached %s EUR of its %s EUR budget for %s",
                account_id,
                estimate,
                budget,
                month,
            )
        return crossed


def _invoice_of(s: Session, account_id: str, period: str) -> m.Invoice | None:
    """The account's invoice for the month, if issued."""
    return s.scalar(
        select(m.Invoice).where(
            m.Invoice.account_id == account_id,
            m.Invoice.period == period,
            m.Invoice.kind == "invoice",
        )
    )


def _line_view(line: Line) -> dict[str, Any]:
    return {
        "project_id": line.project_id,
        "metric": line.metric,
        "flavor": line.flavor,
        "unit": line.unit,
        "quantity": str(line.quantity),
        "unit_price": str(line.unit_price),
        "amount": str(line.amount),
    }


def _periods(run: Run, granularity: str) -> Iterator[tuple[dt.datetime, int]]:
    """(period start, hours of the run in it) for each period the run touches."""
    if granularity == "hour":
        for i in range(run.hours):
            yield run.hour + i * HOUR, 1
        return
    cursor = run.hour
    while cursor < run.end:
        if granularity == "day":
            period = cursor.replace(hour=0)
            stop = min(run.end, period + dt.timedelta(days=1))
        else:
            period = month_start(cursor)
            stop = min(run.end, next_month(cursor))
        yield period, int(_seconds(cursor, stop) // 3600) or 1
        cursor = stop
