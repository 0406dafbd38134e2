"""A backup as Cinder shows it, field by field per microversion."""

from __future__ import annotations

from typing import Any

from souverain.volume import models as m
from souverain.volume.backups import backup_key_of
from souverain.volume.views import Field, Viewer, pick, time_text

BACKUP_FIELDS: tuple[Field, ...] = (
    *(
        Field(name)
        for name in (
            "id",
            "name",
            "description",
            "status",
            "availability_zone",
            "container",
            "created_at",
            "updated_at",
            "fail_reason",
            "object_count",
            "size",
            "volume_id",
            "is_incremental",
            "has_dependent_backups",
            "snapshot_id",
            "data_timestamp",
        )
    ),
    Field("os-backup-project-attr:project_id", since=(3, 18), admin=True),
    Field("metadata", since=(3, 43)),
    Field("user_id", since=(3, 56)),
    Field("encryption_key_id", since=(3, 64)),
)


def backup_view(
    row: m.VolumeBackup, viewer: Viewer, dependent: bool, links: list[dict[str, str]]
) -> dict[str, Any]:
    values: dict[str, Any] = {
        "id": row.id,
        "name": row.name,
        "description": row.description,
        "status": row.status,
        "availability_zone": row.availability_zone,
        "container": row.container,
        "created_at": time_text(row.created_at),
        "updated_at": time_text(row.updated_at),
        "fail_reason": row.fail_reason,
        "object_count": row.object_count,
        "size": row.size,
        "volume_id": row.volume_id,
        "is_incremental": row.parent_id is not None,
        "has_dependent_backups": dependent,
        "snapshot_id": row.snapshot_id,
        "data_timestamp": time_text(row.data_timestamp),
        "os-backup-project-attr:project_id": row.project_id,
        "metadata": dict(row.meta or {}),
        "user_id": row.user_id,
        "encryption_key_id": backup_key_of(row),
    }
    body = pick(BACKUP_FIELDS, values, viewer, read=True)
    body["links"] = links
    return body


def backup_summary(
    row: m.VolumeBackup, viewer: Viewer, links: list[dict[str, str]], listed: bool = False
) -> dict[str, Any]:
    """What a create, an update or a plain list shows (the list without metadata)."""
    body: dict[str, Any] = {"id": row.id, "name": row.name, "links": links}
    if viewer.version >= (3, 43) and not listed:
        body["metadata"] = dict(row.meta or {})
    return body
