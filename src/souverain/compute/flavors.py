"""Flavors: the sizes servers come in, who may use the private ones, their extra specs.

A server copies its flavor at boot, so nothing here changes a running server.
"""

from __future__ import annotations

import uuid
from typing import Any

from sqlalchemy import Select, delete, or_, select
from sqlalchemy.orm import Session

from souverain.common.context import RequestContext
from souverain.common.errors import BadRequest, Conflict, NotFound
from souverain.compute.core import ComputeCore, require_admin
from souverain.compute.models import Flavor, FlavorAccess

DEFAULT_FLAVORS = (
    # id, name, vcpus, ram MiB, disk GiB
    ("1", "t1.nano", 1, 128, 1),
    ("2", "m1.small", 1, 2048, 20),
    ("3", "m1.medium", 2, 4096, 40),
)


def flavor_view(f: Flavor) -> dict[str, Any]:
    return {
        "id": f.id,
        "name": f.name,
        "vcpus": f.vcpus,
        "ram": f.ram,
        "disk": f.disk,
        "ephemeral": f.ephemeral,
        "swap": f.swap,
        "rxtx_factor": f.rxtx_factor,
        "is_public": f.is_public,
        "disabled": f.disabled,
        "description": f.description,
        "extra_specs": dict(f.extra_specs or {}),
        "sort": (f.ram, f.vcpus, f.disk, f.id),
    }


def _visible(ctx: RequestContext) -> Select[Flavor]:
    query = select(Flavor)
    if not ctx.is_admin:
        shared = select(FlavorAccess.flavor_id).where(
            FlavorAccess.project_id == (ctx.project_id or "")
        )
        query = query.where(or_(Flavor.is_public.is_(True), Flavor.id.in_(shared)))
    return query


