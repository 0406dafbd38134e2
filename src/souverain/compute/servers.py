"""Servers as records: reading and listing them, renaming, their metadata and tags,
and the log of actions taken on them. Nothing here touches a guest."""

from __future__ import annotations

import re
from collections.abc import Iterator, Sequence
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from souverain.common.clock import as_utc
from souverain.common.context import RequestContext
from souverain.common.errors import BadRequest, Forbidden, NotFound
from souverain.common.tenancy import may_act_on
from souverain.compute.agents import host_states
from souverain.compute.core import ComputeCore, check_unlocked
from souverain.compute.listing import (
    IDS_PER_QUERY,
    LISTED_WIDTH,
    ListedServer,
    list_query,
    server_view,
    tags_match,
)
from souverain.compute.models import InstanceAction, Server, ServerGroup
from souverain.compute.name_filter import bounded_pattern
from souverain.compute.quotas import Quotas, metadata_over_quota
from souverain.compute.server_groups import groups_of_servers

MAX_TAGS = 50


def hostname_of(name: str) -> str:
    text = re.sub(r"[^a-z0-9-]+", "-", name.lower()).strip("-")
    return (text[:63].strip("-")) or "server"


def _action_view(a: InstanceAction) -> dict[str, Any]:
    return {
        "action": a.action,
        "instance_uuid": a.server_id,
        "request_id": a.request_id,
        "user_id": a.user_id,
        "project_id": a.project_id,
        "start_time": as_utc(a.start_time),
        "finish_time": as_utc(a.finish_time) if a.finish_time else None,
        "updated_at": as_utc(a.finish_time or a.start_time),
        "result": a.result,
        "message": a.message,
    }


