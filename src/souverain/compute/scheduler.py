"""Placement and claims: which host takes a server, and its share taken in one statement.

`Scheduler.select_and_claim` filters the cloud's hosts that are up and whose
nova-compute is enabled (capacity from each host's report and the allocation ratios,
availability zone, aggregate extra specs, image properties, server group affinity),
orders the rest by the weigher (spread by default, pack as a setting; soft group
policies weigh first), and claims on the best that still fits. A claim is an UPDATE
that sets the server's host only if the sums of what the servers already on that
host hold, plus this one, stay within the host's capacity (and its group's hard
policy still holds). On PostgreSQL the chosen host's `compute_hosts` row (and the
server group's row) is locked FOR UPDATE first, so concurrent claims from several API
nodes are serialised per host; SQLite serialises writers itself. A claim that lost
its race moves on to the next candidate.

Nothing here touches a guest or decides where a build runs: it writes `host`.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from sqlalchemy import ColumnElement, and_, func, or_, select, update
from sqlalchemy.orm import Session

from souverain.compute.models import (
    Aggregate,
    AggregateHost,
    AggregateMetadata,
    ComputeHost,
    Server,
    ServerGroup,
    ServerGroupMember,
    ServiceState,
)
from souverain.config import ComputeSettings

COMPUTE = "nova-compute"  # the service whose os-services state lets a host take builds


@dataclass(frozen=True)
class Capacity:
    """What one host offers, after allocation ratios and reserves."""

    host: str
    vcpus: int
    memory_mib: int
    disk_gib: int
    physical_vcpus: int
    physical_memory_mib: int
    physical_disk_gib: int


@dataclass(frozen=True)
class Usage:
    vcpus: int
    memory_mib: int
    disk_gib: int
    servers: int


def _host_memory_mib() -> int:
    with open("/proc/meminfo", encoding="ascii") as f:
        for line in f:
            if line.startswith("MemTotal:"):
                return int(line.split()[1]) // 1024
    return 0


def host_capacity(host: str, root: Path, settings: ComputeSettings) -> Capacity:
    vcpus = settings.host_vcpus or os.cpu_count() or 1
    memory = settings.host_memory_mib or _host_memory_mib()
    if settings.host_disk_gib:
        disk = settings.host_disk_gib
    else:
        probe = root if root.exists() else root.parent
        disk = shutil.disk_usage(probe).total // 1024**3
    return Capacity(
        host=host,
        vcpus=int(vcpus * settings.cpu_allocation_ratio),
        memory_mib=int(
            max(0, memory - settings.reserved_host_memory_mib) * settings.ram_allocation_ratio
        ),
        disk_gib=int(
            max(0, disk - settings.reserved_host_disk_gib) * settings.disk_allocation_ratio
        ),
        physical_vcpus=vcpus,
        physical_memory_mib=memory,
        physical_disk_gib=disk,
    )


def _on_host(host: str):  # type: ignore[no-untyped-def]
    return and_(Server.host == host, Server.deleted.is_(False))


def usage(session: Session, host: str) -> Usage:
    row = session.execute(
        select(
            func.coalesce(func.sum(Server.vcpus), 0),
            func.coalesce(func.sum(Server.memory_mib), 0),
            func.coalesce(func.sum(Server.disk_gib), 0),
            func.count(Server.id),
        ).where(_on_host(host))
    ).one()
    return Usage(int(row[0]), int(row[1]), int(row[2]), int(row[3]))


def claim(
    session: Session,
    capacity: Capacity,
    server_id: str,
    vcpus: int,
    memory_mib: int,
    disk_gib: int,
    extra: Sequence[ColumnElement[bool]] = (),
) -> bool:
    """Place the server on the host if it fits (and `extra` holds); True when placed.

    The server's own current share (a resize) is left out of the sums, so a
    claim replaces what it held rather than adding to it.
    """
    others = select(Server.vcpus, Server.memory_mib, Server.disk_gib).where(
        _on_host(capacity.host), Server.id != server_id
    )
    used = others.subquery()
    fits = (
        select(
            func.coalesce(func.sum(used.c.vcpus), 0) + vcpus <= capacity.vcpus,
        ).scalar_subquery(),
        select(
            func.coalesce(func.sum(used.c.memory_mib), 0) + memory_mib <= capacity.memory_mib,
        ).scalar_subquery(),
        select(
            func.coalesce(func.sum(used.c.disk_gib), 0) + disk_gib <= capacity.disk_gib,
        ).scalar_subquery(),
    )
    result = session.execute(
        update(Server)
        .where(Server.id == server_id, Server.deleted.is_(False), *fits, *extra)
        .values(host=capacity.host, vcpus=vcpus, memory_mib=memory_mib, disk_gib=disk_gib)
        .execution_options(synchronize_session=False)
    )
    return bool(result.rowcount)  # type: ignore[attr-defined]


def release(session: Session, server_id: str) -> None:
    """The server holds nothing of any host any more."""
    session.execute(
        update(Server)
        .where(Server.id == server_id)
        .values(host=None)
        .execution_options(synchronize_session=False)
    )


# ---------------------------------------------------------------------- placement

# image properties the hosts of this cloud satisfy (QEMU on x86-64, full virtualisation)
_IMAGE_PROPERTY_VALUES: dict[str, frozenset[str]] = {
    "hw_architecture": frozenset({"x86_64", "i686"}),
    "architecture": frozenset({"x86_64", "i686"}),
    "img_hv_type": frozenset({"qemu", "kvm"}),
    "hypervisor_type": frozenset({"qemu", "kvm"}),
    "hw_vm_mode": frozenset({"hvm"}),
    "vm_mode": frozenset({"hvm"}),
}
AGGREGATE_SPEC = "aggregate_instance_extra_specs:"


@dataclass(frozen=True)
class PlacementRequest:
    """What a server asks of its host: its share, and the constraints a create named."""

    server_id: str
    vcpus: int
    memory_mib: int
    disk_gib: int
    zone: str | None = None  # None: any zone
    host: str | None = None  # an admin's forced host
    extra_specs: Mapping[str, str] = field(default_factory=dict)
    image_properties: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class HostMembership:
    """A host's aggregates as the filters read them."""

    zone: str | None = None  # None: the default zone
    metadata: Mapping[str, frozenset[str]] = field(default_factory=dict)