class Flavors:
    def __init__(self, core: ComputeCore) -> None:
        self.core = core
        self.db = core.db

    def set_up(self) -> None:
        """The default flavors, unless one of that id or name exists."""
        with self.db.session() as s:
            for flavor_id, name, vcpus, ram, disk in DEFAULT_FLAVORS:
                if (
                    s.get(Flavor, flavor_id) is None
                    and s.scalar(select(Flavor).where(Flavor.name == name)) is None
                ):
                    s.add(
                        Flavor(
                            id=flavor_id,
                            name=name,
                            vcpus=vcpus,
                            ram=ram,
                            disk=disk,
                            ephemeral=0,
                            swap=0,
                            rxtx_factor=1.0,
                            is_public=True,
                            disabled=False,
                            extra_specs={},
                            created_at=self.core.now(),
                        )
                    )

    def list_flavors(
        self,
        ctx: RequestContext,
        is_public: bool | None = True,
        min_ram: int = 0,
        min_disk: int = 0,
    ) -> list[dict[str, Any]]:
        with self.db.session() as s:
            query = _visible(ctx).where(Flavor.disabled.is_(False))
            if is_public is not None and ctx.is_admin:
                query = query.where(Flavor.is_public.is_(is_public))
            if min_ram:
                query = query.where(Flavor.ram >= min_ram)
            if min_disk:
                query = query.where(Flavor.disk >= min_disk)
            rows = s.scalars(query).all()
            return sorted((flavor_view(f) for f in rows), key=lambda f: f["sort"])

    @staticmethod
    def row(s: Session, ctx: RequestContext, flavor_id: str) -> Flavor:
        row: Flavor | None = s.scalar(_visible(ctx).where(Flavor.id == flavor_id))
        if row is None:
            raise NotFound(f"Flavor {flavor_id} could not be found.")
        return row

    def get_flavor(self, ctx: RequestContext, flavor_id: str) -> dict[str, Any]:
        with self.db.session() as s:
            return flavor_view(self.row(s, ctx, flavor_id))

    def create_flavor(self, ctx: RequestContext, data: dict[str, Any]) -> dict[str, Any]:
        require_admin(ctx, "create flavors")
        flavor_id = data.get("id") or str(uuid.uuid4())
        with self.db.session() as s:
            if s.get(Flavor, flavor_id) is not None:
                raise Conflict(f"Flavor with ID {flavor_id} already exists.")
            if s.scalar(select(Flavor).where(Flavor.name == data["name"])) is not None:
                raise Conflict(f"Flavor with name {data['name']} already exists.")
            row = Flavor(
                id=flavor_id,
                name=data["name"],
                vcpus=data["vcpus"],
                ram=data["ram"],
                disk=data["disk"],
                ephemeral=data.get("ephemeral", 0),
                swap=data.get("swap", 0),
                rxtx_factor=data.get("rxtx_factor", 1.0),
                is_public=data.get("is_public", True),
                disabled=False,
                description=data.get("description"),
                extra_specs={},
                created_at=self.core.now(),
            )
            s.add(row)
            s.flush()
            return flavor_view(row)

    def update_flavor(
        self, ctx: RequestContext, flavor_id: str, description: str | None
    ) -> dict[str, Any]:
        require_admin(ctx, "update flavors")
        with self.db.session() as s:
            row = self.row(s, ctx, flavor_id)
            row.description = description
            return flavor_view(row)

    def delete_flavor(self, ctx: RequestContext, flavor_id: str) -> None:
        require_admin(ctx, "delete flavors")
        with self.db.session() as s:
            row = self.row(s, ctx, flavor_id)
            s.execute(delete(FlavorAccess).where(FlavorAccess.flavor_id == row.id))
            s.delete(row)

    def flavor_extra_specs(self, ctx: RequestContext, flavor_id: str) -> dict[str, str]:
        return dict(self.get_flavor(ctx, flavor_id)["extra_specs"])

    def set_flavor_extra_specs(
        self,
        ctx: RequestContext,
        flavor_id: str,
        specs: dict[str, str],
        replace_key: str | None = None,
    ) -> dict[str, str]:
        require_admin(ctx, "change flavor extra specs")
        with self.db.session() as s:
            row = self.row(s, ctx, flavor_id)
            merged = dict(row.extra_specs or {})
            merged.update(specs)
            row.extra_specs = merged
            return specs

    def delete_flavor_extra_spec(self, ctx: RequestContext, flavor_id: str, key: str) -> None:
        require_admin(ctx, "change flavor extra specs")
        with self.db.session() as s:
            row = self.row(s, ctx, flavor_id)
            specs = dict(row.extra_specs or {})
            if key not in specs:
                raise NotFound(f"Flavor {flavor_id} has no extra specs with key {key}.")
            del specs[key]
            row.extra_specs = specs

    def flavor_access(self, ctx: RequestContext, flavor_id: str) -> list[dict[str, str]]:
        require_admin(ctx, "see flavor access lists")
        with self.db.session() as s:
            row = self.row(s, ctx, flavor_id)
            if row.is_public:
                raise NotFound("Access list not available for public flavors.")
            projects = s.scalars(
                select(FlavorAccess.project_id).where(FlavorAccess.flavor_id == flavor_id)
            ).all()
            return [{"flavor_id": flavor_id, "tenant_id": p} for p in sorted(projects)]

    def change_flavor_access(
        self, ctx: RequestContext, flavor_id: str, project_id: str, add: bool
    ) -> list[dict[str, str]]:
        require_admin(ctx, "change flavor access lists")
        with self.db.session() as s:
            row = self.row(s, ctx, flavor_id)
            if row.is_public:
                raise Conflict("Can not add access to a public flavor.")
            existing = s.scalar(
                select(FlavorAccess).where(
                    FlavorAccess.flavor_id == flavor_id, FlavorAccess.project_id == project_id
                )
            )
            if add:
                if existing is not None:
                    raise Conflict(
                        f"Flavor access already exists for flavor {flavor_id} "
                        f"and project {project_id} combination."
                    )
                s.add(FlavorAccess(flavor_id=flavor_id, project_id=project_id))
            else:
                if existing is None:
                    raise NotFound(
                        f"Flavor access not found for {flavor_id} / {project_id} combination."
                    )
                s.delete(existing)
        return self.flavor_access(ctx, flavor_id)

    def flavor_doc(self, s: Session, ctx: RequestContext, flavor_id: str) -> dict[str, Any]:
        """The flavor a server copies into its row (a 400 when it cannot be seen)."""
        try:
            doc = flavor_view(self.row(s, ctx, flavor_id))
        except NotFound:
            raise BadRequest(f"Flavor {flavor_id} could not be found.") from None
        doc.pop("sort")
        return doc
