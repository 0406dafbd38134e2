"""Host capacity and claims: does a server fit, and take its share in one statement.

A claim is an UPDATE that sets the server's host only if the sums of what the
servers already on that host hold, plus this one, stay within the host's
capacity times the allocation ratios. Two concurrent claims must not both see
the same free room: SQLite serialises writers; PostgreSQL at READ COMMITTED
does not, so a claim first locks the host (`lock_host`: its `compute_hosts` row
FOR UPDATE, or a transaction advisory lock on its name while it has no row)
until its transaction ends. 20 concurrent creates leave the accounting exact.
"""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy import and_, func, select, update
from sqlalchemy.orm import Session

from souverain.compute.models import ComputeHost, Server
from souverain.config import ComputeSettings


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


def lock_host(session: Session, host: str) -> None:
    """Hold the host for this transaction: claims on it wait for each other (PostgreSQL).

    A no-op on SQLite, whose single writer already serialises claims."""
    if session.get_bind().dialect.name != "postgresql":
        return
    locked = session.execute(
        select(ComputeHost.name).where(ComputeHost.name == host).with_for_update()
    ).first()
    if locked is None:  # not registered (yet): the same exclusion, keyed on the name
        session.execute(select(func.pg_advisory_xact_lock(func.hashtext(f"compute-host:{host}"))))


def claim(
    session: Session,
    capacity: Capacity,
    server_id: str,
    vcpus: int,
    memory_mib: int,
    disk_gib: int,
) -> bool:
    """Place the server on the host if it fits; True when placed.

    The server's own current share (a resize) is left out of the sums, so a
    claim replaces what it held rather than adding to it.
    """
    lock_host(session, capacity.host)
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
        .where(Server.id == server_id, Server.deleted.is_(False), *fits)
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
