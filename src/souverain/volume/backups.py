"""Volume backups, kept as objects in the project's own buckets. No HTTP.

As Cinder's Swift backup driver keeps them: the volume read as raw bytes, cut into
fixed-size chunks (CHUNK_BYTES), each chunk one zlib-compressed object, plus one JSON
metadata object (`<prefix>_metadata`) listing every chunk with its SHA-256 and object.
Chunks that are all zeros are recorded but not stored (a thin volume's holes).
An incremental backup stores only the chunks whose SHA-256 differs from its parent's
(the volume's latest available backup) and names the parent's objects for the rest;
a backup others depend on cannot be deleted.

An encrypted volume is backed up as its ciphertext, as Cinder does: the bytes of its LUKS
qcow2 file, or of its RBD image (a bare LUKS container), chunked the same way (nothing is
decrypted on the way to the object store; `volume_info` names which of the two it holds).
The backup owns a clone of the volume's key in the key manager (Cinder's backup
`encryption_key_id`, a secret of the backup's project, kept in `volume_info` with the
volume type and key size a restore must match); deleting the backup deletes that secret.

The bucket is the create request's `container`, or `volumebackups-<project id>`:
bucket names are global in S3, so each project gets its own default bucket. The copy
of an in-use volume (only with `force`) is crash-consistent, as for snapshots: the
guest's writes are held while the volume is exported. Work runs in the request;
the backup is `creating` (the volume `backing-up`) meanwhile, then `available` or
`error` with `fail_reason`.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import hashlib
import json
import logging
import os
import uuid
import zlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from souverain.common.context import RequestContext
from souverain.common.errors import BadRequest, Forbidden, NotFound
from souverain.common.tenancy import may_act_on
from souverain.volume import models as m
from souverain.volume.backup_store import BackupObjects, BackupStoreError
from souverain.volume.encryption import MANDATORY_SPEC, VolumeKeys
from souverain.volume.quotas import Quotas
from souverain.volume.rules import (
    UUID_RE,
    Page,
    QuotaExceeded,
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

log = logging.getLogger("souverain.volume")

CHUNK_BYTES = 32 * 1024 * 1024
GIB = 1024**3
ZERO_SHA256 = hashlib.sha256(bytes(CHUNK_BYTES)).hexdigest()
DEFAULT_CONTAINER = "volumebackups"
DELETABLE = ("available", "error")
BACKUP_STATUSES = ("creating", "available", "deleting", "error", "restoring", "error_restoring")


@dataclass(frozen=True)
class BackupCreate:
    volume_id: str
    name: str | None = None
    description: str | None = None
    container: str | None = None
    incremental: bool = False
    force: bool = False
    snapshot_id: str | None = None
    metadata: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Restored:
    backup_id: str
    volume_id: str
    volume_name: str


def default_container(project_id: str) -> str:
    return f"{DEFAULT_CONTAINER}-{project_id.replace('_', '-').lower()}"[:63]


def visible_backup(s: Session, ctx: RequestContext, backup_id: str) -> m.VolumeBackup:
    row = s.get(m.VolumeBackup, backup_id.lower()) if UUID_RE.match(backup_id) else None
    if row is None or not may_act_on(ctx, row.project_id):
        raise NotFound(f"Backup {backup_id} could not be found.")
    return row


def has_dependents(s: Session, backup_id: str) -> bool:
    return (
        s.scalar(select(m.VolumeBackup.id).where(m.VolumeBackup.parent_id == backup_id).limit(1))
        is not None
    )


def _sort_fields(row: m.VolumeBackup) -> dict[str, Any]:
    return {
        "id": row.id,
        "name": row.name,
        "status": row.status,
        "size": row.size,
        "created_at": row.created_at,
        "updated_at": row.updated_at,
    }


# what `volume_info` holds of an encrypted backup: its own key, and what a restore matches
BACKUP_KEY = "encryption_key_id"
FILE_BYTES = "file_bytes"  # the ciphertext's length, the chunks' last byte
CONTAINER = "luks_container"  # `SealedStore.container`: "qcow2" (also when absent) or "luks"


def backup_key_of(row: m.VolumeBackup) -> str | None:
    """The backup's own key (Cinder's `encryption_key_id`); None for a plain backup."""
    key = (row.volume_info or {}).get(BACKUP_KEY)
    return key if isinstance(key, str) else None


def _check_volume(vol: m.Volume, req: BackupCreate) -> None:
    """A volume backed up itself (not through a snapshot) is available, or in-use with
    force."""
    if vol.status == "in-use" and not req.force:
        raise BadRequest(
            f"Invalid volume: Volume {req.volume_id} is in-use; send force=true for a "
            "crash-consistent backup of an attached volume, back up a snapshot of it, or "
            "detach it first."
        )
    if vol.status not in ("available", "in-use"):
        raise BadRequest(
            f"Invalid volume: Volume {req.volume_id} is {vol.status}; it must be "
            "available or in-use."
        )


def _raw_chunks(path: Path) -> Iterator[bytes]:
    with open(path, "rb") as f:
        while data := f.read(CHUNK_BYTES):
            yield data


class Backups:
    def __init__(self, shared: Shared, quotas: Quotas, objects: BackupObjects) -> None:
        self.shared = shared
        self.quotas = quotas
        self.objects = objects

    # ------------------------------------------------------------------ create

    def create(self, ctx: RequestContext, req: BackupCreate) -> m.VolumeBackup:
        if not ctx.project_id:
            raise Forbidden("Backups belong to projects: use a project-scoped token.")
        container = req.container or default_container(ctx.project_id)
        backup_id = str(uuid.uuid4())
        # before the quota lock: the key manager writes to the database too
        project_id, sealed = self._backup_key(ctx, req, backup_id)
        try:
            row, server_id = self._claim(ctx, req, backup_id, container, sealed)
        except BaseException:
            VolumeKeys(self.shared).drop(project_id, sealed.get(BACKUP_KEY))
            raise
        try:
            self.objects.ensure_bucket(row.project_id, ctx.user_id, container)
        except BackupStoreError as exc:
            self._forget(row, server_id)
            raise BadRequest(f"Invalid container: {exc}") from None
        self.shared.jobs.submit(self._run_backup, backup_id, server_id)
        return self.get(ctx, backup_id)

    def _backup_key(
        self, ctx: RequestContext, req: BackupCreate, backup_id: str
    ) -> tuple[str, dict[str, Any]]:
        """The source's project, and for an encrypted source what the backup records: a
        clone of the source's key for the backup to own, the volume type and key size."""
        keys = VolumeKeys(self.shared)
        with self.shared.db.session() as s:
            vol = visible_volume(s, ctx, req.volume_id)
            snap = visible_snapshot(s, ctx, req.snapshot_id) if req.snapshot_id else None
            # a snapshot keeps the key it was taken under (a restore may since have changed
            # the volume's)
            source_key = (snap or vol).encryption_key_id
            project_id, type_id = vol.project_id, vol.volume_type_id
            spec = keys.spec_for(s, type_id) or MANDATORY_SPEC
        if source_key is None:
            return project_id, {}
        container = keys.sealed().container
        clone = keys.clone_key(
            project_id, source_key, project_id, ctx.user_id, f"backup-{backup_id}"
        )
        sealed = {
            BACKUP_KEY: clone,
            "volume_type_id": type_id,
            "luks_key_size": spec.key_size,
            CONTAINER: container,
        }
        return project_id, sealed

    def _claim(
        self,
        ctx: RequestContext,
        req: BackupCreate,
        backup_id: str,
        container: str,
        sealed: dict[str, Any],
    ) -> tuple[m.VolumeBackup, str | None]:
        """Check the volume and the quota, insert the row `creating`; the volume's server."""
        now = self.shared.clock.now()
        with self.shared.db.session() as s:
            vol = visible_volume(s, ctx, req.volume_id)
            snap = self._snapshot(s, ctx, req, vol) if req.snapshot_id else None
            if snap is None:
                _check_volume(vol, req)
            taken = snap.created_at if snap is not None else None
            parent_id = self._parent(s, vol.id, taken) if req.incremental else None
            size = snap.size if snap is not None else vol.size
            self.quotas.lock(s, vol.project_id)
            self.claim(s, vol.project_id, size)
            # a snapshot's file is never attached: only a volume's copy holds a guest's writes
            server_id = vol.server_id if snap is None and vol.status == "in-use" else None
            if snap is not None:
                snap.status, snap.updated_at = "backing-up", now
            elif server_id is None:
                vol.status, vol.updated_at = "backing-up", now
            row = m.VolumeBackup(
                id=backup_id,
                project_id=vol.project_id,
                user_id=ctx.user_id,
                volume_id=vol.id,
                snapshot_id=snap.id if snap is not None else None,
                parent_id=parent_id,
                name=req.name,
                description=req.description,
                container=container,
                size=size,
                status="creating",
                availability_zone=vol.availability_zone,
                meta=dict(req.metadata),
                chunks=[],
                volume_info={
                    "metadata": dict(vol.meta or {}),
                    "bootable": vol.bootable,
                    **sealed,
                },
                object_count=0,
                stored_bytes=0,
                data_timestamp=taken or now,
                created_at=now,
                updated_at=now,
            )
            s.add(row)
            s.flush()
            s.expunge(row)
        return row, server_id

    @staticmethod
    def _snapshot(s: Session, ctx: RequestContext, req: BackupCreate, vol: m.Volume) -> m.Snapshot:
        """The snapshot to back up instead of the volume: the volume's own, available."""
        assert req.snapshot_id is not None
        snap = visible_snapshot(s, ctx, req.snapshot_id)
        if snap.volume_id != vol.id:
            raise BadRequest(
                f"Invalid volume: Snapshot {req.snapshot_id} is not a snapshot of volume "
                f"{req.volume_id}; send the volume_id of the snapshot's own volume."
            )
        if snap.status != "available":
            raise BadRequest(
                f"Invalid snapshot: Snapshot {req.snapshot_id} is {snap.status}; a snapshot "
                "to be backed up must be available."
            )
        return snap

    @staticmethod
    def _parent(s: Session, volume_id: str, before: dt.datetime | None = None) -> str:
        """The latest available backup of the volume; for a snapshot's backup (`before`:
        when the snapshot was taken), the latest whose data is older than the snapshot."""
        stmt = select(m.VolumeBackup).where(
            m.VolumeBackup.volume_id == volume_id, m.VolumeBackup.status == "available"
        )
        if before is not None:
            stmt = stmt.where(m.VolumeBackup.data_timestamp < before)
        latest = s.scalars(stmt.order_by(m.VolumeBackup.data_timestamp.desc()).limit(1)).first()
        if latest is None:
            raise BadRequest(
                f"Invalid backup: No backups available to do an incremental backup of volume "
                f"{volume_id}; make a full backup first."
            )
        return latest.id

    def claim(self, s: Session, project_id: str, size: int) -> None:
        limits = self.quotas.limits_of(s, project_id)
        used = self.quotas.usage_of(s, project_id)
        if 0 <= limits["backups"] < used["backups"] + 1:
            raise QuotaExceeded(
                f"BackupLimitExceeded: Maximum number of backups allowed ({limits['backups']}) "
                "exceeded."
            )
        if 0 <= limits["backup_gigabytes"] < used["backup_gigabytes"] + size:
            raise QuotaExceeded(
                "VolumeBackupSizeExceedsAvailableQuota: Requested backup exceeds allowed Backup "
                f"gigabytes quota. Requested {size}G, quota is {limits['backup_gigabytes']}G "
                f"and {used['backup_gigabytes']}G has been consumed."
            )

    def _forget(self, made: m.VolumeBackup, server_id: str | None) -> None:
        with self.shared.db.session() as s:
            row = s.get(m.VolumeBackup, made.id)
            if row is not None:
                s.delete(row)
        VolumeKeys(self.shared).drop(made.project_id, backup_key_of(made))
        self._release(made, server_id)

    def _release(self, row: m.VolumeBackup, server_id: str | None) -> None:
        """The backed-up snapshot or detached volume `available` again (an attached
        volume stayed `in-use`)."""
        if row.snapshot_id is not None:
            source: type[m.Volume] | type[m.Snapshot] = m.Snapshot
            source_id = row.snapshot_id
        elif server_id is None:
            source, source_id = m.Volume, row.volume_id
        else:
            return
        with self.shared.db.session() as s:
            s.execute(
                update(source)
                .where(source.id == source_id, source.status == "backing-up")
                .values(status="available", updated_at=self.shared.clock.now())
            )

    def _run_backup(self, backup_id: str, server_id: str | None) -> None:
        with self.shared.db.session() as s:
            row = s.get(m.VolumeBackup, backup_id)
            assert row is not None
            parent = s.get(m.VolumeBackup, row.parent_id) if row.parent_id else None
            parent_chunks = list(parent.chunks) if parent is not None else []
            s.expunge(row)
        backend = self.shared.backend
        raw = backend.temp_path(".raw")
        sealed = backup_key_of(row) is not None
        try:
            with guest_writes_held(self.shared, server_id):
                if sealed:
                    VolumeKeys(self.shared).sealed().ciphertext(row.volume_id, row.snapshot_id, raw)
                elif row.snapshot_id is not None:
                    backend.export_snapshot(row.volume_id, row.snapshot_id, raw, "raw")
                else:
                    backend.export_volume(
                        row.volume_id, raw, out_format="raw", shared=server_id is not None
                    )
            info = {**row.volume_info, FILE_BYTES: raw.stat().st_size} if sealed else None
            chunks, stored = self._store_chunks(row, raw, parent_chunks, info)
        except Exception as exc:
            log.warning("backup %s failed: %s", backup_id, exc)
            why = str(exc) if isinstance(exc, BackupStoreError) else copy_failure(exc)
            self._finish(backup_id, "error", fail_reason=f"Backup failed: {why}")
        else:
            self._finish(
                backup_id,
                "available",
                chunks=chunks,
                object_count=sum(1 for c in chunks if c[1]),
                stored_bytes=stored,
                **({"volume_info": info} if info is not None else {}),
            )
        finally:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(raw)
            self._release(row, server_id)

    def _store_chunks(
        self,
        row: m.VolumeBackup,
        raw: Path,
        parent: list[list[str]],
        info: dict[str, Any] | None = None,
    ) -> tuple[list[list[str]], int]:
        """Each chunk's [sha256, object key] ("" for zeros); the bytes this backup stored."""
        stamp = row.created_at.strftime("%Y%m%d%H%M%S")
        prefix = f"volume_{row.volume_id}/{stamp}/az_{row.availability_zone}_backup_{row.id}"
        chunks: list[list[str]] = []
        stored = 0
        for index, data in enumerate(_raw_chunks(raw)):
            digest = hashlib.sha256(data).hexdigest()
            if data.count(0) == len(data):
                chunks.append([digest, ""])
                continue
            if index < len(parent) and parent[index][0] == digest and parent[index][1]:
                chunks.append([digest, parent[index][1]])
                continue
            key = f"{prefix}-{index + 1:05d}"
            body = zlib.compress(data, 1)
            self.objects.put(row.project_id, row.user_id, row.container, key, body)
            chunks.append([digest, key])
            stored += len(body)
        document = {
            "backup_id": row.id,
            "volume_id": row.volume_id,
            "parent_id": row.parent_id,
            "version": "1.0.0",
            "chunk_size": CHUNK_BYTES,
            "compression": "zlib",
            "volume_size_gib": row.size,
            "volume_info": info if info is not None else row.volume_info,
            "objects": [
                {"offset": i * CHUNK_BYTES, "sha256": c[0], "object": c[1] or None}
                for i, c in enumerate(chunks)
            ],
        }
        meta = json.dumps(document, indent=1).encode()
        self.objects.put(row.project_id, row.user_id, row.container, f"{prefix}_metadata", meta)
        return chunks, stored + len(meta)

    def _finish(self, backup_id: str, status: str, **values: Any) -> None:
        with self.shared.db.session() as s:
            s.execute(
                update(m.VolumeBackup)
                .where(m.VolumeBackup.id == backup_id)
                .values(status=status, updated_at=self.shared.clock.now(), **values)
            )

    # ------------------------------------------------------------------ read, update

    def get(self, ctx: RequestContext, backup_id: str) -> m.VolumeBackup:
        with self.shared.db.session() as s:
            row = visible_backup(s, ctx, backup_id)
            s.expunge(row)
            return row

    def dependents(self, backup_ids: list[str]) -> set[str]:
        """Which of these backups an incremental backup names as its parent."""
        if not backup_ids:
            return set()
        with self.shared.db.session() as s:
            return set(
                s.scalars(
                    select(m.VolumeBackup.parent_id).where(m.VolumeBackup.parent_id.in_(backup_ids))
                )
            )

    def list_visible(self, ctx: RequestContext, query: VolumeQuery) -> Page[m.VolumeBackup]:
        with self.shared.db.session() as s:
            stmt = owned_listing(m.VolumeBackup, ctx, query)
            rows = list(s.scalars(stmt))
            for row in rows:
                s.expunge(row)
        return sorted_page(rows, query, _sort_fields)

    def update(
        self,
        ctx: RequestContext,
        backup_id: str,
        fields: dict[str, str | None],
        metadata: dict[str, str] | None,
    ) -> m.VolumeBackup:
        with self.shared.db.session() as s:
            row = visible_backup(s, ctx, backup_id)
            for attr, value in fields.items():
                setattr(row, attr, value)
            if metadata is not None:
                row.meta = dict(metadata)
            row.updated_at = self.shared.clock.now()
            s.flush()
            s.expunge(row)
            return row

    def reset_status(self, ctx: RequestContext, backup_id: str, status: str) -> None:
        require_admin(ctx)
        if status not in ("available", "error"):
            raise BadRequest(
                "Invalid input received: a backup's status resets to available or error."
            )
        with self.shared.db.session() as s:
            row = visible_backup(s, ctx, backup_id)
            row.status, row.updated_at = status, self.shared.clock.now()

    # ------------------------------------------------------------------ delete

    def delete(self, ctx: RequestContext, backup_id: str, force: bool = False) -> None:
        if force:
            require_admin(ctx)
        with self.shared.db.session() as s:
            row = visible_backup(s, ctx, backup_id)
            if row.status not in DELETABLE and not (force and row.status != "deleting"):
                raise BadRequest(
                    f"Invalid backup: Backup {backup_id} is {row.status}; it must be available "
                    "or error to delete."
                )
            if has_dependents(s, row.id):
                raise BadRequest(
                    f"Invalid backup: Incremental backups exist for backup {backup_id}; "
                    "delete them first."
                )
            bid = row.id
            done = s.execute(
                update(m.VolumeBackup)
                .where(m.VolumeBackup.id == bid, m.VolumeBackup.status == row.status)
                .values(status="deleting", updated_at=self.shared.clock.now())
                .returning(m.VolumeBackup.id)
            ).first()
            if done is None:
                raise BadRequest(f"Invalid backup: Backup {backup_id} changed status; try again.")
        self.finish_delete(bid)

    def finish_delete(self, backup_id: str) -> None:
        """This backup's own objects (not its parent's), then the row."""
        with self.shared.db.session() as s:
            row = s.get(m.VolumeBackup, backup_id)
            if row is None:
                return
            s.expunge(row)
        stamp = row.created_at.strftime("%Y%m%d%H%M%S")
        prefix = f"volume_{row.volume_id}/{stamp}/az_{row.availability_zone}_backup_{row.id}"
        own = {c[1] for c in row.chunks if c[1].startswith(prefix)}
        try:
            for key in [*sorted(own), f"{prefix}_metadata"]:
                self.objects.delete(row.project_id, row.user_id, row.container, key)
        except BackupStoreError as exc:
            self._finish(backup_id, "error", fail_reason=f"Delete failed: {exc}")
            return
        with self.shared.db.session() as s:
            gone = s.get(m.VolumeBackup, backup_id)
            if gone is not None:
                s.delete(gone)
        VolumeKeys(self.shared).drop(row.project_id, backup_key_of(row))  # Cinder's too

    # ------------------------------------------------------------------ start-up

    def recover(self) -> None:
        """What a stop left mid-way: a copy in flight failed, a restore or delete ends."""
        now = self.shared.clock.now()
        with self.shared.db.session() as s:
            s.execute(
                update(m.VolumeBackup)
                .where(m.VolumeBackup.status == "creating")
                .values(status="error", fail_reason="Backup failed: the service stopped.")
            )
            s.execute(
                update(m.VolumeBackup)
                .where(m.VolumeBackup.status == "restoring")
                .values(status="available", updated_at=now)
            )
            for source in (m.Volume, m.Snapshot):
                s.execute(
                    update(source)
                    .where(source.status == "backing-up")
                    .values(status="available", updated_at=now)
                )
            s.execute(
                update(m.Volume)
                .where(m.Volume.status == "restoring-backup")
                .values(
                    status="error_restoring",
                    error_message="Restore failed: the service stopped.",
                    updated_at=now,
                )
            )
            deleting = list(
                s.scalars(select(m.VolumeBackup.id).where(m.VolumeBackup.status == "deleting"))
            )
        for backup_id in deleting:
            self.finish_delete(backup_id)
