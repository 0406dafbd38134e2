"""Containers: named references to a project's secrets (generic, certificate, rsa), with
Barbican's rules on which names each type takes. A container holds no payload; deleting
one leaves its secrets."""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Sequence
from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.orm import Session

from souverain.common.context import RequestContext
from souverain.common.errors import BadRequest, NotFound
from souverain.keymanager.consumers import CONTAINER, Consumers
from souverain.keymanager.core import (
    Core,
    Owner,
    check_read,
    check_write,
    drop_acl,
    may_read,
    owner_of,
    project_of,
    readable_page,
)
from souverain.keymanager.models import Container, ContainerSecret, Secret
from souverain.keymanager.quotas import Quotas

# type -> (names allowed, names required); generic takes any names
TYPE_NAMES: dict[str, tuple[frozenset[str], frozenset[str]]] = {
    "certificate": (
        frozenset({"certificate", "private_key", "private_key_passphrase", "intermediates"}),
        frozenset({"certificate"}),
    ),
    "rsa": (
        frozenset({"public_key", "private_key", "private_key_passphrase"}),
        frozenset({"public_key", "private_key"}),
    ),
}
TYPES = ("generic", "certificate", "rsa")


@dataclass(frozen=True)
class ContainerRecord:
    id: str
    project_id: str
    creator_id: str
    name: str | None
    type: str
    secret_refs: tuple[tuple[str | None, str], ...]  # (name, secret id)
    created_at: dt.datetime
    updated_at: dt.datetime
    consumers: tuple[dict[str, str], ...] = ()


def check_names(kind: str, refs: Sequence[tuple[str | None, str]]) -> None:
    ids = [secret_id for _, secret_id in refs]
    if len(set(ids)) != len(ids):
        raise BadRequest("Duplicate reference names are not allowed.")
    if kind == "generic":
        return
    allowed, required = TYPE_NAMES[kind]
    names = [name for name, _ in refs]
    if len(set(names)) != len(names) or any(n not in allowed for n in names):
        raise BadRequest(
            f"Invalid secret reference names for a {kind} container: "
            f"{', '.join(sorted(allowed))}, each at most once."
        )
    missing = required - set(n for n in names if n)
    if missing:
        raise BadRequest(f"A {kind} container needs {', '.join(sorted(missing))}.")


class Containers:
    def __init__(self, core: Core, quotas: Quotas, consumers: Consumers) -> None:
        self.core = core
        self.quotas = quotas
        self.consumers = consumers

    def create(
        self,
        ctx: RequestContext,
        kind: str,
        name: str | None,
        refs: Sequence[tuple[str | None, str]],
    ) -> ContainerRecord:
        project_id = project_of(ctx)
        check_names(kind, refs)
        now = self.core.now()
        container_id = str(uuid.uuid4())
        with self.core.db.session() as s:
            for _, secret_id in refs:
                self._check_secret(s, ctx, secret_id)
            self.quotas.reserve(s, project_id, "containers")
            s.add(
                Container(
                    id=container_id,
                    project_id=project_id,
                    creator_id=ctx.user_id,
                    name=name,
                    type=kind,
                    created_at=now,
                    updated_at=now,
                )
            )
            for ref_name, secret_id in refs:
                s.add(
                    ContainerSecret(container_id=container_id, secret_id=secret_id, name=ref_name)
                )
        return ContainerRecord(
            container_id, project_id, ctx.user_id, name, kind, tuple(refs), now, now
        )

    def store(
        self,
        s: Session,
        project_id: str,
        creator_id: str,
        name: str | None,
        kind: str,
        refs: Sequence[tuple[str, str]],
    ) -> str:
        """A container made by an order, in the order's transaction."""
        now = self.core.now()
        container_id = str(uuid.uuid4())
        self.quotas.reserve(s, project_id, "containers")
        s.add(
            Container(
                id=container_id,
                project_id=project_id,
                creator_id=creator_id,
                name=name,
                type=kind,
                created_at=now,
                updated_at=now,
            )
        )
        for ref_name, secret_id in refs:
            s.add(ContainerSecret(container_id=container_id, secret_id=secret_id, name=ref_name))
        return container_id

    def _check_secret(self, s: Session, ctx: RequestContext, secret_id: str) -> None:
        row = s.get(Secret, secret_id)
        if row is None or not may_read(ctx, owner_of(s, row.id, row.project_id, row.creator_id)):
            raise NotFound(f"Secret '{secret_id[:64]}' not found: it cannot be referenced.")

    def _row(self, s: Session, container_id: str) -> Container:
        row = s.get(Container, container_id)
        if row is None:
            raise NotFound("No such container.")
        return row

    def _owner(self, s: Session, row: Container) -> Owner:
        return owner_of(s, row.id, row.project_id, row.creator_id)

    def _record(self, s: Session, row: Container) -> ContainerRecord:
        refs = s.execute(
            select(ContainerSecret.name, ContainerSecret.secret_id)
            .where(ContainerSecret.container_id == row.id)
            .order_by(ContainerSecret.name, ContainerSecret.secret_id)
        ).all()
        return ContainerRecord(
            row.id,
            row.project_id,
            row.creator_id,
            row.name,
            row.type,
            tuple((name, secret_id) for name, secret_id in refs),
            row.created_at,
            row.updated_at,
            tuple(c.fields for c in self.consumers.of(s, CONTAINER, row.id)),
        )

    def get(self, ctx: RequestContext, container_id: str) -> ContainerRecord:
        with self.core.db.session() as s:
            row = self._row(s, container_id)
            check_read(ctx, self._owner(s, row), "container")
            return self._record(s, row)

    def delete(self, ctx: RequestContext, container_id: str) -> None:
        with self.core.db.session() as s:
            row = self._row(s, container_id)
            check_write(ctx, self._owner(s, row), "container")
            self.consumers.drop_all(s, CONTAINER, row.id)
            s.query(ContainerSecret).filter(ContainerSecret.container_id == row.id).delete()
            drop_acl(s, row.id)
            s.delete(row)

    def find(
        self,
        ctx: RequestContext,
        limit: int,
        offset: int,
        name: str | None = None,
        kind: str | None = None,
    ) -> tuple[list[ContainerRecord], int]:
        project_id = project_of(ctx)
        query = select(Container).where(Container.project_id == project_id)
        if name is not None:
            query = query.where(Container.name == name)
        if kind is not None:
            query = query.where(Container.type == kind)
        with self.core.db.session() as s:
            rows = s.scalars(query.order_by(Container.created_at, Container.id)).all()
            page, total = readable_page(s, ctx, rows, offset, limit)
            return [self._record(s, r) for r in page], total
