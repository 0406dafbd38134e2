"""Cinder's wire shapes of the volume service's records: the one place they are written.

Views take records and rows and return JSON-ready dicts; links are the API's
(they need the request's base URL), so the API adds them.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any

from souverain.common.clock import as_utc
from souverain.volume import models as m
from souverain.volume.rules import (
    HOST,
    ImageUpload,
    QuotaSet,
    UserMessage,
    VolumeRecord,
    VolumeSummary,
)


def time_text(value: dt.datetime | None) -> str | None:
    if value is None:
        return None
    return as_utc(value).replace(tzinfo=None).isoformat(timespec="microseconds")


@dataclass(frozen=True)
class Viewer:
    """Who asks and at which microversion: what decides the fields a view shows."""

    version: tuple[int, int] = (3, 0)
    is_admin: bool = False


@dataclass(frozen=True)
class Field:
    """One field of a Cinder view: the microversion it appears at, whether only admins see
    it, and whether only reads (show and detail lists) carry it, not create or update."""

    name: str
    since: tuple[int, int] = (3, 0)
    admin: bool = False
    reads_only: bool = False

    def shown(self, viewer: Viewer, read: bool) -> bool:
        if viewer.version < self.since or (self.admin and not viewer.is_admin):
            return False
        return read or not self.reads_only


BASE = (3, 0)
# The volume detail body, field by field (Cinder's API reference and its view builders).
VOLUME_FIELDS: tuple[Field, ...] = (
    *(
        Field(name)
        for name in (
            "id",
            "name",
            "description",
            "status",
            "size",
            "availability_zone",
            "bootable",
            "encrypted",
            "multiattach",
            "attachments",
            "metadata",
            "snapshot_id",
            "source_volid",
            "volume_type",
            "user_id",
            "replication_status",
            "consistencygroup_id",
            "created_at",
            "updated_at",
        )
    ),
    Field("migration_status", admin=True),
    Field("group_id", since=(3, 13)),
    Field("provider_id", since=(3, 21), admin=True),
    Field("shared_targets", since=(3, 48)),
    Field("service_uuid", since=(3, 48)),
    Field("cluster_name", since=(3, 61), admin=True),
    Field("volume_type_id", since=(3, 63)),
    Field("encryption_key_id", since=(3, 64), reads_only=True),
    Field("consumes_quota", since=(3, 65)),
    # the attribute extensions: on show and detail lists only
    Field("os-vol-host-attr:host", admin=True, reads_only=True),
    Field("os-vol-tenant-attr:tenant_id", reads_only=True),  # project readers see it too
    Field("os-vol-mig-status-attr:migstat", admin=True, reads_only=True),
    Field("os-vol-mig-status-attr:name_id", admin=True, reads_only=True),
    Field("volume_image_metadata", reads_only=True),  # and only when the volume has some
)
# The snapshot body: `summary` (GET /snapshots) has the base fields alone.
SNAPSHOT_FIELDS: tuple[Field, ...] = (
    *(
        Field(name)
        for name in (
            "id",
            "name",
            "description",
            "status",
            "size",
            "volume_id",
            "metadata",
            "created_at",
            "updated_at",
        )
    ),
    Field("group_snapshot_id", since=(3, 14)),
    Field("user_id", since=(3, 41)),
    Field("consumes_quota", since=(3, 65)),
    Field("os-extended-snapshot-attributes:progress", reads_only=True),
    Field("os-extended-snapshot-attributes:project_id", reads_only=True),
)
# The volume type body. Show and list (reads) are Cinder's v3 view; create and update are
# its older types_manage view (no qos_specs_id; create adds the type access field).
TYPE_FIELDS: tuple[Field, ...] = (
    Field("id"),
    Field("name"),
    Field("is_public"),
    Field("description"),
    Field("extra_specs"),
    Field("qos_specs_id", admin=True, reads_only=True),
    Field("os-volume-type-access:is_public"),  # not on update (see type_view)
)
# extra specs a project user sees; the others may tell how the cloud is built
USER_VISIBLE_SPECS = ("RESKEY:availability_zones", "multiattach", "replication_enabled")


def pick(
    fields: tuple[Field, ...], values: dict[str, Any], viewer: Viewer, read: bool
) -> dict[str, Any]:
    """The fields of `values` this viewer sees, in the table's order."""
    return {f.name: values[f.name] for f in fields if f.name in values and f.shown(viewer, read)}


