"""Roles and who holds them where: grants, their checks, and role assignment listings.

The queries behind the listings live in `assignments`; the rules live here. Knows
nothing of HTTP; removing a role from someone revokes the tokens it carried.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from sqlalchemy import delete, or_, select
from sqlalchemy.orm import Session

from souverain.common.context import RequestContext
from souverain.common.errors import BadRequest, Conflict, Forbidden, NotFound
from souverain.common.ids import new_id
from souverain.common.policy import IMPLIED_ROLES, enforce
from souverain.identity import assignments
from souverain.identity import models as m
from souverain.identity.core import (
    IdentityCore,
)


class Roles:
    """Roles, grants and role assignments; removing one revokes the tokens it carried."""

    def __init__(self, core: IdentityCore) -> None:
        self.core = core

    # ------------------------------------------------------------------ roles

    def list_roles(self, ctx: RequestContext, filters: dict[str, Any]) -> list[dict[str, Any]]:
        enforce(ctx, "identity:list_roles")
        with self.core.db.session() as s:
            query = select(m.Role).order_by(m.Role.name)
            if "name" in filters:
                query = query.where(m.Role.name == filters["name"])
            if filters.get("domain_id"):
                query = query.where(m.Role.domain_id == filters["domain_id"])
            else:
                query = query.where(m.Role.domain_id.is_(None))
            return [self.core.role_ref(r) for r in s.scalars(query).all()]

    def get_role(self, ctx: RequestContext, role_id: str) -> dict[str, Any]:
        enforce(ctx, "identity:get_role")
        with self.core.db.session() as s:
            return self.core.role_ref(self.core.get(s, m.Role, role_id, "role"))

    def create_role(self, ctx: RequestContext, data: dict[str, Any]) -> dict[str, Any]:
        enforce(ctx, "identity:create_role")
        with self.core.db.session() as s:
            domain_id = data.get("domain_id")
            dup = s.scalars(
                select(m.Role).where(
                    m.Role.name == data["name"],
                    m.Role.domain_id == domain_id if domain_id else m.Role.domain_id.is_(None),
                )
            ).first()
            if dup is not None:
                raise Conflict(
                    f"Conflict occurred attempting to store role - Duplicate entry found "
                    f"with name {data['name']}."
                )
            r = m.Role(
                id=new_id(),
                name=data["name"],
                domain_id=domain_id,
                description=data.get("description") or "",
            )
            s.add(r)
            ref = self.core.role_ref(r)
        self.core.changed()
        return ref

    def update_role(
        self, ctx: RequestContext, role_id: str, data: dict[str, Any]
    ) -> dict[str, Any]:
        enforce(ctx, "identity:update_role")
        with self.core.db.session() as s:
            r = self.core.get(s, m.Role, role_id, "role")
            if "name" in data and data["name"] != r.name and r.name in IMPLIED_ROLES:
                raise Forbidden(f"The built-in role {r.name!r} cannot be renamed.")
            for key in ("name", "description"):
                if key in data:
                    setattr(r, key, data[key] or "")
            ref = self.core.role_ref(r)
        self.core.changed()
        return ref

    def delete_role(self, ctx: RequestContext, role_id: str) -> None:
        enforce(ctx, "identity:delete_role")
        with self.core.db.session() as s:
            r = self.core.get(s, m.Role, role_id, "role")
            if r.name in IMPLIED_ROLES and r.domain_id is None:
                raise Forbidden(f"The built-in role {r.name!r} cannot be deleted.")
            holders = s.scalars(select(m.Assignment).where(m.Assignment.role_id == r.id)).all()
            for a in holders:
                self._revoke_for_assignment(s, a)
            s.execute(delete(m.Assignment).where(m.Assignment.role_id == r.id))
            rule = m.ImpliedRole
            s.execute(
                delete(rule).where(or_(rule.prior_role_id == r.id, rule.implied_role_id == r.id))
            )
            s.delete(r)
        self.core.changed()

    # ------------------------------------------------------------------ grants

    def _revoke_for_assignment(self, s: Session, a: m.Assignment) -> None:
        users = (
            [a.actor_id]
            if a.actor_type == "user"
            else list(
                s.scalars(
                    select(m.GroupMember.user_id).where(m.GroupMember.group_id == a.actor_id)
                ).all()
            )
        )
        for user_id in users:
            if a.target_type == "project":
                self.core.revoke(s, user_id=user_id, project_id=a.target_id)
            else:
                self.core.revoke(s, user_id=user_id)

    def _check_grant_parts(
        self,
        s: Session,
        actor_type: str,
        actor_id: str,
        target_type: str,
        target_id: str,
        role_id: str,
    ) -> None:
        self.core.get(s, m.User if actor_type == "user" else m.Group, actor_id, actor_type)
        if target_type in ("project", assignments.INHERIT_PROJECT):
            self.core.get(s, m.Project, target_id, "project")
        elif target_type in ("domain", assignments.INHERIT_DOMAIN):
            self.core.get(s, m.Domain, target_id, "domain")
        self.core.get(s, m.Role, role_id, "role")

    def create_grant(
        self,
        ctx: RequestContext,
        actor_type: str,
        actor_id: str,
        target_type: str,
        target_id: str,
        role_id: str,
    ) -> None:
        enforce(ctx, "identity:create_grant")
        with self.core.db.session() as s:
            self._check_grant_parts(s, actor_type, actor_id, target_type, target_id, role_id)
            key = (actor_type, actor_id, target_type, target_id, role_id)
            if s.get(m.Assignment, key) is None:
                s.add(
                    m.Assignment(
                        actor_type=actor_type,
                        actor_id=actor_id,
                        target_type=target_type,
                        target_id=target_id,
                        role_id=role_id,
                    )
                )
        self.core.changed()

    def check_grant(
        self,
        ctx: RequestContext,
        actor_type: str,
        actor_id: str,
        target_type: str,
        target_id: str,
        role_id: str,
    ) -> None:
        enforce(ctx, "identity:check_grant")
        with self.core.db.session() as s:
            self._check_grant_parts(s, actor_type, actor_id, target_type, target_id, role_id)
            if not ctx.is_admin and not (actor_type == "user" and actor_id == ctx.user_id):
                # as list_grants: another user's assignments are not the caller's to probe
                raise NotFound(f"Could not find {actor_type}: {actor_id}.")
            if s.get(m.Assignment, (actor_type, actor_id, target_type, target_id, role_id)) is None:
                raise NotFound(f"Could not find role assignment: role {role_id} is not granted.")

    def revoke_grant(
        self,
        ctx: RequestContext,
        actor_type: str,
        actor_id: str,
        target_type: str,
        target_id: str,
        role_id: str,
    ) -> None:
        enforce(ctx, "identity:revoke_grant")
        with self.core.db.session() as s:
            self._check_grant_parts(s, actor_type, actor_id, target_type, target_id, role_id)
            a = s.get(m.Assignment, (actor_type, actor_id, target_type, target_id, role_id))
            if a is None:
                raise NotFound(f"Could not find role assignment: role {role_id} is not granted.")
            self._revoke_for_assignment(s, a)
            s.delete(a)
        self.core.changed()

    def list_grants(
        self, ctx: RequestContext, actor_type: str, actor_id: str, target_type: str, target_id: str
    ) -> list[dict[str, Any]]:
        enforce(ctx, "identity:list_grants")
        with self.core.db.session() as s:
            self.core.get(s, m.User if actor_type == "user" else m.Group, actor_id, actor_type)
            if not ctx.is_admin and not (actor_type == "user" and actor_id == ctx.user_id):
                raise NotFound(f"Could not find {actor_type}: {actor_id}.")
            ids = s.scalars(
                select(m.Assignment.role_id).where(
                    m.Assignment.actor_type == actor_type,
                    m.Assignment.actor_id == actor_id,
                    m.Assignment.target_type == target_type,
                    m.Assignment.target_id == target_id,
                )
            ).all()
            return [self.core.role_ref(r) for r in self.core.roles_by_ids(s, ids)]

    # ------------------------------------------------------------------ role assignments

    def list_role_assignments(
        self,
        ctx: RequestContext,
        filters: dict[str, Any],
        effective: bool,
        include_names: bool,
        include_implied: bool = False,
    ) -> list[dict[str, Any]]:
        """The filters narrow the rows in SQL first (a superset of the answer), then the
        exact rules below pick the items: a constant number of queries for any list."""
        enforce(ctx, "identity:list_role_assignments")
        with self.core.db.session() as s:
            inheriting: list[tuple[str, str]] = []
            if effective and "scope.project.id" in filters:
                inheriting = self.core.inheriting_targets(s, str(filters["scope.project.id"]))
            # with include_implied, a role.id filter also matches roles implied by others
            in_sql = {k: v for k, v in filters.items() if not (include_implied and k == "role.id")}
            narrowed = assignments.narrowing(in_sql, effective, inheriting)
            if not ctx.is_admin:
                narrowed.append(
                    or_(
                        assignments.held_by(ctx.user_id, effective),
                        assignments.on_target("project", ctx.project_id),
                    )
                )
            rows = assignments.rows_where(s, narrowed)
            groups = [a.actor_id for a in rows if a.actor_type == "group"]
            members = assignments.members_by_group(s, groups) if effective else None
            items = assignments.expand(rows, members)
            if effective:
                items = self._inherited_to_projects(s, items)
            if not ctx.is_admin:
                visible = self.core.visible_project_ids(s, ctx) if ctx.project_id else set()
                items = [
                    i
                    for i in items
                    if (i[0] == "user" and i[1] == ctx.user_id)
                    or (i[2] == "project" and i[3] == ctx.project_id and i[3] in visible)
                ]
            priors: list[str | None] = [None] * len(items)
            if include_implied:
                items, priors = self._with_implied(s, items)
            if effective:  # domain-specific roles only imply others; tokens never hold them
                items, priors = self._without_domain_roles(s, items, priors)
            kept = [(i, p) for i, p in zip(items, priors, strict=True) if _matching([i], filters)]
            names = assignments.names_for(s, [i for i, _ in kept]) if include_names else None
            refs = []
            for item, prior in kept:
                ref = assignments.assignment_ref(item, names)
                if prior is not None:
                    ref["_prior_role"] = prior
                refs.append(ref)
            return refs

    def _without_domain_roles(
        self, s: Session, items: list[assignments.Item], priors: list[str | None]
    ) -> tuple[list[assignments.Item], list[str | None]]:
        roles = {r.id: r for r in self.core.roles_by_ids(s, sorted({i[4] for i in items}))}
        kept = [
            (i, p)
            for i, p in zip(items, priors, strict=True)
            if i[4] in roles and roles[i[4]].domain_id is None
        ]
        return [i for i, _ in kept], [p for _, p in kept]

    def _with_implied(
        self, s: Session, items: list[assignments.Item]
    ) -> tuple[list[assignments.Item], list[str | None]]:
        """Each assignment followed by the ones its role implies, each with the role that
        implies it directly (Keystone's include_implied)."""
        direct = {prior.id: [r.id for r in implied] for prior, implied in self.inferences(s)}
        out: list[assignments.Item] = []
        priors: list[str | None] = []
        for item in items:
            out.append(item)
            priors.append(None)
            queue, seen = [item[4]], {item[4]}
            while queue:
                prior = queue.pop(0)
                for implied in direct.get(prior, []):
                    if implied not in seen:
                        seen.add(implied)
                        queue.append(implied)
                        out.append((*item[:4], implied, item[5]))
                        priors.append(prior)
        return out, priors

    # ------------------------------------------------------------------ implied roles

    def inferences(self, s: Session) -> list[tuple[m.Role, list[m.Role]]]:
        """The cloud's implied-role rules, each prior role with the roles it implies
        directly (admin implies member, member implies reader); fixed by the policy table."""
        names = {n for implied in IMPLIED_ROLES.values() for n in implied} | set(IMPLIED_ROLES)
        roles = {
            r.name: r
            for r in s.scalars(
                select(m.Role).where(m.Role.name.in_(sorted(names)), m.Role.domain_id.is_(None))
            )
        }
        rules: dict[str, tuple[m.Role, list[m.Role]]] = {}
        for name in sorted(IMPLIED_ROLES):
            below = set(IMPLIED_ROLES[name]) - {name}
            indirect = {n for b in below for n in IMPLIED_ROLES.get(b, frozenset()) if n != b}
            implied = [roles[n] for n in sorted(below - indirect) if n in roles]
            if name in roles and implied:
                rules[roles[name].id] = (roles[name], implied)
        stored = self.core.stored_inferences(s)
        if stored:
            ids = set(stored) | {i for implied_ids in stored.values() for i in implied_ids}
            known = {r.id: r for r in self.core.roles_by_ids(s, sorted(ids))}
            for prior_id, implied_ids in sorted(stored.items()):
                if prior_id not in known:
                    continue
                entry = rules.setdefault(prior_id, (known[prior_id], []))
                extra = [known[i] for i in sorted(implied_ids) if i in known]
                entry[1].extend(sorted(extra, key=lambda r: r.name))
        return list(rules.values())

    def _is_fixed(self, s: Session, prior_id: str, implied_id: str) -> bool:
        fixed = {p.id: {r.id for r in implied} for p, implied in self.inferences(s)}
        stored = self.core.stored_inferences(s)
        return implied_id in fixed.get(prior_id, set()) - stored.get(prior_id, set())

    def create_inference(self, ctx: RequestContext, prior_id: str, implied_id: str) -> Any:
        """An administrator's rule: holding the prior role grants the implied one too."""
        enforce(ctx, "identity:create_implied_role")
        with self.core.db.session() as s:
            prior = self.core.get(s, m.Role, prior_id, "role")
            implied = self.core.get(s, m.Role, implied_id, "role")
            if prior.id == implied.id:
                raise BadRequest("A role cannot imply itself.")
            if implied.name == "admin":
                raise Forbidden("No role may imply admin: grant admin itself instead.")
            if prior.domain_id is None and implied.domain_id is not None:
                raise Forbidden(
                    "A global role cannot imply a domain-specific role; a domain role may "
                    "imply a global one."
                )
            if prior.id in self.core.implied_role_ids(s, {implied.id}):
                raise BadRequest(
                    f"Role {implied.name!r} already implies {prior.name!r}: the rule would "
                    "make a cycle."
                )
            if s.get(m.ImpliedRole, (prior.id, implied.id)) is None and not self._is_fixed(
                s, prior.id, implied.id
            ):
                s.add(m.ImpliedRole(prior_role_id=prior.id, implied_role_id=implied.id))
            refs = (self.core.role_ref(prior), self.core.role_ref(implied))
        self.core.changed()
        return refs

    def delete_inference(self, ctx: RequestContext, prior_id: str, implied_id: str) -> None:
        enforce(ctx, "identity:delete_implied_role")
        with self.core.db.session() as s:
            rule = s.get(m.ImpliedRole, (prior_id, implied_id))
            if rule is None:
                if self._is_fixed(s, prior_id, implied_id):
                    raise Forbidden("This implied-role rule is fixed by the cloud's policy.")
                raise NotFound(
                    f"Could not find implied role: {prior_id} does not imply {implied_id}."
                )
            s.delete(rule)
        self.core.changed()

    def list_inferences(self, ctx: RequestContext, prior_id: str | None = None) -> list[Any]:
        """(prior role, implied roles) refs; of one prior role if given (404 if unknown)."""
        enforce(ctx, "identity:list_role_inference_rules")
        with self.core.db.session() as s:
            if prior_id is not None:
                self.core.get(s, m.Role, prior_id, "role")
            return [
                (self.core.role_ref(p), [self.core.role_ref(r) for r in implied])
                for p, implied in self.inferences(s)
                if prior_id is None or p.id == prior_id
            ]

    def _inherited_to_projects(
        self, s: Session, items: list[assignments.Item]
    ) -> list[assignments.Item]:
        """Effective assignments: an OS-INHERIT grant becomes one per project inheriting it."""
        out: list[assignments.Item] = []
        under: dict[tuple[str, str], set[str]] = {}
        for actor_type, actor_id, target_type, target_id, role_id, via in items:
            if target_type not in assignments.INHERITED:
                out.append((actor_type, actor_id, target_type, target_id, role_id, via))
                continue
            key = (target_type, target_id)
            if key not in under:
                under[key] = self.core.projects_under(s, target_type, target_id)
            out.extend(
                (actor_type, actor_id, "project", p, role_id, via) for p in sorted(under[key])
            )
        return out


_FILTERS: dict[str, Callable[[assignments.Item], Any]] = {
    "user.id": lambda i: i[0] == "user" and i[1],
    "group.id": lambda i: i[0] == "group" and i[1],
    "role.id": lambda i: i[4],
    "scope.project.id": lambda i: i[2] == "project" and i[3],
    "scope.domain.id": lambda i: i[2] == "domain" and i[3],
}


def _matching(items: list[assignments.Item], filters: dict[str, Any]) -> list[assignments.Item]:
    """The items every filter of /v3/role_assignments accepts (after group expansion)."""
    for key, getter in _FILTERS.items():
        if key in filters:
            items = [i for i in items if getter(i) == filters[key]]
    if "scope.system" in filters:
        items = [i for i in items if i[2] == "system"]
    return items
