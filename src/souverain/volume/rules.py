"""What every part of the volume service shares: limits, records, lookups and errors. No HTTP.

The parts (volumes, snapshots, attachments, types, quotas) are plain classes
over one `Shared`; the records they return are the domain objects `views`
renders in Cinder's wire format.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import re
from collections.abc import Callable
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Generic, NamedTuple, Protocol, TypeVar

from sqlalchemy import Select, select
from sqlalchemy.orm import Session

from souverain.common.ceph import CephAccess, RbdRef
from souverain.common.clock import Clock
from souverain.common.context import RequestContext
from souverain.common.errors import ApiError, Forbidden, NotFound
from souverain.common.keys import ProjectKeys
from souverain.common.metering import NULL_METER, Meter
from souverain.common.pagination import sort_views
from souverain.common.tenancy import may_act_on
from souverain.config import VolumeSettings
from souverain.db.engine import Database
from souverain.image.service import BootImage
from souverain.volume import models as m
from souverain.volume.backend import BackendError, VolumeStore
from souverain.volume.jobs import Jobs

AVAILABILITY_ZONE = "nova"
HOST = "souverain@local#qcow2"
SORT_KEYS = ("id", "name", "status", "size", "created_at", "updated_at", "bootable")
MAX_METADATA = 128
MAX_FIELD = 255
MAX_INT = 2**31 - 1
UUID_RE = re.compile(
    r"^[0-9a-fA-F]{8}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{12}$"
)
# Server ids per IN (...) of a batch lookup: a page of servers (at most 1,000) is one query,
# and every database we run on takes that many bound parameters.
SERVERS_PER_QUERY = 1000

# grow a volume inside the guest it is attached to: (server_id, volume_id, new size in GiB)
AttachedResizer = Callable[[str, str, int], None]
# a server id -> its disk writes held (guest paused, I/O flushed) while the block runs
WritesHeld = Callable[[str], AbstractContextManager[None]]

R = TypeVar("R")


class QuotaExceeded(ApiError):
    """Cinder answers quota errors with 413 and the exception's name in the message."""

    status = 413
    title = "Request Entity Too Large"


class NotImplementedFault(ApiError):
    """What Cinder answers (501) for an operation a deployment's backend does not do."""

    status = 501
    title = "Not Implemented"


MANAGE_REFUSED = (
    "Managing or unmanaging existing {kind} is not supported: every volume here is a file "
    "this service made and owns, so there is nothing outside it to adopt or to let go of. "
    "Create a volume (from an image, a snapshot or another volume) instead, or delete it."
)


class VolumeImages(Protocol):
    """The calls the volume service makes to the image service."""

    def image_for_boot(self, ctx: RequestContext, image_id: str) -> BootImage: ...

    def create_snapshot_record(
        self,
        ctx: RequestContext,
        name: str,
        properties: dict[str, str],
        min_disk: int = 0,
        min_ram: int = 0,
        disk_format: str = "qcow2",
        container_format: str = "bare",
    ) -> dict[str, Any]: ...

    def import_file(self, image_id: str, source: Path) -> None: ...

    def fail_image(self, image_id: str, reason: str) -> None: ...


@dataclass
class Shared:
    """The database, backend, clock and settings every part uses; the meter, the
    attached resizer and the write holder are set after construction (by the server and
    the compute service)."""

    db: Database
    backend: VolumeStore
    clock: Clock
    settings: VolumeSettings
    meter: Meter = NULL_METER
    attached_resizer: AttachedResizer | None = None
    writes_held: WritesHeld | None = None
    jobs: Jobs = field(default_factory=Jobs)  # backups and restores, off the request
    # the key manager's keys for encrypted volumes (None: no key manager, no encryption)
    project_keys: ProjectKeys | None = None
    encryption_mandatory: bool = False  # `[encryption] mandatory`: no new plain volume


# ---------------------------------------------------------------------- records


@dataclass(frozen=True)
class VolumeRecord:
    """A volume as read, with the name of its type (the view shows both)."""

    row: m.Volume
    type_name: str


@dataclass(frozen=True)
class VolumeHandle:
    """What the compute service needs to attach or boot from a volume."""

    id: str
    path: Path | None  # a file volume's qcow2; None on RBD
    format: str
    size_gib: int
    readonly: bool
    bootable: bool
    rbd: RbdRef | None = None  # an RBD volume's image, opened by QEMU's rbd driver
    ceph: CephAccess | None = None  # how QEMU reaches the cluster holding `rbd`
    # an encrypted volume's LUKS passphrase, for QEMU's secret object; never shown
    passphrase: str | None = field(default=None, repr=False)


@dataclass(frozen=True)
class ServerVolume:
    """A volume a server holds (or is attaching or detaching), as a server listing shows it."""

    volume_id: str
    status: str
    delete_on_termination: bool


@dataclass(frozen=True)
class VolumeSummary:
    """What `volumes/summary` tells: how many volumes, their GiB, each metadata key's
    distinct values."""

    count: int
    size: int
    metadata: dict[str, list[str]]


