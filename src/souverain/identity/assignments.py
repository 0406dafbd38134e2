"""Role assignments as queries: who holds what where, narrowed in SQL, named in bulk.

A listing costs a constant number of queries however many assignments it shows:
the filters narrow the rows in the database, group members and names are loaded
for the whole list with IN (...). Policy (who may list what) stays in the service;
this module only says which rows can match and what they are called.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import (
    ColumnElement,
    CompoundSelect,
    and_,
    false,
    literal_column,
    or_,
    select,
    union_all,
)
from sqlalchemy.orm import Session

from souverain.db.batching import id_batches
from souverain.identity import models as m

# (actor_type, actor_id, target_type, target_id, role_id, via_group)
Item = tuple[str, str, str, str, str, str | None]
# OS-INHERIT: target types of grants held on the projects under a domain or a project
# (a project's subtree, not the project itself)
INHERIT_DOMAIN = "inherit:domain"
INHERIT_PROJECT = "inherit:project"
INHERITED = (INHERIT_DOMAIN, INHERIT_PROJECT)
_PROJECT_TARGETS = ("project", INHERIT_PROJECT)


def held_by(user_id: str, effective: bool) -> ColumnElement[bool]:
    """Assignments to the user, and with `effective` also to the groups it belongs to."""
    a = m.Assignment
    direct = and_(a.actor_type == "user", a.actor_id == user_id)
    if not effective:
        return direct
    groups = select(m.GroupMember.group_id).where(m.GroupMember.user_id == user_id)
    return or_(direct, and_(a.actor_type == "group", a.actor_id.in_(groups)))


def role_ids_on(user_id: str, target_type: str, target_id: str) -> CompoundSelect[str]:
    """The role ids the user holds on the target, directly or through its groups.

    Two exact lookups on the primary key in one statement, not one per group; an OR
    of the two would have the database read every assignment on the target instead.
    """
    a = m.Assignment
    on = (a.target_type == target_type, a.target_id == target_id)
    groups = select(m.GroupMember.group_id).where(m.GroupMember.user_id == user_id)
    direct = select(a.role_id).where(a.actor_type == "user", a.actor_id == user_id, *on)
    via_groups = select(a.role_id).where(a.actor_type == "group", a.actor_id.in_(groups), *on)
    return union_all(direct, via_groups)


def role_ids_inherited(user_id: str, targets: Sequence[tuple[str, str]]) -> CompoundSelect[str]:
    """The role ids the user holds, directly or through its groups, on any of `targets`."""
    a = m.Assignment
    on = or_(*(and_(a.target_type == t, a.target_id == i) for t, i in targets))
    groups = select(m.GroupMember.group_id).where(m.GroupMember.user_id == user_id)
    direct = select(a.role_id).where(a.actor_type == "user", a.actor_id == user_id, on)
    via_groups = select(a.role_id).where(a.actor_type == "group", a.actor_id.in_(groups), on)
    return union_all(direct, via_groups)


def on_target(target_type: str, target_id: str | None) -> ColumnElement[bool]:
    a = m.Assignment
    if target_id is None:
        return false()
    return and_(a.target_type == target_type, a.target_id == target_id)


def narrowing(
    filters: Mapping[str, Any],
    effective: bool,
    inheriting: Sequence[tuple[str, str]] = (),
) -> list[ColumnElement[bool]]:
    """SQL conditions every listed assignment meets: a superset of the filters' answer
    (with `effective`, a group's row stands for its members until it is expanded, and an
    OS-INHERIT grant on one of `inheriting` for the filtered project's)."""
    a = m.Assignment
    found: list[ColumnElement[bool]] = []
    if "user.id" in filters:
        found.append(held_by(str(filters["user.id"]), effective))
    if "group.id" in filters:
        found.append(and_(a.actor_type == "group", a.actor_id == str(filters["group.id"])))
    if "role.id" in filters:
        found.append(a.role_id == str(filters["role.id"]))
    for kind in ("project", "domain"):
        if f"scope.{kind}.id" in filters:
            here = on_target(kind, str(filters[f"scope.{kind}.id"]))
            if kind == "project" and inheriting:
                here = or_(here, *(on_target(t, i) for t, i in inheriting))
            found.append(here)
    if "scope.system" in filters:
        found.append(a.target_type == "system")
    return found


def rows_where(s: Session, conditions: Sequence[ColumnElement[bool]]) -> list[m.Assignment]:
    """The assignments meeting every condition, in the order they were made."""
    stmt = select(m.Assignment).where(*conditions)
    if s.get_bind().dialect.name == "sqlite":
        # the order a plain scan of the table has always listed them in
        stmt = stmt.order_by(literal_column(f"{m.Assignment.__tablename__}.rowid"))
    else:
        a = m.Assignment
        stmt = stmt.order_by(a.actor_type, a.actor_id, a.target_type, a.target_id, a.role_id)
    return list(s.scalars(stmt).all())


def members_by_group(s: Session, group_ids: Iterable[str]) -> dict[str, list[str]]:
    """Group id -> its members' user ids, for many groups in one query per batch."""
    out: dict[str, list[str]] = {}
    for batch in id_batches(group_ids):
        rows = s.execute(
            select(m.GroupMember.group_id, m.GroupMember.user_id)
            .where(m.GroupMember.group_id.in_(batch))
            .order_by(m.GroupMember.group_id, m.GroupMember.user_id)
        ).all()
        for group_id, user_id in rows:
            out.setdefault(group_id, []).append(user_id)
    return out


def expand(rows: Sequence[m.Assignment], members: Mapping[str, list[str]] | None) -> list[Item]:
    """Rows as items; with `members` (effective), a group's row becomes one per member."""
    items: list[Item] = []
    for a in rows:
        if members is not None and a.actor_type == "group":
            items.extend(
                ("user", u, a.target_type, a.target_id, a.role_id, a.actor_id)
                for u in members.get(a.actor_id, [])
            )
        else:
            items.append((a.actor_type, a.actor_id, a.target_type, a.target_id, a.role_id, None))
    return items


@dataclass
class Names:
    """Names of everything a list of assignments mentions, loaded once for the list."""

    roles: dict[str, m.Role] = field(default_factory=dict)
    users: dict[str, m.User] = field(default_factory=dict)
    groups: dict[str, m.Group] = field(default_factory=dict)
    projects: dict[str, m.Project] = field(default_factory=dict)
    domains: dict[str, m.Domain] = field(default_factory=dict)


def _by_id(s: Session, model: Any, ids: Iterable[str]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for batch in id_batches(ids):
        out.update((row.id, row) for row in s.scalars(select(model).where(model.id.in_(batch))))
    return out


def names_for(s: Session, items: Sequence[Item]) -> Names:
    """Five queries for any number of items: roles, users, groups, projects, domains."""
    names = Names(
        roles=_by_id(s, m.Role, (i[4] for i in items)),
        users=_by_id(s, m.User, (i[1] for i in items if i[0] == "user")),
        groups=_by_id(s, m.Group, (i[1] for i in items if i[0] == "group")),
        projects=_by_id(
            s, m.Project, (i[3] for i in items if i[2] in ("project", INHERIT_PROJECT))
        ),
    )
    domain_ids = [i[3] for i in items if i[2] in ("domain", INHERIT_DOMAIN)]
    domain_ids += [u.domain_id for u in names.users.values()]
    domain_ids += [g.domain_id for g in names.groups.values()]
    domain_ids += [p.domain_id for p in names.projects.values()]
    names.domains = _by_id(s, m.Domain, domain_ids)
    return names


def assignment_ref(item: Item, names: Names | None) -> dict[str, Any]:
    """Keystone's assignment body; with `names`, every part carries its name."""
    actor_type, actor_id, target_type, target_id, role_id, via_group = item
    role: dict[str, Any] = {"id": role_id}
    actor: dict[str, Any] = {"id": actor_id}
    scope: dict[str, Any]
    if target_type == "system":
        scope = {"system": {"all": True}}
    elif target_type in INHERITED:
        scope = {
            target_type.split(":")[1]: {"id": target_id},
            "OS-INHERIT:inherited_to": "projects",
        }
    else:
        scope = {target_type: {"id": target_id}}
    if names is not None:
        _add_names(names, item, role, actor, scope)
    ref: dict[str, Any] = {"role": role, actor_type: actor, "scope": scope}
    if via_group:
        ref["_via_group"] = via_group
    return ref


def _add_names(
    names: Names, item: Item, role: dict[str, Any], actor: dict[str, Any], scope: dict[str, Any]
) -> None:
    actor_type, actor_id, target_type, target_id, role_id, _ = item
    r = names.roles.get(role_id)
    if r is not None:
        role["name"] = r.name
    obj: m.User | m.Group | None = (
        names.users.get(actor_id) if actor_type == "user" else names.groups.get(actor_id)
    )
    if obj is not None:
        actor["name"] = obj.name
        actor["domain"] = {"id": obj.domain_id, "name": _domain_name(names, obj.domain_id)}
    if target_type in INHERITED:
        target_type = target_type.split(":")[1]
    if target_type == "project":
        p = names.projects.get(target_id)
        if p is not None:
            scope["project"].update(
                {
                    "name": p.name,
                    "domain": {"id": p.domain_id, "name": _domain_name(names, p.domain_id)},
                }
            )
    elif target_type == "domain":
        d = names.domains.get(target_id)
        if d is not None:
            scope["domain"]["name"] = d.name


def _domain_name(names: Names, domain_id: str) -> str:
    d = names.domains.get(domain_id)
    return d.name if d else ""
