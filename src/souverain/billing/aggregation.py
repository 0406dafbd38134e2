"""Hourly usage: meter events turned into runs (runs.py) and stored in `billing_usage`.

Aggregation recomputes a window from the events alone and replaces the window's rows
in one transaction a month, so running it again never double-counts. `usage` reads the
aggregated hours and computes the hours after the mark live from the events.
"""

from __future__ import annotations

import datetime as dt
import itertools
from collections.abc import Callable, Iterable, Iterator
from decimal import Decimal
from typing import Any

from sqlalchemy import delete, func, insert, select
from sqlalchemy.orm import Session

from souverain.billing import models as m
from souverain.billing.periods import floor_hour, month_start, naive, next_month, now_of
from souverain.billing.runs import Event, Run, clip, stream_runs
from souverain.common.clock import Clock
from souverain.db.engine import Database

INSERT_BATCH = 5000

Progress = Callable[[int, int], None]


class Aggregation:
    """Events into hourly usage rows, and usage over any window read back as runs."""

    def __init__(self, db: Database, clock: Clock) -> None:
        self.db = db
        self.clock = clock

    def aggregate(self, until: dt.datetime | None = None, progress: Progress | None = None) -> int:
        """Hourly usage for every complete hour up to `until` (default: now); returns the
        number of usage rows written. Hours already aggregated are done again only when
        `until` is before the mark (see `reaggregate`)."""
        limit = floor_hour(naive(until) if until is not None else now_of(self.clock))
        with self.db.session() as s:
            mark = s.get(m.AggregationMark, 1)
            if mark is not None:
                start = mark.done_until
            else:
                first = s.scalar(select(func.min(m.MeterEvent.at)))
                start = floor_hour(first) if first is not None else limit
        return self._window(start, limit, progress)

    def reaggregate(self, start: dt.datetime, end: dt.datetime) -> int:
        """Recompute [start, end) from the events; the rows are replaced, never added to."""
        return self._window(floor_hour(naive(start)), floor_hour(naive(end)), None)

    def _window(self, start: dt.datetime, end: dt.datetime, progress: Progress | None) -> int:
        if end <= start:
            return 0
        # a month at a time: bounded memory, and progress an operator can follow
        months = []
        cursor = start
        while cursor < end:
            stop = min(end, next_month(cursor))
            months.append((cursor, stop))
            cursor = stop
        written = 0
        for index, (a, b) in enumerate(months, start=1):
            written += self._month(a, b)
            if progress is not None:
                progress(index, len(months))
        return written

    def _month(self, a: dt.datetime, b: dt.datetime) -> int:
        """Replace the rows of [a, b) (within one month) and move the mark; one transaction."""
        written = 0
        with self.db.session() as s:
            s.execute(delete(m.HourlyUsage).where(m.HourlyUsage.hour >= a, m.HourlyUsage.hour < b))
            batch: list[dict[str, Any]] = []
            for run in self.runs(s, a, b):
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
        return written

    def runs(
        self,
        s: Session,
        start: dt.datetime,
        end: dt.datetime,
        projects: Iterable[str] | None = None,
    ) -> Iterator[Run]:
        """Usage in [start, end) computed from the events alone (start: an hour boundary)."""
        wanted = None if projects is None else list(projects)
        e = m.MeterEvent
        last = (
            select(func.max(e.id))
            .where(e.at < start, e.kind == "gauge")
            .group_by(e.project_id, e.metric, e.resource_id)
        )
        if wanted is not None:
            last = last.where(e.project_id.in_(wanted))
        before: dict[tuple[str, str, str], Event] = {}
        for row in s.scalars(select(e).where(e.id.in_(last))):
            key = (row.project_id, row.metric, row.resource_id)
            before[key] = Event(row.at, row.kind, Decimal(row.value), row.flavor)
        window = (
            select(e.project_id, e.metric, e.resource_id, e.at, e.kind, e.value, e.flavor)
            .where(e.at >= start, e.at < end)
            .order_by(e.project_id, e.metric, e.resource_id, e.at, e.id)
        )
        if wanted is not None:
            window = window.where(e.project_id.in_(wanted))
        seen: set[tuple[str, str, str]] = set()
        rows = s.execute(window)
        for key, group in itertools.groupby(rows, key=lambda r: (r[0], r[1], r[2])):
            seen.add(key)
            events = [Event(r[3], r[4], Decimal(r[5]), r[6]) for r in group]
            yield from stream_runs(key, before.get(key), events, start, end)
        for key, event in before.items():
            if key not in seen and event.value != 0:
                yield from stream_runs(key, event, [], start, end)

    def usage(
        self, start: dt.datetime, end: dt.datetime, projects: Iterable[str] | None = None
    ) -> list[Run]:
        """Usage in [start, end): aggregated hours from the table, later ones live."""
        start, end = floor_hour(naive(start)), naive(end)
        wanted = None if projects is None else list(projects)
        with self.db.session() as s:
            mark = s.get(m.AggregationMark, 1)
            done = min(mark.done_until, end) if mark is not None else start
            done = max(done, start)
            out: list[Run] = []
            if done > start:
                out.extend(self._stored(s, start, done, wanted))
            if end > done:
                out.extend(self.runs(s, floor_hour(done), end, wanted))
        return out

    def _stored(
        self, s: Session, start: dt.datetime, done: dt.datetime, wanted: list[str] | None
    ) -> Iterator[Run]:
        """The aggregated runs of [start, done), clipped to it."""
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
            clipped = clip(run, start, done)
            if clipped is not None:
                yield clipped
