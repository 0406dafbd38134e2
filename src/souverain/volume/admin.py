"""What an admin asks of the volume service as a whole: its one host and its one pool,
with what they hold. No HTTP.

The service is one backend (`souverain@local`, a directory of qcow2 files) with one pool
(`qcow2`), so Cinder's host and pool listings each have one entry; sizes come from the
database (allocated) and the filesystem under the backend's root (total and free).
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from sqlalchemy import func, select

from souverain.common.context import RequestContext
from souverain.common.errors import NotFound
from souverain.volume import models as m
from souverain.volume.rules import HOST, Shared, require_admin

BACKEND_HOST = HOST.split("#", 1)[0]  # host@backend, without the pool
SCHEDULER_HOST = HOST.split("@", 1)[0]
POOL = HOST
POOL_NAME = HOST.rsplit("#", 1)[-1]
GIB = 1024**3
# what the backend reports of itself, in the pools' capabilities and the backend's own
BACKEND_NAME = "local"
VENDOR = "Open Source"  # qcow2 files by qemu-img, as Cinder's NFS driver
DRIVER_VERSION = "1.0"
STORAGE_PROTOCOL = "file"


@dataclass(frozen=True)
class Usage:
    """What one project (or all, `(total)`) holds on the host."""

    project: str
    volume_count: int
    volume_gb: int
    snapshot_count: int
    snapshot_gb: int


@dataclass(frozen=True)
class Pool:
    name: str
    total_gb: float
    free_gb: float
    allocated_gb: int
    updated: dt.datetime


class Admin:
    def __init__(self, shared: Shared) -> None:
        self.shared = shared

    def hosts(self, ctx: RequestContext) -> list[tuple[str, str]]:
        """(host, Cinder service) of each part: one process schedules and serves volumes."""
        require_admin(ctx)
        return [(SCHEDULER_HOST, "cinder-scheduler"), (BACKEND_HOST, "cinder-volume")]

    def host_usage(self, ctx: RequestContext, host: str) -> list[Usage]:
        """The totals first, then one entry per project with volumes on the host."""
        require_admin(ctx)
        if host not in (BACKEND_HOST, POOL):
            raise NotFound(f"Host {host[:255]} could not be found.")
        with self.shared.db.session() as s:
            vols = s.execute(
                select(
                    m.Volume.project_id, func.count(m.Volume.id), func.sum(m.Volume.size)
                ).group_by(m.Volume.project_id)
            ).all()
            snaps = {
                project: (count, size)
                for project, count, size in s.execute(
                    select(
                        m.Snapshot.project_id, func.count(m.Snapshot.id), func.sum(m.Snapshot.size)
                    ).group_by(m.Snapshot.project_id)
                )
            }
        per_project = [
            Usage(p, count, size or 0, snaps.get(p, (0, 0))[0], snaps.get(p, (0, 0))[1] or 0)
            for p, count, size in vols
        ]
        total = Usage(
            "(total)",
            sum(u.volume_count for u in per_project),
            sum(u.volume_gb for u in per_project),
            sum(count for count, _ in snaps.values()),
            sum(size or 0 for _, size in snaps.values()),
        )
        return [total, *per_project]

    def backend_of(self, ctx: RequestContext, host: str) -> str:
        """The backend `host` names (host@backend, or one of its pools); 404 otherwise."""
        require_admin(ctx)
        if host not in (BACKEND_HOST, POOL):
            raise NotFound(f"Service {host[:255]} could not be found.")
        return BACKEND_HOST

    def pools(self, ctx: RequestContext) -> list[Pool]:
        require_admin(ctx)
        total, free = self.shared.backend.capacity()
        with self.shared.db.session() as s:
            allocated = s.scalar(select(func.coalesce(func.sum(m.Volume.size), 0))) or 0
        return [
            Pool(
                name=POOL,
                total_gb=round(total / GIB, 2),
                free_gb=round(free / GIB, 2),
                allocated_gb=int(allocated),
                updated=self.shared.clock.now(),
            )
        ]
