"""The service catalog and its administration: regions, services and endpoints.

Knows nothing of HTTP; only an administrator changes what the catalog lists.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from souverain.common.context import RequestContext
from souverain.common.errors import BadRequest, Conflict
from souverain.common.ids import new_id
from souverain.common.policy import enforce
from souverain.identity import models as m
from souverain.identity.core import (
    IdentityCore,
)

_PROJECT_IN_URL = re.compile(r"[$%]\((?:project_id|tenant_id)\)s")


def for_project(catalog: list[dict[str, Any]], project_id: str | None) -> list[dict[str, Any]]:
    """The catalog a token carries: `$(project_id)s` or `%(project_id)s` in an endpoint's
    URL (Swift's `AUTH_...`) becomes the token's project; without a project, as in
    Keystone, such endpoints are left out."""
    if not any(_PROJECT_IN_URL.search(e["url"]) for sv in catalog for e in sv["endpoints"]):
        return catalog
    shown = []
    for service in catalog:
        endpoints = []
        for endpoint in service["endpoints"]:
            if _PROJECT_IN_URL.search(endpoint["url"]):
                if not project_id:
                    continue
                url = _PROJECT_IN_URL.sub(project_id, endpoint["url"])
                endpoint = {**endpoint, "url": url}
            endpoints.append(endpoint)
        shown.append({**service, "endpoints": endpoints})
    return shown


class Catalog:
    """What runs where; the catalog a token shows is cached until identity data changes."""

    def __init__(self, core: IdentityCore) -> None:
        self.core = core
        self._catalog: tuple[int, list[dict[str, Any]]] | None = None
        # a project's catalog narrowed by OS-EP-FILTER: (generation, endpoint ids or None)
        self._narrowed: dict[str, tuple[int, set[str] | None]] = {}

    # ------------------------------------------------------------------ the catalog tokens carry

    def project_catalog(
        self, project_id: str, endpoint_ids: Callable[[Session, str], set[str] | None]
    ) -> list[dict[str, Any]]:
        """The catalog a project-scoped token shows: only the project's endpoints when it
        has OS-EP-FILTER associations, else all of them."""
        full = self.catalog()
        cached = self._narrowed.get(project_id)
        if cached is None or cached[0] != self.core.generation:
            generation = self.core.generation
            with self.core.db.session() as s:
                cached = (generation, endpoint_ids(s, project_id))
            if len(self._narrowed) > 100_000:
                self._narrowed.clear()
            self._narrowed[project_id] = cached
        keep = cached[1]
        if keep is None:
            return full
        narrowed = [
            {**sv, "endpoints": [e for e in sv["endpoints"] if e["id"] in keep]} for sv in full
        ]
        return [sv for sv in narrowed if sv["endpoints"]]

    def catalog(self) -> list[dict[str, Any]]:
        cached = self._catalog
        if cached is not None and cached[0] == self.core.generation:
            return cached[1]
        generation = self.core.generation
        with self.core.db.session() as s:
            services = s.scalars(select(m.Service).where(m.Service.enabled.is_(True))).all()
            endpoints = s.scalars(select(m.Endpoint).where(m.Endpoint.enabled.is_(True))).all()
            by_service: dict[str, list[dict[str, Any]]] = {}
            for e in endpoints:
                by_service.setdefault(e.service_id, []).append(
                    {
                        "id": e.id,
                        "interface": e.interface,
                        "region": e.region_id,
                        "region_id": e.region_id,
                        "url": e.url,
                    }
                )
            catalog = [
                {
                    "id": sv.id,
                    "type": sv.type,
                    "name": sv.name,
                    "endpoints": by_service.get(sv.id, []),
                }
                for sv in services
            ]
        self._catalog = (generation, catalog)
        return catalog

    # ------------------------------------------------------------------ regions

    def list_regions(self, ctx: RequestContext, filters: dict[str, Any]) -> list[dict[str, Any]]:
        enforce(ctx, "identity:list_regions")
        with self.core.db.session() as s:
            query = select(m.Region).order_by(m.Region.id)
            if "parent_region_id" in filters:
                query = query.where(m.Region.parent_region_id == filters["parent_region_id"])
            return [self.core.region_ref(r) for r in s.scalars(query).all()]

    def get_region(self, ctx: RequestContext, region_id: str) -> dict[str, Any]:
        enforce(ctx, "identity:get_region")
        with self.core.db.session() as s:
            return self.core.region_ref(self.core.get(s, m.Region, region_id, "region"))

    def create_region(self, ctx: RequestContext, data: dict[str, Any]) -> dict[str, Any]:
        enforce(ctx, "identity:create_region")
        with self.core.db.session() as s:
            parent = data.get("parent_region_id")
            if parent:
                self.core.get(s, m.Region, parent, "region")
            r = m.Region(
                id=data.get("id") or new_id(),
                description=data.get("description") or "",
                parent_region_id=parent,
            )
            s.add(r)
            self.core.flush_unique(s, f"Duplicate ID, {r.id}.")
            ref = self.core.region_ref(r)
        self.core.changed()
        return ref

    def update_region(
        self, ctx: RequestContext, region_id: str, data: dict[str, Any]
    ) -> dict[str, Any]:
        enforce(ctx, "identity:update_region")
        with self.core.db.session() as s:
            r = self.core.get(s, m.Region, region_id, "region")
            if "description" in data:
                r.description = data["description"] or ""
            if "parent_region_id" in data:
                parent = data["parent_region_id"]
                if parent == r.id:
                    raise BadRequest("A region cannot be its own parent.")
                if parent:
                    self.core.get(s, m.Region, parent, "region")
                r.parent_region_id = parent
            ref = self.core.region_ref(r)
        self.core.changed()
        return ref

    def delete_region(self, ctx: RequestContext, region_id: str) -> None:
        enforce(ctx, "identity:delete_region")
        with self.core.db.session() as s:
            r = self.core.get(s, m.Region, region_id, "region")
            if s.scalars(select(m.Endpoint).where(m.Endpoint.region_id == r.id)).first():
                raise Conflict("The region still has endpoints; delete them first.")
            if s.scalars(select(m.Region).where(m.Region.parent_region_id == r.id)).first():
                raise Conflict("The region has child regions; delete them first.")
            s.delete(r)
        self.core.changed()

    # ------------------------------------------------------------------ services

    def list_services(self, ctx: RequestContext, filters: dict[str, Any]) -> list[dict[str, Any]]:
        enforce(ctx, "identity:list_services")
        with self.core.db.session() as s:
            query = select(m.Service).order_by(m.Service.type, m.Service.name)
            for key in ("type", "name"):
                if key in filters:
                    query = query.where(getattr(m.Service, key) == filters[key])
            return [self.core.service_ref(sv) for sv in s.scalars(query).all()]

    def get_service(self, ctx: RequestContext, service_id: str) -> dict[str, Any]:
        enforce(ctx, "identity:get_service")
        with self.core.db.session() as s:
            return self.core.service_ref(self.core.get(s, m.Service, service_id, "service"))

    def create_service(self, ctx: RequestContext, data: dict[str, Any]) -> dict[str, Any]:
        enforce(ctx, "identity:create_service")
        with self.core.db.session() as s:
            sv = m.Service(
                id=new_id(),
                type=data["type"],
                name=data.get("name") or "",
                description=data.get("description") or "",
                enabled=data.get("enabled", True),
            )
            s.add(sv)
            ref = self.core.service_ref(sv)
        self.core.changed()
        return ref

    def update_service(
        self, ctx: RequestContext, service_id: str, data: dict[str, Any]
    ) -> dict[str, Any]:
        enforce(ctx, "identity:update_service")
        with self.core.db.session() as s:
            sv = self.core.get(s, m.Service, service_id, "service")
            for key in ("type", "name", "description", "enabled"):
                if key in data:
                    setattr(sv, key, data[key] if data[key] is not None else "")
            ref = self.core.service_ref(sv)
        self.core.changed()
        return ref

    def delete_service(self, ctx: RequestContext, service_id: str) -> None:
        enforce(ctx, "identity:delete_service")
        with self.core.db.session() as s:
            sv = self.core.get(s, m.Service, service_id, "service")
            s.execute(delete(m.Endpoint).where(m.Endpoint.service_id == sv.id))
            s.delete(sv)
        self.core.changed()

    # ------------------------------------------------------------------ endpoints

    def list_endpoints(self, ctx: RequestContext, filters: dict[str, Any]) -> list[dict[str, Any]]:
        enforce(ctx, "identity:list_endpoints")
        with self.core.db.session() as s:
            query = select(m.Endpoint).order_by(m.Endpoint.service_id, m.Endpoint.interface)
            for key in ("service_id", "interface", "region_id"):
                if key in filters:
                    query = query.where(getattr(m.Endpoint, key) == filters[key])
            return [self.core.endpoint_ref(e) for e in s.scalars(query).all()]

    def get_endpoint(self, ctx: RequestContext, endpoint_id: str) -> dict[str, Any]:
        enforce(ctx, "identity:get_endpoint")
        with self.core.db.session() as s:
            return self.core.endpoint_ref(self.core.get(s, m.Endpoint, endpoint_id, "endpoint"))

    def create_endpoint(self, ctx: RequestContext, data: dict[str, Any]) -> dict[str, Any]:
        enforce(ctx, "identity:create_endpoint")
        with self.core.db.session() as s:
            self.core.get(s, m.Service, data["service_id"], "service")
            region_id = data.get("region_id") or data.get("region")
            if region_id:
                self.core.get(s, m.Region, region_id, "region")
            e = m.Endpoint(
                id=new_id(),
                service_id=data["service_id"],
                region_id=region_id,
                interface=data["interface"],
                url=data["url"],
                enabled=data.get("enabled", True),
            )
            s.add(e)
            ref = self.core.endpoint_ref(e)
        self.core.changed()
        return ref

    def update_endpoint(
        self, ctx: RequestContext, endpoint_id: str, data: dict[str, Any]
    ) -> dict[str, Any]:
        enforce(ctx, "identity:update_endpoint")
        with self.core.db.session() as s:
            e = self.core.get(s, m.Endpoint, endpoint_id, "endpoint")
            if "service_id" in data:
                self.core.get(s, m.Service, data["service_id"], "service")
            region = data.get("region_id", data.get("region"))
            if region:
                self.core.get(s, m.Region, region, "region")
                e.region_id = region
            for key in ("service_id", "interface", "url", "enabled"):
                if key in data:
                    setattr(e, key, data[key])
            ref = self.core.endpoint_ref(e)
        self.core.changed()
        return ref

    def delete_endpoint(self, ctx: RequestContext, endpoint_id: str) -> None:
        enforce(ctx, "identity:delete_endpoint")
        with self.core.db.session() as s:
            s.delete(self.core.get(s, m.Endpoint, endpoint_id, "endpoint"))
            pe = m.ProjectEndpoint
            s.execute(delete(pe).where(pe.endpoint_id == endpoint_id))
        self.core.changed()
