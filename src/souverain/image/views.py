"""Glance's wire shapes: image and member bodies, the version list and the JSON schemas.

The one place they are written; the service returns rows and the API renders
them here.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from typing import Any

from souverain.common.clock import as_utc
from souverain.image import models as m
from souverain.image.schemas import CONTAINER_FORMATS, DISK_FORMATS, MEMBER_STATUSES, VISIBILITIES

VERSIONS = [f"v2.{minor}" for minor in range(9, -1, -1)]


def isotime(value: dt.datetime) -> str:
    return as_utc(value).strftime("%Y-%m-%dT%H:%M:%SZ")


def image_view(row: m.Image) -> dict[str, Any]:
    """The Glance image body, custom properties at the top level."""
    view: dict[str, Any] = dict(row.properties or {})
    view.update(
        {
            "id": row.id,
            "name": row.name,
            "status": row.status,
            "visibility": row.visibility,
            "protected": row.protected,
            "os_hidden": row.os_hidden,
            "owner": row.owner,
            "disk_format": row.disk_format,
            "container_format": row.container_format,
            "min_disk": row.min_disk,
            "min_ram": row.min_ram,
            "size": row.size,
            "virtual_size": row.virtual_size,
            "checksum": row.checksum,
            "os_hash_algo": row.os_hash_algo,
            "os_hash_value": row.os_hash_value,
            "tags": list(row.tags or []),
            "created_at": isotime(row.created_at),
            "updated_at": isotime(row.updated_at),
            "self": f"/v2/images/{row.id}",
            "file": f"/v2/images/{row.id}/file",
            "schema": "/v2/schemas/image",
        }
    )
    return view


def task_view(row: m.ImageTask) -> dict[str, Any]:
    return {
        "id": row.id,
        "type": row.type,
        "status": row.status,
        "owner": row.owner,
        "image_id": row.image_id,
        "input": dict(row.input or {}),
        "result": dict(row.result) if row.result is not None else None,
        "message": row.message,
        "created_at": isotime(row.created_at),
        "updated_at": isotime(row.updated_at),
        "expires_at": isotime(row.expires_at) if row.expires_at else None,
        "self": f"/v2/tasks/{row.id}",
        "schema": "/v2/schemas/task",
    }


def task_stub_view(row: m.ImageTask) -> dict[str, Any]:
    """A task in GET /v2/tasks: Glance lists stubs, without input, result and message."""
    keep = ("id", "type", "status", "owner", "created_at", "updated_at", "self", "schema")
    full = task_view(row)
    stub = {k: full[k] for k in keep}
    if full["expires_at"] is not None:
        stub["expires_at"] = full["expires_at"]
    return stub


def image_task_view(row: m.ImageTask) -> dict[str, Any]:
    """A task in GET /v2/images/{id}/tasks: Glance shows the stored task, with no links."""
    view = {k: v for k, v in task_view(row).items() if k not in ("self", "schema")}
    return {**view, "deleted": False, "deleted_at": None}


def import_info_view(methods: list[str]) -> dict[str, Any]:
    return {
        "import-methods": {
            "description": "Import methods available.",
            "type": "array",
            "value": methods,
        }
    }


def member_view(row: m.ImageMember) -> dict[str, Any]:
    return {
        "image_id": row.image_id,
        "member_id": row.member_id,
        "status": row.status,
        "created_at": isotime(row.created_at),
        "updated_at": isotime(row.updated_at),
        "schema": "/v2/schemas/member",
    }


def versions_view(base: str) -> dict[str, Any]:
    return {
        "versions": [
            {
                "id": version,
                "status": "CURRENT" if i == 0 else "SUPPORTED",
                "links": [{"rel": "self", "href": f"{base}/v2/"}],
            }
            for i, version in enumerate(VERSIONS)
        ]
    }


def _nullable(kind: str, **extra: Any) -> dict[str, Any]:
    return {"type": ["null", kind], **extra}


IMAGE_SCHEMA: dict[str, Any] = {
    "name": "image",
    "additionalProperties": {"type": "string"},
    "links": [
        {"href": "{self}", "rel": "self"},
        {"href": "{file}", "rel": "enclosure"},
        {"href": "{schema}", "rel": "describedby"},
    ],
    "properties": {
        "id": {
            "type": "string",
            "pattern": "^([0-9a-fA-F]){8}-([0-9a-fA-F]){4}-([0-9a-fA-F]){4}"
            "-([0-9a-fA-F]){4}-([0-9a-fA-F]){12}$",
            "description": "An identifier for the image",
        },
        "name": _nullable("string", maxLength=255, description="Descriptive name for the image"),
        "status": {
            "type": "string",
            "readOnly": True,
            "enum": [
                "queued",
                "saving",
                "active",
                "killed",
                "deleted",
                "deactivated",
                "uploading",
                "importing",
            ],
        },
        "visibility": {"type": "string", "enum": list(VISIBILITIES)},
        "protected": {"type": "boolean"},
        "os_hidden": {"type": "boolean"},
        "checksum": _nullable("string", readOnly=True, maxLength=32),
        "os_hash_algo": _nullable("string", readOnly=True, maxLength=64),
        "os_hash_value": _nullable("string", readOnly=True, maxLength=128),
        "owner": _nullable("string", maxLength=255),
        "size": _nullable("integer", readOnly=True),
        "virtual_size": _nullable("integer", readOnly=True),
        "container_format": _nullable("string", enum=[None, *CONTAINER_FORMATS]),
        "disk_format": _nullable("string", enum=[None, *DISK_FORMATS]),
        "created_at": {"type": "string", "readOnly": True},
        "updated_at": {"type": "string", "readOnly": True},
        "tags": {"type": "array", "items": {"type": "string", "maxLength": 255}},
        "direct_url": {"type": "string", "readOnly": True},
        "min_ram": {"type": "integer"},
        "min_disk": {"type": "integer"},
        "self": {"type": "string", "readOnly": True},
        "file": {"type": "string", "readOnly": True},
        "stores": {"type": "string", "readOnly": True},
        "schema": {"type": "string", "readOnly": True},
        "locations": {"type": "array", "items": {"type": "object"}},
    },
}
IMAGES_SCHEMA: dict[str, Any] = {
    "name": "images",
    "properties": {
        "images": {"type": "array", "items": IMAGE_SCHEMA},
        "schema": {"type": "string"},
        "first": {"type": "string"},
        "next": {"type": "string"},
    },
    "links": [
        {"rel": "first", "href": "{first}"},
        {"rel": "next", "href": "{next}"},
        {"rel": "describedby", "href": "{schema}"},
    ],
}
MEMBER_SCHEMA: dict[str, Any] = {
    "name": "member",
    "properties": {
        "image_id": {"type": "string"},
        "member_id": {"type": "string"},
        "status": {"type": "string", "enum": list(MEMBER_STATUSES)},
        "created_at": {"type": "string"},
        "updated_at": {"type": "string"},
        "schema": {"type": "string", "readOnly": True},
    },
}
MEMBERS_SCHEMA: dict[str, Any] = {
    "name": "members",
    "properties": {
        "members": {"type": "array", "items": MEMBER_SCHEMA},
        "schema": {"type": "string"},
    },
    "links": [{"rel": "describedby", "href": "{schema}"}],
}
TASK_SCHEMA: dict[str, Any] = {
    "name": "task",
    "properties": {
        "id": {"type": "string"},
        "type": {"type": "string", "enum": ["api_image_import"]},
        "status": {"type": "string", "enum": ["pending", "processing", "success", "failure"]},
        "owner": {"type": "string"},
        "image_id": _nullable("string"),
        "input": {"type": "object"},
        "result": _nullable("object"),
        "message": {"type": "string"},
        "created_at": {"type": "string"},
        "updated_at": {"type": "string"},
        "expires_at": _nullable("string"),
        "self": {"type": "string"},
        "schema": {"type": "string"},
    },
}
TASKS_SCHEMA: dict[str, Any] = {
    "name": "tasks",
    "properties": {
        "tasks": {"type": "array", "items": TASK_SCHEMA},
        "schema": {"type": "string"},
        "first": {"type": "string"},
    },
    "links": [{"rel": "describedby", "href": "{schema}"}],
}
SCHEMAS = {
    "task": TASK_SCHEMA,
    "tasks": TASKS_SCHEMA,
    "image": IMAGE_SCHEMA,
    "images": IMAGES_SCHEMA,
    "member": MEMBER_SCHEMA,
    "members": MEMBERS_SCHEMA,
}


# ---------------------------------------------------------------------- metadata definitions


def _stamp(value: Any) -> str:
    return isotime(dt.datetime.fromisoformat(str(value)))


def _dated(entry: Mapping[str, Any]) -> dict[str, Any]:
    """A stored definition with its dates in Glance's format."""
    out = {k: v for k, v in entry.items() if v is not None}
    for key in ("created_at", "updated_at"):
        if key in out:
            out[key] = _stamp(out[key])
    return out


