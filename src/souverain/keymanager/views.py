"""Barbican v1's wire shapes: secrets, containers, orders, ACLs, quotas, pages with
next/previous hrefs. Hrefs are full URLs under the service's public root. A payload is
never part of a view."""

from __future__ import annotations

import datetime as dt
from typing import Any
from urllib.parse import urlencode

from souverain.keymanager.acls import AclRecord
from souverain.keymanager.consumers import ConsumerRecord
from souverain.keymanager.containers import ContainerRecord
from souverain.keymanager.orders import OrderRecord
from souverain.keymanager.secrets import SecretRecord

Version = tuple[int, int]
CONSUMERS_SINCE: Version = (1, 1)  # a secret's view lists its consumers from microversion 1.1


def when(value: dt.datetime | None) -> str | None:
    """Barbican's times: naive UTC ISO 8601 with microseconds."""
    if value is None:
        return None
    if value.tzinfo is not None:
        value = value.astimezone(dt.UTC).replace(tzinfo=None)
    return value.isoformat(timespec="microseconds")


def secret(base: str, record: SecretRecord, version: Version) -> dict[str, Any]:
    view: dict[str, Any] = {
        "secret_ref": f"{base}/v1/secrets/{record.id}",
        "name": record.name,
        "status": "ACTIVE",
        "secret_type": record.secret_type,
        "algorithm": record.algorithm,
        "bit_length": record.bit_length,
        "mode": record.mode,
        "expiration": when(record.expiration),
        "created": when(record.created_at),
        "updated": when(record.updated_at),
        "creator_id": record.creator_id,
    }
    if record.content_type is not None:
        view["content_types"] = {"default": record.content_type}
    if version >= CONSUMERS_SINCE:
        view["consumers"] = [dict(c) for c in record.consumers]
    return view


def consumer(record: ConsumerRecord) -> dict[str, Any]:
    return {
        **record.fields,
        "status": "ACTIVE",
        "created": when(record.created_at),
        "updated": when(record.updated_at),
    }


def container(base: str, record: ContainerRecord) -> dict[str, Any]:
    return {
        "container_ref": f"{base}/v1/containers/{record.id}",
        "name": record.name,
        "type": record.type,
        "status": "ACTIVE",
        "secret_refs": [
            {"name": name, "secret_ref": f"{base}/v1/secrets/{secret_id}"}
            for name, secret_id in record.secret_refs
        ],
        "consumers": [dict(c) for c in record.consumers],
        "created": when(record.created_at),
        "updated": when(record.updated_at),
        "creator_id": record.creator_id,
    }


def order(base: str, record: OrderRecord) -> dict[str, Any]:
    view: dict[str, Any] = {
        "order_ref": f"{base}/v1/orders/{record.id}",
        "type": record.type,
        "meta": record.meta,
        "status": record.status,
        "sub_status": "Unknown",
        "sub_status_message": "Unknown",
        "created": when(record.created_at),
        "updated": when(record.updated_at),
        "creator_id": record.creator_id,
    }
    if record.secret_id is not None:
        view["secret_ref"] = f"{base}/v1/secrets/{record.secret_id}"
    if record.container_id is not None:
        view["container_ref"] = f"{base}/v1/containers/{record.container_id}"
    return view


def acl(record: AclRecord) -> dict[str, Any]:
    if record.created_at is None:
        return {"read": {"project-access": True}}
    return {
        "read": {
            "project-access": record.project_access,
            "users": list(record.users),
            "created": when(record.created_at),
            "updated": when(record.updated_at),
        }
    }


def page(
    key: str,
    items: list[dict[str, Any]],
    total: int,
    href: str,
    limit: int,
    offset: int,
    query: dict[str, str],
) -> dict[str, Any]:
    """A list with Barbican's `total` and, where there are more, `next`/`previous` hrefs."""
    view: dict[str, Any] = {key: items, "total": total}
    if offset + limit < total:
        view["next"] = f"{href}?{urlencode({**query, 'limit': limit, 'offset': offset + limit})}"
    if offset > 0:
        previous = max(0, offset - limit)
        view["previous"] = f"{href}?{urlencode({**query, 'limit': limit, 'offset': previous})}"
    return view
