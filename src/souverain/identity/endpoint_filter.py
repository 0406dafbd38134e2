"""Endpoint filters (OS-EP-FILTER): which endpoints a project's catalog shows.

Knows nothing of HTTP. An endpoint group picks endpoints by interface, service and
region; a project is associated with endpoints one by one or through groups. A
project with no association sees the whole catalog (Keystone's default); one with
associations sees only those endpoints. Cloud administrators manage all of it.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from souverain.common.context import RequestContext
from souverain.common.errors import BadRequest, NotFound
from souverain.common.ids import new_id
from souverain.common.policy import enforce
from souverain.identity import models as m
from souverain.identity.core import IdentityCore

FILTER_KEYS = ("interface", "service_id", "region_id")
INTERFACES = ("public", "internal", "admin")


def check_filters(filters: Any) -> dict[str, str]:
    if not isinstance(filters, dict) or not filters:
        raise BadRequest(f"An endpoint group needs filters: an object of {', '.join(FILTER_KEYS)}.")
    for key, value in filters.items():
        if key not in FILTER_KEYS:
            raise BadRequest(f"Invalid filter {str(key)[:64]!r}: use {', '.join(FILTER_KEYS)}.")
        if not isinstance(value, str) or not value or len(value) > 255:
            raise BadRequest(f"Invalid value for filter {key!r}: a non-empty string.")
        if key == "interface" and value not in INTERFACES:
            raise BadRequest(f"Invalid interface {value[:64]!r}: {', '.join(INTERFACES)}.")
    return dict(filters)


def _picks(filters: dict[str, str], e: m.Endpoint) -> bool:
    return all(getattr(e, key) == value for key, value in filters.items())


class EndpointFilter:
    def __init__(self, core: IdentityCore) -> None:
        self.core = core

    # ------------------------------------------------------------------ groups

    @staticmethod
    def group_ref(g: m.EndpointGroup) -> dict[str, Any]:
        return {"id": g.id, "name": g.name, "description": g.description, "filters": g.filters}

    def list_groups(self, ctx: RequestContext) -> list[dict[str, Any]]:
        enforce(ctx, "identity:list_endpoint_groups")
        with self.core.db.session() as s:
            rows = s.scalars(select(m.EndpointGroup).order_by(m.EndpointGroup.name))
            return [self.group_ref(g) for g in rows]

    def get_group(self, ctx: RequestContext, group_id: str) -> dict[str, Any]:
        enforce(ctx, "identity:get_endpoint_group")
        with self.core.db.session() as s:
            return self.group_ref(self.core.get(s, m.EndpointGroup, group_id, "endpoint group"))

    def create_group(self, ctx: RequestContext, data: dict[str, Any]) -> dict[str, Any]:
        enforce(ctx, "identity:create_endpoint_group")
        name = data.get("name")
        if not isinstance(name, str) or not name or len(name) > 255:
            raise BadRequest("An endpoint group needs a name (1 to 255 characters).")
        g = m.EndpointGroup(
            id=new_id(),
            name=name,
            description=_description(data.get("description")),
            filters=check_filters(data.get("filters")),
        )
        with self.core.db.session() as s:
            s.add(g)
            s.flush()
            ref = self.group_ref(g)
        self.core.changed()
        return ref

    def update_group(self, ctx: RequestContext, group_id: str, data: dict[str, Any]) -> Any:
        enforce(ctx, "identity:update_endpoint_group")
        with self.core.db.session() as s:
            g = self.core.get(s, m.EndpointGroup, group_id, "endpoint group")
            if "name" in data:
                if not isinstance(data["name"], str) or not data["name"]:
                    raise BadRequest("An endpoint group's name is a non-empty string.")
                g.name = data["name"]
            if "description" in data:
                g.description = _description(data["description"])
            if "filters" in data:
                g.filters = check_filters(data["filters"])
            ref = self.group_ref(g)
        self.core.changed()
        return ref

    def delete_group(self, ctx: RequestContext, group_id: str) -> None:
        enforce(ctx, "identity:delete_endpoint_group")
        with self.core.db.session() as s:
            g = self.core.get(s, m.EndpointGroup, group_id, "endpoint group")
            pe = m.ProjectEndpoint
            s.execute(delete(pe).where(pe.endpoint_group_id == g.id))
            s.delete(g)
        self.core.changed()

    def group_endpoints(self, ctx: RequestContext, group_id: str) -> list[dict[str, Any]]:
        enforce(ctx, "identity:list_endpoints_associated_with_endpoint_group")
        with self.core.db.session() as s:
            g = self.core.get(s, m.EndpointGroup, group_id, "endpoint group")
            rows = s.scalars(select(m.Endpoint).order_by(m.Endpoint.id))
            return [self.core.endpoint_ref(e) for e in rows if _picks(g.filters, e)]

    # ------------------------------------------------------------------ associations

    def _parts(self, s: Session, project_id: str, endpoint_id: str, group_id: str) -> None:
        self.core.get(s, m.Project, project_id, "project")
        if endpoint_id:
            self.core.get(s, m.Endpoint, endpoint_id, "endpoint")
        if group_id:
            self.core.get(s, m.EndpointGroup, group_id, "endpoint group")

    def associate(
        self, ctx: RequestContext, project_id: str, endpoint_id: str = "", group_id: str = ""
    ) -> None:
        enforce(ctx, "identity:add_endpoint_to_project")
        with self.core.db.session() as s:
            self._parts(s, project_id, endpoint_id, group_id)
            key = (project_id, endpoint_id, group_id)
            if s.get(m.ProjectEndpoint, key) is None:
                s.add(m.ProjectEndpoint(project_id=project_id, endpoint_id=endpoint_id,
                                        endpoint_group_id=group_id))  # fmt: skip
        self.core.changed()

    def check(
        self, ctx: RequestContext, project_id: str, endpoint_id: str = "", group_id: str = ""
    ) -> None:
        enforce(ctx, "identity:check_endpoint_in_project")
        with self.core.db.session() as s:
            self._parts(s, project_id, endpoint_id, group_id)
            if s.get(m.ProjectEndpoint, (project_id, endpoint_id, group_id)) is None:
                raise NotFound(
                    f"Could not find the association of project {project_id} with "
                    f"{'endpoint ' + endpoint_id if endpoint_id else 'endpoint group ' + group_id}."
                )

    def dissociate(
        self, ctx: RequestContext, project_id: str, endpoint_id: str = "", group_id: str = ""
    ) -> None:
        self.check(ctx, project_id, endpoint_id, group_id)
        enforce(ctx, "identity:remove_endpoint_from_project")
        with self.core.db.session() as s:
            row = s.get(m.ProjectEndpoint, (project_id, endpoint_id, group_id))
            if row is not None:
                s.delete(row)
        self.core.changed()

    def project_endpoints(self, ctx: RequestContext, project_id: str) -> list[dict[str, Any]]:
        enforce(ctx, "identity:list_endpoints_for_project")
        with self.core.db.session() as s:
            self.core.get(s, m.Project, project_id, "project")
            ids = self.endpoint_ids_for(s, project_id) or set()
            rows = s.scalars(select(m.Endpoint).where(m.Endpoint.id.in_(ids)))
            return [self.core.endpoint_ref(e) for e in rows]

    def project_groups(self, ctx: RequestContext, project_id: str) -> list[dict[str, Any]]:
        enforce(ctx, "identity:list_endpoint_groups_for_project")
        with self.core.db.session() as s:
            self.core.get(s, m.Project, project_id, "project")
            pe = m.ProjectEndpoint
            ids = s.scalars(select(pe.endpoint_group_id).where(pe.project_id == project_id))
            rows = s.scalars(select(m.EndpointGroup).where(m.EndpointGroup.id.in_(list(ids))))
            return [self.group_ref(g) for g in rows]

    def projects_of(
        self, ctx: RequestContext, endpoint_id: str = "", group_id: str = ""
    ) -> list[dict[str, Any]]:
        enforce(ctx, "identity:list_projects_for_endpoint")
        with self.core.db.session() as s:
            if endpoint_id:
                self.core.get(s, m.Endpoint, endpoint_id, "endpoint")
            if group_id:
                self.core.get(s, m.EndpointGroup, group_id, "endpoint group")
            pe = m.ProjectEndpoint
            ids = s.scalars(
                select(pe.project_id).where(
                    pe.endpoint_id == endpoint_id, pe.endpoint_group_id == group_id
                )
            )
            rows = s.scalars(select(m.Project).where(m.Project.id.in_(list(ids))))
            return [self.core.project_ref(p) for p in rows]

    # ------------------------------------------------------------------ the catalog

    def endpoint_ids_for(self, s: Session, project_id: str) -> set[str] | None:
        """The endpoints a project's catalog shows; None when it has no association (all)."""
        pe = m.ProjectEndpoint
        rows = s.execute(
            select(pe.endpoint_id, pe.endpoint_group_id).where(pe.project_id == project_id)
        ).all()
        if not rows:
            return None
        ids = {e for e, _ in rows if e}
        group_ids = [g for _, g in rows if g]
        if group_ids:
            groups = list(
                s.scalars(select(m.EndpointGroup).where(m.EndpointGroup.id.in_(group_ids)))
            )
            for e in s.scalars(select(m.Endpoint)):
                if any(_picks(g.filters, e) for g in groups):
                    ids.add(e.id)
        return ids


def _description(value: Any) -> str:
    if value is None:
        return ""
    if not isinstance(value, str) or len(value) > 65535:
        raise BadRequest("An endpoint group's description is a string.")
    return value