@dataclass(frozen=True)
class VolumeQuery:
    filters: dict[str, Any]
    all_tenants: bool = False
    sort: tuple[tuple[str, str], ...] = (("created_at", "desc"),)
    limit: int | None = None
    marker: str | None = None
    offset: int = 0


@dataclass(frozen=True)
class QuotaSet:
    """A project's limits, and what it uses when asked (`used` None otherwise)."""

    project_id: str
    limits: dict[str, int]
    used: dict[str, int] | None
    default_type: str
    per_volume_gigabytes: int


@dataclass(frozen=True)
class UserMessage:
    """Why a volume or snapshot failed, as Cinder's user messages tell it."""

    kind: str  # VOLUME or SNAPSHOT
    resource_id: str
    message: str
    created_at: dt.datetime


@dataclass(frozen=True)
class ImageUpload:
    """A volume uploaded to a new image: what `os-volume_upload_image` answers."""

    volume_id: str
    updated_at: dt.datetime
    size: int
    type_name: str
    image_id: str
    image_name: str
    container_format: str
    disk_format: str


# ---------------------------------------------------------------------- lookups


def visible_volume(s: Session, ctx: RequestContext, volume_id: str) -> m.Volume:
    row = s.get(m.Volume, volume_id.lower()) if UUID_RE.match(volume_id) else None
    if row is None or not may_act_on(ctx, row.project_id):
        raise NotFound(f"Volume {volume_id} could not be found.")
    return row


def visible_snapshot(s: Session, ctx: RequestContext, snapshot_id: str) -> m.Snapshot:
    row = s.get(m.Snapshot, snapshot_id.lower()) if UUID_RE.match(snapshot_id) else None
    if row is None or not may_act_on(ctx, row.project_id):
        raise NotFound(f"Snapshot {snapshot_id} could not be found.")
    return row


def type_name(s: Session, type_id: str) -> str:
    row = s.get(m.VolumeType, type_id)
    return row.name if row is not None else ""


def require_admin(ctx: RequestContext) -> None:
    if not ctx.is_admin:
        raise Forbidden("Policy doesn't allow this operation: an admin role is required.")


def guest_writes_held(shared: Shared, server_id: str | None) -> AbstractContextManager[None]:
    """While copying a volume attached to `server_id`: the guest's writes held by the
    compute service, so the copy is crash-consistent. Nothing to hold when detached, nor
    without a compute service (no guest runs then)."""
    if server_id is None or shared.writes_held is None:
        return contextlib.nullcontext()
    return shared.writes_held(server_id)


def copy_failure(exc: BaseException) -> str:
    """Why a copy failed, for the user: the backend's words, not the compute service's
    (those may name the host's sockets)."""
    if isinstance(exc, BackendError | OSError):
        return reason(exc)
    return "the server's disk writes could not be held for the copy."


def reason(exc: BaseException) -> str:
    """Why a backend operation failed, in words fit for a user message."""
    if isinstance(exc, BackendError):
        return str(exc)
    if isinstance(exc, OSError):
        return exc.strerror or type(exc).__name__
    return str(exc)[:300] or type(exc).__name__


Owned = TypeVar("Owned", m.Snapshot, m.VolumeBackup)


def owned_listing(model: type[Owned], ctx: RequestContext, query: VolumeQuery) -> Select[Any]:
    """Snapshots or backups a listing may show: the caller's project's (every project's for
    an admin asking all_tenants), narrowed by name, status, volume and, for admins, project."""
    stmt = select(model)
    if not (ctx.is_admin and query.all_tenants):
        stmt = stmt.where(model.project_id == ctx.project_id)
    f = query.filters
    for key in ("name", "status", "volume_id"):
        if key in f:
            stmt = stmt.where(getattr(model, key) == f[key])
    if "project_id" in f and ctx.is_admin:
        stmt = stmt.where(model.project_id == f["project_id"])
    return stmt


class Page(NamedTuple, Generic[R]):
    """One page of a listing: its items, whether more follow, and how many match the
    filters in all (what `with_count` shows, whatever the limit and marker)."""

    items: list[R]
    more: bool
    total: int


def sorted_page(
    records: list[R], query: VolumeQuery, sort_fields: Callable[[R], dict[str, Any]]
) -> Page[R]:
    """One page of `records` in the query's order. `sort_fields` gives the values the sort
    keys name (ids, names, sizes, times)."""
    keyed = sort_views([{**sort_fields(r), "_record": r} for r in records], query.sort)
    start = 0
    if query.marker is not None:
        for index, item in enumerate(keyed):
            if item["id"] == query.marker:
                start = index + 1
                break
        else:
            raise NotFound(f"Marker {query.marker[:64]} could not be found.")
    start += query.offset
    end = len(keyed) if query.limit is None else start + query.limit
    return Page([item["_record"] for item in keyed[start:end]], end < len(keyed), len(keyed))
