"""Meter events integrated into hourly usage rows, and usage rolled up by day or month.

Pure logic: no database, no clock. The caller reads the events of a window (and, for
each gauge, the last event before it) and stores the rows; this module only computes.
Quantities are exact where the arithmetic allows, and a gauge's quantity for one hour
and flavor is divided exactly once (28 significant digits, as in the catalog).
"""

from __future__ import annotations

import datetime as dt
import decimal
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from decimal import Decimal
from itertools import repeat

from souverain.billing.catalog import UsageRow

HOUR = dt.timedelta(hours=1)
_MICROSECOND = dt.timedelta(microseconds=1)
_MICROSECONDS_PER_HOUR = Decimal(3_600_000_000)
_ZERO = Decimal(0)
KINDS = ("gauge", "counter")
GRANULARITIES = ("hour", "day", "month")

# Products and sums of value * microseconds are exact (no digit is ever dropped); only
# the final division to hours is rounded, at the catalog's 28 significant digits.
_EXACT = decimal.Context(
    prec=decimal.MAX_PREC, Emax=decimal.MAX_EMAX, Emin=decimal.MIN_EMIN, traps=[]
)
_QUOTIENT = decimal.Context(prec=28, rounding=decimal.ROUND_HALF_EVEN)

StreamKey = tuple[str, str, str]  # (project_id, metric, resource_id)


@dataclass(frozen=True)
class Event:
    """A meter event as the billing service recorded it (`value` already a Decimal)."""

    at: dt.datetime
    project_id: str
    metric: str
    resource_id: str
    kind: str  # "gauge" | "counter"
    value: Decimal
    flavor: str = ""

    @property
    def stream(self) -> StreamKey:
        return (self.project_id, self.metric, self.resource_id)


def floor_hour(t: dt.datetime) -> dt.datetime:
    return t.replace(minute=0, second=0, microsecond=0)


def hours(start: dt.datetime, end: dt.datetime) -> Iterator[dt.datetime]:
    """The starts of the hours that overlap [start, end): from floor_hour(start), before end."""
    hour = floor_hour(start)
    while hour < end:
        yield hour
        hour += HOUR


@dataclass
class _Flavor:
    """What one stream used with one flavor: hour index -> quantity, in three shapes."""

    # runs of whole hours at one gauge value: (first index, index after the last, value)
    runs: list[tuple[int, int, Decimal]]
    # part hours: gauge value * microseconds in force, summed before the one division
    partial: dict[int, Decimal]
    # counter units (flavor "" only), already a quantity
    counted: dict[int, Decimal]


def integrate(
    before: Mapping[StreamKey, Event],
    events: Iterable[Event],
    start: dt.datetime,
    end: dt.datetime,
) -> list[UsageRow]:
    """Hourly usage over [start, end) from the events in it and the gauges in force at start.

    `before` maps a stream (project, metric, resource) to its last gauge event before
    `start`; `events` are every event with start <= at < end, in any order (at the same
    instant, the one given last wins). A gauge counts value * hours in force, split per
    hour and flavor; a counter is summed per hour. `start` is an hour boundary; `end`
    may fall inside an hour (month-to-date usage), which then counts up to `end` only.
    Rows with a zero quantity are left out; rows are sorted by (project, metric,
    resource, flavor, hour). `usage_rows` yields the same rows one stream at a time.
    """
    return list(usage_rows(before, events, start, end))


def usage_rows(
    before: Mapping[StreamKey, Event],
    events: Iterable[Event],
    start: dt.datetime,
    end: dt.datetime,
) -> Iterator[UsageRow]:
    """`integrate`'s rows as a stream: only one stream's usage is held at a time (the
    events are read, checked and grouped by stream before the first row)."""
    if start != floor_hour(start):
        raise ValueError(f"start {start.isoformat()} is not an hour boundary")
    if end < start:
        raise ValueError(f"end {end.isoformat()} is before start {start.isoformat()}")
    by_stream: dict[StreamKey, list[Event]] = {}
    for event in events:
        _check(event, start, end)
        by_stream.setdefault(event.stream, []).append(event)
    for key, event in before.items():
        if event.kind != "gauge" or event.at >= start or event.stream != key:
            raise ValueError(f"before[{key}]: not a gauge of that stream before {start}")
    hour_starts = list(hours(start, end))
    for key in sorted(by_stream.keys() | before.keys()):
        stream_events = by_stream.pop(key, [])
        stream_events.sort(key=lambda e: e.at)  # stable: same instant keeps input order
        usage = _stream_usage(before.get(key), stream_events, start, end)
        for flavor in sorted(usage):
            yield from _rows(key, flavor, usage[flavor], hour_starts)


