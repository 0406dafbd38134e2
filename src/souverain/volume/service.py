"""Volume rules: types, volumes, snapshots, quotas, tenancy and the status machine. No HTTP.

Statuses are Cinder's. Every change of status is a compare-and-set UPDATE
(`_move`) naming the statuses it may start from, so two callers racing for
one volume cannot both win; the allowed moves are written as data below.
Long operations (create, copy, extend, upload) run synchronously on the
caller's worker thread between two such moves; a crash between them leaves a
transitional status that `set_up` resolves at the next start:
creating/downloading -> error (with a message), deleting -> deleted,
extending/uploading -> back to available or in-use. Attachment statuses
(attaching/detaching) belong to the compute service's reconcile.

Quotas (volumes, gigabytes = volumes + snapshots, snapshots) are checked and
the new row inserted in one transaction that first locks the project's
`volume_quotas` row (an INSERT .. ON CONFLICT DO NOTHING, then SELECT .. FOR
UPDATE): SQLite takes its single writer lock at that first write, PostgreSQL
locks the row, so concurrent creates in any number of processes serialise on
the project and cannot overshoot.

A failed operation leaves the resource in `error` with `error_message` set;
the API shows it through Cinder's user messages (`GET /messages`).
"""

from __future__ import annotations

import ast
import contextlib
import json
import logging
import re
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sqlalchemy import func, select, update
from sqlalchemy.orm import Session

from souverain.common.clock import Clock, as_utc
from souverain.common.context import RequestContext
from souverain.common.errors import ApiError, BadRequest, Conflict, Forbidden, NotFound
from souverain.common.metering import NULL_METER, Meter
from souverain.common.pagination import sort_views
from souverain.common.quota import effective_limits, lock_quota_row
from souverain.config import VolumeSettings
from souverain.db.engine import Database
from souverain.identity.service import IdentityService
from souverain.image.service import ImageService
from souverain.volume import models as m
from souverain.volume.backend import GIB, SOURCE_FORMATS, BackendError, VolumeBackend

log = logging.getLogger("souverain.volume")

AVAILABILITY_ZONE = "nova"
HOST = "souverain@local#qcow2"
VOLUME_STATUSES = (
    "creating",
    "available",
    "reserved",
    "attaching",
    "in-use",
    "detaching",
    "extending",
    "deleting",
    "error",
    "error_deleting",
    "error_extending",
    "downloading",
    "uploading",
)
SNAPSHOT_STATUSES = ("creating", "available", "deleting", "error", "error_deleting")
ATTACHED = ("reserved", "attaching", "in-use", "detaching")

# Each move: the statuses it may start from, and where it goes.
MOVES: dict[str, tuple[frozenset[str], str]] = {
    "created": (frozenset({"creating", "downloading"}), "available"),
    "create_failed": (frozenset({"creating", "downloading"}), "error"),
    "reserve": (frozenset({"available"}), "attaching"),
    "attached": (frozenset({"attaching", "reserved"}), "in-use"),
    "unreserve": (frozenset({"attaching", "reserved"}), "available"),
    "begin_detach": (frozenset({"in-use"}), "detaching"),
    "detached": (frozenset({"detaching"}), "available"),
    "roll_back_detach": (frozenset({"detaching"}), "in-use"),
    "extend": (frozenset({"available"}), "extending"),
    "extend_attached": (frozenset({"in-use"}), "extending"),
    "extended": (frozenset({"extending"}), "available"),
    "extended_attached": (frozenset({"extending"}), "in-use"),
    "upload": (frozenset({"available"}), "uploading"),
    "uploaded": (frozenset({"uploading"}), "available"),
    "delete": (frozenset({"available", "error", "error_extending", "error_deleting"}), "deleting"),
    "force_delete": (frozenset(VOLUME_STATUSES) - {"deleting"}, "deleting"),
}
DELETABLE = MOVES["delete"][0]

SORT_KEYS = ("id", "name", "status", "size", "created_at", "updated_at", "bootable")
MAX_METADATA = 128
MAX_FIELD = 255
MAX_INT = 2**31 - 1
UUID_RE = re.compile(
    r"^[0-9a-fA-F]{8}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{12}$"
)


class QuotaExceeded(ApiError):
    """Cinder answers quota errors with 413 and the exception's name in the message."""

    status = 413
    title = "Request Entity Too Large"


@dataclass(frozen=True)
class VolumeHandle:
    """What the compute service needs to attach or boot from a volume."""

    id: str
    path: Path
    format: str
    size_gib: int
    readonly: bool
    bootable: bool


@dataclass(frozen=True)
class ServerVolume:
    """A volume a server holds (or is attaching or detaching), as a server listing shows it."""

    volume_id: str
    status: str
    delete_on_termination: bool


# Server ids per IN (...) of a batch lookup: a page of servers (at most 1,000) is one query,
# and every database we run on takes that many bound parameters.
SERVERS_PER_QUERY = 1000


@dataclass(frozen=True)
class SourcePlan:
    """Where a new volume's data comes from, already checked, and its size."""

    size: int
    bootable: bool = False
    source: Path | None = None
    source_format: str = "qcow2"
    shared: bool = False
    image_id: str | None = None
    image_metadata: dict[str, str] | None = None
    snapshot_id: str | None = None
    source_volid: str | None = None


@dataclass(frozen=True)
class VolumeQuery:
    filters: dict[str, Any]
    all_tenants: bool = False
    sort: tuple[tuple[str, str], ...] = (("created_at", "desc"),)
    limit: int | None = None
    marker: str | None = None


# ---------------------------------------------------------------------- input checks


def _text(name: str, value: Any) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str) or len(value) > MAX_FIELD:
        raise BadRequest(
            f"Invalid input for field/attribute {name}: a string of at most {MAX_FIELD} "
            "characters is expected."
        )
    return value


def _size(name: str, value: Any, maximum: int) -> int:
    number: int | None = None
    if isinstance(value, int) and not isinstance(value, bool):
        number = value
    elif isinstance(value, str) and value.strip().isdigit():
        number = int(value.strip())
    if number is None or number < 1 or number > MAX_INT:
        raise BadRequest(
            f"Invalid input received: {name} '{str(value)[:32]}' must be an integer and "
            "greater than 0."
        )
    if number > maximum:
        raise BadRequest(
            f"Invalid input received: {name} {number} GiB is larger than the largest volume "
            f"allowed ({maximum} GiB)."
        )
    return number


def _flag(name: str, value: Any) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.lower() in ("true", "false", "1", "0", "yes", "no"):
        return value.lower() in ("true", "1", "yes")
    raise BadRequest(
        f"Invalid input for field/attribute {name}: {str(value)[:32]!r} is not a boolean."
    )


def check_metadata(value: Any, name: str = "metadata") -> dict[str, str]:
    if not isinstance(value, dict):
        raise BadRequest(f"Invalid input for field/attribute {name}: must be an object.")
    if len(value) > MAX_METADATA:
        raise BadRequest(
            f"Invalid input for field/attribute {name}: more than {MAX_METADATA} items."
        )
    for key, item in value.items():
        if not (1 <= len(key) <= MAX_FIELD) or not isinstance(item, str) or len(item) > MAX_FIELD:
            raise BadRequest(
                f"Invalid input for field/attribute {name}: keys are 1-255 characters and "
                "values strings of at most 255 characters."
            )
    return dict(value)


