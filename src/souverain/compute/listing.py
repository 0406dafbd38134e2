"""Server lists and views: the filters a list runs in SQL, and a server row shaped as
the API shows it (with the volumes it holds, read beforehand in one query)."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable
from typing import Any, NamedTuple

from sqlalchemy import Select, select

from souverain.common.clock import as_utc
from souverain.common.context import RequestContext
from souverain.compute.models import Server
from souverain.compute.states import STATUS_FILTER, status_of
from souverain.volume.service import ServerVolume


class ListedServer(NamedTuple):
    """A server as a list filters, sorts and pages it (the API's sort keys are these
    names); the views of the page shown are read afterwards, by id."""

    id: str
    name: str
    created_at: dt.datetime
    updated_at: dt.datetime
    launched_at: dt.datetime | None
    vm_state: str
    task_state: str | None
    host: str | None
    image_id: str


LISTED_COLUMNS = tuple(getattr(Server, name) for name in ListedServer._fields)
LISTED_WIDTH = len(LISTED_COLUMNS)
# Server ids per IN (...): a page of a list (at most 1,000, the API's limit) is one query.
IDS_PER_QUERY = 1000


def server_view(
    row: Server,
    volumes: Iterable[ServerVolume],
    group_id: str | None = None,
    security_groups: list[str] | None = None,
) -> dict[str, Any]:
    """A server as the API shapes it; `volumes` are the ones attached to it, `group_id`
    its server group and `security_groups` its ports' groups, read beforehand."""
    return {
        "id": row.id,
        "name": row.name,
        "status": status_of(row.vm_state, row.task_state),
        "project_id": row.project_id,
        "user_id": row.user_id,
        "hostname": row.hostname,
        "description": row.description,
        "image_id": row.image_id,
        "flavor": row.flavor,
        "key_name": row.key_name,
        "metadata": dict(row.server_metadata or {}),
        "tags": list(row.tags or []),
        "config_drive": row.config_drive,
        "availability_zone": row.availability_zone,
        "addresses": row.addresses or {},
        "host": row.host,
        "vm_state": row.vm_state,
        "task_state": row.task_state,
        "power_state": row.power_state,
        "fault": row.fault,
        "locked": row.locked,
        "reservation_id": row.reservation_id,
        "launch_index": row.launch_index,
        "created_at": as_utc(row.created_at),
        "updated_at": as_utc(row.updated_at),
        "launched_at": as_utc(row.launched_at) if row.launched_at else None,
        "terminated_at": as_utc(row.terminated_at) if row.terminated_at else None,
        "deleted": row.deleted,
        "user_data": row.user_data,
        "root_volume_id": row.root_volume_id,
        "scheduler_hints": {"group": group_id} if group_id else {},
        "security_groups": list(security_groups or []),
        "access_ip_v4": row.access_ip_v4 or "",
        "access_ip_v6": row.access_ip_v6 or "",
        "volumes_attached": [
            {"id": v.volume_id, "delete_on_termination": v.delete_on_termination}
            for v in volumes
            if v.status in ("in-use", "detaching")
        ],
    }


def list_query(ctx: RequestContext, filters: dict[str, Any]) -> Select[Any] | None:
    """The SQL part of a list's filters, over the listed columns; None when a status
    matches nothing."""
    query = select(*LISTED_COLUMNS)
    all_tenants = bool(filters.get("all_tenants")) and ctx.is_admin
    if not all_tenants:
        query = query.where(Server.project_id == (ctx.project_id or ""))
    elif filters.get("project_id"):
        query = query.where(Server.project_id == filters["project_id"])
    since = filters.get("changes-since")
    if since is not None:
        query = query.where(Server.updated_at >= since.astimezone(dt.UTC).replace(tzinfo=None))
    elif not (ctx.is_admin and filters.get("deleted")):
        query = query.where(Server.deleted.is_(False))
    status = filters.get("status")
    if status:
        vm_state = STATUS_FILTER.get(status.upper())
        if vm_state is None:
            return None
        query = query.where(Server.vm_state == vm_state[0])
    if filters.get("image"):
        query = query.where(Server.image_id == filters["image"])
    if filters.get("flavor"):
        query = query.where(Server.flavor["id"].as_string() == filters["flavor"])
    if filters.get("host") and ctx.is_admin:
        query = query.where(Server.host == filters["host"])
    return query.order_by(Server.created_at.desc(), Server.id.desc())


def tags_match(row_tags: set[str], filters: dict[str, Any]) -> bool:
    """Nova's tag filters: all of `tags`, any of `tags-any`, not all of `not-tags`."""
    tags = set(filters.get("tags") or ())
    tags_any = set(filters.get("tags-any") or ())
    not_tags = set(filters.get("not-tags") or ())
    if tags and not tags <= row_tags:
        return False
    if tags_any and not tags_any & row_tags:
        return False
    return not (not_tags and not_tags <= row_tags)
