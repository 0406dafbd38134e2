"""Meter events integrated into hourly usage, and usage rolled up: pure logic, no database."""

from __future__ import annotations

import datetime as dt
import random
from collections.abc import Iterable, Sequence
from decimal import Decimal
from fractions import Fraction

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from souverain.billing.catalog import UsageRow
from souverain.billing.usage import (
    Event,
    StreamKey,
    floor_hour,
    hours,
    integrate,
    rollup,
    usage_rows,
)

DAY = dt.datetime(2026, 3, 10)


def at(hour: int, minute: int = 0, second: int = 0, microsecond: int = 0) -> dt.datetime:
    return DAY + dt.timedelta(hours=hour, minutes=minute, seconds=second, microseconds=microsecond)


def gauge(
    when: dt.datetime,
    value: Decimal | int | str,
    flavor: str = "m1.small",
    resource_id: str = "vm-1",
    metric: str = "instance",
    project_id: str = "p1",
) -> Event:
    return Event(when, project_id, metric, resource_id, "gauge", Decimal(value), flavor)


def counter(when: dt.datetime, value: Decimal | int | str, resource_id: str = "port-1") -> Event:
    return Event(when, "p1", "egress.gb", resource_id, "counter", Decimal(value))


def quantities(rows: Iterable[UsageRow]) -> dict[tuple[str, dt.datetime], Decimal]:
    return {(row.flavor, row.hour): row.quantity for row in rows}


# --- hours -------------------------------------------------------------------------------


def test_floor_hour_drops_minutes_seconds_and_microseconds() -> None:
    assert floor_hour(at(10, 59, 59, 999_999)) == at(10)
    assert floor_hour(at(10)) == at(10)


def test_hours_are_the_starts_of_every_hour_overlapping_the_span() -> None:
    assert list(hours(at(10, 30), at(12, 0, 0, 1))) == [at(10), at(11), at(12)]
    assert list(hours(at(10), at(12))) == [at(10), at(11)]
    assert list(hours(at(10), at(10))) == []


# --- gauges ------------------------------------------------------------------------------


def test_server_stopped_for_20_minutes_is_billed_for_the_minutes_it_ran() -> None:
    events = [gauge(at(10, 15), 1), gauge(at(10, 45), 0), gauge(at(11, 5), 1), gauge(at(12, 5), 0)]
    rows = integrate({}, events, at(10), at(13))
    assert rows == [
        UsageRow("p1", "instance", "vm-1", "m1.small", at(10), Decimal("0.5")),
        UsageRow("p1", "instance", "vm-1", "m1.small", at(11), Decimal(55) / Decimal(60)),
        UsageRow("p1", "instance", "vm-1", "m1.small", at(12), Decimal(5) / Decimal(60)),
    ]
    assert sum(row.quantity for row in rows) == pytest.approx(Decimal(90) / Decimal(60))


def test_resize_mid_hour_splits_that_hour_between_the_two_flavors() -> None:
    before = {("p1", "instance", "vm-1"): gauge(at(-5), 1, "m1.small")}
    rows = integrate(before, [gauge(at(10, 20), 1, "m1.large")], at(9), at(12))
    assert quantities(rows) == {
        ("m1.large", at(10)): Decimal(40) / Decimal(60),
        ("m1.large", at(11)): Decimal(1),
        ("m1.small", at(9)): Decimal(1),
        ("m1.small", at(10)): Decimal(20) / Decimal(60),
    }
    assert [row.flavor for row in rows] == ["m1.large", "m1.large", "m1.small", "m1.small"]


def test_gauge_before_the_window_counts_from_its_start() -> None:
    volume = gauge(at(-30), 20, "", "vol-1", "volume.gb")
    rows = integrate({volume.stream: volume}, [], at(0), at(3))
    assert [(row.hour, row.quantity) for row in rows] == [
        (at(0), Decimal(20)),
        (at(1), Decimal(20)),
        (at(2), Decimal(20)),
    ]


def test_volume_resized_mid_hour_weights_each_size_by_its_minutes() -> None:
    volume = gauge(at(-1), 10, "", "vol-1", "volume.gb")
    rows = integrate(
        {volume.stream: volume}, [gauge(at(0, 45), 30, "", "vol-1", "volume.gb")], at(0), at(1)
    )
    assert quantities(rows) == {("", at(0)): Decimal("15")}  # 10 * 0.75 + 30 * 0.25


