"""Trusts (OS-TRUST): a trustor delegates some of its roles on a project to a trustee.

Knows nothing of HTTP. Only the trustor creates a trust, and only with roles it
holds on the project (implied ones count); the trustee then gets tokens scoped
to the trust, acting as itself or, with impersonation, as the trustor. A trust
token carries the trust's roles only while the trustor still holds them, the
trust is not expired or deleted, and both users are enabled; `remaining_uses`
counts the tokens a trust may still issue. Redelegation is not offered. A trust
is seen by its trustor, its trustee and admins; others find nothing.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any

from sqlalchemy import or_, select, update
from sqlalchemy.orm import Session

from souverain.common.clock import as_utc, isotime
from souverain.common.context import RequestContext
from souverain.common.errors import BadRequest, Forbidden, NotFound, Unauthorized
from souverain.common.ids import new_id
from souverain.identity import models as m
from souverain.identity.core import IdentityCore, naive_utc


@dataclass(frozen=True)
class TrustGrant:
    """What a token scoped to a trust is issued with."""

    trust_id: str
    user_id: str  # the trustee, or the trustor when impersonating
    project_id: str
    expires_at: dt.datetime | None


def _not_found(trust_id: str) -> NotFound:
    return NotFound(f"Could not find trust: {trust_id[:64]}.")


class Trusts:
    def __init__(self, core: IdentityCore) -> None:
        self.core = core

    # ------------------------------------------------------------------ records

    def create(self, ctx: RequestContext, data: dict[str, Any], via_trust: bool) -> dict[str, Any]:
        if data["trustor_user_id"] != ctx.user_id:
            raise Forbidden("Only the trustor may create a trust: trustor_user_id must be you.")
        if via_trust or ctx.application_credential_id is not None:
            raise Forbidden(
                "A trust cannot be created with a trust-scoped or application credential "
                "token: use a token from your password."
            )
        if data.get("allow_redelegation"):
            raise BadRequest("Redelegation is not supported: set allow_redelegation to false.")
        expires_at = data.get("expires_at")
        if expires_at is not None and expires_at <= self.core.now():
            raise BadRequest("expires_at must be in the future.")
        with self.core.db.session() as s:
            if s.get(m.User, data["trustee_user_id"]) is None:
                raise NotFound(f"Could not find user: {data['trustee_user_id']}.")
            project = s.get(m.Project, data["project_id"])
            if project is None:
                raise NotFound(f"Could not find project: {data['project_id']}.")
            role_ids = self._delegable(s, ctx.user_id, project.id, data.get("roles") or [])
            trust = m.Trust(
                id=new_id(),
                trustor_user_id=ctx.user_id,
                trustee_user_id=data["trustee_user_id"],
                project_id=project.id,
                impersonation=data["impersonation"],
                role_ids=sorted(role_ids),
                expires_at=naive_utc(expires_at) if expires_at else None,
                remaining_uses=data.get("remaining_uses"),
                created_at=naive_utc(self.core.now()),
            )
            s.add(trust)
            s.flush()
            return self._ref(s, trust)

    def _delegable(self, s: Session, user_id: str, project_id: str, refs: list[Any]) -> set[str]:
        """The ids of the roles asked for, each one the trustor holds on the project."""
        if not refs:
            raise BadRequest("A trust delegates at least one role: give roles by id or name.")
        held = self.core.implied_role_ids(
            s, self.core.role_ids_on(s, user_id, "project", project_id)
        )
        wanted: set[str] = set()
        for ref in refs:
            role = self._role(s, ref)
            if role.id not in held:
                raise Forbidden(
                    f"You cannot delegate the role {role.name!r}: you do not hold it on this "
                    "project."
                )
            wanted.add(role.id)
        return wanted

    @staticmethod
    def _role(s: Session, ref: Any) -> m.Role:
        if not isinstance(ref, dict):
            raise BadRequest("Each role must be an object with an id or a name.")
        role: m.Role | None = None
        if ref.get("id"):
            role = s.get(m.Role, str(ref["id"]))
        elif ref.get("name"):
            by_name = select(m.Role).where(m.Role.name == str(ref["name"]))
            role = s.scalars(by_name.where(m.Role.domain_id.is_(None))).first()
        if role is None:
            raise NotFound(f"Could not find role: {ref.get('id') or ref.get('name')}.")
        return role

    def _ref(self, s: Session, t: m.Trust) -> dict[str, Any]:
        roles = self.core.roles_by_ids(s, t.role_ids)
        return {
            "id": t.id,
            "trustor_user_id": t.trustor_user_id,
            "trustee_user_id": t.trustee_user_id,
            "project_id": t.project_id,
            "impersonation": t.impersonation,
            "expires_at": isotime(as_utc(t.expires_at)) if t.expires_at else None,
            "remaining_uses": t.remaining_uses,
            "allow_redelegation": False,
            "redelegation_count": 0,
            "roles": [self.core.role_ref(r) for r in sorted(roles, key=lambda r: r.name)],
        }

    def _visible(self, s: Session, ctx: RequestContext, trust_id: str) -> m.Trust:
        t = s.get(m.Trust, trust_id)
        if t is None or not (ctx.is_admin or ctx.user_id in (t.trustor_user_id, t.trustee_user_id)):
            raise _not_found(trust_id)
        return t

    def list(self, ctx: RequestContext, filters: dict[str, Any]) -> list[dict[str, Any]]:
        """An admin's: all trusts; anyone else's: those it is trustor or trustee of."""
        for key in ("trustor_user_id", "trustee_user_id"):
            if key in filters and filters[key] != ctx.user_id and not ctx.is_admin:
                raise Forbidden(f"You may list only your own trusts: {key} must be you.")
        with self.core.db.session() as s:
            stmt = select(m.Trust).order_by(m.Trust.created_at, m.Trust.id)
            if not ctx.is_admin:
                mine = or_(
                    m.Trust.trustor_user_id == ctx.user_id, m.Trust.trustee_user_id == ctx.user_id
                )
                stmt = stmt.where(mine)
            for key in ("trustor_user_id", "trustee_user_id"):
                if key in filters:
                    stmt = stmt.where(getattr(m.Trust, key) == filters[key])
            return [self._ref(s, t) for t in s.scalars(stmt)]

    def get(self, ctx: RequestContext, trust_id: str) -> dict[str, Any]:
        with self.core.db.session() as s:
            return self._ref(s, self._visible(s, ctx, trust_id))

    def role(self, ctx: RequestContext, trust_id: str, role_id: str) -> dict[str, Any]:
        with self.core.db.session() as s:
            t = self._visible(s, ctx, trust_id)
            if role_id not in t.role_ids:
                raise NotFound(f"Role {role_id[:64]} is not delegated by trust {trust_id}.")
            roles = self.core.roles_by_ids(s, [role_id])
            if not roles:
                raise NotFound(f"Could not find role: {role_id[:64]}.")
            return self.core.role_ref(roles[0])

    def delete(self, ctx: RequestContext, trust_id: str) -> None:
        """The trustor (or an admin) ends a trust; its tokens stop working at once."""
        with self.core.db.session() as s:
            t = self._visible(s, ctx, trust_id)
            if not ctx.is_admin and t.trustor_user_id != ctx.user_id:
                raise Forbidden("Only the trustor of a trust may delete it.")
            s.delete(t)
        self.core.changed()

    # ------------------------------------------------------------------ tokens

    def grant(self, user_id: str, scope: Any) -> TrustGrant:
        """A token for `user_id` (the trustee) scoped to the trust `scope` names; counts a use."""
        trust_id = scope.get("id") if isinstance(scope, dict) else None
        if not isinstance(trust_id, str) or not trust_id:
            raise BadRequest("auth.scope.OS-TRUST:trust needs the trust's id.")
        refused = Unauthorized("The trust does not exist, has expired or is not yours to use.")
        with self.core.db.session() as s:
            t = s.get(m.Trust, trust_id)
            if t is None or t.trustee_user_id != user_id or self._expired(t):
                raise refused
            if t.remaining_uses is not None:
                used = s.execute(
                    update(m.Trust)
                    .where(m.Trust.id == t.id, m.Trust.remaining_uses > 0)
                    .values(remaining_uses=m.Trust.remaining_uses - 1)
                    .returning(m.Trust.id)
                ).first()
                if used is None:
                    raise Unauthorized("The trust has no uses left.")
            acting = t.trustor_user_id if t.impersonation else t.trustee_user_id
            expiry = as_utc(t.expires_at) if t.expires_at else None
            return TrustGrant(t.id, acting, t.project_id, expiry)

    def _expired(self, t: m.Trust) -> bool:
        return t.expires_at is not None and as_utc(t.expires_at) <= self.core.now()

    def resolve(self, s: Session, trust_id: str, user_id: str) -> tuple[set[str], dict[str, Any]]:
        """The delegated role ids of a trust token and its OS-TRUST:trust body; raises
        Unauthorized when the trust no longer stands."""
        t = s.get(m.Trust, trust_id)
        if t is None or self._expired(t):
            raise Unauthorized("trust gone or expired")
        if user_id not in (t.trustee_user_id, t.trustor_user_id):
            raise Unauthorized("token user is not part of the trust")
        for party in (t.trustor_user_id, t.trustee_user_id):
            user = s.get(m.User, party)
            if user is None or not user.enabled:
                raise Unauthorized("trustor or trustee disabled")
        held = self.core.implied_role_ids(
            s, self.core.role_ids_on(s, t.trustor_user_id, "project", t.project_id)
        )
        if not set(t.role_ids) <= held:
            raise Unauthorized("the trustor no longer holds the delegated roles")
        body = {
            "id": t.id,
            "impersonation": t.impersonation,
            "trustee_user": {"id": t.trustee_user_id},
            "trustor_user": {"id": t.trustor_user_id},
        }
        return set(t.role_ids), body
