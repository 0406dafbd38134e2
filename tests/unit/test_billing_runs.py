"""The billing service's run-length usage (what it stores) equals the per-hour reference
integration of billing/usage.py, on random event streams: no hour gained or lost."""

from __future__ import annotations

import datetime as dt
from collections import defaultdict
from decimal import Decimal

from hypothesis import given, settings
from hypothesis import strategies as st

from souverain.billing import usage
from souverain.billing.service import _Event, _stream_runs

START = dt.datetime(2026, 10, 31, 0, 0)  # a window that crosses into November
END = dt.datetime(2026, 11, 2, 6, 30)
KEY = ("p", "instance", "r")

events = st.lists(
    st.tuples(
        st.integers(min_value=0, max_value=int((END - START).total_seconds()) - 1),
        st.sampled_from(["gauge", "gauge", "counter"]),
        st.integers(min_value=0, max_value=5),
        st.sampled_from(["", "t1.nano", "m1.small"]),
    ),
    max_size=12,
)


def _expand(runs: list[object]) -> dict[tuple[str, dt.datetime], Decimal]:
    out: dict[tuple[str, dt.datetime], Decimal] = defaultdict(Decimal)
    for run in runs:
        for i in range(run.hours):  # type: ignore[attr-defined]
            out[(run.flavor, run.hour + dt.timedelta(hours=i))] += run.quantity  # type: ignore[attr-defined]
    return {k: v for k, v in out.items() if v != 0}


@settings(max_examples=150, deadline=None)
@given(events, st.none() | st.tuples(st.integers(0, 3), st.sampled_from(["", "t1.nano"])))
def test_runs_expand_to_the_reference_hours(
    raw: list[tuple[int, str, int, str]], before: object
) -> None:
    seen: list[tuple[dt.datetime, str, int, str]] = []
    for seconds, kind, value, flavor in sorted(raw, key=lambda r: r[0]):
        at = START + dt.timedelta(seconds=seconds, microseconds=seconds % 7)
        seen.append((at, kind, value, flavor if kind == "gauge" else ""))
    prior = None
    prior_ref = {}
    if before is not None:
        value, flavor = before  # type: ignore[misc]
        at = START - dt.timedelta(hours=3)
        prior = _Event(at, "gauge", Decimal(value), flavor)
        prior_ref = {KEY: usage.Event(at, *KEY, "gauge", Decimal(value), flavor)}
    mine = _stream_runs(
        KEY, prior, [_Event(a, k, Decimal(v), f) for a, k, v, f in seen], START, END
    )
    reference = usage.integrate(
        prior_ref, [usage.Event(a, *KEY, k, Decimal(v), f) for a, k, v, f in seen], START, END
    )
    ref = {(r.flavor, r.hour): r.quantity for r in reference if r.quantity != 0}
    got = _expand(mine)
    assert got.keys() == ref.keys()
    for key, quantity in ref.items():
        assert abs(got[key] - quantity) < Decimal("1e-20"), key
    for run in mine:  # never across a month boundary
        last = run.hour + dt.timedelta(hours=run.hours - 1)
        assert (run.hour.year, run.hour.month) == (last.year, last.month)
