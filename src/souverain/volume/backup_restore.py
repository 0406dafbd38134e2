"""Restoring a backup onto a volume: a new one, or an existing available one at least
as large. No HTTP.

The chunks are read back from the object store (each checked against the SHA-256 the
backup recorded), written at their offsets into a sparse raw file, and that file
becomes the volume's qcow2 (grown to the volume's size). Meanwhile the backup is
`restoring` and the volume `restoring-backup`; after, both go back to `available`, or
the volume to `error_restoring` with the reason.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import zlib
from pathlib import Path

from sqlalchemy import update

from souverain.common.context import RequestContext
from souverain.common.errors import BadRequest
from souverain.volume import models as m
from souverain.volume.backup_store import BackupObjects, BackupStoreError
from souverain.volume.backups import CHUNK_BYTES, GIB, Restored, visible_backup
from souverain.volume.creation import VolumeCreation
from souverain.volume.encryption import MANDATORY_SPEC, VolumeKeys
from souverain.volume.rules import Shared, copy_failure, visible_volume
from souverain.volume.schemas import VolumeCreate

log = logging.getLogger("souverain.volume")


class BackupRestore:
    def __init__(self, shared: Shared, creation: VolumeCreation, objects: BackupObjects) -> None:
        self.shared = shared
        self.creation = creation
        self.objects = objects

    def restore(
        self, ctx: RequestContext, backup_id: str, volume_id: str | None, name: str | None
    ) -> Restored:
        with self.shared.db.session() as s:
            backup = visible_backup(s, ctx, backup_id)
            if backup.status != "available":
                raise BadRequest(
                    f"Invalid backup: Backup {backup_id} is {backup.status}; it must be "
                    "available to restore."
                )
            bid, size = backup.id, backup.size
        if volume_id is None:
            new = VolumeCreate(size=size, name=name or f"restore_backup_{bid}")
            volume_id = self.creation.create(ctx, new)
        target = self._claim(ctx, bid, volume_id, size)
        self.shared.jobs.submit(self._run, bid, target)
        with self.shared.db.session() as s:
            vol = s.get(m.Volume, target)
            volume_name = (vol.name if vol is not None else None) or ""
        return Restored(bid, target, volume_name)

    def _claim(self, ctx: RequestContext, backup_id: str, volume_id: str, size: int) -> str:
        """Both rows moved in one transaction: backup `restoring`, volume `restoring-backup`."""
        now = self.shared.clock.now()
        with self.shared.db.session() as s:
            vol = visible_volume(s, ctx, volume_id)
            if vol.status != "available":
                raise BadRequest(
                    f"Invalid volume: Volume {volume_id} is {vol.status}; a backup restores "
                    "only onto an available volume."
                )
            if vol.size < size:
                raise BadRequest(
                    f"Invalid volume: Volume {volume_id} is {vol.size} GiB; the backup needs "
                    f"at least {size} GiB."
                )
            done = s.execute(
                update(m.VolumeBackup)
                .where(m.VolumeBackup.id == backup_id, m.VolumeBackup.status == "available")
                .values(status="restoring", updated_at=now)
                .returning(m.VolumeBackup.id)
            ).first()
            if done is None:
                raise BadRequest(f"Invalid backup: Backup {backup_id} changed status; try again.")
            vol.status, vol.updated_at = "restoring-backup", now
            return vol.id

    def _run(self, backup_id: str, volume_id: str) -> None:
        with self.shared.db.session() as s:
            backup = s.get(m.VolumeBackup, backup_id)
            vol = s.get(m.Volume, volume_id)
            assert backup is not None and vol is not None
            chunks, container, vsize = list(backup.chunks), backup.container, vol.size
            info = dict(backup.volume_info or {})
            keys = VolumeKeys(self.shared)
            key_id, project_id = vol.encryption_key_id, vol.project_id
            spec = keys.spec_for(s, vol.volume_type_id) or MANDATORY_SPEC
        backend = self.shared.backend
        raw = backend.temp_path(".raw")
        status, message = "available", None
        try:
            self._write_raw(raw, chunks, container, len(chunks) * CHUNK_BYTES)
            if key_id is None:
                backend.overwrite(volume_id, raw, vsize)
            else:  # an encrypted volume gets the backup's bytes encrypted under its own key
                files, key = keys.files(), keys.passphrase(project_id, key_id)
                final = files.files.volume_path(volume_id)
                files.copy(raw, "raw", None, final, vsize, spec, key)
        except Exception as exc:
            log.warning("restore of backup %s failed: %s", backup_id, exc)
            why = str(exc) if isinstance(exc, BackupStoreError) else copy_failure(exc)
            status, message = "error_restoring", f"Restore failed: {why}"
        finally:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(raw)
        now = self.shared.clock.now()
        with self.shared.db.session() as s:
            vol = s.get(m.Volume, volume_id)
            assert vol is not None
            vol.status, vol.error_message, vol.updated_at = status, message, now
            if status == "available":  # the source volume's metadata and flag come back too
                vol.meta = {**(vol.meta or {}), **info.get("metadata", {})}
                vol.bootable = bool(info.get("bootable", vol.bootable))
            s.execute(
                update(m.VolumeBackup)
                .where(m.VolumeBackup.id == backup_id)
                .values(status="available", updated_at=now)
            )

    def _write_raw(self, raw: Path, chunks: list[list[str]], container: str, size: int) -> None:
        with open(raw, "wb") as f:
            f.truncate(max(size, GIB))
            for index, (digest, key) in enumerate(chunks):
                if not key:
                    continue
                data = zlib.decompress(self.objects.get(container, key))
                if hashlib.sha256(data).hexdigest() != digest:
                    raise BackupStoreError(
                        f"Backup object {key} does not match its recorded SHA-256; the backup "
                        "is damaged."
                    )
                f.seek(index * CHUNK_BYTES)
                f.write(data)
            f.flush()
            os.fsync(f.fileno())
