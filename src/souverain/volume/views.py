"""Cinder's wire shapes of the volume service's records: the one place they are written.

Views take records and rows and return JSON-ready dicts; links are the API's
(they need the request's base URL), so the API adds them.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from souverain.common.clock import as_utc
from souverain.volume import models as m
from souverain.volume.rules import HOST, ImageUpload, QuotaSet, UserMessage, VolumeRecord


def time_text(value: dt.datetime | None) -> str | None:
    if value is None:
        return None
    return as_utc(value).replace(tzinfo=None).isoformat(timespec="microseconds")


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


def volume_view(record: VolumeRecord, is_admin: bool) -> dict[str, Any]:
    """The Cinder volume detail body, without links."""
    row = record.row
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
        "attachments": _attachments(row),
        "metadata": dict(row.meta or {}),
        "snapshot_id": row.snapshot_id,
        "source_volid": row.source_volid,
        "volume_type": record.type_name,
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
        "created_at": time_text(row.created_at),
        "updated_at": time_text(row.updated_at),
    }
    if is_admin:
        view["os-vol-host-attr:host"] = HOST
    if row.image_metadata is not None:
        view["volume_image_metadata"] = dict(row.image_metadata)
    if row.readonly:
        view["metadata"]["readonly"] = "True"
    return view


def snapshot_view(row: m.Snapshot, detail: bool = True) -> dict[str, Any]:
    view: dict[str, Any] = {
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
        "created_at": time_text(row.created_at),
        "updated_at": time_text(row.updated_at),
    }
    if not detail:
        del view["os-extended-snapshot-attributes:progress"]
        del view["os-extended-snapshot-attributes:project_id"]
    return view


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


def quota_set_view(quota: QuotaSet) -> dict[str, Any]:
    """Limits alone, or (with usage) each as {limit, in_use, reserved, allocated}."""
    values: dict[str, int] = {
        **quota.limits,
        f"volumes_{quota.default_type}": -1,
        f"gigabytes_{quota.default_type}": -1,
        f"snapshots_{quota.default_type}": -1,
        "backups": 0,
        "backup_gigabytes": 0,
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
        "maxTotalBackups": 0,
        "maxTotalBackupGigabytes": 0,
        "totalVolumesUsed": used.get("volumes", 0),
        "totalSnapshotsUsed": used.get("snapshots", 0),
        "totalGigabytesUsed": used.get("gigabytes", 0),
        "totalBackupsUsed": 0,
        "totalBackupGigabytesUsed": 0,
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
        "bootable": upload.bootable,
    }
