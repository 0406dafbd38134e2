"""QoS specs: named limits an admin defines and associates with volume types. No HTTP.

The specs are recorded, shown and associated as Cinder does; a volume type names at
most one QoS spec. The local qcow2 backend does not throttle I/O itself, so a spec is
what an admin declares for the type (its consumer is `front-end`, `back-end` or `both`).
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from souverain.common.context import RequestContext
from souverain.common.errors import BadRequest, Conflict, NotFound
from souverain.volume import models as m
from souverain.volume.rules import UUID_RE, Shared, require_admin
from souverain.volume.schemas import metadata as check_metadata

CONSUMERS = ("front-end", "back-end", "both")


@dataclass(frozen=True)
class QosCreate:
    name: str
    consumer: str
    specs: dict[str, str]


class QosSpecs:
    def __init__(self, shared: Shared) -> None:
        self.shared = shared

    @staticmethod
    def _find(s: Session, qos_id: str) -> m.QosSpecs:
        row = s.get(m.QosSpecs, qos_id.lower()) if UUID_RE.match(qos_id) else None
        if row is None:
            raise NotFound(f"QoS Specs {qos_id[:64]} could not be found.")
        return row

    def list_all(self, ctx: RequestContext) -> list[m.QosSpecs]:
        require_admin(ctx)
        with self.shared.db.session() as s:
            return list(s.scalars(select(m.QosSpecs).order_by(m.QosSpecs.created_at)))

    def get(self, ctx: RequestContext, qos_id: str) -> m.QosSpecs:
        require_admin(ctx)
        with self.shared.db.session() as s:
            return self._find(s, qos_id)

    def create(self, ctx: RequestContext, req: QosCreate) -> m.QosSpecs:
        require_admin(ctx)
        row = m.QosSpecs(
            id=str(uuid.uuid4()),
            name=req.name,
            consumer=req.consumer,
            specs=dict(req.specs),
            created_at=self.shared.clock.now(),
        )
        with self.shared.db.session() as s:
            if s.scalar(select(m.QosSpecs.id).where(m.QosSpecs.name == req.name)):
                raise Conflict(f"QoS Specs {req.name} already exists.")
            s.add(row)
            s.flush()
            return row

    def set_keys(self, ctx: RequestContext, qos_id: str, specs: dict[str, str]) -> dict[str, str]:
        require_admin(ctx)
        with self.shared.db.session() as s:
            row = self._find(s, qos_id)
            if "consumer" in specs:
                row.consumer = consumer_of(specs.pop("consumer"))
            row.specs = check_metadata({**(row.specs or {}), **specs}, "qos_specs")
        return specs

    def delete_keys(self, ctx: RequestContext, qos_id: str, keys: list[str]) -> None:
        require_admin(ctx)
        with self.shared.db.session() as s:
            row = self._find(s, qos_id)
            specs = dict(row.specs or {})
            for key in keys:
                if key not in specs:
                    raise NotFound(f"QoS spec {qos_id} has no key {key[:255]}.")
                del specs[key]
            row.specs = specs

    def delete(self, ctx: RequestContext, qos_id: str, force: bool) -> None:
        require_admin(ctx)
        with self.shared.db.session() as s:
            row = self._find(s, qos_id)
            users = s.scalars(select(m.VolumeType.id).where(m.VolumeType.qos_specs_id == row.id))
            if list(users) and not force:
                raise BadRequest(
                    f"QoS Specs {qos_id} is still associated with entities: disassociate them "
                    "first, or delete with force=True."
                )
            s.execute(
                update(m.VolumeType)
                .where(m.VolumeType.qos_specs_id == row.id)
                .values(qos_specs_id=None)
            )
            s.delete(row)

    def associations(self, ctx: RequestContext, qos_id: str) -> list[tuple[str, str]]:
        """(type id, type name) of each volume type the spec is associated with."""
        require_admin(ctx)
        with self.shared.db.session() as s:
            row = self._find(s, qos_id)
            stmt = select(m.VolumeType).where(m.VolumeType.qos_specs_id == row.id)
            return [(t.id, t.name) for t in s.scalars(stmt)]

    def associate(self, ctx: RequestContext, qos_id: str, type_id: str) -> None:
        require_admin(ctx)
        with self.shared.db.session() as s:
            row = self._find(s, qos_id)
            vtype = _type(s, type_id)
            if vtype.qos_specs_id not in (None, row.id):
                raise BadRequest(
                    f"Type {type_id} is already associated with another qos specs: "
                    f"{vtype.qos_specs_id}; disassociate it first."
                )
            vtype.qos_specs_id = row.id

    def disassociate(self, ctx: RequestContext, qos_id: str, type_id: str | None) -> None:
        """From one type, or (type_id None) from every type."""
        require_admin(ctx)
        with self.shared.db.session() as s:
            row = self._find(s, qos_id)
            if type_id is None:
                s.execute(
                    update(m.VolumeType)
                    .where(m.VolumeType.qos_specs_id == row.id)
                    .values(qos_specs_id=None)
                )
                return
            vtype = _type(s, type_id)
            if vtype.qos_specs_id != row.id:
                raise BadRequest(f"Type {type_id} is not associated with qos specs {qos_id}.")
            vtype.qos_specs_id = None


def _type(s: Session, type_id: str) -> m.VolumeType:
    vtype = s.get(m.VolumeType, type_id) if UUID_RE.match(type_id) else None
    if vtype is None:
        raise NotFound(f"Volume type {type_id[:64]} could not be found.")
    return vtype


def consumer_of(value: object) -> str:
    if value not in CONSUMERS:
        raise BadRequest(
            f"Invalid input received: consumer {str(value)[:32]!r} must be one of "
            f"{', '.join(CONSUMERS)}."
        )
    return str(value)


def qos_create(body: dict[str, object]) -> QosCreate:
    """`{"name": .., "consumer": .., key: value...}`: every other key is a spec."""
    fields = dict(body)
    name = fields.pop("name", None)
    if not isinstance(name, str) or not name.strip() or len(name) > 255:
        raise BadRequest("Invalid input for field/attribute name: a QoS spec needs a name.")
    consumer = consumer_of(fields.pop("consumer", "back-end"))
    specs: dict[str, str] = {}
    for key, value in fields.items():
        if not isinstance(value, str) or not 1 <= len(key) <= 255 or len(value) > 255:
            raise BadRequest(
                f"Invalid input for field/attribute {key[:64]}: spec values are strings of at "
                "most 255 characters."
            )
        specs[key] = value
    return QosCreate(name.strip(), consumer, specs)
