"""Server groups: a project's servers placed together (affinity) or apart (anti-affinity),
strictly or as a preference (soft-*), as Nova's os-server-groups.

The scheduler (`scheduler.py`) holds the policies across hosts: affinity and
anti-affinity (with its `max_server_per_host` rule, one by default) as filters checked
again in the claim itself, soft-* as weighers; a server no host can take fails to
build with no valid host, as Nova's. Nothing here touches a guest.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import delete, func, select
from sqlalchemy.orm import Session

from souverain.common.context import RequestContext
from souverain.common.errors import BadRequest, Forbidden, NotFound
from souverain.common.tenancy import may_act_on
from souverain.compute.core import ComputeCore
from souverain.compute.models import Server, ServerGroup, ServerGroupMember

# Nova's defaults for the two server group quotas, which this cloud holds fixed.
GROUPS_PER_PROJECT = 10
MEMBERS_PER_GROUP = 10


@dataclass(frozen=True)
class GroupRequest:
    name: str
    policy: str
    rules: dict[str, Any]


def _view(group: ServerGroup, members: list[str]) -> dict[str, Any]:
    return {
        "id": group.id,
        "name": group.name,
        "policy": group.policy,
        "rules": dict(group.rules or {}),
        "members": members,
        "project_id": group.project_id,
        "user_id": group.user_id,
    }


def live_members(s: Session, group_ids: list[str]) -> dict[str, list[str]]:
    """Group id -> the ids of its servers not deleted, oldest first."""
    rows = s.execute(
        select(ServerGroupMember.group_id, Server.id)
        .join(Server, Server.id == ServerGroupMember.server_id)
        .where(ServerGroupMember.group_id.in_(group_ids), Server.deleted.is_(False))
        .order_by(Server.created_at, Server.id)
    ).all()
    out: dict[str, list[str]] = {g: [] for g in group_ids}
    for group_id, server_id in rows:
        out[str(group_id)].append(str(server_id))
    return out


def groups_of_servers(s: Session, server_ids: Sequence[str]) -> dict[str, str]:
    """Server id -> its group's id, for those in a group."""
    if not server_ids:
        return {}
    rows = s.execute(
        select(ServerGroupMember.server_id, ServerGroupMember.group_id).where(
            ServerGroupMember.server_id.in_(server_ids)
        )
    ).all()
    return {str(server_id): str(group_id) for server_id, group_id in rows}


def group_for_create(s: Session, ctx: RequestContext, group_id: str, count: int) -> ServerGroup:
    """The group a create names, of the caller's project, with room for `count` more
    members; 400 when there is no such group, 403 when it is full."""
    group = s.get(ServerGroup, group_id) if len(group_id) <= 36 else None
    if group is None or group.project_id != ctx.project_id:
        raise BadRequest(f"Invalid server group: {group_id[:64]} could not be found.")
    held = len(live_members(s, [group.id])[group.id])
    if held + count > MEMBERS_PER_GROUP:
        raise Forbidden(
            f"Quota exceeded, too many servers in group: {group.id} holds {held} of "
            f"{MEMBERS_PER_GROUP}."
        )
    return group


class ServerGroups:
    def __init__(self, core: ComputeCore) -> None:
        self.core = core
        self.db = core.db

    def create(self, ctx: RequestContext, req: GroupRequest) -> dict[str, Any]:
        if ctx.project_id is None:
            raise Forbidden("Server groups belong to a project: use a project-scoped token.")
        with self.db.session() as s:
            held = s.scalar(
                select(func.count())
                .select_from(ServerGroup)
                .where(ServerGroup.project_id == ctx.project_id)
            )
            if int(held or 0) >= GROUPS_PER_PROJECT:
                raise Forbidden(
                    f"Quota exceeded, too many server groups: the project holds "
                    f"{GROUPS_PER_PROJECT}."
                )
            group = ServerGroup(
                id=str(uuid.uuid4()),
                project_id=ctx.project_id,
                user_id=ctx.user_id,
                name=req.name,
                policy=req.policy,
                rules=dict(req.rules),
                created_at=self.core.now(),
            )
            s.add(group)
            s.flush()
            return _view(group, [])

    def _visible(self, s: Session, ctx: RequestContext, group_id: str) -> ServerGroup:
        group = s.get(ServerGroup, group_id) if len(group_id) <= 36 else None
        if group is None or not may_act_on(ctx, group.project_id):
            raise NotFound(f"Instance group {group_id[:64]} could not be found.")
        return group

    def get(self, ctx: RequestContext, group_id: str) -> dict[str, Any]:
        with self.db.session() as s:
            group = self._visible(s, ctx, group_id)
            return _view(group, live_members(s, [group.id])[group.id])

    def list(self, ctx: RequestContext, all_projects: bool) -> list[dict[str, Any]]:
        """The project's groups (every project's for an admin asking for all), oldest first."""
        query = select(ServerGroup).order_by(ServerGroup.created_at, ServerGroup.id)
        if not (all_projects and ctx.is_admin):
            query = query.where(ServerGroup.project_id == (ctx.project_id or ""))
        with self.db.session() as s:
            groups = s.scalars(query).all()
            members = live_members(s, [g.id for g in groups])
            return [_view(g, members[g.id]) for g in groups]

    def delete(self, ctx: RequestContext, group_id: str) -> None:
        with self.db.session() as s:
            group = self._visible(s, ctx, group_id)
            s.execute(delete(ServerGroupMember).where(ServerGroupMember.group_id == group.id))
            s.delete(group)