def namespace_view(row: m.MetadefNamespace, detail: bool) -> dict[str, Any]:
    view: dict[str, Any] = {
        "namespace": row.namespace,
        "visibility": row.visibility,
        "protected": row.protected,
        "owner": row.owner,
        "created_at": isotime(row.created_at),
        "updated_at": isotime(row.updated_at),
        "self": f"/v2/metadefs/namespaces/{row.namespace}",
        "schema": "/v2/schemas/metadefs/namespace",
    }
    for key in ("display_name", "description"):
        if getattr(row, key) is not None:
            view[key] = getattr(row, key)
    associations = [_dated(a) for a in (row.resource_types or {}).values()]
    if associations:
        view["resource_type_associations"] = associations
    if detail:
        if row.properties:
            view["properties"] = dict(row.properties)
        if row.objects:
            view["objects"] = [object_view(o, row.namespace) for o in row.objects.values()]
        if row.tags:
            view["tags"] = [tag_view(name, t) for name, t in row.tags.items()]
    return view


def object_view(entry: Mapping[str, Any], namespace: str) -> dict[str, Any]:
    view = _dated(entry)
    view["self"] = f"/v2/metadefs/namespaces/{namespace}/objects/{entry['name']}"
    view["schema"] = "v2/schemas/metadefs/object"
    return view