def test_last_hour_counts_only_up_to_end_for_month_to_date_usage() -> None:
    before = {("p1", "instance", "vm-1"): gauge(at(-1), 1)}
    rows = integrate(before, [], at(10), at(12, 30))
    assert quantities(rows) == {
        ("m1.small", at(10)): Decimal(1),
        ("m1.small", at(11)): Decimal(1),
        ("m1.small", at(12)): Decimal("0.5"),
    }


def test_microseconds_count_exactly() -> None:
    rows = integrate(
        {}, [gauge(at(10, 0, 0, 1), 3600, "", "obj", "object.gb")], at(10), at(10, 0, 0, 2)
    )
    assert quantities(rows) == {("", at(10)): Decimal("0.000001")}


def test_fractional_gauge_value_keeps_every_digit_until_the_division() -> None:
    third = Decimal(1) / Decimal(3)  # 28 significant digits, as gib() gives
    rows = integrate({}, [gauge(at(10, 30), third, "", "vol", "volume.gb")], at(10), at(12))
    assert quantities(rows) == {("", at(10)): third / 2, ("", at(11)): third}


def test_zero_gauge_and_stopped_resource_produce_no_row() -> None:
    stopped = gauge(at(-1), 0)
    rows = integrate(
        {stopped.stream: stopped}, [gauge(at(10, 30), 0, resource_id="vm-2")], at(10), at(12)
    )
    assert rows == []


def test_events_at_the_same_instant_the_one_given_last_wins() -> None:
    events = [gauge(at(10), 1, "m1.small"), gauge(at(10), 1, "m1.large")]
    assert quantities(integrate({}, events, at(10), at(11))) == {("m1.large", at(10)): Decimal(1)}
    events = [gauge(at(10), 1), gauge(at(10), 0)]
    assert integrate({}, events, at(10), at(11)) == []


def test_event_order_given_does_not_matter_across_instants() -> None:
    events = [gauge(at(10, 15), 1), gauge(at(10, 45), 0), gauge(at(11, 5), 1), gauge(at(12, 5), 0)]
    shuffled = list(events)
    random.Random(4).shuffle(shuffled)
    assert integrate({}, shuffled, at(10), at(13)) == integrate({}, events, at(10), at(13))


def test_rows_are_sorted_by_project_metric_resource_flavor_hour() -> None:
    events = [
        gauge(at(10, 30), 1, "b", "vm-2", project_id="p2"),
        gauge(at(10, 30), 1, "a", "vm-9", project_id="p1"),
        gauge(at(10, 10), 5, "", "vol", "volume.gb", project_id="p1"),
        gauge(at(10, 30), 1, "a", "vm-1", project_id="p2"),
    ]
    rows = integrate({}, events, at(10), at(12))
    keys = [(r.project_id, r.metric, r.resource_id, r.flavor, r.hour) for r in rows]
    assert keys == sorted(keys)
    assert len(rows) == 8


# --- counters ----------------------------------------------------------------------------


def test_counters_are_summed_per_hour() -> None:
    events = [counter(at(10, 1), "0.5"), counter(at(10, 59), "1.25"), counter(at(12, 0), 2)]
    rows = integrate({}, events, at(10), at(13))
    assert rows == [
        UsageRow("p1", "egress.gb", "port-1", "", at(10), Decimal("1.75")),
        UsageRow("p1", "egress.gb", "port-1", "", at(12), Decimal(2)),
    ]


def test_counter_and_gauge_of_one_stream_in_the_same_whole_hour_are_summed() -> None:
    events = [gauge(at(10), 2, ""), counter(at(11, 30), 3, resource_id="vm-1")]
    events = [Event(e.at, "p1", "instance", "vm-1", e.kind, e.value, e.flavor) for e in events]
    rows = integrate({}, events, at(10), at(13))
    assert quantities(rows) == {("", at(10)): 2, ("", at(11)): 5, ("", at(12)): 2}


# --- the window --------------------------------------------------------------------------


def test_start_must_be_an_hour_boundary() -> None:
    with pytest.raises(ValueError, match="hour boundary"):
        integrate({}, [], at(10, 30), at(12))


def test_end_before_start_is_refused() -> None:
    with pytest.raises(ValueError, match="before start"):
        integrate({}, [], at(10), at(9))


def test_event_outside_the_window_is_refused() -> None:
    with pytest.raises(ValueError, match="outside"):
        integrate({}, [gauge(at(12), 1)], at(10), at(12))


def test_unknown_event_kind_is_refused() -> None:
    odd = Event(at(10), "p1", "instance", "vm-1", "delta", Decimal(1))
    with pytest.raises(ValueError, match="kind"):
        integrate({}, [odd], at(10), at(11))


