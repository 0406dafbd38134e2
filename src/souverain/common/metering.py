"""The meter every service records its billable changes on (the billing service's).

A service holds a `Meter` and calls it at the moment a billable state changes, in
the same request or task that made the change, after the change is committed:

- `gauge(project_id, metric, resource_id, value, flavor="")`: from now on this
  resource's metric is `value` (an instance: 1 while running with `flavor`, 0 when
  stopped or gone; a volume: its size in GiB; a project's stored objects: GiB).
- `counter(project_id, metric, resource_id, value)`: `value` more units now (GiB
  sent out of the cloud).

`NULL_METER` records nothing: the default until the server wires the billing one.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Protocol

GIB = Decimal(1024**3)


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


NULL_METER: Meter = NullMeter()


def gib(size_bytes: int) -> Decimal:
    """Bytes as GiB, exact (a Decimal fraction), for storage gauges and egress counters."""
    return Decimal(size_bytes) / GIB