def definition_view(kind: str, entry: Mapping[str, Any], namespace: str) -> dict[str, Any]:
    """One object, property, tag or resource type association as Glance answers its
    creation or update."""
    if kind == "objects":
        return object_view(entry, namespace)
    if kind == "properties":
        return dict(entry)
    if kind == "tags":
        return tag_view(str(entry["name"]), entry)
    return _dated(entry)


def tag_view(name: str, entry: Mapping[str, Any]) -> dict[str, Any]:
    return {"name": name, **_dated(entry)}


def association_view(entry: Mapping[str, Any]) -> dict[str, Any]:
    return _dated(entry)


def resource_type_view(entry: Mapping[str, Any]) -> dict[str, Any]:
    dated = _dated(entry)
    return {k: dated[k] for k in ("name", "created_at", "updated_at") if k in dated}


def _metadef_schema(name: str, properties: dict[str, Any]) -> dict[str, Any]:
    return {"name": name, "properties": properties, "additionalProperties": False}


def _listing_schema(name: str, key: str, item: dict[str, Any]) -> dict[str, Any]:
    return {
        "name": name,
        "properties": {
            key: {"type": "array", "items": item},
            "first": {"type": "string"},
            "next": {"type": "string"},
            "schema": {"type": "string"},
        },
        "links": [{"rel": "describedby", "href": "{schema}"}],
    }


_TEXT = {"type": "string"}
_STAMPS = {"created_at": _TEXT, "updated_at": _TEXT}
_NAMESPACE = _metadef_schema(
    "namespace",
    {
        "namespace": {"type": "string", "maxLength": 80},
        "display_name": {"type": "string", "maxLength": 80},
        "description": {"type": "string", "maxLength": 500},
        "visibility": {"type": "string", "enum": ["public", "private"]},
        "protected": {"type": "boolean"},
        "owner": {"type": "string", "maxLength": 255},
        "self": _TEXT,
        "schema": _TEXT,
        **_STAMPS,
    },
)
_RESOURCE_TYPE = _metadef_schema(
    "resource_type_association",
    {"name": _TEXT, "prefix": _TEXT, "properties_target": _TEXT, **_STAMPS},
)
_OBJECT = _metadef_schema(
    "object",
    {
        "name": _TEXT,
        "description": _TEXT,
        "required": {"type": "array", "items": _TEXT},
        "properties": {"type": "object"},
        **_STAMPS,
    },
)
_PROPERTY = _metadef_schema(
    "property", {"name": _TEXT, "title": _TEXT, "type": _TEXT, "description": _TEXT}
)
_TAG = _metadef_schema("tag", {"name": _TEXT, **_STAMPS})
METADEF_SCHEMAS: dict[str, dict[str, Any]] = {
    "namespace": _NAMESPACE,
    "namespaces": _listing_schema("namespaces", "namespaces", _NAMESPACE),
    "resource_type": _RESOURCE_TYPE,
    "resource_types": _listing_schema(
        "resource_type_associations", "resource_type_associations", _RESOURCE_TYPE
    ),
    "object": _OBJECT,
    "objects": _listing_schema("objects", "objects", _OBJECT),
    "property": _PROPERTY,
    "properties": _listing_schema("properties", "properties", _PROPERTY),
    "tag": _TAG,
    "tags": _listing_schema("tags", "tags", _TAG),
}