def parse_metadata_filter(raw: str) -> dict[str, str]:
    """`metadata={"k": "v"}` in a query string: JSON, or the Python literal cinderclient sends."""
    for parse in (json.loads, ast.literal_eval):
        with contextlib.suppress(ValueError, SyntaxError, TypeError, MemoryError, RecursionError):
            value = parse(raw[:4096])
            if isinstance(value, dict):
                return {str(k): str(v) for k, v in value.items()}
    raise BadRequest("Invalid metadata filter: a JSON object is expected.")


def _time(value: Any) -> str | None:
    if value is None:
        return None
    return as_utc(value).replace(tzinfo=None).isoformat(timespec="microseconds")


# ---------------------------------------------------------------------- views


def volume_view(row: m.Volume, type_name: str, is_admin: bool) -> dict[str, Any]:
    """The Cinder volume detail body, without links (the API adds them)."""
    attachments: list[dict[str, Any]] = []
    if row.server_id and row.status in ("in-use", "detaching"):
        attachments.append(
            {
                "id": row.id,
                "attachment_id": row.attachment_id,
                "volume_id": row.id,
                "server_id": row.server_id,
                "host_name": None,
                "device": row.device,
                "attached_at": _time(row.attached_at),
            }
        )
    view: dict[str, Any] = {
        "id": row.id,
        "name": row.name,
        "description": row.description,
        "status": row.status,
        "size": row.size,
        "availability_zone": row.availability_zone,
        "bootable": "true" if row.bootable else "false",
        "encrypted": False,
        "multiattach": False,
        "attachments": attachments,
        "metadata": dict(row.meta or {}),
        "snapshot_id": row.snapshot_id,
        "source_volid": row.source_volid,
        "volume_type": type_name,
        "volume_type_id": row.volume_type_id,
        "user_id": row.user_id,
        "os-vol-tenant-attr:tenant_id": row.project_id,
        "os-vol-mig-status-attr:migstat": None,
        "os-vol-mig-status-attr:name_id": None,
        "replication_status": None,
        "consistencygroup_id": None,
        "group_id": None,
        "provider_id": None,
        "service_uuid": None,
        "shared_targets": False,
        "cluster_name": None,
        "consumes_quota": True,
        "created_at": _time(row.created_at),
        "updated_at": _time(row.updated_at),
    }
    if is_admin:
        view["os-vol-host-attr:host"] = HOST
    if row.image_metadata is not None:
        view["volume_image_metadata"] = dict(row.image_metadata)
    if row.readonly:
        view["metadata"]["readonly"] = "True"
    return view


def snapshot_view(row: m.Snapshot) -> dict[str, Any]:
    return {
        "id": row.id,
        "name": row.name,
        "description": row.description,
        "status": row.status,
        "size": row.size,
        "volume_id": row.volume_id,
        "metadata": dict(row.meta or {}),
        "user_id": row.user_id,
        "group_snapshot_id": None,
        "consumes_quota": True,
        "os-extended-snapshot-attributes:progress": "100%" if row.status == "available" else "0%",
        "os-extended-snapshot-attributes:project_id": row.project_id,
        "created_at": _time(row.created_at),
        "updated_at": _time(row.updated_at),
    }


def type_view(row: m.VolumeType) -> dict[str, Any]:
    return {
        "id": row.id,
        "name": row.name,
        "description": row.description,
        "is_public": row.is_public,
        "os-volume-type-access:is_public": row.is_public,
        "extra_specs": dict(row.extra_specs or {}),
        "qos_specs_id": None,
    }