@dataclass(frozen=True)
class _Group:
    id: str
    policy: str
    limit: int  # anti-affinity's max_server_per_host
    on_host: Mapping[str, int]  # host -> the group's other live members there


@dataclass(frozen=True)
class _Candidate:
    host: ComputeHost
    used: Usage
    members: int  # of the server's group already there


def memberships(s: Session) -> dict[str, HostMembership]:
    """Host name -> its aggregates' zone and metadata (values over all its aggregates)."""
    zones: dict[str, str | None] = {}
    meta: dict[str, dict[str, set[str]]] = {}
    rows = s.execute(
        select(AggregateHost.host, Aggregate.availability_zone, Aggregate.id).join(
            Aggregate, Aggregate.id == AggregateHost.aggregate_id
        )
    ).all()
    by_aggregate: dict[int, list[str]] = {}
    for host, zone, aggregate_id in rows:
        zones[host] = zones.get(host) or zone
        by_aggregate.setdefault(aggregate_id, []).append(host)
    if by_aggregate:
        for aggregate_id, key, value in s.execute(
            select(AggregateMetadata.aggregate_id, AggregateMetadata.key, AggregateMetadata.value)
        ).all():
            for host in by_aggregate.get(aggregate_id, ()):
                values = meta.setdefault(host, {}).setdefault(key, set())
                values.update(v.strip() for v in str(value).split(","))
    return {
        host: HostMembership(
            zones.get(host), {k: frozenset(v) for k, v in meta.get(host, {}).items()}
        )
        for host in zones
    }


def usages(s: Session) -> dict[str, Usage]:
    """Every host's sums in one query."""
    rows = s.execute(
        select(
            Server.host,
            func.coalesce(func.sum(Server.vcpus), 0),
            func.coalesce(func.sum(Server.memory_mib), 0),
            func.coalesce(func.sum(Server.disk_gib), 0),
            func.count(Server.id),
        )
        .where(Server.host.is_not(None), Server.deleted.is_(False))
        .group_by(Server.host)
    ).all()
    return {str(h): Usage(int(c), int(m), int(d), int(n)) for h, c, m, d, n in rows}