def _attachments(row: m.Volume) -> list[dict[str, Any]]:
    if not (row.server_id and row.status in ("in-use", "detaching")):
        return []
    return [
        {
            "id": row.id,
            "attachment_id": row.attachment_id,
            "volume_id": row.id,
            "server_id": row.server_id,
            "host_name": None,
            "device": row.device,
            "attached_at": time_text(row.attached_at),
        }
    ]


def volume_view(record: VolumeRecord, viewer: Viewer, read: bool = True) -> dict[str, Any]:
    """The Cinder volume detail body at the viewer's microversion, without links.
    `read`: a show or detail list (the attribute extensions add their fields there)."""
    row = record.row
    metadata = dict(row.meta or {})
    if row.readonly:
        metadata["readonly"] = "True"
    values: dict[str, Any] = {
        "id": row.id,
        "name": row.name,
        "description": row.description,
        "status": row.status,
        "size": row.size,
        "availability_zone": row.availability_zone,
        "bootable": "true" if row.bootable else "false",
        "encrypted": row.encryption_key_id is not None,
        "multiattach": False,
        "attachments": _attachments(row),
        "metadata": metadata,
        "snapshot_id": row.snapshot_id,
        "source_volid": row.source_volid,
        "volume_type": record.type_name,
        "user_id": row.user_id,
        "replication_status": None,
        "consistencygroup_id": None,
        "created_at": time_text(row.created_at),
        "updated_at": time_text(row.updated_at),
        "migration_status": None,
        "group_id": None,
        "provider_id": None,
        "shared_targets": False,  # each volume is its own file: no target is shared
        "service_uuid": None,
        "cluster_name": None,
        "volume_type_id": row.volume_type_id,
        "encryption_key_id": row.encryption_key_id,
        "consumes_quota": True,
        "os-vol-host-attr:host": HOST,
        "os-vol-tenant-attr:tenant_id": row.project_id,
        "os-vol-mig-status-attr:migstat": None,
        "os-vol-mig-status-attr:name_id": None,
    }
    if row.image_metadata:
        values["volume_image_metadata"] = dict(row.image_metadata)
    return pick(VOLUME_FIELDS, values, viewer, read)


def encryption_view(row: m.VolumeTypeEncryption, fields: tuple[str, ...] = ()) -> dict[str, Any]:
    """A volume type's encryption (Cinder's encryption type); `fields`: only these (an
    update answers with what it changed)."""
    values: dict[str, Any] = {
        "volume_type_id": row.volume_type_id,
        "encryption_id": row.encryption_id,
        "provider": row.provider,
        "cipher": row.cipher,
        "key_size": row.key_size,
        "control_location": row.control_location,
        "created_at": time_text(row.created_at),
        "updated_at": time_text(row.updated_at),
        "deleted": False,
        "deleted_at": None,
    }
    if fields:
        return {k: values[k] for k in fields}
    return values


def snapshot_progress(row: m.Snapshot) -> str:
    """What os-update_snapshot_status last reported, else what the status says."""
    if row.progress:
        return row.progress
    return "100%" if row.status == "available" else "0%"


def snapshot_view(row: m.Snapshot, viewer: Viewer, read: bool = True) -> dict[str, Any]:
    """The snapshot detail body (show, detail list, create, update) at the viewer's
    microversion; `read`: a show or detail list, which add the extended attributes."""
    values: dict[str, Any] = {
        "id": row.id,
        "name": row.name,
        "description": row.description,
        "status": row.status,
        "size": row.size,
        "volume_id": row.volume_id,
        "metadata": dict(row.meta or {}),
        "created_at": time_text(row.created_at),
        "updated_at": time_text(row.updated_at),
        "group_snapshot_id": None,
        "user_id": row.user_id,
        "consumes_quota": True,
        "os-extended-snapshot-attributes:progress": snapshot_progress(row),
        "os-extended-snapshot-attributes:project_id": row.project_id,
    }
    return pick(SNAPSHOT_FIELDS, values, viewer, read)