def test_before_must_be_an_earlier_gauge_of_its_stream() -> None:
    with pytest.raises(ValueError, match="before"):
        integrate({("p1", "instance", "vm-1"): gauge(at(10), 1)}, [], at(10), at(11))
    with pytest.raises(ValueError, match="before"):
        integrate({("p1", "instance", "vm-2"): gauge(at(9), 1)}, [], at(10), at(11))


def test_usage_rows_streams_the_same_rows_as_integrate() -> None:
    before = {("p1", "instance", "vm-1"): gauge(at(-5), 1)}
    events = [gauge(at(10, 20), 1, "m1.large"), counter(at(10, 5), 1)]
    assert list(usage_rows(before, events, at(9), at(12))) == integrate(
        before, events, at(9), at(12)
    )


# --- rollup ------------------------------------------------------------------------------


def test_rollup_by_day_and_month_sums_each_resource_and_flavor() -> None:
    before = {("p1", "instance", "vm-1"): gauge(dt.datetime(2026, 2, 1), 1)}
    events = [gauge(dt.datetime(2026, 3, 2, 12), 1, "m1.large")]
    rows = integrate(before, events, dt.datetime(2026, 3, 1), dt.datetime(2026, 4, 1, 6))
    by_day = rollup(rows, "day")
    assert by_day[:3] == [
        UsageRow("p1", "instance", "vm-1", "m1.large", dt.datetime(2026, 3, 2), Decimal(12)),
        UsageRow("p1", "instance", "vm-1", "m1.large", dt.datetime(2026, 3, 3), Decimal(24)),
        UsageRow("p1", "instance", "vm-1", "m1.large", dt.datetime(2026, 3, 4), Decimal(24)),
    ]
    assert by_day[-1] == UsageRow(
        "p1", "instance", "vm-1", "m1.small", dt.datetime(2026, 3, 2), Decimal(12)
    )
    assert rollup(rows, "month") == [
        UsageRow("p1", "instance", "vm-1", "m1.large", dt.datetime(2026, 3, 1), Decimal(708)),
        UsageRow("p1", "instance", "vm-1", "m1.large", dt.datetime(2026, 4, 1), Decimal(6)),
        UsageRow("p1", "instance", "vm-1", "m1.small", dt.datetime(2026, 3, 1), Decimal(36)),
    ]


def test_rollup_by_hour_merges_rows_of_the_same_hour() -> None:
    rows = [
        UsageRow("p1", "egress.gb", "port-1", "", at(10), Decimal("0.5")),
        UsageRow("p1", "egress.gb", "port-1", "", at(10), Decimal("0.25")),
    ]
    assert rollup(rows, "hour") == [
        UsageRow("p1", "egress.gb", "port-1", "", at(10), Decimal("0.75"))
    ]


def test_rollup_refuses_an_unknown_granularity() -> None:
    with pytest.raises(ValueError, match="granularity"):
        rollup([], "week")


# --- properties --------------------------------------------------------------------------

WINDOW_HOURS = 6
STREAMS = [("p1", "instance", "vm-1"), ("p1", "volume.gb", "vol-1"), ("p2", "instance", "vm-1")]
VALUES = [Decimal(0), Decimal(1), Decimal("2.5"), Decimal(1) / Decimal(3), Decimal(7)]


def event_at(key: StreamKey, offset: int, kind: str, value: Decimal, flavor: str) -> Event:
    """An event `offset` microseconds into the window; a counter has no flavor."""
    project_id, metric, resource_id = key
    flavor = flavor if kind == "gauge" else ""
    when = at(0) + dt.timedelta(microseconds=offset)
    return Event(when, project_id, metric, resource_id, kind, value, flavor)