def _group_of(s: Session, server_id: str) -> _Group | None:
    member = s.get(ServerGroupMember, server_id)
    group = s.get(ServerGroup, member.group_id) if member is not None else None
    if group is None:
        return None
    on_host: dict[str, int] = {}
    for (host,) in s.execute(
        select(Server.host)
        .join(ServerGroupMember, ServerGroupMember.server_id == Server.id)
        .where(
            ServerGroupMember.group_id == group.id,
            Server.id != server_id,
            Server.deleted.is_(False),
            Server.host.is_not(None),
        )
    ).all():
        on_host[str(host)] = on_host.get(str(host), 0) + 1
    limit = int((group.rules or {}).get("max_server_per_host", 1))
    return _Group(group.id, group.policy, limit, on_host)


def _locked_group_of(s: Session, server_id: str) -> _Group | None:
    """The server's group, its row locked first (before any host's, always in that
    order): members of one group are placed one at a time, each seeing where the others
    went."""
    member = s.get(ServerGroupMember, server_id)
    if member is None:
        return None
    s.execute(select(ServerGroup.id).where(ServerGroup.id == member.group_id).with_for_update())
    return _group_of(s, server_id)


def _group_holds(group: _Group | None, server_id: str, host: str) -> list[ColumnElement[bool]]:
    """A hard policy as conditions of the claim's UPDATE, so a racing member cannot
    break it between the filter and the claim."""
    if group is None or group.policy not in ("affinity", "anti-affinity"):
        return []
    others = (
        select(func.count())
        .select_from(ServerGroupMember)
        .join(Server, Server.id == ServerGroupMember.server_id)
        .where(
            ServerGroupMember.group_id == group.id,
            Server.id != server_id,
            Server.deleted.is_(False),
        )
    )
    if group.policy == "anti-affinity":
        return [others.where(Server.host == host).scalar_subquery() < group.limit]
    return [others.where(Server.host.is_not(None), Server.host != host).scalar_subquery() == 0]


def _specs_match(specs: Mapping[str, str], membership: HostMembership) -> bool:
    """AggregateInstanceExtraSpecsFilter: each scoped spec is a value of that key in one
    of the host's aggregates."""
    for key, wanted in specs.items():
        if not key.startswith(AGGREGATE_SPEC):
            continue
        values = membership.metadata.get(key[len(AGGREGATE_SPEC) :], frozenset())
        if str(wanted).strip() not in values:
            return False
    return True


def _image_matches(properties: Mapping[str, str]) -> bool:
    for key, allowed in _IMAGE_PROPERTY_VALUES.items():
        value = properties.get(key)
        if value is not None and str(value).lower() not in allowed:
            return False
    return True


def _fits(host: ComputeHost, used: Usage, req: PlacementRequest) -> bool:
    return (
        used.vcpus + req.vcpus <= host.vcpus
        and used.memory_mib + req.memory_mib <= host.memory_mib
        and used.disk_gib + req.disk_gib <= host.disk_gib
    )


def _group_allows(group: _Group | None, host: str) -> bool:
    if group is None:
        return True
    if group.policy == "anti-affinity":
        return group.on_host.get(host, 0) < group.limit
    if group.policy == "affinity":
        return not group.on_host or set(group.on_host) == {host}
    return True


def _minmax(values: list[float]) -> list[float]:
    low, high = min(values), max(values)
    return [0.0 if high == low else (v - low) / (high - low) for v in values]


