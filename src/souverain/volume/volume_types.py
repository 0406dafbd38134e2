"""Volume types: the default one made at start, the ones admins add, their extra specs,
and which projects may use a private one. No HTTP.

A private type (is_public false) is seen and used only by admins and the projects an
admin gave access to (os-volume-type-access).
"""

from __future__ import annotations

import uuid

from sqlalchemy import delete, func, select
from sqlalchemy.orm import Session

from souverain.common.context import RequestContext
from souverain.common.errors import BadRequest, Conflict, NotFound
from souverain.volume import models as m
from souverain.volume.rules import UUID_RE, Shared, require_admin, visible_volume
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

    def usable(self, s: Session, ctx: RequestContext, type_ref: str) -> m.VolumeType:
        """A type the caller may see and use: public, or private with access (or admin)."""
        row = self.find(s, type_ref)
        if row.is_public or ctx.is_admin:
            return row
        key = (row.id, ctx.project_id or "")
        if s.get(m.VolumeTypeAccess, key) is None:
            raise NotFound(f"Volume type {type_ref[:255]} could not be found.")
        return row

    def list_visible(
        self, ctx: RequestContext, is_public: bool | None = True
    ) -> list[m.VolumeType]:
        """Public types and the private ones granted to the caller's project (is_public
        true); for an admin also every private type (false) or every type at all (None)."""
        with self.shared.db.session() as s:
            stmt = select(m.VolumeType).order_by(m.VolumeType.name)
            if ctx.is_admin and is_public is None:
                return list(s.scalars(stmt))
            if ctx.is_admin and is_public is False:
                return list(s.scalars(stmt.where(m.VolumeType.is_public.is_(False))))
            granted = select(m.VolumeTypeAccess.volume_type_id).where(
                m.VolumeTypeAccess.project_id == (ctx.project_id or "")
            )
            stmt = stmt.where(m.VolumeType.is_public.is_(True) | m.VolumeType.id.in_(granted))
            return list(s.scalars(stmt))

    def get(self, ctx: RequestContext, type_ref: str) -> m.VolumeType:
        with self.shared.db.session() as s:
            return self.usable(s, ctx, type_ref)

    def retype(self, ctx: RequestContext, volume_id: str, new_type: str) -> None:
        """Cinder's os-retype: every type here lives on the one backend, so a retype moves
        no data, it changes the type the volume is counted and shown under."""
        with self.shared.db.session() as s:
            row = visible_volume(s, ctx, volume_id)
            target = self.usable(s, ctx, new_type)
            if row.status not in ("available", "in-use"):
                raise BadRequest(
                    f"Invalid volume: Volume {volume_id} is {row.status}; it must be available "
                    "or in-use to retype."
                )
            if target.id == row.volume_type_id:
                raise BadRequest(
                    f"Invalid input received: volume {volume_id} is already of type "
                    f"{target.name}; name another type."
                )
            encrypted_target = s.get(m.VolumeTypeEncryption, target.id) is not None
            if encrypted_target != (row.encryption_key_id is not None):
                raise BadRequest(
                    "Invalid input received: Retype cannot change encryption requirements: "
                    f"volume {volume_id} is {'' if row.encryption_key_id else 'not '}encrypted "
                    f"and type {target.name} is {'' if encrypted_target else 'not '}an "
                    "encrypted one."
                )
            row.volume_type_id = target.id
            row.updated_at = self.shared.clock.now()

    # ------------------------------------------------------------------ access

    def access_list(self, ctx: RequestContext, type_id: str) -> list[tuple[str, str]]:
        """(type id, project id) of each project given access to a private type."""
        require_admin(ctx)
        with self.shared.db.session() as s:
            row = self.find(s, type_id)
            if row.is_public:
                raise NotFound("Access list not available for public volume types.")
            stmt = select(m.VolumeTypeAccess.project_id).where(
                m.VolumeTypeAccess.volume_type_id == row.id
            )
            return [(row.id, project) for project in s.scalars(stmt)]

    def add_access(self, ctx: RequestContext, type_id: str, project_id: str) -> None:
        require_admin(ctx)
        with self.shared.db.session() as s:
            row = self.find(s, type_id)
            if row.is_public:
                raise BadRequest(
                    "Invalid volume type: a public volume type is everyone's; make it private "
                    "(is_public false) before giving projects access."
                )
            if s.get(m.VolumeTypeAccess, (row.id, project_id)) is not None:
                raise Conflict(
                    f"Volume type access for {row.id}/{project_id[:64]} combination already exists."
                )
            s.add(m.VolumeTypeAccess(volume_type_id=row.id, project_id=project_id))

    def remove_access(self, ctx: RequestContext, type_id: str, project_id: str) -> None:
        require_admin(ctx)
        with self.shared.db.session() as s:
            row = self.find(s, type_id)
            grant = s.get(m.VolumeTypeAccess, (row.id, project_id))
            if grant is None:
                raise NotFound(
                    f"Volume type access not found for {row.id}/{project_id[:64]} combination."
                )
            s.delete(grant)

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
            s.execute(delete(m.VolumeTypeAccess).where(m.VolumeTypeAccess.volume_type_id == row.id))
            s.execute(
                delete(m.VolumeTypeEncryption).where(
                    m.VolumeTypeEncryption.volume_type_id == row.id
                )
            )
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