@st.composite
def scenario(draw: st.DrawFn) -> tuple[dict[StreamKey, Event], list[Event], dt.datetime]:
    """Before-gauges and events in [at(0), end), end anywhere in the last hour."""
    before: dict[StreamKey, Event] = {}
    for key in STREAMS:
        if draw(st.booleans()):
            value = draw(st.sampled_from(VALUES))
            before[key] = Event(at(-1), *key, "gauge", value, draw(st.sampled_from(["a", "b"])))
    end = at(WINDOW_HOURS - 1) + dt.timedelta(microseconds=draw(st.integers(1, 3_600_000_000)))
    span = (end - at(0)) // dt.timedelta(microseconds=1)
    events = draw(
        st.lists(
            st.builds(
                event_at,
                st.sampled_from(STREAMS),
                # whole minutes often, so that events share instants and hour boundaries
                st.one_of(
                    st.integers(0, span - 1),
                    st.integers(0, (span - 1) // 60_000_000).map(lambda m: m * 60_000_000),
                ),
                st.sampled_from(["gauge", "gauge", "counter"]),
                st.sampled_from(VALUES),
                st.sampled_from(["a", "b"]),
            ),
            max_size=25,
        )
    )
    return before, events, end


def last_gauges_before(
    before: dict[StreamKey, Event], events: Sequence[Event], until: dt.datetime
) -> dict[StreamKey, Event]:
    carried = dict(before)
    for event in sorted(events, key=lambda e: e.at):
        if event.kind == "gauge" and event.at < until:
            carried[event.stream] = event
    return carried


def in_hours(span: dt.timedelta) -> Fraction:
    return Fraction(span // dt.timedelta(microseconds=1), 3_600_000_000)


def reference_totals(
    before: dict[StreamKey, Event], events: Sequence[Event], end: dt.datetime
) -> dict[StreamKey, Fraction]:
    """Total usage per stream, computed the obvious way in exact fractions of an hour."""
    totals: dict[StreamKey, Fraction] = {}
    for key in STREAMS:
        stream = sorted((e for e in events if e.stream == key), key=lambda e: e.at)
        total = Fraction(0)
        in_force, since = before.get(key), at(0)
        for event in stream:
            if event.kind == "counter":
                total += Fraction(event.value)
                continue
            if in_force is not None:
                total += Fraction(in_force.value) * in_hours(event.at - since)
            in_force, since = event, event.at
        if in_force is not None:
            total += Fraction(in_force.value) * in_hours(end - since)
        totals[key] = total
    return totals


@settings(max_examples=300, deadline=None)
@given(scenario(), st.integers(1, WINDOW_HOURS - 1))
def test_splitting_the_window_at_an_hour_neither_loses_nor_double_counts(
    case: tuple[dict[StreamKey, Event], list[Event], dt.datetime], split_hour: int
) -> None:
    before, events, end = case
    split = at(split_hour)
    whole = integrate(before, events, at(0), end)
    first = integrate(before, [e for e in events if e.at < split], at(0), split)
    second = integrate(
        last_gauges_before(before, events, split), [e for e in events if e.at >= split], split, end
    )
    assert sorted(first + second, key=_row_key) == whole


def _row_key(row: UsageRow) -> tuple[str, str, str, str, dt.datetime]:
    return (row.project_id, row.metric, row.resource_id, row.flavor, row.hour)


@settings(max_examples=300, deadline=None)
@given(scenario())
def test_usage_adds_up_to_value_times_time_in_force_plus_counted_units(
    case: tuple[dict[StreamKey, Event], list[Event], dt.datetime],
) -> None:
    before, events, end = case
    rows = integrate(before, events, at(0), end)
    assert all(row.quantity != 0 for row in rows)
    assert len({_row_key(row) for row in rows}) == len(rows)
    assert [_row_key(row) for row in rows] == sorted(_row_key(row) for row in rows)
    expected = reference_totals(before, events, end)
    for key in STREAMS:
        got = sum(
            (Fraction(r.quantity) for r in rows if (r.project_id, r.metric, r.resource_id) == key),
            Fraction(0),
        )
        # each row is one division rounded to 28 significant digits
        assert abs(got - expected[key]) <= Fraction(1, 10**24)


@settings(max_examples=100, deadline=None)
@given(scenario(), st.randoms(use_true_random=False))
def test_input_order_only_matters_between_events_at_the_same_instant(
    case: tuple[dict[StreamKey, Event], list[Event], dt.datetime], rnd: random.Random
) -> None:
    before, events, end = case
    instants = [e.at for e in events]
    if len(set(instants)) != len(instants):
        return
    shuffled = list(events)
    rnd.shuffle(shuffled)
    assert integrate(before, shuffled, at(0), end) == integrate(before, events, at(0), end)


@settings(max_examples=100, deadline=None)
@given(scenario(), st.sampled_from(["hour", "day", "month"]))
def test_rollup_keeps_every_unit(
    case: tuple[dict[StreamKey, Event], list[Event], dt.datetime], granularity: str
) -> None:
    before, events, end = case
    rows = integrate(before, events, at(0), end)
    rolled = rollup(rows, granularity)
    # summed exactly on both sides: a rollup drops no digit
    assert sum(map(Fraction, (r.quantity for r in rolled))) == sum(
        map(Fraction, (r.quantity for r in rows))
    )
    if granularity == "hour":
        assert rolled == rows
