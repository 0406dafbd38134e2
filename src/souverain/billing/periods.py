"""Hours, months and periods as billing counts them: naive UTC datetimes, months from
their first hour. No database, no clock of its own."""

from __future__ import annotations

import datetime as dt
import re

from souverain.common.clock import Clock
from souverain.common.errors import BadRequest

PERIOD_RE = re.compile(r"^(\d{4})-(0[1-9]|1[0-2])$")


def naive(value: dt.datetime) -> dt.datetime:
    """UTC without its tzinfo: the database stores naive UTC times."""
    return value.astimezone(dt.UTC).replace(tzinfo=None) if value.tzinfo else value


def now_of(clock: Clock) -> dt.datetime:
    return naive(clock.now())


def floor_hour(t: dt.datetime) -> dt.datetime:
    return t.replace(minute=0, second=0, microsecond=0)


def month_start(t: dt.datetime) -> dt.datetime:
    return t.replace(day=1, hour=0, minute=0, second=0, microsecond=0)


def next_month(t: dt.datetime) -> dt.datetime:
    first = month_start(t)
    return (first + dt.timedelta(days=32)).replace(day=1)


def period_bounds(period: str) -> tuple[dt.datetime, dt.datetime]:
    """[start, end) of a `YYYY-MM` month; 400 for anything else."""
    match = PERIOD_RE.match(period) if isinstance(period, str) else None
    if match is None:
        raise BadRequest(f"Invalid period {str(period)[:16]!r}: YYYY-MM expected.")
    start = dt.datetime(int(match[1]), int(match[2]), 1)
    return start, next_month(start)