def snapshot_summary(row: m.Snapshot) -> dict[str, Any]:
    """A snapshot in GET /snapshots: the base fields at every microversion."""
    return snapshot_view(row, Viewer(), read=False)


def type_view(
    row: m.VolumeType,
    viewer: Viewer,
    read: bool = True,
    qos_specs_id: str | None = None,
    updated: bool = False,
) -> dict[str, Any]:
    """A volume type (`read`: show or list; else create, or update when `updated`);
    project users see only the extra specs Cinder calls user visible."""
    specs = dict(row.extra_specs or {})
    if not viewer.is_admin:
        specs = {k: v for k, v in specs.items() if k in USER_VISIBLE_SPECS}
    values: dict[str, Any] = {
        "id": row.id,
        "name": row.name,
        "is_public": row.is_public,
        "description": row.description,
        "extra_specs": specs,
        "qos_specs_id": qos_specs_id,
    }
    if not updated:
        values["os-volume-type-access:is_public"] = row.is_public
    return pick(TYPE_FIELDS, values, viewer, read)


def quota_set_view(quota: QuotaSet) -> dict[str, Any]:
    """Limits alone, or (with usage) each as {limit, in_use, reserved, allocated}."""
    values: dict[str, int] = {
        **quota.limits,
        f"volumes_{quota.default_type}": -1,
        f"gigabytes_{quota.default_type}": -1,
        f"snapshots_{quota.default_type}": -1,
        "groups": 0,
        "per_volume_gigabytes": quota.per_volume_gigabytes,
    }
    body: dict[str, Any] = {"id": quota.project_id}
    for key, limit in values.items():
        if quota.used is None:
            body[key] = limit
        else:
            used = quota.used.get(key, 0)
            body[key] = {"limit": limit, "in_use": used, "reserved": 0, "allocated": 0}
    return body


def absolute_limits_view(quota: QuotaSet) -> dict[str, int]:
    limits, used = quota.limits, quota.used or {}
    return {
        "maxTotalVolumes": limits["volumes"],
        "maxTotalSnapshots": limits["snapshots"],
        "maxTotalVolumeGigabytes": limits["gigabytes"],
        "maxTotalBackups": limits["backups"],
        "maxTotalBackupGigabytes": limits["backup_gigabytes"],
        "totalVolumesUsed": used.get("volumes", 0),
        "totalSnapshotsUsed": used.get("snapshots", 0),
        "totalGigabytesUsed": used.get("gigabytes", 0),
        "totalBackupsUsed": used.get("backups", 0),
        "totalBackupGigabytesUsed": used.get("backup_gigabytes", 0),
    }


def message_view(message: UserMessage) -> dict[str, Any]:
    event = "VOLUME_VOLUME_001_002" if message.kind == "VOLUME" else "VOLUME_SNAPSHOT_001"
    return {
        "id": message.resource_id,
        "event_id": event,
        "user_message": message.message,
        "message_level": "ERROR",
        "resource_type": message.kind,
        "resource_uuid": message.resource_id,
        "created_at": time_text(message.created_at),
        "guaranteed_until": None,
        "request_id": None,
    }


def upload_view(upload: ImageUpload) -> dict[str, Any]:
    return {
        "id": upload.volume_id,
        "updated_at": time_text(upload.updated_at),
        "status": "uploading",
        "display_description": None,
        "size": upload.size,
        "volume_type": {"name": upload.type_name},
        "image_id": upload.image_id,
        "container_format": upload.container_format,
        "disk_format": upload.disk_format,
        "image_name": upload.image_name,
        "protected": False,
        "visibility": "private",
    }


SUMMARY_METADATA = (3, 36)  # volumes/summary lists each metadata key's values from here


def volume_summary_view(summary: VolumeSummary, viewer: Viewer) -> dict[str, Any]:
    body: dict[str, Any] = {"total_count": summary.count, "total_size": summary.size}
    if viewer.version >= SUMMARY_METADATA:
        body["metadata"] = summary.metadata
    return {"volume-summary": body}
