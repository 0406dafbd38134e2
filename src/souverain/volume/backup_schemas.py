"""Backup request bodies checked and turned into typed requests; Cinder's field names."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from souverain.common.errors import BadRequest
from souverain.volume.backups import BACKUP_STATUSES, BackupCreate
from souverain.volume.rules import UUID_RE
from souverain.volume.schemas import metadata, text

_TRUE = ("true", "1", "yes", "on", "t", "y")
_FALSE = ("false", "0", "no", "off", "f", "n")


def boolean(name: str, value: Any) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.strip().lower() in _TRUE + _FALSE:
        return value.strip().lower() in _TRUE
    raise BadRequest(f"Invalid input for field/attribute {name}: a boolean is expected.")


def uuid_field(name: str, value: Any) -> str:
    if not isinstance(value, str) or not UUID_RE.match(value):
        raise BadRequest(f"Invalid input for field/attribute {name}: a UUID is expected.")
    return value.lower()


def backup_create(body: Mapping[str, Any], version: tuple[int, int]) -> BackupCreate:
    if "volume_id" not in body:
        raise BadRequest("Invalid input for field/attribute volume_id: it is required.")
    meta = body.get("metadata")
    if meta is not None and version < (3, 43):
        raise BadRequest("Invalid input: backup metadata needs microversion 3.43 or later.")
    snapshot = body.get("snapshot_id")
    container = text("container", body.get("container")) or None
    if container is not None and len(container) > 63:
        raise BadRequest("Invalid input for field/attribute container: at most 63 characters.")
    return BackupCreate(
        volume_id=uuid_field("volume_id", body["volume_id"]),
        name=text("name", body.get("name")),
        description=text("description", body.get("description")),
        container=container,
        incremental=boolean("incremental", body.get("incremental", False)),
        force=boolean("force", body.get("force", False)),
        snapshot_id=None if snapshot is None else uuid_field("snapshot_id", snapshot),
        metadata=metadata(meta) if meta is not None else {},
    )


@dataclass(frozen=True)
class BackupUpdate:
    fields: dict[str, str | None]
    metadata: dict[str, str] | None


def backup_update(body: Mapping[str, Any], version: tuple[int, int]) -> BackupUpdate:
    fields = {k: text(k, body[k]) for k in ("name", "description") if k in body}
    meta = None
    if "metadata" in body:
        if version < (3, 43):
            raise BadRequest("Invalid input: backup metadata needs microversion 3.43 or later.")
        meta = metadata(body["metadata"])
    if not fields and meta is None:
        raise BadRequest("Invalid input: send name, description or metadata to update a backup.")
    return BackupUpdate(fields, meta)


@dataclass(frozen=True)
class RestoreRequest:
    volume_id: str | None
    name: str | None


def restore_request(body: Mapping[str, Any]) -> RestoreRequest:
    volume_id = body.get("volume_id")
    name = text("name", body.get("name"))
    if volume_id is not None and name is not None:
        raise BadRequest("Invalid input: give volume_id or name, not both.")
    return RestoreRequest(None if volume_id is None else uuid_field("volume_id", volume_id), name)


def backup_status(value: Any) -> str:
    if value not in BACKUP_STATUSES:
        raise BadRequest(
            f"Invalid input received: status {str(value)[:32]!r} is not a backup status."
        )
    return str(value)
