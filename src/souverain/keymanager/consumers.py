"""Consumers: who uses a secret (a service's resource: service, resource type, resource id)
or a container (a name and a URL), as Barbican registers them. Registering one takes the
right to read the entity (an ACL's user too) and counts against the registering project's
`consumers` quota; removing one takes the consumer's project or the entity's. A secret's
consumers make its deletion refused unless forced (secrets.py); they go with the entity."""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Sequence
from contextlib import suppress
from dataclasses import dataclass
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from souverain.common.context import RequestContext
from souverain.common.errors import Forbidden, NotFound
from souverain.keymanager.core import Core, Owner, check_read, owner_of, project_of
from souverain.keymanager.models import Container, ContainerConsumer, Secret, SecretConsumer
from souverain.keymanager.quotas import Quotas

SECRET = "secret"  # noqa: S105 - an entity kind, not a secret
CONTAINER = "container"


@dataclass(frozen=True)
class ConsumerRecord:
    """A consumer as the API shows it: `fields` are its identifying attributes (service,
    resource_type, resource_id of a secret's; name, URL of a container's)."""

    fields: dict[str, str]
    created_at: dt.datetime
    updated_at: dt.datetime


def _secret_record(row: SecretConsumer) -> ConsumerRecord:
    fields = {
        "service": row.service,
        "resource_type": row.resource_type,
        "resource_id": row.resource_id,
    }
    return ConsumerRecord(fields, row.created_at, row.updated_at)


def _container_record(row: ContainerConsumer) -> ConsumerRecord:
    return ConsumerRecord({"name": row.name, "URL": row.url}, row.created_at, row.updated_at)


# kind -> (entity table, consumer table, the consumer's column naming its entity, record)
_KINDS: dict[str, tuple[Any, Any, Any, Any]] = {
    SECRET: (Secret, SecretConsumer, SecretConsumer.secret_id, _secret_record),
    CONTAINER: (Container, ContainerConsumer, ContainerConsumer.container_id, _container_record),
}