class VolumeService:
    def __init__(
        self,
        db: Database,
        backend: VolumeBackend,
        identity: IdentityService,
        images: ImageService,
        clock: Clock,
        settings: VolumeSettings,
    ) -> None:
        # billable changes are recorded on it (the billing service's, set by the server)
        self.meter: Meter = NULL_METER
        self.db = db
        self.backend = backend
        self.identity = identity
        self.images = images
        self.clock = clock
        self.settings = settings
        # set by the compute service: grow a volume inside the guest it is attached to
        self.attached_resizer: Callable[[str, str, int], None] | None = None

    # ------------------------------------------------------------------ start and stop

    def set_up(self) -> None:
        """Once per start, before any worker: the default type, and no status left mid-way."""
        self.backend.setup()
        self._bootstrap_default_type()
        self._recover()

    def close(self) -> None:
        return None

    def _bootstrap_default_type(self) -> None:
        now = self.clock.now()
        with self.db.session() as s:
            exists = s.scalar(
                select(m.VolumeType.id).where(m.VolumeType.name == self.settings.default_type)
            )
            if exists is None:
                s.add(
                    m.VolumeType(
                        id=str(uuid.uuid4()),
                        name=self.settings.default_type,
                        description="Default Volume Type",
                        is_public=True,
                        extra_specs={},
                        created_at=now,
                        updated_at=now,
                    )
                )

    def _recover(self) -> None:
        interrupted = "The operation was interrupted by a restart of the volume service."
        with self.db.session() as s:
            volumes = list(
                s.scalars(
                    select(m.Volume).where(
                        m.Volume.status.in_(
                            ("creating", "downloading", "deleting", "extending", "uploading")
                        )
                    )
                )
            )
            snapshots = list(
                s.scalars(select(m.Snapshot).where(m.Snapshot.status.in_(("creating", "deleting"))))
            )
        for vol in volumes:
            log.warning("volume %s was left %s by a stop: resolving", vol.id, vol.status)
            if vol.status in ("creating", "downloading"):
                self.backend.delete(self.backend.volume_path(vol.id))
                self._move(vol.id, "create_failed", error_message=f"Creation failed: {interrupted}")
            elif vol.status == "deleting":
                self._finish_delete(vol.id)
            else:
                self._settle_after_restart(vol)
        for snap in snapshots:
            if snap.status == "creating":
                self.backend.delete(self.backend.snapshot_path(snap.id))
                self._set_snapshot(snap.id, "error", f"Snapshot failed: {interrupted}")
            else:
                self._finish_snapshot_delete(snap.id)
        self._sweep_files()

    def _settle_after_restart(self, vol: m.Volume) -> None:
        """extending/uploading: back to where it came from, the size as the file says."""
        back = "in-use" if vol.server_id else "available"
        values: dict[str, Any] = {"status": back, "updated_at": self.clock.now()}
        if vol.status == "extending":
            try:
                size = self.backend.virtual_size(self.backend.volume_path(vol.id))
                values["size"] = max(vol.size, size // GIB)
            except BackendError as exc:
                values.update(status="error", error_message=f"Extend failed: {exc}")
        with self.db.session() as s:
            settled = s.execute(
                update(m.Volume)
                .where(m.Volume.id == vol.id, m.Volume.status == vol.status)
                .values(**values)
                .returning(m.Volume.id)
            ).first()
        if settled is not None and "size" in values:
            self.meter.gauge(vol.project_id, "volume.gb", vol.id, values["size"])

    def _sweep_files(self) -> None:
        with self.db.session() as s:
            keep = {self.backend.volume_path(i) for i in s.scalars(select(m.Volume.id))}
            keep |= {self.backend.snapshot_path(i) for i in s.scalars(select(m.Snapshot.id))}
        removed = self.backend.sweep(keep)
        if removed:
            log.info("removed %d leftover volume file(s)", removed)

    # ------------------------------------------------------------------ moves

    def _move(self, volume_id: str, move: str, **values: Any) -> bool:
        """One compare-and-set status change; False if the volume was not in a start status."""
        sources, target = MOVES[move]
        with self.db.session() as s:
            done = s.execute(
                update(m.Volume)
                .where(m.Volume.id == volume_id, m.Volume.status.in_(sources))
                .values(status=target, updated_at=self.clock.now(), **values)
                .returning(m.Volume.id)
            ).first()
        return done is not None

    def _set_snapshot(self, snapshot_id: str, status: str, message: str | None = None) -> None:
        with self.db.session() as s:
            s.execute(
                update(m.Snapshot)
                .where(m.Snapshot.id == snapshot_id)
                .values(status=status, error_message=message, updated_at=self.clock.now())
            )

    # ------------------------------------------------------------------ lookups

    @staticmethod
    def _visible_volume(s: Session, ctx: RequestContext, volume_id: str) -> m.Volume:
        row = s.get(m.Volume, volume_id.lower()) if UUID_RE.match(volume_id) else None
        if row is None or not (ctx.is_admin or row.project_id == ctx.project_id):
            raise NotFound(f"Volume {volume_id} could not be found.")
        return row

    @staticmethod
    def _visible_snapshot(s: Session, ctx: RequestContext, snapshot_id: str) -> m.Snapshot:
        row = s.get(m.Snapshot, snapshot_id.lower()) if UUID_RE.match(snapshot_id) else None
        if row is None or not (ctx.is_admin or row.project_id == ctx.project_id):
            raise NotFound(f"Snapshot {snapshot_id} could not be found.")
        return row

    def _type_name(self, s: Session, type_id: str) -> str:
        row = s.get(m.VolumeType, type_id)
        return row.name if row is not None else ""

    def _view(self, s: Session, ctx: RequestContext, row: m.Volume) -> dict[str, Any]:
        return volume_view(row, self._type_name(s, row.volume_type_id), ctx.is_admin)

    def get(self, ctx: RequestContext, volume_id: str) -> dict[str, Any]:
        with self.db.session() as s:
            return self._view(s, ctx, self._visible_volume(s, ctx, volume_id))

    def handle(self, volume_id: str) -> VolumeHandle:
        with self.db.session() as s:
            row = s.get(m.Volume, volume_id)
            if row is None:
                raise NotFound(f"Volume {volume_id} could not be found.")
            return self._handle(row)

    def _handle(self, row: m.Volume) -> VolumeHandle:
        return VolumeHandle(
            id=row.id,
            path=self.backend.volume_path(row.id),
            format="qcow2",
            size_gib=row.size,
            readonly=row.readonly,
            bootable=row.bootable,
        )

    def list_volumes(
        self, ctx: RequestContext, query: VolumeQuery
    ) -> tuple[list[dict[str, Any]], bool]:
        with self.db.session() as s:
            stmt = select(m.Volume)
            if not (ctx.is_admin and query.all_tenants):
                stmt = stmt.where(m.Volume.project_id == ctx.project_id)
            f = query.filters
            if "project_id" in f and ctx.is_admin:
                stmt = stmt.where(m.Volume.project_id == f["project_id"])
            if "name" in f:
                stmt = stmt.where(m.Volume.name == f["name"])
            if "status" in f:
                stmt = stmt.where(m.Volume.status == f["status"])
            if "bootable" in f:
                stmt = stmt.where(m.Volume.bootable == f["bootable"])
            rows = list(s.scalars(stmt))
            types = {t.id: t.name for t in s.scalars(select(m.VolumeType))}
            wanted_meta: dict[str, str] = f.get("metadata", {})
            views = [
                volume_view(r, types.get(r.volume_type_id, ""), ctx.is_admin)
                for r in rows
                if all((r.meta or {}).get(k) == v for k, v in wanted_meta.items())
            ]
        return self._page(sort_views(views, query.sort), query)

    @staticmethod
    def _page(views: list[dict[str, Any]], query: VolumeQuery) -> tuple[list[dict[str, Any]], bool]:
        start = 0
        if query.marker is not None:
            for index, view in enumerate(views):
                if view["id"] == query.marker:
                    start = index + 1
                    break
            else:
                raise BadRequest(f"Invalid input received: marker {query.marker[:64]!r} not found.")
        end = len(views) if query.limit is None else start + query.limit
        return views[start:end], end < len(views)

    # ------------------------------------------------------------------ quotas

    def _limits_of(self, s: Session, project_id: str) -> dict[str, int]:
        defaults = {
            "volumes": self.settings.quota_volumes,
            "gigabytes": self.settings.quota_gigabytes,
            "snapshots": self.settings.quota_snapshots,
        }
        return effective_limits(s, m.VolumeQuota, project_id, defaults)

    @staticmethod
    def _usage_of(s: Session, project_id: str) -> dict[str, int]:
        count, vol_gb = s.execute(
            select(func.count(m.Volume.id), func.coalesce(func.sum(m.Volume.size), 0)).where(
                m.Volume.project_id == project_id
            )
        ).one()
        snaps, snap_gb = s.execute(
            select(func.count(m.Snapshot.id), func.coalesce(func.sum(m.Snapshot.size), 0)).where(
                m.Snapshot.project_id == project_id
            )
        ).one()
        return {
            "volumes": int(count),
            "gigabytes": int(vol_gb) + int(snap_gb),
            "snapshots": int(snaps),
        }

    def _lock_quota(self, s: Session, project_id: str) -> None:
        """Take the project's quota row for this transaction (see the module's note)."""
        lock_quota_row(s, m.VolumeQuota, project_id, self.clock.now())

    def _claim(
        self, s: Session, project_id: str, volumes: int = 0, gigabytes: int = 0, snapshots: int = 0
    ) -> None:
        """Refuse (413) what would exceed the project's quota; call after `_lock_quota`."""
        limits = self._limits_of(s, project_id)
        used = self._usage_of(s, project_id)
        if volumes and 0 <= limits["volumes"] < used["volumes"] + volumes:
            raise QuotaExceeded(
                f"VolumeLimitExceeded: Maximum number of volumes allowed ({limits['volumes']}) "
                "exceeded for quota 'volumes'."
            )
        if snapshots and 0 <= limits["snapshots"] < used["snapshots"] + snapshots:
            raise QuotaExceeded(
                f"SnapshotLimitExceeded: Maximum number of snapshots allowed "
                f"({limits['snapshots']}) exceeded for quota 'snapshots'."
            )
        if gigabytes and 0 <= limits["gigabytes"] < used["gigabytes"] + gigabytes:
            raise QuotaExceeded(
                "VolumeSizeExceedsAvailableQuota: Requested volume or snapshot exceeds allowed "
                f"gigabytes quota. Requested {gigabytes}G, quota is {limits['gigabytes']}G and "
                f"{used['gigabytes']}G has been consumed."
            )

    def quota_set(self, ctx: RequestContext, project_id: str, usage: bool) -> dict[str, Any]:
        if not (ctx.is_admin or project_id == ctx.project_id):
            raise Forbidden("Policy doesn't allow this operation: only your own project's quotas.")
        with self.db.session() as s:
            limits = self._limits_of(s, project_id)
            used = self._usage_of(s, project_id)
        return self._quota_body(project_id, limits, used if usage else None)

    def default_quota_set(self, project_id: str) -> dict[str, Any]:
        limits = {
            "volumes": self.settings.quota_volumes,
            "gigabytes": self.settings.quota_gigabytes,
            "snapshots": self.settings.quota_snapshots,
        }
        return self._quota_body(project_id, limits, None)

    def _quota_body(
        self, project_id: str, limits: dict[str, int], used: dict[str, int] | None
    ) -> dict[str, Any]:
        values: dict[str, int] = {
            **limits,
            f"volumes_{self.settings.default_type}": -1,
            f"gigabytes_{self.settings.default_type}": -1,
            f"snapshots_{self.settings.default_type}": -1,
            "backups": 0,
            "backup_gigabytes": 0,
            "groups": 0,
            "per_volume_gigabytes": self.settings.max_volume_gib,
        }
        body: dict[str, Any] = {"id": project_id}
        for key, limit in values.items():
            if used is None:
                body[key] = limit
            else:
                body[key] = {
                    "limit": limit,
                    "in_use": used.get(key, 0),
                    "reserved": 0,
                    "allocated": 0,
                }
        return body

    def update_quota(
        self, ctx: RequestContext, project_id: str, changes: dict[str, Any]
    ) -> dict[str, Any]:
        if not ctx.is_admin:
            raise Forbidden("Policy doesn't allow volume_extension:quotas:update to be performed.")
        if not project_id or len(project_id) > 64:
            raise BadRequest("Invalid project id.")
        checked: dict[str, int] = {}
        for key, value in changes.items():
            if key in ("volumes", "gigabytes", "snapshots"):
                if (
                    isinstance(value, bool)
                    or not isinstance(value, int)
                    or not -1 <= value <= MAX_INT
                ):
                    raise BadRequest(f"Quota limit {key} must be an integer of at least -1.")
                checked[key] = value
            elif key not in ("id", "backups", "backup_gigabytes", "groups", "per_volume_gigabytes"):
                raise BadRequest(f"Bad key(s) in quota set: {key[:64]}")
        with self.db.session() as s:
            self._lock_quota(s, project_id)
            row = s.get(m.VolumeQuota, project_id)
            assert row is not None
            for key, value in checked.items():
                setattr(row, key, value)
            row.updated_at = self.clock.now()
        return self.quota_set(ctx, project_id, usage=False)

    def reset_quota(self, ctx: RequestContext, project_id: str) -> None:
        """Back to the configured defaults; the row stays, as the lock of later claims."""
        if not ctx.is_admin:
            raise Forbidden("Policy doesn't allow volume_extension:quotas:delete to be performed.")
        if not project_id or len(project_id) > 64:
            raise BadRequest("Invalid project id.")
        with self.db.session() as s:
            self._lock_quota(s, project_id)
            row = s.get(m.VolumeQuota, project_id)
            assert row is not None
            row.volumes = row.gigabytes = row.snapshots = None
            row.updated_at = self.clock.now()

    def limits(self, ctx: RequestContext) -> dict[str, int]:
        project_id = ctx.project_id or ""
        with self.db.session() as s:
            limits = self._limits_of(s, project_id)
            used = self._usage_of(s, project_id)
        return {
            "maxTotalVolumes": limits["volumes"],
            "maxTotalSnapshots": limits["snapshots"],
            "maxTotalVolumeGigabytes": limits["gigabytes"],
            "maxTotalBackups": 0,
            "maxTotalBackupGigabytes": 0,
            "totalVolumesUsed": used["volumes"],
            "totalSnapshotsUsed": used["snapshots"],
            "totalGigabytesUsed": used["gigabytes"],
            "totalBackupsUsed": 0,
            "totalBackupGigabytesUsed": 0,
        }

    # ------------------------------------------------------------------ types

    def list_types(self, ctx: RequestContext) -> list[dict[str, Any]]:
        with self.db.session() as s:
            stmt = select(m.VolumeType).order_by(m.VolumeType.name)
            if not ctx.is_admin:
                stmt = stmt.where(m.VolumeType.is_public.is_(True))
            return [type_view(t) for t in s.scalars(stmt)]

    def _find_type(self, s: Session, ref: str) -> m.VolumeType:
        if ref == "default":
            ref = self.settings.default_type
        row = s.get(m.VolumeType, ref) if UUID_RE.match(ref) else None
        if row is None:
            row = s.scalar(select(m.VolumeType).where(m.VolumeType.name == ref))
        if row is None:
            raise NotFound(f"Volume type {ref[:255]} could not be found.")
        return row

    def get_type(self, ctx: RequestContext, type_ref: str) -> dict[str, Any]:
        with self.db.session() as s:
            row = self._find_type(s, type_ref)
            if not (row.is_public or ctx.is_admin):
                raise NotFound(f"Volume type {type_ref} could not be found.")
            return type_view(row)

    def create_type(self, ctx: RequestContext, body: dict[str, Any]) -> dict[str, Any]:
        self._require_admin(ctx)
        name = _text("name", body.get("name"))
        if not name or not name.strip():
            raise BadRequest("Invalid input for field/attribute name: a volume type needs a name.")
        now = self.clock.now()
        row = m.VolumeType(
            id=str(uuid.uuid4()),
            name=name,
            description=_text("description", body.get("description")),
            is_public=_flag(
                "is_public",
                body.get("os-volume-type-access:is_public", body.get("is_public", True)),
            ),
            extra_specs=check_metadata(body.get("extra_specs") or {}, "extra_specs"),
            created_at=now,
            updated_at=now,
        )
        with self.db.session() as s:
            if s.scalar(select(m.VolumeType.id).where(m.VolumeType.name == name)):
                raise Conflict(f"Volume Type {name} already exists.")
            s.add(row)
            s.flush()
            return type_view(row)

    def update_type(
        self, ctx: RequestContext, type_id: str, body: dict[str, Any]
    ) -> dict[str, Any]:
        self._require_admin(ctx)
        with self.db.session() as s:
            row = self._find_type(s, type_id)
            if "name" in body:
                name = _text("name", body["name"])
                if not name:
                    raise BadRequest("Invalid input for field/attribute name: must not be empty.")
                if row.name == self.settings.default_type and name != row.name:
                    raise BadRequest("The default volume type cannot be renamed.")
                clash = s.scalar(select(m.VolumeType.id).where(m.VolumeType.name == name))
                if clash and clash != row.id:
                    raise Conflict(f"Volume Type {name} already exists.")
                row.name = name
            if "description" in body:
                row.description = _text("description", body["description"])
            if "is_public" in body:
                row.is_public = _flag("is_public", body["is_public"])
            row.updated_at = self.clock.now()
            s.flush()
            return type_view(row)

    def delete_type(self, ctx: RequestContext, type_id: str) -> None:
        self._require_admin(ctx)
        with self.db.session() as s:
            row = self._find_type(s, type_id)
            if row.name == self.settings.default_type:
                raise BadRequest("The default volume type cannot be deleted.")
            if s.scalar(select(func.count(m.Volume.id)).where(m.Volume.volume_type_id == row.id)):
                raise BadRequest(f"Target volume type {row.id} is still in use.")
            s.delete(row)

    def type_extra_specs(self, ctx: RequestContext, type_id: str) -> dict[str, str]:
        return dict(self.get_type(ctx, type_id)["extra_specs"])

    def set_type_extra_specs(
        self, ctx: RequestContext, type_id: str, specs: Any, replace_key: str | None = None
    ) -> dict[str, str]:
        self._require_admin(ctx)
        checked = check_metadata(specs, "extra_specs")
        if replace_key is not None and list(checked) != [replace_key]:
            raise BadRequest("Request body and URI mismatch.")
        with self.db.session() as s:
            row = self._find_type(s, type_id)
            row.extra_specs = {**(row.extra_specs or {}), **checked}
            row.updated_at = self.clock.now()
        return checked

    def delete_type_extra_spec(self, ctx: RequestContext, type_id: str, key: str) -> None:
        self._require_admin(ctx)
        with self.db.session() as s:
            row = self._find_type(s, type_id)
            specs = dict(row.extra_specs or {})
            if key not in specs:
                raise NotFound(f"Volume Type {type_id} has no extra specs with key {key[:255]}.")
            del specs[key]
            row.extra_specs = specs
            row.updated_at = self.clock.now()

    @staticmethod
    def _require_admin(ctx: RequestContext) -> None:
        if not ctx.is_admin:
            raise Forbidden("Policy doesn't allow this operation: an admin role is required.")

    # ------------------------------------------------------------------ volumes: create

    def create_volume(self, ctx: RequestContext, body: dict[str, Any]) -> dict[str, Any]:
        """Validate, claim quota and insert `creating`, make the file, then `available`."""
        if not ctx.project_id:
            raise Forbidden("Volumes belong to projects: use a project-scoped token.")
        sources = [k for k in ("snapshot_id", "source_volid", "imageRef") if body.get(k)]
        if len(sources) > 1:
            raise BadRequest(
                "Invalid input received: give one of snapshot_id, source_volid, imageRef."
            )
        zone = body.get("availability_zone")
        if zone not in (None, "", AVAILABILITY_ZONE):
            raise BadRequest(
                f"Invalid input received: Availability zone '{str(zone)[:64]}' is invalid."
            )
        name = _text("name", body.get("name", body.get("display_name")))
        description = _text("description", body.get("description", body.get("display_description")))
        metadata = check_metadata(body.get("metadata") or {})
        plan = self._plan_source(ctx, body, sources[0] if sources else None)
        size = plan.size
        bootable = plan.bootable
        if "bootable" in body and body["bootable"] is not None:
            bootable = _flag("bootable", body["bootable"])
        type_ref = body.get("volume_type") or self.settings.default_type
        if not isinstance(type_ref, str):
            raise BadRequest("Invalid input for field/attribute volume_type: a string is expected.")
        volume_id = str(uuid.uuid4())
        now = self.clock.now()
        with self.db.session() as s:
            vtype = self._find_type(s, type_ref)
            self._lock_quota(s, ctx.project_id)
            self._claim(s, ctx.project_id, volumes=1, gigabytes=size)
            row = m.Volume(
                id=volume_id,
                project_id=ctx.project_id,
                user_id=ctx.user_id,
                name=name,
                description=description,
                size=size,
                status="downloading" if plan.image_id else "creating",
                volume_type_id=vtype.id,
                availability_zone=AVAILABILITY_ZONE,
                bootable=bootable,
                readonly=False,
                meta=metadata,
                image_metadata=plan.image_metadata,
                snapshot_id=plan.snapshot_id,
                source_volid=plan.source_volid,
                attach_seq=0,
                delete_on_termination=False,
                created_at=now,
                updated_at=now,
            )
            s.add(row)
        self.meter.gauge(ctx.project_id, "volume.gb", volume_id, size)
        self._fill(volume_id, plan)
        return self.get(ctx, volume_id)

    def _plan_source(
        self, ctx: RequestContext, body: dict[str, Any], source: str | None
    ) -> SourcePlan:
        """Where the new volume's data comes from, checked, and its size."""
        limit = self.settings.max_volume_gib
        requested = body.get("size")
        if source is None:
            if requested is None:
                raise BadRequest(
                    "Invalid input received: size is required to create a blank volume."
                )
            return SourcePlan(size=_size("size", requested, limit))
        ref = body[source]
        if not isinstance(ref, str):
            raise BadRequest(f"Invalid input for field/attribute {source}: a string is expected.")
        if source == "snapshot_id":
            with self.db.session() as s:
                snap = self._visible_snapshot(s, ctx, ref)
                if snap.status != "available":
                    raise BadRequest(
                        f"Invalid snapshot: Snapshot {ref} is {snap.status}; it must be available."
                    )
                origin = s.get(m.Volume, snap.volume_id)
                bootable = bool(origin and origin.bootable)
                image_metadata = origin.image_metadata if origin else None
                size = snap.size if requested is None else _size("size", requested, limit)
                if size < snap.size:
                    raise BadRequest(
                        f"Invalid input received: Volume size '{size}'GB cannot be smaller than "
                        f"the snapshot size {snap.size}GB. They must be >= original snapshot size."
                    )
                return SourcePlan(
                    size=size,
                    bootable=bootable,
                    source=self.backend.snapshot_path(snap.id),
                    image_metadata=image_metadata,
                    snapshot_id=snap.id,
                )
        if source == "source_volid":
            with self.db.session() as s:
                src = self._visible_volume(s, ctx, ref)
                if src.status not in ("available", "in-use"):
                    raise BadRequest(
                        f"Invalid volume: Volume {ref} is {src.status}; it must be available "
                        "or in-use to clone."
                    )
                size = src.size if requested is None else _size("size", requested, limit)
                if size < src.size:
                    raise BadRequest(
                        f"Invalid input received: Volume size '{size}'GB cannot be smaller than "
                        f"the source volume size {src.size}GB."
                    )
                return SourcePlan(
                    size=size,
                    bootable=src.bootable,
                    source=self.backend.volume_path(src.id),
                    shared=src.status == "in-use",
                    image_metadata=src.image_metadata,
                    source_volid=src.id,
                )
        image = self.images.image_for_boot(ctx, ref)
        fmt = SOURCE_FORMATS.get(image.disk_format)
        if fmt is None:
            raise BadRequest(
                f"Image {ref} has disk_format {image.disk_format}; a volume cannot hold it."
            )
        needed = max(image.min_disk, -(-(image.virtual_size or image.size) // GIB), 1)
        size = needed if requested is None else _size("size", requested, limit)
        if size < needed:
            raise BadRequest(
                f"Invalid input received: Image virtual size is {needed}GB and doesn't fit in a "
                f"volume of size {size}GB."
            )
        metadata = {
            "image_id": image.id,
            "image_name": image.name,
            "disk_format": image.disk_format,
            "container_format": image.container_format,
            "min_disk": str(image.min_disk),
            "min_ram": str(image.min_ram),
            "size": str(image.size),
            **{k: v for k, v in image.properties.items() if isinstance(v, str)},
        }
        return SourcePlan(
            size=size,
            bootable=True,
            source=image.path,
            source_format=fmt,
            image_id=image.id,
            image_metadata=metadata,
        )

    def _fill(self, volume_id: str, plan: SourcePlan) -> None:
        """Make the volume's file; the volume ends available, or error with a message."""
        final = self.backend.volume_path(volume_id)
        try:
            if plan.source is None:
                self.backend.create_blank(final, plan.size)
            else:
                self.backend.copy(plan.source, plan.source_format, final, plan.size, plan.shared)
        except (BackendError, OSError) as exc:
            log.warning("volume %s could not be created: %s", volume_id, exc)
            self.backend.delete(final)
            self._move(volume_id, "create_failed", error_message=f"Creation failed: {_reason(exc)}")
            return
        if not self._move(volume_id, "created", error_message=None):  # deleted meanwhile (force)
            log.info("volume %s changed while its data was written", volume_id)

    def create_for_boot(self, ctx: RequestContext, image_id: str, size_gib: int) -> VolumeHandle:
        """Boot from volume: a new bootable volume from an image, synchronously."""
        view = self.create_volume(ctx, {"imageRef": image_id, "size": size_gib, "bootable": True})
        if view["status"] != "available":
            with self.db.session() as s:
                row = s.get(m.Volume, view["id"])
                message = (row.error_message if row else None) or "creation failed"
            raise BadRequest(
                f"Volume {view['id']} could not be created from image {image_id}: {message}"
            )
        return self.handle(view["id"])

    # ------------------------------------------------------------------ volumes: change

    def update_volume(
        self, ctx: RequestContext, volume_id: str, body: dict[str, Any]
    ) -> dict[str, Any]:
        with self.db.session() as s:
            row = self._visible_volume(s, ctx, volume_id)
            for key, attr in (
                ("name", "name"),
                ("display_name", "name"),
                ("description", "description"),
                ("display_description", "description"),
            ):
                if key in body:
                    setattr(row, attr, _text(key, body[key]))
            if "metadata" in body:
                row.meta = check_metadata(body["metadata"])
            row.updated_at = self.clock.now()
            s.flush()
            return self._view(s, ctx, row)

    def metadata(self, ctx: RequestContext, volume_id: str) -> dict[str, str]:
        with self.db.session() as s:
            return dict(self._visible_volume(s, ctx, volume_id).meta or {})

    def set_metadata(
        self, ctx: RequestContext, volume_id: str, items: Any, replace: bool = False
    ) -> dict[str, str]:
        checked = check_metadata(items)
        with self.db.session() as s:
            row = self._visible_volume(s, ctx, volume_id)
            merged = checked if replace else {**(row.meta or {}), **checked}
            check_metadata(merged)
            row.meta = merged
            row.updated_at = self.clock.now()
            return dict(merged)

    def delete_metadata_item(self, ctx: RequestContext, volume_id: str, key: str) -> None:
        with self.db.session() as s:
            row = self._visible_volume(s, ctx, volume_id)
            meta = dict(row.meta or {})
            if key not in meta:
                raise NotFound(f"Metadata item was not found: {key[:255]}")
            del meta[key]
            row.meta = meta
            row.updated_at = self.clock.now()

    def set_bootable(self, ctx: RequestContext, volume_id: str, value: Any) -> None:
        flag = _flag("bootable", value)
        with self.db.session() as s:
            row = self._visible_volume(s, ctx, volume_id)
            row.bootable = flag
            row.updated_at = self.clock.now()

    def set_readonly(self, ctx: RequestContext, volume_id: str, value: Any) -> None:
        flag = _flag("readonly", value)
        with self.db.session() as s:
            row = self._visible_volume(s, ctx, volume_id)
            if row.status in ATTACHED:
                raise BadRequest(
                    f"Invalid volume: Volume {volume_id} is {row.status}; detach it first."
                )
            row.readonly = flag
            row.updated_at = self.clock.now()

    def reset_status(self, ctx: RequestContext, volume_id: str, body: dict[str, Any]) -> None:
        self._require_admin(ctx)
        status = body.get("status")
        if status is not None and status not in VOLUME_STATUSES:
            raise BadRequest(
                f"Invalid input received: status {str(status)[:32]!r} is not a volume status."
            )
        attach_status = body.get("attach_status")
        if attach_status not in (None, "attached", "detached"):
            raise BadRequest("Invalid input received: attach_status must be attached or detached.")
        with self.db.session() as s:
            row = self._visible_volume(s, ctx, volume_id)
            if status is not None:
                row.status = status
                if status in ("available", "error"):
                    row.error_message = None if status == "available" else row.error_message
            if attach_status == "detached":
                row.server_id = row.device = row.attachment_id = None
                row.attached_at = None
            row.updated_at = self.clock.now()

    def extend(self, ctx: RequestContext, volume_id: str, new_size: Any) -> None:
        size = _size("new_size", new_size, self.settings.max_volume_gib)
        with self.db.session() as s:
            row = self._visible_volume(s, ctx, volume_id)
            if size <= row.size:
                raise BadRequest(
                    f"Invalid input received: New size for extend must be greater than current "
                    f"size. (current: {row.size}, extended: {size})."
                )
            if row.status not in ("available", "in-use"):
                raise BadRequest(
                    f"Invalid volume: Volume {volume_id} is {row.status}; it must be available "
                    "or in-use to extend."
                )
            attached, server_id, old = row.status == "in-use", row.server_id, row.size
            self._lock_quota(s, row.project_id)
            self._claim(s, row.project_id, gigabytes=size - old)
            moved = s.execute(
                update(m.Volume)
                .where(m.Volume.id == row.id, m.Volume.status == row.status)
                .values(status="extending", updated_at=self.clock.now())
                .returning(m.Volume.id)
            ).first()
            if moved is None:
                raise BadRequest(f"Invalid volume: Volume {volume_id} changed status; try again.")
            vid, project_id = row.id, row.project_id
        if attached:
            self._extend_attached(vid, str(server_id), size, old)
        else:
            self._extend_detached(vid, size)
        self.meter.gauge(project_id, "volume.gb", vid, size)

    def _extend_detached(self, volume_id: str, size: int) -> None:
        try:
            self.backend.resize(self.backend.volume_path(volume_id), size)
        except (BackendError, OSError) as exc:
            self._move(volume_id, "extended", error_message=f"Extend failed: {_reason(exc)}")
            raise BadRequest(f"Volume {volume_id} could not be extended: {_reason(exc)}") from None
        self._move(volume_id, "extended", size=size, error_message=None)

    def _extend_attached(self, volume_id: str, server_id: str, size: int, old: int) -> None:
        resizer = self.attached_resizer
        try:
            if resizer is None:
                raise RuntimeError("no compute service can resize attached volumes")
            resizer(server_id, volume_id, size)
        except Exception as exc:
            log.warning("extend of attached volume %s failed: %s", volume_id, exc)
            self._move(volume_id, "extended_attached")
            raise BadRequest(
                f"Volume {volume_id} could not be extended while attached: {_reason(exc)}"
            ) from None
        self._move(volume_id, "extended_attached", size=size, error_message=None)

    def upload_to_image(
        self, ctx: RequestContext, volume_id: str, body: dict[str, Any]
    ) -> dict[str, Any]:
        """A Glance image from the volume's data: the image is active when this returns."""
        name = _text("image_name", body.get("image_name"))
        if not name:
            raise BadRequest("Invalid input received: image_name is required.")
        disk_format = body.get("disk_format", "qcow2") or "qcow2"
        if disk_format != "qcow2":
            raise BadRequest("Invalid input received: only disk_format qcow2 is supported.")
        container_format = body.get("container_format", "bare") or "bare"
        if container_format != "bare":
            raise BadRequest("Invalid input received: only container_format bare is supported.")
        with self.db.session() as s:
            row = self._visible_volume(s, ctx, volume_id)
            if row.status != "available":
                raise BadRequest(
                    f"Invalid volume: Volume {volume_id} is {row.status}; it must be available "
                    "to upload it to an image."
                )
            vid, size, bootable = row.id, row.size, row.bootable
            type_name = self._type_name(s, row.volume_type_id)
        if not self._move(vid, "upload"):
            raise BadRequest(f"Invalid volume: Volume {volume_id} changed status; try again.")
        try:
            image = self.images.create_snapshot_record(ctx, name, {}, min_disk=size)
        except BaseException:
            self._move(vid, "uploaded")
            raise
        image_id = image["id"]
        out = self.backend.temp_path()
        try:
            self.backend.export(self.backend.volume_path(vid), out)
            self.images.import_file(image_id, out)
        except (BackendError, OSError) as exc:
            self.images.fail_image(image_id, str(exc))
            raise BadRequest(f"Volume {volume_id} could not be uploaded: {_reason(exc)}") from None
        finally:
            with contextlib.suppress(FileNotFoundError):
                out.unlink()
            self._move(vid, "uploaded")
        return {
            "id": vid,
            "updated_at": _time(self.clock.now()),
            "status": "uploading",
            "display_description": None,
            "size": size,
            "volume_type": {"name": type_name},
            "image_id": image_id,
            "container_format": container_format,
            "disk_format": disk_format,
            "image_name": name,
            "protected": False,
            "visibility": "private",
            "bootable": bootable,
        }

    # ------------------------------------------------------------------ volumes: delete

    def delete_volume(
        self, ctx: RequestContext, volume_id: str, cascade: bool = False, force: bool = False
    ) -> None:
        if force:
            self._require_admin(ctx)
        with self.db.session() as s:
            row = self._visible_volume(s, ctx, volume_id)
            if row.status in ATTACHED and not force:
                raise BadRequest(
                    f"Invalid volume: Volume {volume_id} is attached; detach it first."
                )
            snaps = list(s.scalars(select(m.Snapshot).where(m.Snapshot.volume_id == row.id)))
            if snaps and not cascade:
                raise BadRequest(
                    f"Invalid volume: Volume {volume_id} has {len(snaps)} dependent snapshot(s); "
                    "delete them first or delete with cascade."
                )
            if row.status not in DELETABLE and not force:
                raise BadRequest(
                    f"Invalid volume: Volume {volume_id} is {row.status}; it must be available "
                    "or error to delete."
                )
            vid = row.id
        if not self._move(vid, "force_delete" if force else "delete"):
            raise BadRequest(f"Invalid volume: Volume {volume_id} changed status; try again.")
        self._finish_delete(vid)

    def _finish_delete(self, volume_id: str) -> None:
        """Snapshots, file, then the row: a crash anywhere leaves `deleting`, finished at start."""
        with self.db.session() as s:
            snap_ids = list(
                s.scalars(select(m.Snapshot.id).where(m.Snapshot.volume_id == volume_id))
            )
            if snap_ids:
                s.execute(
                    update(m.Snapshot)
                    .where(m.Snapshot.id.in_(snap_ids))
                    .values(status="deleting", updated_at=self.clock.now())
                )
        for snap_id in snap_ids:
            self._finish_snapshot_delete(snap_id)
        self.backend.delete(self.backend.volume_path(volume_id))
        with self.db.session() as s:
            row = s.get(m.Volume, volume_id)
            project_id = row.project_id if row is not None else None
            if row is not None:
                s.delete(row)
        if project_id is not None:
            self.meter.gauge(project_id, "volume.gb", volume_id, 0)

    def delete_internal(self, volume_id: str) -> None:
        """delete_on_termination: compute checked the caller; remove whatever its status."""
        if self._move(volume_id, "force_delete"):
            self._finish_delete(volume_id)

    # ------------------------------------------------------------------ attachments (compute)

    def reserve(self, ctx: RequestContext, volume_id: str, server_id: str) -> VolumeHandle:
        with self.db.session() as s:
            row = self._visible_volume(s, ctx, volume_id)
            vid, status = row.id, row.status
        if status != "available" or not self._move(vid, "reserve", server_id=server_id):
            with self.db.session() as s:
                now_row = s.get(m.Volume, vid)
                status = now_row.status if now_row else "deleted"
            raise BadRequest(f"Volume {volume_id} is {status}; it must be available to attach.")
        return self.handle(vid)

    def attached(
        self,
        volume_id: str,
        server_id: str,
        device: str,
        attachment_id: str,
        delete_on_termination: bool = False,
    ) -> None:
        with self.db.session() as s:
            seq = s.scalar(select(func.coalesce(func.max(m.Volume.attach_seq), 0))) or 0
        moved = self._move(
            volume_id,
            "attached",
            server_id=server_id,
            device=device,
            attachment_id=attachment_id,
            attached_at=self.clock.now(),
            attach_seq=int(seq) + 1,
            delete_on_termination=delete_on_termination,
        )
        if not moved:
            raise BadRequest(f"Volume {volume_id} is not being attached.")

    def unreserve(self, volume_id: str) -> None:
        self._move(volume_id, "unreserve", server_id=None, device=None, attachment_id=None)

    def begin_detach(self, ctx: RequestContext, volume_id: str, server_id: str) -> dict[str, Any]:
        with self.db.session() as s:
            row = self._visible_volume(s, ctx, volume_id)
            if row.server_id != server_id or row.status not in ("in-use", "detaching"):
                raise NotFound(f"Volume {volume_id} is not attached to server {server_id}.")
            vid, device, attachment_id = row.id, row.device, row.attachment_id
        if not self._move(vid, "begin_detach"):
            raise BadRequest(f"Volume {volume_id} is already being detached.")
        return {
            "volume_id": vid,
            "device": device,
            "attachment_id": attachment_id,
            "server_id": server_id,
        }

    def detached(self, volume_id: str) -> None:
        self._move(
            volume_id,
            "detached",
            server_id=None,
            device=None,
            attachment_id=None,
            attached_at=None,
            delete_on_termination=False,
        )

    def roll_back_detach(self, volume_id: str) -> None:
        self._move(volume_id, "roll_back_detach")

    def attachments_of(self, server_id: str) -> list[dict[str, Any]]:
        with self.db.session() as s:
            rows = list(
                s.scalars(
                    select(m.Volume)
                    .where(m.Volume.server_id == server_id)
                    .order_by(m.Volume.attach_seq, m.Volume.id)
                )
            )
            return [
                {
                    "volume_id": r.id,
                    "device": r.device,
                    "attachment_id": r.attachment_id,
                    "path": self.backend.volume_path(r.id),
                    "format": "qcow2",
                    "readonly": r.readonly,
                    "delete_on_termination": r.delete_on_termination,
                    "status": r.status,
                }
                for r in rows
            ]

    def volumes_of_servers(self, server_ids: Sequence[str]) -> dict[str, list[ServerVolume]]:
        """The volumes of many servers (a page of a server list) in one query per 1,000
        servers, in attach order; a server with none is absent from the answer."""
        found: dict[str, list[ServerVolume]] = {}
        ids = list(dict.fromkeys(server_ids))
        with self.db.session() as s:
            for start in range(0, len(ids), SERVERS_PER_QUERY):
                rows = s.execute(
                    select(
                        m.Volume.server_id,
                        m.Volume.id,
                        m.Volume.status,
                        m.Volume.delete_on_termination,
                    )
                    .where(m.Volume.server_id.in_(ids[start : start + SERVERS_PER_QUERY]))
                    .order_by(m.Volume.attach_seq, m.Volume.id)
                )
                for server_id, volume_id, status, delete in rows:
                    found.setdefault(str(server_id), []).append(
                        ServerVolume(volume_id, status, bool(delete))
                    )
        return found

    # ------------------------------------------------------------------ snapshots

    def create_snapshot(self, ctx: RequestContext, body: dict[str, Any]) -> dict[str, Any]:
        if not ctx.project_id:
            raise Forbidden("Snapshots belong to projects: use a project-scoped token.")
        volume_ref = body.get("volume_id")
        if not isinstance(volume_ref, str) or not volume_ref:
            raise BadRequest(
                "Invalid input for field/attribute volume_id: a volume id is required."
            )
        name = _text("name", body.get("name", body.get("display_name")))
        description = _text("description", body.get("description", body.get("display_description")))
        metadata = check_metadata(body.get("metadata") or {})
        force = _flag("force", body.get("force", False))
        snapshot_id = str(uuid.uuid4())
        now = self.clock.now()
        with self.db.session() as s:
            vol = self._visible_volume(s, ctx, volume_ref)
            if vol.status == "in-use" and not force:
                raise BadRequest(
                    f"Invalid volume: Volume {volume_ref} is in-use; a snapshot of an attached "
                    "volume needs force=true (it is crash-consistent)."
                )
            if vol.status not in ("available", "in-use"):
                raise BadRequest(
                    f"Invalid volume: Volume {volume_ref} is {vol.status}; it must be available."
                )
            shared = vol.status == "in-use"
            vid, size, project_id = vol.id, vol.size, vol.project_id
            self._lock_quota(s, project_id)
            self._claim(s, project_id, snapshots=1, gigabytes=size)
            row = m.Snapshot(
                id=snapshot_id,
                project_id=project_id,
                user_id=ctx.user_id,
                volume_id=vid,
                name=name,
                description=description,
                size=size,
                status="creating",
                meta=metadata,
                created_at=now,
                updated_at=now,
            )
            s.add(row)
        self.meter.gauge(project_id, "snapshot.gb", snapshot_id, size)
        try:
            self.backend.copy(
                self.backend.volume_path(vid),
                "qcow2",
                self.backend.snapshot_path(snapshot_id),
                size,
                shared,
            )
        except (BackendError, OSError) as exc:
            log.warning("snapshot %s failed: %s", snapshot_id, exc)
            self._set_snapshot(snapshot_id, "error", f"Snapshot failed: {_reason(exc)}")
        else:
            self._set_snapshot(snapshot_id, "available")
        return self.get_snapshot(ctx, snapshot_id)

    def get_snapshot(self, ctx: RequestContext, snapshot_id: str) -> dict[str, Any]:
        with self.db.session() as s:
            return snapshot_view(self._visible_snapshot(s, ctx, snapshot_id))

    def list_snapshots(
        self, ctx: RequestContext, query: VolumeQuery
    ) -> tuple[list[dict[str, Any]], bool]:
        with self.db.session() as s:
            stmt = select(m.Snapshot)
            if not (ctx.is_admin and query.all_tenants):
                stmt = stmt.where(m.Snapshot.project_id == ctx.project_id)
            f = query.filters
            for key in ("name", "status", "volume_id"):
                if key in f:
                    stmt = stmt.where(getattr(m.Snapshot, key) == f[key])
            if "project_id" in f and ctx.is_admin:
                stmt = stmt.where(m.Snapshot.project_id == f["project_id"])
            wanted: dict[str, str] = f.get("metadata", {})
            views = [
                snapshot_view(r)
                for r in s.scalars(stmt)
                if all((r.meta or {}).get(k) == v for k, v in wanted.items())
            ]
        return self._page(sort_views(views, query.sort), query)

    def update_snapshot(
        self, ctx: RequestContext, snapshot_id: str, body: dict[str, Any]
    ) -> dict[str, Any]:
        with self.db.session() as s:
            row = self._visible_snapshot(s, ctx, snapshot_id)
            for key, attr in (
                ("name", "name"),
                ("display_name", "name"),
                ("description", "description"),
                ("display_description", "description"),
            ):
                if key in body:
                    setattr(row, attr, _text(key, body[key]))
            if "metadata" in body:
                row.meta = check_metadata(body["metadata"])
            row.updated_at = self.clock.now()
            s.flush()
            return snapshot_view(row)

    def snapshot_metadata(self, ctx: RequestContext, snapshot_id: str) -> dict[str, str]:
        with self.db.session() as s:
            return dict(self._visible_snapshot(s, ctx, snapshot_id).meta or {})

    def set_snapshot_metadata(
        self, ctx: RequestContext, snapshot_id: str, items: Any, replace: bool = False
    ) -> dict[str, str]:
        checked = check_metadata(items)
        with self.db.session() as s:
            row = self._visible_snapshot(s, ctx, snapshot_id)
            merged = checked if replace else {**(row.meta or {}), **checked}
            check_metadata(merged)
            row.meta = merged
            row.updated_at = self.clock.now()
            return dict(merged)

    def delete_snapshot_metadata_item(
        self, ctx: RequestContext, snapshot_id: str, key: str
    ) -> None:
        with self.db.session() as s:
            row = self._visible_snapshot(s, ctx, snapshot_id)
            meta = dict(row.meta or {})
            if key not in meta:
                raise NotFound(f"Metadata item was not found: {key[:255]}")
            del meta[key]
            row.meta = meta
            row.updated_at = self.clock.now()

    def delete_snapshot(self, ctx: RequestContext, snapshot_id: str, force: bool = False) -> None:
        if force:
            self._require_admin(ctx)
        with self.db.session() as s:
            row = self._visible_snapshot(s, ctx, snapshot_id)
            allowed = ("available", "error", "error_deleting")
            if row.status not in allowed and not force:
                raise BadRequest(
                    f"Invalid snapshot: Snapshot {snapshot_id} is {row.status}; it must be "
                    "available or error to delete."
                )
            sid = row.id
            done = s.execute(
                update(m.Snapshot)
                .where(m.Snapshot.id == sid, m.Snapshot.status == row.status)
                .values(status="deleting", updated_at=self.clock.now())
                .returning(m.Snapshot.id)
            ).first()
            if done is None:
                raise BadRequest(
                    f"Invalid snapshot: Snapshot {snapshot_id} changed status; try again."
                )
        self._finish_snapshot_delete(sid)

    def reset_snapshot_status(self, ctx: RequestContext, snapshot_id: str, status: Any) -> None:
        self._require_admin(ctx)
        if status not in SNAPSHOT_STATUSES:
            raise BadRequest(
                f"Invalid input received: status {str(status)[:32]!r} is not a snapshot status."
            )
        with self.db.session() as s:
            row = self._visible_snapshot(s, ctx, snapshot_id)
            row.status = str(status)
            row.updated_at = self.clock.now()

    def _finish_snapshot_delete(self, snapshot_id: str) -> None:
        self.backend.delete(self.backend.snapshot_path(snapshot_id))
        with self.db.session() as s:
            row = s.get(m.Snapshot, snapshot_id)
            project_id = row.project_id if row is not None else None
            if row is not None:
                s.delete(row)
        if project_id is not None:
            self.meter.gauge(project_id, "snapshot.gb", snapshot_id, 0)

    # ------------------------------------------------------------------ user messages

    def messages(self, ctx: RequestContext) -> list[dict[str, Any]]:
        """Why resources failed: one Cinder user message per volume or snapshot in error."""
        failed: list[tuple[str, str, str, Any]] = []
        with self.db.session() as s:
            volumes = select(m.Volume).where(m.Volume.error_message.is_not(None))
            snapshots = select(m.Snapshot).where(m.Snapshot.error_message.is_not(None))
            if not ctx.is_admin:
                volumes = volumes.where(m.Volume.project_id == ctx.project_id)
                snapshots = snapshots.where(m.Snapshot.project_id == ctx.project_id)
            for vol in s.scalars(volumes):
                failed.append(("VOLUME", vol.id, vol.error_message or "", vol.updated_at))
            for snap in s.scalars(snapshots):
                failed.append(("SNAPSHOT", snap.id, snap.error_message or "", snap.updated_at))
        out = [
            {
                "id": resource_id,
                "event_id": "VOLUME_VOLUME_001_002" if kind == "VOLUME" else "VOLUME_SNAPSHOT_001",
                "user_message": message,
                "message_level": "ERROR",
                "resource_type": kind,
                "resource_uuid": resource_id,
                "created_at": _time(when),
                "guaranteed_until": None,
                "request_id": None,
            }
            for kind, resource_id, message, when in failed
        ]
        return sorted(out, key=lambda msg: str(msg["created_at"]), reverse=True)

    def error_message(self, volume_id: str) -> str | None:
        with self.db.session() as s:
            row = s.get(m.Volume, volume_id)
            return row.error_message if row else None


def _reason(exc: BaseException) -> str:
    if isinstance(exc, BackendError):
        return str(exc)
    if isinstance(exc, OSError):
        return exc.strerror or type(exc).__name__
    return str(exc)[:300] or type(exc).__name__
