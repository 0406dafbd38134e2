"""Volume types: the default one made at start, the ones admins add, their extra specs. No HTTP."""

from __future__ import annotations

import uuid

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from souverain.common.context import RequestContext
from souverain.common.errors import BadRequest, Conflict, NotFound
from souverain.volume import models as m
from souverain.volume.rules import UUID_RE, Shared, require_admin
from souverain.volume.schemas import TypeCreate, TypeUpdate


class VolumeTypes:
    def __init__(self, shared: Shared) -> None:
        self.shared = shared

    def bootstrap_default(self) -> None:
        """Once per start: the configured default type exists."""
        now = self.shared.clock.now()
        name = self.shared.settings.default_type
        with self.shared.db.session() as s:
            if s.scalar(select(m.VolumeType.id).where(m.VolumeType.name == name)) is None:
                s.add(
                    m.VolumeType(
                        id=str(uuid.uuid4()),
                        name=name,
                        description="Default Volume Type",
                        is_public=True,
                        extra_specs={},
                        created_at=now,
                        updated_at=now,
                    )
                )

    def find(self, s: Session, ref: str) -> m.VolumeType:
        """A type by id or name; `default` is the configured default type."""
        if ref == "default":
            ref = self.shared.settings.default_type
        row = s.get(m.VolumeType, ref) if UUID_RE.match(ref) else None
        if row is None:
            row = s.scalar(select(m.VolumeType).where(m.VolumeType.name == ref))
        if row is None:
            raise NotFound(f"Volume type {ref[:255]} could not be found.")
        return row

    def list_visible(self, ctx: RequestContext) -> list[m.VolumeType]:
        with self.shared.db.session() as s:
            stmt = select(m.VolumeType).order_by(m.VolumeType.name)
            if not ctx.is_admin:
                stmt = stmt.where(m.VolumeType.is_public.is_(True))
            return list(s.scalars(stmt))

    def get(self, ctx: RequestContext, type_ref: str) -> m.VolumeType:
        with self.shared.db.session() as s:
            row = self.find(s, type_ref)
            if not (row.is_public or ctx.is_admin):
                raise NotFound(f"Volume type {type_ref} could not be found.")
            return row

    def create(self, ctx: RequestContext, req: TypeCreate) -> m.VolumeType:
        require_admin(ctx)
        now = self.shared.clock.now()
        row = m.VolumeType(
            id=str(uuid.uuid4()),
            name=req.name,
            description=req.description,
            is_public=req.is_public,
            extra_specs=dict(req.extra_specs),
            created_at=now,
            updated_at=now,
        )
        with self.shared.db.session() as s:
            if s.scalar(select(m.VolumeType.id).where(m.VolumeType.name == req.name)):
                raise Conflict(f"Volume Type {req.name} already exists.")
            s.add(row)
            s.flush()
            return row

    def update(self, ctx: RequestContext, type_id: str, req: TypeUpdate) -> m.VolumeType:
        require_admin(ctx)
        with self.shared.db.session() as s:
            row = self.find(s, type_id)
            if req.name is not None:
                if row.name == self.shared.settings.default_type and req.name != row.name:
                    raise BadRequest("The default volume type cannot be renamed.")
                clash = s.scalar(select(m.VolumeType.id).where(m.VolumeType.name == req.name))
                if clash and clash != row.id:
                    raise Conflict(f"Volume Type {req.name} already exists.")
                row.name = req.name
            if req.description_sent:
                row.description = req.description
            if req.is_public is not None:
                row.is_public = req.is_public
            row.updated_at = self.shared.clock.now()
            s.flush()
            return row

    def delete(self, ctx: RequestContext, type_id: str) -> None:
        require_admin(ctx)
        with self.shared.db.session() as s:
            row = self.find(s, type_id)
            if row.name == self.shared.settings.default_type:
                raise BadRequest("The default volume type cannot be deleted.")
            if s.scalar(select(func.count(m.Volume.id)).where(m.Volume.volume_type_id == row.id)):
                raise BadRequest(f"Target volume type {row.id} is still in use.")
            s.delete(row)

    def extra_specs(self, ctx: RequestContext, type_id: str) -> dict[str, str]:
        return dict(self.get(ctx, type_id).extra_specs or {})

    def set_extra_specs(
        self,
        ctx: RequestContext,
        type_id: str,
        specs: dict[str, str],
        replace_key: str | None = None,
    ) -> dict[str, str]:
        require_admin(ctx)
        if replace_key is not None and list(specs) != [replace_key]:
            raise BadRequest("Request body and URI mismatch.")
        with self.shared.db.session() as s:
            row = self.find(s, type_id)
            row.extra_specs = {**(row.extra_specs or {}), **specs}
            row.updated_at = self.shared.clock.now()
        return dict(specs)

    def delete_extra_spec(self, ctx: RequestContext, type_id: str, key: str) -> None:
        require_admin(ctx)
        with self.shared.db.session() as s:
            row = self.find(s, type_id)
            specs = dict(row.extra_specs or {})
            if key not in specs:
                raise NotFound(f"Volume Type {type_id} has no extra specs with key {key[:255]}.")
            del specs[key]
            row.extra_specs = specs
            row.updated_at = self.shared.clock.now()
