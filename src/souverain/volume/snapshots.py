"""Snapshots: point-in-time copies of a volume, counted in the project's quota. No HTTP.

A snapshot of an in-use volume is refused only when the caller sent `force: false` below
microversion 3.66 (schemas.snapshot_create says why a missing flag is accepted).
Its copy is crash-consistent: the compute service holds the guest's writes (paused, its
I/O drained and flushed) while the file is read, so the copy is the disk as a power cut
at that instant would leave it. The guest pauses for the length of the copy. A snapshot
is `creating` while its file is made, then `available` or `error` with a message.
"""

from __future__ import annotations

import logging
import uuid
from typing import Any

from sqlalchemy import update

from souverain.common.context import RequestContext
from souverain.common.errors import BadRequest, Forbidden
from souverain.volume import metadata
from souverain.volume import models as m
from souverain.volume.encryption import MANDATORY_SPEC, VolumeKeys
from souverain.volume.luks import LuksSpec
from souverain.volume.quotas import Quotas
from souverain.volume.rules import (
    Page,
    Shared,
    VolumeQuery,
    copy_failure,
    guest_writes_held,
    owned_listing,
    require_admin,
    sorted_page,
    visible_snapshot,
    visible_volume,
)
from souverain.volume.schemas import Described, SnapshotCreate
from souverain.volume.state import VolumeStates

log = logging.getLogger("souverain.volume")

DELETABLE = ("available", "error", "error_deleting")
# os-update_snapshot_status, what a snapshot's maker (Nova's assisted snapshots) reports:
# from each status it may start in, the statuses it may report (Cinder's transitions)
REPORTED: dict[str, frozenset[str]] = {
    "creating": frozenset({"creating", "available", "error"}),
    "deleting": frozenset({"deleting", "error_deleting"}),
}


def sort_fields(row: m.Snapshot) -> dict[str, Any]:
    return {
        "id": row.id,
        "name": row.name,
        "status": row.status,
        "size": row.size,
        "created_at": row.created_at,
        "updated_at": row.updated_at,
    }


