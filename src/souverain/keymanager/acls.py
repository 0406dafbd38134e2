"""The `read` ACL of a secret or container: the users it names may read it whatever their
project; `project-access: false` makes it private to its creator and those users. Only
those who may change the entity change its ACL."""

from __future__ import annotations

import datetime as dt
from collections.abc import Collection
from dataclasses import dataclass, replace

from sqlalchemy import select
from sqlalchemy.orm import Session

from souverain.common.context import RequestContext
from souverain.common.errors import NotFound
from souverain.keymanager.core import (
    Core,
    Owner,
    check_read,
    check_write,
    drop_acl,
    owner_of,
    set_acl,
)
from souverain.keymanager.models import Acl, AclUser, Container, Secret


@dataclass(frozen=True)
class AclRecord:
    project_access: bool
    users: tuple[str, ...]
    created_at: dt.datetime | None  # None: no ACL set, the default
    updated_at: dt.datetime | None


class Acls:
    def __init__(self, core: Core) -> None:
        self.core = core

    def _owner(self, s: Session, kind: str, entity_id: str) -> Owner:
        row: Secret | Container | None = (
            s.get(Secret, entity_id) if kind == "secret" else s.get(Container, entity_id)
        )
        now = self.core.now()
        if row is None or (
            isinstance(row, Secret) and row.expiration is not None and row.expiration <= now
        ):
            raise NotFound(f"No such {kind}.")
        return owner_of(s, row.id, row.project_id, row.creator_id)

    def get(self, ctx: RequestContext, kind: str, entity_id: str) -> AclRecord:
        with self.core.db.session() as s:
            owner = self._owner(s, kind, entity_id)
            # the users an ACL names read the entity, not who else may
            check_read(ctx, replace(owner, acl_users=frozenset()), kind)
            acl = s.get(Acl, entity_id)
            if acl is None:
                return AclRecord(True, (), None, None)
            users = s.scalars(
                select(AclUser.user_id)
                .where(AclUser.entity_id == entity_id)
                .order_by(AclUser.user_id)
            ).all()
            return AclRecord(acl.project_access, tuple(users), acl.created_at, acl.updated_at)

    def set(
        self,
        ctx: RequestContext,
        kind: str,
        entity_id: str,
        project_access: bool | None,
        users: Collection[str] | None,
        replace_all: bool,
    ) -> None:
        """PUT replaces the ACL (unset fields take their defaults); PATCH changes what it names."""
        with self.core.db.session() as s:
            check_write(ctx, self._owner(s, kind, entity_id), kind)
            if replace_all:
                drop_acl(s, entity_id)
                s.flush()
                project_access = True if project_access is None else project_access
                users = () if users is None else users
            set_acl(s, self.core, entity_id, project_access, users)

    def delete(self, ctx: RequestContext, kind: str, entity_id: str) -> None:
        with self.core.db.session() as s:
            check_write(ctx, self._owner(s, kind, entity_id), kind)
            drop_acl(s, entity_id)
