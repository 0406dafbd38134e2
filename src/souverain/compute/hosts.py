"""The cloud's hypervisor hosts (`compute_hosts`): what each last reported, and whether
it is up. The all-in-one registers its own machine at start; host agents report
through the internal API, which calls `report`.

It decides nothing about placement (that is `scheduler.py`) and touches no guest.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from souverain.common.clock import Clock
from souverain.compute.models import ComputeHost
from souverain.compute.scheduler import Capacity
from souverain.config import ComputeSettings
from souverain.db.engine import Database


def _naive(now: dt.datetime) -> dt.datetime:
    return now.astimezone(dt.UTC).replace(tzinfo=None) if now.tzinfo else now


def upsert_report(
    s: Session,
    capacity: Capacity,
    address: str | None,
    roles: Sequence[str],
    now: dt.datetime,
) -> ComputeHost:
    """Insert the host or take its new capacities, and mark it seen now."""
    row = s.get(ComputeHost, capacity.host)
    if row is None:
        row = ComputeHost(name=capacity.host, created_at=now, token_hash=None)
        s.add(row)
    row.address = address if address is not None else row.address
    row.roles = ",".join(roles) or "compute"
    row.vcpus, row.memory_mib, row.disk_gib = (
        capacity.vcpus,
        capacity.memory_mib,
        capacity.disk_gib,
    )
    row.physical_vcpus = capacity.physical_vcpus
    row.physical_memory_mib = capacity.physical_memory_mib
    row.physical_disk_gib = capacity.physical_disk_gib
    row.hypervisor_type = row.hypervisor_type or "QEMU"
    row.hypervisor_version = row.hypervisor_version or 0
    row.last_seen_at = now
    s.flush()
    return row


class Hosts:
    """The registry over `compute_hosts`; `local` is this process's own host, if any."""

    def __init__(self, db: Database, clock: Clock, settings: ComputeSettings) -> None:
        self.db = db
        self.clock = clock
        self.settings = settings
        self.local: str | None = None

    def now(self) -> dt.datetime:
        return _naive(self.clock.now())

    def register_local(self, capacity: Capacity) -> ComputeHost:
        """The all-in-one's own machine: registered (no agent, no token) and up."""
        self.local = capacity.host
        with self.db.session() as s:
            return upsert_report(s, capacity, None, ("compute",), self.now())

    def report(
        self,
        name: str,
        capacity: Capacity,
        address: str | None,
        roles: Sequence[str],
        now: dt.datetime,
    ) -> ComputeHost:
        """An agent's report: its capacities and address, and that it is alive now."""
        if capacity.host != name:
            capacity = Capacity(
                name,
                capacity.vcpus,
                capacity.memory_mib,
                capacity.disk_gib,
                capacity.physical_vcpus,
                capacity.physical_memory_mib,
                capacity.physical_disk_gib,
            )
        with self.db.session() as s:
            return upsert_report(s, capacity, address, roles, _naive(now))

    def touch(self, name: str, now: dt.datetime | None = None) -> None:
        """The host is alive (the all-in-one's loop says so for its own machine)."""
        with self.db.session() as s:
            s.execute(
                update(ComputeHost)
                .where(ComputeHost.name == name)
                .values(last_seen_at=_naive(now) if now else self.now())
            )

    def list(self) -> list[ComputeHost]:
        with self.db.session() as s:
            return list(s.scalars(select(ComputeHost).order_by(ComputeHost.name)))

    def get(self, name: str) -> ComputeHost | None:
        with self.db.session() as s:
            return s.get(ComputeHost, name) if len(name) <= 255 else None

    def is_up(self, row: ComputeHost, now: dt.datetime | None = None) -> bool:
        """Seen within `compute.service_down_time` seconds (Nova's rule). This process's
        own host is up while the process runs: the one asking is its compute."""
        if row.name == self.local:
            return True
        if row.last_seen_at is None:
            return False
        at = _naive(now) if now is not None else self.now()
        return (at - row.last_seen_at).total_seconds() <= self.settings.service_down_time