class Consumers:
    def __init__(self, core: Core, quotas: Quotas) -> None:
        self.core = core
        self.quotas = quotas

    def _entity_owner(self, s: Session, kind: str, entity_id: str) -> Owner:
        table = _KINDS[kind][0]
        row = s.get(table, entity_id)
        now = self.core.now()
        expired = isinstance(row, Secret) and row.expiration is not None and row.expiration <= now
        if row is None or expired:
            raise NotFound(f"No such {kind}.")
        return owner_of(s, row.id, row.project_id, row.creator_id)

    def of(self, s: Session, kind: str, entity_id: str) -> list[ConsumerRecord]:
        """The entity's consumers, oldest first (what its view shows)."""
        return self.of_many(s, kind, [entity_id]).get(entity_id, [])

    def of_many(
        self, s: Session, kind: str, entity_ids: Sequence[str]
    ) -> dict[str, list[ConsumerRecord]]:
        """`of` for a page of entities: one query a chunk, not one an entity."""
        _, table, column, record = _KINDS[kind]
        found: dict[str, list[ConsumerRecord]] = {}
        for chunk in (entity_ids[i : i + 500] for i in range(0, len(entity_ids), 500)):
            query = select(table).where(column.in_(chunk)).order_by(table.created_at, table.id)
            for row in s.scalars(query).all():
                found.setdefault(getattr(row, column.key), []).append(record(row))
        return found

    def count(self, s: Session, kind: str, entity_id: str) -> int:
        _, table, column, _ = _KINDS[kind]
        return int(
            s.scalar(select(func.count()).select_from(table).where(column == entity_id)) or 0
        )

    def page(
        self, ctx: RequestContext, kind: str, entity_id: str, limit: int, offset: int
    ) -> tuple[list[ConsumerRecord], int]:
        with self.core.db.session() as s:
            check_read(ctx, self._entity_owner(s, kind, entity_id), kind)
            found = self.of(s, kind, entity_id)
        return found[offset : offset + limit], len(found)

    def add(self, ctx: RequestContext, kind: str, entity_id: str, fields: dict[str, str]) -> None:
        """Register a consumer (again: the same one is kept once, its time renewed)."""
        project_id = project_of(ctx)
        # IntegrityError: the same consumer, registered at the same moment by another call
        with suppress(IntegrityError), self.core.db.session() as s:
            check_read(ctx, self._entity_owner(s, kind, entity_id), kind)
            self._add(s, project_id, kind, entity_id, fields)

    def _add(
        self,
        s: Session,
        project_id: str,
        kind: str,
        entity_id: str,
        fields: dict[str, str],
        counted: bool = True,
    ) -> None:
        now = self.core.now()
        found = self._find(s, kind, entity_id, fields)
        if found is not None:
            found.updated_at = now
            return
        if counted:
            self.quotas.reserve(s, project_id, "consumers")
        _, table, _, _ = _KINDS[kind]
        s.add(
            table(
                id=str(uuid.uuid4()),
                project_id=project_id,
                created_at=now,
                updated_at=now,
                **_columns(kind, entity_id, fields),
            )
        )

    def _find(self, s: Session, kind: str, entity_id: str, fields: dict[str, str]) -> Any:
        _, table, _, _ = _KINDS[kind]
        wanted = [getattr(table, k) == v for k, v in _columns(kind, entity_id, fields).items()]
        return s.scalars(select(table).where(*wanted)).first()

    def remove(
        self, ctx: RequestContext, kind: str, entity_id: str, fields: dict[str, str]
    ) -> None:
        """Remove a consumer: the project that registered it, or the entity's, may."""
        with self.core.db.session() as s:
            owner = self._entity_owner(s, kind, entity_id)
            check_read(ctx, owner, kind)
            found = self._find(s, kind, entity_id, fields)
            if found is None:
                raise NotFound("Consumer not found.")
            mine = ctx.project_id in (found.project_id, owner.project_id)
            if not ctx.is_admin and not mine:
                raise Forbidden(
                    "Only the project that registered a consumer, or the "
                    f"{kind}'s own, may remove it."
                )
            s.delete(found)

    def drop_all(self, s: Session, kind: str, entity_id: str) -> None:
        """In the entity's deletion: its consumers go with it."""
        _, table, column, _ = _KINDS[kind]
        s.query(table).filter(column == entity_id).delete()

    # what ProjectKeys uses for the services' own resources (no request context)

    def register(self, project_id: str, secret_id: str, fields: dict[str, str]) -> None:
        """The cloud's own services' consumers (an encrypted volume of its key) are not
        counted against the customer's quota: the volume itself is."""
        with suppress(IntegrityError), self.core.db.session() as s:
            row = s.get(Secret, secret_id)
            if row is not None and row.project_id == project_id:
                self._add(s, project_id, SECRET, secret_id, fields, counted=False)

    def unregister(self, project_id: str, secret_id: str, fields: dict[str, str]) -> None:
        with self.core.db.session() as s:
            found = self._find(s, SECRET, secret_id, fields)
            if found is not None and found.project_id == project_id:
                s.delete(found)

    def unregister_everywhere(self, project_id: str, fields: dict[str, str]) -> None:
        """The consumer registered by `project_id`, removed from every secret it is on."""
        with self.core.db.session() as s:
            same = [getattr(SecretConsumer, name) == value for name, value in fields.items()]
            s.query(SecretConsumer).filter(SecretConsumer.project_id == project_id, *same).delete()


def _columns(kind: str, entity_id: str, fields: dict[str, str]) -> dict[str, str]:
    if kind == SECRET:
        return {
            "secret_id": entity_id,
            "service": fields["service"],
            "resource_type": fields["resource_type"],
            "resource_id": fields["resource_id"],
        }
    return {"container_id": entity_id, "name": fields["name"], "url": fields["URL"]}