class Snapshots:
    def __init__(self, shared: Shared, states: VolumeStates, quotas: Quotas) -> None:
        self.shared = shared
        self.states = states
        self.quotas = quotas
        self.keys = VolumeKeys(shared)

    def create(self, ctx: RequestContext, req: SnapshotCreate) -> m.Snapshot:
        if not ctx.project_id:
            raise Forbidden("Snapshots belong to projects: use a project-scoped token.")
        snapshot_id = str(uuid.uuid4())
        now = self.shared.clock.now()
        with self.shared.db.session() as s:
            vol = visible_volume(s, ctx, req.volume_id)
            if vol.status == "in-use" and not req.force:
                raise BadRequest(
                    f"Invalid volume: Volume {req.volume_id} is in-use and force=false was sent; "
                    "send force=true or leave 'force' out (the snapshot is crash-consistent)."
                )
            if vol.status not in ("available", "in-use"):
                raise BadRequest(
                    f"Invalid volume: Volume {req.volume_id} is {vol.status}; it must be available."
                )
            server_id = vol.server_id if vol.status == "in-use" else None
            vid, size, project_id = vol.id, vol.size, vol.project_id
            key_id = vol.encryption_key_id
            spec = self.keys.spec_for(s, vol.volume_type_id) if key_id else None
            self.quotas.lock(s, project_id)
            self.quotas.claim(s, project_id, snapshots=1, gigabytes=size)
            s.add(
                m.Snapshot(
                    id=snapshot_id,
                    project_id=project_id,
                    user_id=ctx.user_id,
                    volume_id=vid,
                    name=req.name,
                    description=req.description,
                    size=size,
                    status="creating",
                    meta=dict(req.metadata),
                    encryption_key_id=key_id,
                    created_at=now,
                    updated_at=now,
                )
            )
        self.shared.meter.gauge(project_id, "snapshot.gb", snapshot_id, size)
        sealed = (project_id, key_id, spec or MANDATORY_SPEC) if key_id else None
        self._copy(vid, snapshot_id, size, server_id, sealed)
        return self.get(ctx, snapshot_id)

    def _copy(
        self,
        volume_id: str,
        snapshot_id: str,
        size: int,
        server_id: str | None,
        sealed: tuple[str, str, LuksSpec] | None = None,
    ) -> None:
        """The snapshot's bytes; an encrypted volume's snapshot is LUKS under its key."""
        backend = self.shared.backend
        try:
            with guest_writes_held(self.shared, server_id):
                if sealed is None:
                    backend.take_snapshot(
                        volume_id, snapshot_id, size, shared=server_id is not None
                    )
                else:
                    self._copy_sealed(volume_id, snapshot_id, size, server_id, sealed)
        except Exception as exc:  # the compute service's errors too: the snapshot ends
            log.warning("snapshot %s failed: %s", snapshot_id, exc)
            why = copy_failure(exc)
            self.states.set_snapshot(snapshot_id, "error", f"Snapshot failed: {why}")
        else:
            self.states.set_snapshot(snapshot_id, "available")

    def _copy_sealed(
        self,
        volume_id: str,
        snapshot_id: str,
        size: int,
        server_id: str | None,
        sealed: tuple[str, str, LuksSpec],
    ) -> None:
        project_id, key_id, spec = sealed
        key = self.keys.passphrase(project_id, key_id)
        shared = server_id is not None
        self.keys.sealed().take_snapshot(volume_id, snapshot_id, size, spec, key, shared)

    def get(self, ctx: RequestContext, snapshot_id: str) -> m.Snapshot:
        with self.shared.db.session() as s:
            return visible_snapshot(s, ctx, snapshot_id)

    def list_visible(self, ctx: RequestContext, query: VolumeQuery) -> Page[m.Snapshot]:
        with self.shared.db.session() as s:
            stmt = owned_listing(m.Snapshot, ctx, query)
            f = query.filters
            wanted: dict[str, str] = f.get("metadata", {})
            rows = [
                r
                for r in s.scalars(stmt)
                if all((r.meta or {}).get(k) == v for k, v in wanted.items())
            ]
        return sorted_page(rows, query, sort_fields)

    def update(self, ctx: RequestContext, snapshot_id: str, req: Described) -> m.Snapshot:
        with self.shared.db.session() as s:
            row = visible_snapshot(s, ctx, snapshot_id)
            for attr, value in req.fields.items():
                setattr(row, attr, value)
            if req.metadata is not None:
                row.meta = dict(req.metadata)
            row.updated_at = self.shared.clock.now()
            s.flush()
            return row

    def metadata(self, ctx: RequestContext, snapshot_id: str) -> dict[str, str]:
        with self.shared.db.session() as s:
            return dict(visible_snapshot(s, ctx, snapshot_id).meta or {})

    def set_metadata(
        self, ctx: RequestContext, snapshot_id: str, items: dict[str, str], replace: bool = False
    ) -> dict[str, str]:
        with self.shared.db.session() as s:
            row = visible_snapshot(s, ctx, snapshot_id)
            return metadata.set_items(row, items, replace, self.shared.clock.now())

    def delete_metadata_item(self, ctx: RequestContext, snapshot_id: str, key: str) -> None:
        with self.shared.db.session() as s:
            metadata.delete_item(
                visible_snapshot(s, ctx, snapshot_id), key, self.shared.clock.now()
            )

    def delete(self, ctx: RequestContext, snapshot_id: str, force: bool = False) -> None:
        if force:
            require_admin(ctx)
        with self.shared.db.session() as s:
            row = visible_snapshot(s, ctx, snapshot_id)
            if row.status not in DELETABLE and not force:
                raise BadRequest(
                    f"Invalid snapshot: Snapshot {snapshot_id} is {row.status}; it must be "
                    "available or error to delete."
                )
            sid = row.id
            dependents = self.shared.backend.snapshot_dependents(row.volume_id, sid)
            if dependents:
                raise BadRequest(
                    f"Invalid snapshot: Snapshot {snapshot_id} has {dependents} dependent "
                    "volume(s) cloned from it; delete them first."
                )
            done = s.execute(
                update(m.Snapshot)
                .where(m.Snapshot.id == sid, m.Snapshot.status == row.status)
                .values(status="deleting", updated_at=self.shared.clock.now())
                .returning(m.Snapshot.id)
            ).first()
            if done is None:
                raise BadRequest(
                    f"Invalid snapshot: Snapshot {snapshot_id} changed status; try again."
                )
        self.finish_delete(sid)

    def reset_status(self, ctx: RequestContext, snapshot_id: str, status: str) -> None:
        require_admin(ctx)
        with self.shared.db.session() as s:
            row = visible_snapshot(s, ctx, snapshot_id)
            row.status = status
            row.updated_at = self.shared.clock.now()

    def report_status(
        self, ctx: RequestContext, snapshot_id: str, status: str, progress: str | None
    ) -> None:
        """os-update_snapshot_status: one compare-and-set along REPORTED, a 400 naming the
        allowed statuses otherwise. As Cinder's default policy, the snapshot's project
        members may report (Nova reports with the user's token), readers not (the edge)."""
        with self.shared.db.session() as s:
            row = visible_snapshot(s, ctx, snapshot_id)
            current = row.status
            allowed = REPORTED.get(current)
            if allowed is None:
                raise BadRequest(
                    f"Invalid input received: Snapshot status {current} not allowed for "
                    "update_snapshot_status; only a creating or deleting snapshot reports."
                )
            if status not in allowed:
                raise BadRequest(
                    f"Invalid input received: Provided snapshot status {status[:32]!r} not "
                    f"allowed for snapshot with status {current}; send one of "
                    f"{', '.join(sorted(allowed))}."
                )
            values: dict[str, Any] = {"status": status, "updated_at": self.shared.clock.now()}
            if progress is not None:
                values["progress"] = progress
            done = s.execute(
                update(m.Snapshot)
                .where(m.Snapshot.id == row.id, m.Snapshot.status == current)
                .values(**values)
                .returning(m.Snapshot.id)
            ).first()
            if done is None:
                raise BadRequest(
                    f"Invalid snapshot: Snapshot {snapshot_id} changed status; try again."
                )

    def finish_delete(self, snapshot_id: str) -> None:
        """The bytes, then the row: a crash between leaves `deleting`, finished at start."""
        with self.shared.db.session() as s:
            snap = s.get(m.Snapshot, snapshot_id)
            volume_id = snap.volume_id if snap is not None else None
            key_id = snap.encryption_key_id if snap is not None else None
        if volume_id is not None:
            self.shared.backend.remove_snapshot(volume_id, snapshot_id)
        with self.shared.db.session() as s:
            row = s.get(m.Snapshot, snapshot_id)
            project_id = row.project_id if row is not None else None
            if row is not None:
                s.delete(row)
        if project_id is not None:
            self.shared.meter.gauge(project_id, "snapshot.gb", snapshot_id, 0)
            self.keys.forget(project_id, key_id)  # the volume's key, once neither needs it
