"""A backup's database record exported and imported (cloud admins only). No HTTP.

Cinder lets an admin keep a backup's record outside the database and import it back
after losing it. The record is the row as base64 JSON; the backup's objects stay where
they are. An imported backup belongs to the importer's project and owns none of the
objects it names (their keys carry the original backup's id), so deleting it deletes
no data: only the original's deletion does. For the same reason the record of an encrypted
backup is not imported: its key is the original backup's, in the original's project.
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import json
from typing import Any

from souverain.common.context import RequestContext
from souverain.common.errors import BadRequest, Forbidden
from souverain.volume import models as m
from souverain.volume.backups import BACKUP_KEY, Backups, visible_backup
from souverain.volume.rules import UUID_RE, require_admin

# Cinder names its backup drivers by module; our chunked objects in an S3 store are its S3
# driver's layout in spirit, and clients check only the prefix
BACKUP_SERVICE = "cinder.backup.drivers.s3"
MAX_RECORD = 4 * 1024 * 1024
_TEXT = ("name", "description", "container", "availability_zone")


def export_record(backups: Backups, ctx: RequestContext, backup_id: str) -> dict[str, str]:
    require_admin(ctx)
    with backups.shared.db.session() as s:
        row = visible_backup(s, ctx, backup_id)
        if row.status != "available":
            raise BadRequest(
                f"Invalid backup: Backup {backup_id} is {row.status}; only an available "
                "backup's record can be exported."
            )
        record = {
            "id": row.id,
            "volume_id": row.volume_id,
            "snapshot_id": row.snapshot_id,
            "parent_id": row.parent_id,
            "name": row.name,
            "description": row.description,
            "container": row.container,
            "size": row.size,
            "availability_zone": row.availability_zone,
            "metadata": dict(row.meta or {}),
            "chunks": row.chunks,
            "volume_info": row.volume_info,
            "object_count": row.object_count,
            "data_timestamp": row.data_timestamp.isoformat(),
        }
    url = base64.b64encode(json.dumps(record).encode()).decode()
    return {"backup_service": BACKUP_SERVICE, "backup_url": url}


def _decode(url: Any) -> dict[str, Any]:
    if not isinstance(url, str) or len(url) > MAX_RECORD:
        raise BadRequest("Invalid backup record: backup_url must be the exported string.")
    try:
        record = json.loads(base64.b64decode(url, validate=True))
    except (binascii.Error, ValueError):
        raise BadRequest("Invalid backup record: backup_url is not base64 JSON.") from None
    if not isinstance(record, dict):
        raise BadRequest("Invalid backup record: backup_url must hold an object.")
    return record


def _checked(record: dict[str, Any]) -> dict[str, Any]:
    """The record's fields, each of the type and shape an export writes; 400 otherwise."""

    def fail(name: str) -> BadRequest:
        return BadRequest(f"Invalid backup record: field {name} is missing or malformed.")

    for name in ("id", "volume_id"):
        if not isinstance(record.get(name), str) or not UUID_RE.match(record[name]):
            raise fail(name)
    for name in ("parent_id", "snapshot_id"):  # optional ids: a backup's parent, its snapshot
        value = record.get(name)
        if value is not None and (not isinstance(value, str) or not UUID_RE.match(value)):
            raise fail(name)
    for name in _TEXT:
        value = record.get(name)
        if value is not None and (not isinstance(value, str) or len(value) > 255):
            raise fail(name)
    if not isinstance(record.get("container"), str) or len(record["container"]) > 63:
        raise fail("container")
    size = record.get("size")
    if not isinstance(size, int) or isinstance(size, bool) or not 1 <= size <= 1_000_000:
        raise fail("size")
    chunks = record.get("chunks")
    if not isinstance(chunks, list) or not all(
        isinstance(c, list) and len(c) == 2 and all(isinstance(x, str) for x in c) for c in chunks
    ):
        raise fail("chunks")
    meta = record.get("metadata", {})
    if not isinstance(meta, dict) or not all(isinstance(v, str) for v in meta.values()):
        raise fail("metadata")
    info = record.get("volume_info", {})
    if not isinstance(info, dict):
        raise fail("volume_info")
    if info.get(BACKUP_KEY) is not None:
        raise BadRequest(
            "Invalid backup record: the backup is of an encrypted volume; its key belongs to "
            "the original backup, so its record cannot be imported."
        )
    try:
        stamp = dt.datetime.fromisoformat(str(record.get("data_timestamp")))
    except ValueError:
        raise fail("data_timestamp") from None
    return {**record, "metadata": meta, "volume_info": info, "data_timestamp": stamp}


def import_record(backups: Backups, ctx: RequestContext, service: Any, url: Any) -> m.VolumeBackup:
    require_admin(ctx)
    if not ctx.project_id:
        raise Forbidden("Backups belong to projects: use a project-scoped token.")
    if service != BACKUP_SERVICE:
        raise BadRequest(f"Invalid backup record: backup_service must be {BACKUP_SERVICE}.")
    record = _checked(_decode(url))
    backup_id = record["id"].lower()
    now = backups.shared.clock.now()
    with backups.shared.db.session() as s:
        if s.get(m.VolumeBackup, backup_id) is not None:
            raise BadRequest(f"Invalid backup: Backup {backup_id} already exists.")
        backups.quotas.lock(s, ctx.project_id)
        backups.claim(s, ctx.project_id, record["size"])
        row = m.VolumeBackup(
            id=backup_id,
            project_id=ctx.project_id,
            user_id=ctx.user_id,
            volume_id=record["volume_id"].lower(),
            snapshot_id=record.get("snapshot_id"),
            parent_id=record.get("parent_id"),
            **{name: record.get(name) for name in _TEXT},
            size=record["size"],
            status="available",
            meta=record["metadata"],
            chunks=record["chunks"],
            volume_info=record["volume_info"],
            object_count=sum(1 for c in record["chunks"] if c[1]),
            stored_bytes=0,
            data_timestamp=record["data_timestamp"],
            created_at=now,
            updated_at=now,
        )
        s.add(row)
        s.flush()
        s.expunge(row)
    return row
