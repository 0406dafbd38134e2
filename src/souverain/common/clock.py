"""The one clock. Tests replace `Clock.now` with a fixed or stepping function."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable


def _system_now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


class Clock:
    """Aware UTC time; injectable so that expiry and lockout rules are testable."""

    def __init__(self, now: Callable[[], dt.datetime] = _system_now) -> None:
        self._now = now

    def now(self) -> dt.datetime:
        return self._now()

    def timestamp(self) -> float:
        return self._now().timestamp()


def isotime(value: dt.datetime | None, subsecond: bool = True) -> str | None:
    """Keystone's wire form: `2026-01-02T03:04:05.000000Z`."""
    if value is None:
        return None
    if value.tzinfo is None:
        value = value.replace(tzinfo=dt.UTC)
    value = value.astimezone(dt.UTC).replace(tzinfo=None)
    return value.isoformat(timespec="microseconds" if subsecond else "seconds") + "Z"


def parse_isotime(text: str) -> dt.datetime:
    """Parse an ISO 8601 time from a client; naive times are UTC."""
    value = dt.datetime.fromisoformat(text.replace("Z", "+00:00"))
    if value.tzinfo is None:
        value = value.replace(tzinfo=dt.UTC)
    return value.astimezone(dt.UTC)


def naive_utc(value: dt.datetime) -> dt.datetime:
    """UTC without a zone, as tables that compare times in SQL store them."""
    if value.tzinfo is None:
        return value
    return value.astimezone(dt.UTC).replace(tzinfo=None)


def as_utc(value: dt.datetime) -> dt.datetime:
    """SQLite hands back naive datetimes; everything we store is UTC."""
    return value.replace(tzinfo=dt.UTC) if value.tzinfo is None else value
