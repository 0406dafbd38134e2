"""The meter every service records its billable changes on (the billing service's).

A service holds a `Meter` and calls it at the moment a billable state changes, in
the same request or task that made the change, after the change is committed:

- `gauge(project_id, metric, resource_id, value, flavor="")`: from now on this
  resource's metric is `value` (an instance: 1 while running with `flavor`, 0 when
  stopped or gone; a volume: its size in GiB; a project's stored objects: GiB).
- `counter(project_id, metric, resource_id, value)`: `value` more units now (GiB
  sent out of the cloud).
- `record(readings)`: many of the above in one commit, each at its own time; for
  meters a hot path feeds in memory and flushes in the background (object storage).

`NULL_METER` records nothing: the default until the server wires the billing one.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import Literal, Protocol

GIB = Decimal(1024**3)


@dataclass(frozen=True)
class Reading:
    """One gauge or counter event taken at `at` (UTC)."""

    kind: Literal["gauge", "counter"]
    project_id: str
    metric: str
    resource_id: str
    value: Decimal | int
    at: dt.datetime
    flavor: str = ""


class Meter(Protocol):
    def gauge(
        self,
        project_id: str,
        metric: str,
        resource_id: str,
        value: Decimal | int,
        flavor: str = "",
    ) -> None: ...

    def counter(
        self, project_id: str, metric: str, resource_id: str, value: Decimal | int
    ) -> None: ...

    def record(self, readings: Sequence[Reading]) -> None: ...


class NullMeter:
    def gauge(
        self,
        project_id: str,
        metric: str,
        resource_id: str,
        value: Decimal | int,
        flavor: str = "",
    ) -> None:
        return None

    def counter(self, project_id: str, metric: str, resource_id: str, value: Decimal | int) -> None:
        return None

    def record(self, readings: Sequence[Reading]) -> None:
        return None


NULL_METER: Meter = NullMeter()


def gib(size_bytes: int) -> Decimal:
    """Bytes as GiB, exact (a Decimal fraction), for storage gauges and egress counters."""
    return Decimal(size_bytes) / GIB