class Servers:
    def __init__(self, core: ComputeCore, quotas: Quotas) -> None:
        self.core = core
        self.db = core.db
        self.volumes = core.volumes
        self.network = core.network
        self.quotas = quotas

    # ------------------------------------------------------------------ read

    def server_view(self, row: Server) -> dict[str, Any]:
        return self.server_views([row])[0]

    def server_views(self, rows: Sequence[Server]) -> list[dict[str, Any]]:
        """Views of many servers: the volumes of all of them in one query, not one each."""
        volumes = self.volumes.volumes_of_servers([r.id for r in rows]) if rows else {}
        with self.db.session() as s:  # shown by a server's own document, not by lists
            groups = groups_of_servers(s, [r.id for r in rows])
            status = self._host_states(s, {r.host for r in rows if r.host})
        firewall = self.network.security_groups_of_servers({r.id: r.project_id for r in rows})
        return [
            {
                **server_view(r, volumes.get(r.id, ()), groups.get(r.id), firewall.get(r.id)),
                "server_groups": [groups[r.id]] if r.id in groups else [],
                "host_status": status.get(r.host or "", ""),
            }
            for r in rows
        ]

    def _host_states(self, s: Session, hosts: set[str]) -> dict[str, str]:
        settings = self.core.settings
        return host_states(
            s, hosts, self.core.now(), settings.service_down_time, settings.host_dead_after
        )

    def get_server(self, ctx: RequestContext, server_id: str) -> dict[str, Any]:
        with self.db.session() as s:
            return self.server_view(self.core.server_row(s, ctx, server_id))

    def find_servers(self, ctx: RequestContext, filters: dict[str, Any]) -> list[ListedServer]:
        """What a server list filters, sorts and pages on, newest first: one query of a few
        columns. The views of the page it shows are `views_of_servers`, read after paging."""
        query = list_query(ctx, filters)
        if query is None:
            return []
        pattern = bounded_pattern(filters.get("name"))
        by_tags = any(filters.get(k) for k in ("tags", "tags-any", "not-tags"))
        if by_tags:
            query = query.add_columns(Server.tags)
        with self.db.session() as s:
            rows = s.execute(query).all()
        return [
            ListedServer._make(row[:LISTED_WIDTH])
            for row in rows
            if (pattern is None or pattern.search(row.name))
            and (not by_tags or tags_match(set(row.tags or ()), filters))
        ]

    def views_of_servers(self, server_ids: Sequence[str]) -> Iterator[dict[str, Any]]:
        """The views of these servers (a page of a list), in this order, 1,000 at a time:
        their rows in one query and their volumes in another. Each row is let go once
        viewed, so a long list never holds all its rows and views at once."""
        for start in range(0, len(server_ids), IDS_PER_QUERY):
            chunk = server_ids[start : start + IDS_PER_QUERY]
            with self.db.session() as s:
                rows = {r.id: r for r in s.scalars(select(Server).where(Server.id.in_(chunk)))}
                groups = groups_of_servers(s, chunk)
                status = self._host_states(s, {r.host for r in rows.values() if r.host})
            volumes = self.volumes.volumes_of_servers(chunk)
            firewall = self.network.security_groups_of_servers(
                {r.id: r.project_id for r in rows.values()}
            )
            for server_id in chunk:
                row = rows.pop(server_id, None)
                if row is not None:
                    yield {
                        **server_view(
                            row,
                            volumes.get(server_id, ()),
                            groups.get(server_id),
                            firewall.get(server_id),
                        ),
                        "host_status": status.get(row.host or "", ""),
                    }

    def servers_in_use(self, ctx: RequestContext) -> dict[str, int]:
        """What /limits shows in use by the caller's project: its servers and the cores and
        RAM of their flavors, summed by the database rather than row by row; its groups."""
        project_id = ctx.project_id or ""
        with self.db.session() as s:
            count, cores, ram = s.execute(
                select(
                    func.count(Server.id),
                    func.coalesce(func.sum(Server.flavor["vcpus"].as_integer()), 0),
                    func.coalesce(func.sum(Server.flavor["ram"].as_integer()), 0),
                ).where(Server.project_id == project_id, Server.deleted.is_(False))
            ).one()
            groups = s.scalar(
                select(func.count(ServerGroup.id)).where(ServerGroup.project_id == project_id)
            )
        return {
            "instances": int(count),
            "cores": int(cores),
            "ram": int(ram),
            "server_groups": int(groups or 0),
        }

    # ------------------------------------------------------------------ change

    def update_server(
        self, ctx: RequestContext, server_id: str, data: dict[str, Any]
    ) -> dict[str, Any]:
        with self.db.session() as s:
            row = self.core.server_row(s, ctx, server_id)
            if "name" in data:
                row.name = data["name"]
            if "description" in data:
                row.description = data["description"]
            if "hostname" in data:
                row.hostname = hostname_of(data["hostname"])
            for column in ("access_ip_v4", "access_ip_v6"):
                if column in data:
                    setattr(row, column, data[column])
            row.updated_at = self.core.now()
            return self.server_view(row)

    # ------------------------------------------------------------------ metadata and tags

    def metadata(self, ctx: RequestContext, server_id: str) -> dict[str, str]:
        return dict(self.get_server(ctx, server_id)["metadata"])

    def set_metadata(
        self, ctx: RequestContext, server_id: str, items: dict[str, str], replace: bool
    ) -> dict[str, str]:
        with self.db.session() as s:
            row = self.core.server_row(s, ctx, server_id)
            check_unlocked(ctx, row)
            merged = dict(items) if replace else {**(row.server_metadata or {}), **items}
            limit = self.quotas.limits_of(s, row.project_id)["metadata_items"]
            if 0 <= limit < len(merged):
                raise Forbidden(metadata_over_quota(limit))
            row.server_metadata = merged
            row.updated_at = self.core.now()
            return dict(merged)

    def delete_metadata(self, ctx: RequestContext, server_id: str, key: str) -> None:
        with self.db.session() as s:
            row = self.core.server_row(s, ctx, server_id)
            check_unlocked(ctx, row)
            items = dict(row.server_metadata or {})
            if key not in items:
                raise NotFound(f"Metadata item was not found: {key}")
            del items[key]
            row.server_metadata = items
            row.updated_at = self.core.now()

    def tags(self, ctx: RequestContext, server_id: str) -> list[str]:
        return list(self.get_server(ctx, server_id)["tags"])

    def set_tags(self, ctx: RequestContext, server_id: str, tags: list[str]) -> list[str]:
        if len(tags) > MAX_TAGS:
            raise BadRequest("A server has at most 50 tags.")
        with self.db.session() as s:
            row = self.core.server_row(s, ctx, server_id)
            row.tags = sorted(set(tags))
            row.updated_at = self.core.now()
            return list(row.tags)

    def add_tag(self, ctx: RequestContext, server_id: str, tag: str) -> bool:
        with self.db.session() as s:
            row = self.core.server_row(s, ctx, server_id)
            current = list(row.tags or [])
            if tag in current:
                return False
            if len(current) >= MAX_TAGS:
                raise BadRequest("A server has at most 50 tags.")
            row.tags = sorted({*current, tag})
            row.updated_at = self.core.now()
            return True

    def delete_tag(self, ctx: RequestContext, server_id: str, tag: str | None) -> None:
        with self.db.session() as s:
            row = self.core.server_row(s, ctx, server_id)
            current = list(row.tags or [])
            if tag is None:
                row.tags = []
            elif tag not in current:
                raise NotFound(f"Tag '{tag}' could not be found.")
            else:
                row.tags = [t for t in current if t != tag]
            row.updated_at = self.core.now()

    # ------------------------------------------------------------------ actions log

    def instance_actions(
        self, ctx: RequestContext, server_id: str, request_id: str | None = None
    ) -> list[dict[str, Any]]:
        """The server's actions, newest first (deleted servers' too); only those of one
        request when `request_id` is given, picked by the database."""
        with self.db.session() as s:
            row = s.get(Server, server_id) if len(server_id) <= 36 else None
            if row is None or not may_act_on(ctx, row.project_id):
                raise NotFound(f"Instance {server_id} could not be found.")
            query = select(InstanceAction).where(InstanceAction.server_id == server_id)
            if request_id is not None:
                query = query.where(InstanceAction.request_id == request_id)
            actions = s.scalars(query.order_by(InstanceAction.id.desc())).all()
            return [_action_view(a) for a in actions]

    def instance_action(
        self, ctx: RequestContext, server_id: str, request_id: str
    ) -> dict[str, Any]:
        for action in self.instance_actions(ctx, server_id, request_id):
            return action
        raise NotFound(f"Action {request_id} not found.")