class Scheduler:
    """Filters, weighers and the claim over the cloud's compute hosts."""

    def __init__(self, settings: ComputeSettings, is_up: Callable[[ComputeHost], bool]) -> None:
        self.settings = settings
        self.is_up = is_up

    def zone_of(self, membership: HostMembership | None) -> str:
        zone = membership.zone if membership is not None else None
        return zone or self.settings.availability_zone

    def zones(self, s: Session) -> set[str]:
        """The zones a create may name: the default one and every aggregate's."""
        named = s.scalars(select(Aggregate.availability_zone).distinct()).all()
        return {self.settings.availability_zone, *(z for z in named if z)}

    def zone_of_host(self, s: Session, host: str) -> str:
        return self.zone_of(memberships(s).get(host))

    def select_and_claim(self, s: Session, req: PlacementRequest) -> str | None:
        """The host that took the server, or None when none can (Nova's NoValidHost)."""
        group = _locked_group_of(s, req.server_id)
        for candidate in self.candidates(s, req, group):
            if self._claim_on(s, candidate.host.name, req, group):
                return candidate.host.name
        return None

    def claim_in_place(self, s: Session, req: PlacementRequest) -> bool:
        """Claim on the host the request names (a resize's own host), under its lock."""
        assert req.host is not None
        return self._claim_on(s, req.host, req, _locked_group_of(s, req.server_id))

    def candidates(
        self, s: Session, req: PlacementRequest, group: _Group | None
    ) -> list[_Candidate]:
        """The hosts that pass every filter, best first."""
        disabled = {
            host
            for (host,) in s.execute(
                select(ServiceState.host).where(
                    ServiceState.binary == COMPUTE,
                    or_(ServiceState.disabled.is_(True), ServiceState.forced_down.is_(True)),
                )
            ).all()
        }
        member_of, used = memberships(s), usages(s)
        passed = []
        for host in s.scalars(select(ComputeHost).order_by(ComputeHost.name)):
            load = used.get(host.name, Usage(0, 0, 0, 0))
            if (
                "compute" in host.roles.split(",")
                and host.name not in disabled
                and self.is_up(host)
                and req.host in (None, host.name)
                and req.zone in (None, self.zone_of(member_of.get(host.name)))
                and _specs_match(req.extra_specs, member_of.get(host.name, HostMembership()))
                and _image_matches(req.image_properties)
                and _fits(host, load, req)
                and _group_allows(group, host.name)
            ):
                members = group.on_host.get(host.name, 0) if group else 0
                passed.append(_Candidate(host, load, members))
        return self.weigh(passed, group)

    def weigh(self, passed: list[_Candidate], group: _Group | None) -> list[_Candidate]:
        """Spread (most free RAM and vCPU first) or pack (least first); a soft group
        policy weighs before both."""
        if not passed:
            return []
        ram = _minmax([float(c.host.memory_mib - c.used.memory_mib) for c in passed])
        cpu = _minmax([float(c.host.vcpus - c.used.vcpus) for c in passed])
        sign = -1.0 if self.settings.scheduler_weigher == "pack" else 1.0
        soft = {"soft-affinity": 1.0, "soft-anti-affinity": -1.0}.get(
            group.policy if group else "", 0.0
        )
        weights = {
            c.host.name: (soft * c.members, sign * (ram[i] + cpu[i])) for i, c in enumerate(passed)
        }
        return sorted(passed, key=lambda c: (weights[c.host.name], c.host.name), reverse=True)

    def _claim_on(self, s: Session, name: str, req: PlacementRequest, group: _Group | None) -> bool:
        """Lock the host's row, then the one-UPDATE claim. On PostgreSQL in a savepoint: a
        claim that does not fit lets go of the host's lock at once, so a claimer holds one
        host at a time and two claimers trying hosts in opposite orders cannot deadlock."""
        if s.get_bind().dialect.name != "postgresql":  # SQLite: one writer at a time
            return self._lock_and_claim(s, name, req, group)
        attempt = s.begin_nested()
        try:
            placed = self._lock_and_claim(s, name, req, group)
        except BaseException:
            attempt.rollback()
            raise
        if placed:
            attempt.commit()
        else:
            attempt.rollback()
        return placed

    @staticmethod
    def _lock_and_claim(s: Session, name: str, req: PlacementRequest, group: _Group | None) -> bool:
        host = s.execute(
            select(ComputeHost)
            .where(ComputeHost.name == name)
            .with_for_update()
            .execution_options(populate_existing=True)
        ).scalar_one_or_none()
        if host is None:
            return False
        return claim(
            s,
            capacity_from_row(host),
            req.server_id,
            req.vcpus,
            req.memory_mib,
            req.disk_gib,
            _group_holds(group, req.server_id, name),
        )


def capacity_from_row(row: ComputeHost) -> Capacity:
    return Capacity(
        host=row.name,
        vcpus=row.vcpus,
        memory_mib=row.memory_mib,
        disk_gib=row.disk_gib,
        physical_vcpus=row.physical_vcpus,
        physical_memory_mib=row.physical_memory_mib,
        physical_disk_gib=row.physical_disk_gib,
    )
