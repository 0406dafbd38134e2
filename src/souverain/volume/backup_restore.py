"""Restoring a backup onto a volume: a new one, or an existing available one at least
as large. No HTTP.

The chunks are read back from the object store (each checked against the SHA-256 the
backup recorded), written at their offsets into a sparse raw file, and that file
becomes the volume's qcow2 (grown to the volume's size). Meanwhile the backup is
`restoring` and the volume `restoring-backup`; after, both go back to `available`, or
the volume to `error_restoring` with the reason.

An encrypted backup (its volume's LUKS qcow2 file or LUKS RBD image, see backups.py)
restores as Cinder's does: to a new volume of the backup's volume type, or onto an existing
volume encrypted the same way, on a backend that holds the same kind of container; the
backup's bytes become the volume's, and the volume's key becomes a new clone of the
backup's (the volume's former key is deleted once nothing names it).
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import zlib
from pathlib import Path
from typing import Any

from sqlalchemy import update
from sqlalchemy.orm import Session

from souverain.common.context import RequestContext
from souverain.common.errors import BadRequest, NotFound
from souverain.volume import models as m
from souverain.volume.backup_store import BackupObjects, BackupStoreError
from souverain.volume.backups import (
    BACKUP_KEY,
    CHUNK_BYTES,
    CONTAINER,
    FILE_BYTES,
    GIB,
    Restored,
    backup_key_of,
    visible_backup,
)
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
            bid, size, info = backup.id, backup.size, dict(backup.volume_info or {})
        self._check_container(bid, info)
        if volume_id is None:
            new = VolumeCreate(
                size=size,
                name=name or f"restore_backup_{bid}",
                volume_type=self._sealed_type(ctx, bid, info),
            )
            volume_id = self.creation.create(ctx, new)
        target = self._claim(ctx, bid, volume_id, size, info)
        self.shared.jobs.submit(self._run, bid, target)
        with self.shared.db.session() as s:
            vol = s.get(m.Volume, target)
            volume_name = (vol.name if vol is not None else None) or ""
        return Restored(bid, target, volume_name)

    def _check_container(self, backup_id: str, info: dict[str, Any]) -> None:
        """An encrypted backup's bytes are a LUKS qcow2 file or a bare LUKS container: only
        a backend that holds the same kind can take them."""
        if BACKUP_KEY not in info:
            return
        held = str(info.get(CONTAINER) or "qcow2")  # backups from before the field: files
        if held != VolumeKeys(self.shared).sealed().container:
            raise BadRequest(
                f"Invalid backup: Backup {backup_id} holds an encrypted volume of another "
                f"volume backend; this cloud's {self.shared.backend.kind} volume backend "
                "cannot restore it."
            )

    def _sealed_type(self, ctx: RequestContext, backup_id: str, info: dict[str, Any]) -> str | None:
        """The type of the new volume an encrypted backup restores to: its volume's, which
        must still exist, be usable and encrypt (None: the default type, a plain backup)."""
        if BACKUP_KEY not in info:
            return None
        type_id = str(info.get("volume_type_id") or "")
        with self.shared.db.session() as s:
            try:
                self.creation.types.usable(s, ctx, type_id)
            except NotFound:
                encrypts = False
            else:
                encrypts = VolumeKeys(self.shared).spec_for(s, type_id) is not None
        if not encrypts:
            raise BadRequest(
                f"Invalid backup: Backup {backup_id} is encrypted and its volume type {type_id} "
                "is gone or no longer encrypts; restore it onto an existing volume of an "
                "encrypted type."
            )
        return type_id

    def _claim(
        self, ctx: RequestContext, backup_id: str, volume_id: str, size: int, info: dict[str, Any]
    ) -> str:
        """Both rows moved in one transaction: backup `restoring`, volume `restoring-backup`."""
        now = self.shared.clock.now()
        with self.shared.db.session() as s:
            vol = visible_volume(s, ctx, volume_id)
            _check_encryption(s, VolumeKeys(self.shared), vol, backup_id, info)
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
            backup_key = (backup.project_id, backup_key_of(backup))
            keys = VolumeKeys(self.shared)
            key_id, project_id = vol.encryption_key_id, vol.project_id
            spec = keys.spec_for(s, vol.volume_type_id) or MANDATORY_SPEC
        backend = self.shared.backend
        raw = backend.temp_path(".raw")
        status, message, new_key = "available", None, None
        try:
            if backup_key[1] is not None:  # the ciphertext, opened by a clone of its key
                self._write_raw(raw, chunks, container, int(info.get(FILE_BYTES) or 0))
                new_key = self._adopt(raw, volume_id, (project_id, vsize), backup_key)
            elif key_id is None:
                self._write_raw(raw, chunks, container, max(len(chunks) * CHUNK_BYTES, GIB))
                backend.overwrite(volume_id, raw, vsize)
            else:  # an encrypted volume gets the backup's bytes encrypted under its own key
                self._write_raw(raw, chunks, container, max(len(chunks) * CHUNK_BYTES, GIB))
                key = keys.passphrase(project_id, key_id)
                keys.sealed().overwrite(volume_id, raw, vsize, spec, key)
        except Exception as exc:
            log.warning("restore of backup %s failed: %s", backup_id, exc)
            why = str(exc) if isinstance(exc, BackupStoreError) else copy_failure(exc)
            status, message = "error_restoring", f"Restore failed: {why}"
        finally:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(raw)
        self._finish(backup_id, volume_id, status, message, info, new_key)
        if new_key is not None:  # the volume's former key, unless a snapshot still needs it
            keys.forget(project_id, key_id, volume_id)

    def _adopt(
        self,
        raw: Path,
        volume_id: str,
        volume: tuple[str, int],
        backup_key: tuple[str, str | None],
    ) -> str:
        """The backup's ciphertext made the volume's (its project and size in `volume`),
        under a new clone of the backup's key; that clone's id."""
        keys = VolumeKeys(self.shared)
        project_id, vsize = volume
        source_project, source_key = backup_key
        assert source_key is not None
        sealed = keys.sealed()
        name = f"volume-{volume_id}"
        new_key = keys.clone_key(source_project, source_key, project_id, None, name)
        try:
            key = keys.passphrase(project_id, new_key)
            sealed.adopt(volume_id, raw, vsize, key)
            keys.adopt(project_id, new_key, volume_id)
        except BaseException:
            keys.drop(project_id, new_key)
            raise
        return new_key

    def _finish(
        self,
        backup_id: str,
        volume_id: str,
        status: str,
        message: str | None,
        info: dict[str, Any],
        new_key: str | None,
    ) -> None:
        now = self.shared.clock.now()
        with self.shared.db.session() as s:
            vol = s.get(m.Volume, volume_id)
            assert vol is not None
            vol.status, vol.error_message, vol.updated_at = status, message, now
            if status == "available":  # the source volume's metadata and flag come back too
                vol.meta = {**(vol.meta or {}), **info.get("metadata", {})}
                vol.bootable = bool(info.get("bootable", vol.bootable))
                if new_key is not None:
                    vol.encryption_key_id = new_key
            s.execute(
                update(m.VolumeBackup)
                .where(m.VolumeBackup.id == backup_id)
                .values(status="available", updated_at=now)
            )

    def _write_raw(self, raw: Path, chunks: list[list[str]], container: str, size: int) -> None:
        """The chunks at their offsets in a sparse file of `size` bytes."""
        with open(raw, "wb") as f:
            f.truncate(size)
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


def _check_encryption(
    s: Session, keys: VolumeKeys, vol: m.Volume, backup_id: str, info: dict[str, Any]
) -> None:
    """An encrypted backup restores only onto a volume encrypted the same way (Cinder's
    rule): its LUKS header comes with it, and the volume's type must keep telling the truth."""
    if BACKUP_KEY not in info:
        return
    spec = keys.spec_for(s, vol.volume_type_id) or MANDATORY_SPEC
    if vol.encryption_key_id is None or spec.key_size != info.get("luks_key_size"):
        raise BadRequest(
            f"Invalid volume: Backup {backup_id} is of an encrypted volume; volume {vol.id} "
            "is not encrypted the same way. Restore it to a new volume, or onto a volume of "
            "the backup's encrypted type."
        )
