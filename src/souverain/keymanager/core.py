"""What the key manager's resource families share: the database, the clock, the project
KEKs, and who may read or change a secret or container (project, role, creator, ACL).
It speaks no HTTP and never sees a payload in clear."""

from __future__ import annotations

import datetime as dt
from collections.abc import Collection, Sequence
from dataclasses import dataclass
from typing import Protocol, TypeVar

from sqlalchemy import select
from sqlalchemy.orm import Session

from souverain.common.audit import note_target_project
from souverain.common.clock import Clock, naive_utc
from souverain.common.context import RequestContext
from souverain.common.errors import Forbidden, NotFound
from souverain.common.policy import effective_roles
from souverain.db.engine import Database
from souverain.keymanager.keks import ProjectKeks
from souverain.keymanager.models import Acl, AclUser

# Barbican's default for max_allowed_secret_in_bytes
MAX_PAYLOAD_BYTES = 20000


@dataclass(frozen=True)
class Owner:
    """Who a secret or container belongs to, and who else may read it."""

    entity_id: str
    project_id: str
    creator_id: str
    project_access: bool
    acl_users: frozenset[str]


@dataclass
class Core:
    db: Database
    clock: Clock
    keks: ProjectKeks

    def now(self) -> dt.datetime:
        """Naive UTC, as the tables store times (and compare them, expirations included)."""
        return naive_utc(self.clock.now())


def owner_of(s: Session, entity_id: str, project_id: str, creator_id: str) -> Owner:
    acl = s.get(Acl, entity_id)
    users = s.scalars(select(AclUser.user_id).where(AclUser.entity_id == entity_id)).all()
    return Owner(
        entity_id, project_id, creator_id, acl is None or acl.project_access, frozenset(users)
    )


def owners_of(s: Session, rows: Sequence[tuple[str, str, str]]) -> list[Owner]:
    """`owner_of` for many (id, project, creator) at once: two queries, not two a row."""
    ids = [entity_id for entity_id, _, _ in rows]
    private: set[str] = set()
    users: dict[str, set[str]] = {}
    for chunk in (ids[i : i + 500] for i in range(0, len(ids), 500)):
        acls = select(Acl.entity_id).where(Acl.entity_id.in_(chunk), Acl.project_access.is_(False))
        private.update(s.scalars(acls).all())
        named = select(AclUser.entity_id, AclUser.user_id).where(AclUser.entity_id.in_(chunk))
        for entity_id, user_id in s.execute(named).all():
            users.setdefault(entity_id, set()).add(user_id)
    return [Owner(i, p, c, i not in private, frozenset(users.get(i, ()))) for i, p, c in rows]


class OwnedRow(Protocol):
    id: str
    project_id: str
    creator_id: str


R = TypeVar("R", bound=OwnedRow)


def readable_page(
    s: Session, ctx: RequestContext, rows: Sequence[R], offset: int, limit: int
) -> tuple[list[R], int]:
    """The rows (of a project's list) the caller may read, paged, and how many it may read:
    ACLs decide, so the count is known only after reading them."""
    owners = owners_of(s, [(r.id, r.project_id, r.creator_id) for r in rows])
    visible = [r for r, o in zip(rows, owners, strict=True) if may_read(ctx, o)]
    return visible[offset : offset + limit], len(visible)


def may_read(ctx: RequestContext, owner: Owner) -> bool:
    if ctx.is_admin or ctx.user_id in owner.acl_users:
        return True
    if ctx.project_id != owner.project_id or "reader" not in effective_roles(ctx.roles):
        return False
    return owner.project_access or ctx.user_id == owner.creator_id


def check_read(ctx: RequestContext, owner: Owner, kind: str) -> None:
    """Another project's entity is not found; a private one of the caller's project is
    forbidden (Barbican's answer)."""
    if may_read(ctx, owner):
        return
    if ctx.project_id != owner.project_id:
        raise NotFound(f"No such {kind}.")
    raise Forbidden(f"The {kind} is private to its creator and the users of its ACL.")


def check_write(ctx: RequestContext, owner: Owner, kind: str) -> None:
    """Members of the owning project change it (only its creator if it is private); the
    audit record of the call names the owning project."""
    if ctx.is_admin:
        note_target_project(owner.project_id)
        return
    if ctx.project_id != owner.project_id:
        if ctx.user_id in owner.acl_users:
            raise Forbidden(f"An ACL grants reading this {kind}, not changing it.")
        raise NotFound(f"No such {kind}.")
    roles = effective_roles(ctx.roles)
    if "member" not in roles:
        raise Forbidden(f"Changing a {kind} needs the member role.")
    if not owner.project_access and ctx.user_id != owner.creator_id:
        raise Forbidden(f"The {kind} is private to its creator.")
    note_target_project(owner.project_id)


def project_of(ctx: RequestContext) -> str:
    if not ctx.project_id:
        raise Forbidden("The key manager needs a project-scoped token.")
    note_target_project(ctx.project_id)  # what it makes is its project's
    return ctx.project_id


def set_acl(
    s: Session,
    core: Core,
    entity_id: str,
    project_access: bool | None,
    users: Collection[str] | None,
) -> None:
    """Replace what is given of an entity's read ACL (None: keep)."""
    now = core.now()
    acl = s.get(Acl, entity_id)
    if acl is None:
        acl = Acl(entity_id=entity_id, project_access=True, created_at=now, updated_at=now)
        s.add(acl)
    if project_access is not None:
        acl.project_access = project_access
    acl.updated_at = now
    if users is not None:
        s.query(AclUser).filter(AclUser.entity_id == entity_id).delete()
        for user in sorted(set(users)):
            s.add(AclUser(entity_id=entity_id, user_id=user))


def drop_acl(s: Session, entity_id: str) -> None:
    s.query(AclUser).filter(AclUser.entity_id == entity_id).delete()
    s.query(Acl).filter(Acl.entity_id == entity_id).delete()