def _check(event: Event, start: dt.datetime, end: dt.datetime) -> None:
    if event.kind not in KINDS:
        raise ValueError(f"event kind {event.kind!r} is not one of {', '.join(KINDS)}")
    if not start <= event.at < end:
        raise ValueError(f"event at {event.at.isoformat()} is outside [{start}, {end})")


def _stream_usage(
    before: Event | None, events: list[Event], start: dt.datetime, end: dt.datetime
) -> dict[str, _Flavor]:
    usage: dict[str, _Flavor] = {}

    def of(flavor: str) -> _Flavor:
        if flavor not in usage:
            usage[flavor] = _Flavor(runs=[], partial={}, counted={})
        return usage[flavor]

    in_force, since = before, start
    for event in events:
        if event.kind == "counter":
            counted = of("").counted
            index = (event.at - start) // HOUR
            counted[index] = _EXACT.add(counted.get(index, _ZERO), event.value)
            continue
        if in_force is not None and in_force.value and since < event.at:
            _add_gauge(of(in_force.flavor), in_force.value, since, event.at, start)
        in_force, since = event, event.at
    if in_force is not None and in_force.value and since < end:
        _add_gauge(of(in_force.flavor), in_force.value, since, end, start)
    return usage


def _add_gauge(
    used: _Flavor, value: Decimal, since: dt.datetime, until: dt.datetime, start: dt.datetime
) -> None:
    """Count `value` in force over [since, until): part hours at each end, whole ones between."""
    first = (since - start) // HOUR
    last = (until - start) // HOUR  # the hour `until` falls in; excluded if it starts there
    first_start = start + first * HOUR
    last_start = start + last * HOUR
    if first == last:
        _add_partial(used.partial, first, value, until - since)
        return
    whole_from = first
    if since > first_start:
        _add_partial(used.partial, first, value, first_start + HOUR - since)
        whole_from = first + 1
    if whole_from < last:
        used.runs.append((whole_from, last, value))
    if until > last_start:
        _add_partial(used.partial, last, value, until - last_start)


def _add_partial(
    partial: dict[int, Decimal], index: int, value: Decimal, span: dt.timedelta
) -> None:
    weighted = _EXACT.multiply(value, Decimal(span // _MICROSECOND))
    partial[index] = _EXACT.add(partial.get(index, _ZERO), weighted)


def _rows(
    key: StreamKey, flavor: str, used: _Flavor, hour_starts: list[dt.datetime]
) -> Iterator[UsageRow]:
    """One flavor's rows in hour order. Runs never share an hour with a part hour of the
    same flavor; a counter (flavor "") may share one with anything of flavor ""."""
    project_id, metric, resource_id = key
    single: dict[int, Decimal] = {
        index: _QUOTIENT.divide(weighted, _MICROSECONDS_PER_HOUR)
        for index, weighted in used.partial.items()
    }
    for index, units in used.counted.items():
        single[index] = _EXACT.add(single.get(index, _ZERO), units)
    pieces: list[tuple[int, int, Decimal]] = []
    for first, after, value in used.runs:
        # usually none: a counter of flavor "" in a whole hour of a gauge of flavor ""
        shared = sorted(i for i in single if first <= i < after)
        lo = first
        for index in shared:
            if lo < index:
                pieces.append((lo, index, value))
            single[index] = _EXACT.add(single[index], value)
            lo = index + 1
        if lo < after:
            pieces.append((lo, after, value))
    pieces.extend((index, index + 1, quantity) for index, quantity in single.items())
    pieces.sort(key=lambda piece: piece[0])
    for first, after, quantity in pieces:
        if quantity:
            yield from map(
                UsageRow,
                repeat(project_id),
                repeat(metric),
                repeat(resource_id),
                repeat(flavor),
                hour_starts[first:after],
                repeat(quantity),
            )


def rollup(rows: Iterable[UsageRow], granularity: str) -> list[UsageRow]:
    """Sum usage per (project, metric, resource, flavor, period), the period's start in
    `hour`: the hour itself, midnight of its day, or midnight of the first of its month."""
    if granularity not in GRANULARITIES:
        raise ValueError(f"granularity {granularity!r} is not one of {', '.join(GRANULARITIES)}")
    totals: dict[tuple[str, str, str, str, dt.datetime], Decimal] = {}
    for row in rows:
        period = _period(row.hour, granularity)
        key = (row.project_id, row.metric, row.resource_id, row.flavor, period)
        totals[key] = _EXACT.add(totals.get(key, _ZERO), row.quantity)
    return [UsageRow(*key, quantity) for key, quantity in sorted(totals.items())]


def _period(hour: dt.datetime, granularity: str) -> dt.datetime:
    if granularity == "hour":
        return floor_hour(hour)
    if granularity == "day":
        return hour.replace(hour=0, minute=0, second=0, microsecond=0)
    return hour.replace(day=1, hour=0, minute=0, second=0, microsecond=0)
