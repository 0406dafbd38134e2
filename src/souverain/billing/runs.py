"""Usage as runs: `quantity` in each of `hours` consecutive hours, never across a month.

Pure logic: the meter events of one resource become its runs (`stream_runs`), runs are
clipped to a window, cut where a price changes, and spread over hours, days or months.
No database, no clock.
"""

from __future__ import annotations

import datetime as dt
from collections import defaultdict
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from decimal import Decimal

from souverain.billing.catalog import Catalog, UsageRow
from souverain.billing.periods import floor_hour, month_start, next_month

HOUR = dt.timedelta(hours=1)


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
class Event:
    at: dt.datetime
    kind: str
    value: Decimal
    flavor: str


def _seconds(a: dt.datetime, b: dt.datetime) -> Decimal:
    delta = b - a
    return Decimal(delta.days * 86400 + delta.seconds) + Decimal(delta.microseconds) / 1_000_000


def stream_runs(
    key: tuple[str, str, str],
    before: Event | None,
    events: list[Event],
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


def clip(run: Run, start: dt.datetime, end: dt.datetime) -> Run | None:
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


def priced_rows(runs: Iterable[Run], catalog: Catalog) -> Iterator[UsageRow]:
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


def periods(run: Run, granularity: str) -> Iterator[tuple[dt.datetime, int]]:
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
