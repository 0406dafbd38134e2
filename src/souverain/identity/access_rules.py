"""Access rules of application credentials: which calls a credential's tokens may make.

A rule names a service type (`compute`, `block-storage`, `object-store`...), a path
relative to that service's root on this cloud (`/v2.1/servers`, `/v3/volumes/*`,
`/v1/AUTH_x/**`) and a method. In a path, `*` (or `{name}`) stands for one path
segment and `**` for any rest of the path, slashes included. A token issued from a
credential that has rules may only make the calls one of its rules matches; the edge
refuses the others (`openstack/auth.py`). A credential without rules is not limited.

Rules belong to their user and are shared: a credential naming a rule the user already
has (by id, or the same service, path and method) reuses it. A rule in use by a
credential cannot be deleted (403, as Keystone); deleting the last credential using a
rule leaves the rule, for its user to list and delete. Knows nothing of HTTP.
"""

from __future__ import annotations

import re
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from souverain.common.context import RequestContext
from souverain.common.errors import BadRequest, Forbidden, NotFound
from souverain.common.ids import new_id
from souverain.common.policy import enforce
from souverain.identity import models as m
from souverain.identity.core import IdentityCore, access_rule_ref

METHODS = ("DELETE", "GET", "HEAD", "PATCH", "POST", "PUT")
_SERVICE = re.compile(r"^[a-zA-Z0-9-]{1,64}$")
_PATH_MAX = 225


def rule_ref(rule: m.AccessRule) -> dict[str, Any]:
    return access_rule_ref(rule)


def _checked(ref: Any) -> dict[str, str]:
    """A requested rule, refused (400) unless it is a rule Keystone would accept."""
    if not isinstance(ref, dict):
        raise BadRequest("Invalid input for field 'access_rules': each rule must be an object.")
    unknown = set(ref) - {"id", "service", "path", "method"}
    if unknown:
        raise BadRequest(
            f"Invalid input for field 'access_rules': unknown field(s) {sorted(unknown)}; "
            "a rule has service, path, method (and id to reuse one)."
        )
    if "id" in ref and set(ref) == {"id"}:
        if not isinstance(ref["id"], str) or not ref["id"]:
            raise BadRequest("Invalid input for field 'access_rules': id must be a string.")
        return {"id": ref["id"]}
    service, path, method = ref.get("service"), ref.get("path"), ref.get("method")
    if not isinstance(service, str) or not _SERVICE.match(service):
        raise BadRequest(
            "Invalid input for field 'access_rules': service must be a service type "
            "(letters, digits and dashes, at most 64), e.g. compute."
        )
    if not isinstance(path, str) or not path.startswith("/") or len(path) > _PATH_MAX:
        raise BadRequest(
            "Invalid input for field 'access_rules': path must start with '/' and be at most "
            f"{_PATH_MAX} characters, e.g. /v2.1/servers/*."
        )
    if method not in METHODS:
        raise BadRequest(
            f"Invalid input for field 'access_rules': method must be one of {', '.join(METHODS)}."
        )
    checked = {"service": service, "path": path, "method": str(method)}
    if isinstance(ref.get("id"), str):
        checked["id"] = ref["id"]
    return checked


class AccessRules:
    """A user's access rules, and the rules of each application credential."""

    def __init__(self, core: IdentityCore) -> None:
        self.core = core

    # ---------------------------------------------------------------- with credentials

    @staticmethod
    def check_request(refs: Any) -> list[dict[str, str]]:
        if not isinstance(refs, list):
            raise BadRequest("Invalid input for field 'access_rules': it must be a list.")
        return [_checked(ref) for ref in refs]

    def attach(self, s: Session, cred: m.ApplicationCredential, refs: list[dict[str, str]]) -> None:
        """Give a new credential its rules, reusing the user's own where they exist."""
        seen: set[str] = set()
        for ref in refs:
            rule = self._existing(s, cred.user_id, ref)
            if rule is None:
                rule = m.AccessRule(
                    id=new_id(),
                    user_id=cred.user_id,
                    service=ref["service"],
                    path=ref["path"],
                    method=ref["method"],
                )
                s.add(rule)
                s.flush()
            if rule.id not in seen:
                seen.add(rule.id)
                s.add(m.AppCredAccessRule(app_cred_id=cred.id, access_rule_id=rule.id))

    @staticmethod
    def _existing(s: Session, user_id: str, ref: dict[str, str]) -> m.AccessRule | None:
        if "id" in ref:
            rule = s.get(m.AccessRule, ref["id"])
            if rule is not None and rule.user_id == user_id:
                return rule
            if "service" not in ref:
                raise NotFound(f"Could not find Access Rule: {ref['id']}.")
        query = select(m.AccessRule).where(
            m.AccessRule.user_id == user_id,
            m.AccessRule.service == ref["service"],
            m.AccessRule.path == ref["path"],
            m.AccessRule.method == ref["method"],
        )
        return s.scalars(query).first()

    # ---------------------------------------------------------------- /v3/users/{id}/access_rules

    def list(
        self, ctx: RequestContext, user_id: str, filters: dict[str, str]
    ) -> list[dict[str, Any]]:
        with self.core.db.session() as s:
            self.core.owned_user(s, ctx, user_id)
            enforce(ctx, "identity:list_access_rules", owner_user_id=user_id)
            query = select(m.AccessRule).where(m.AccessRule.user_id == user_id)
            for key in ("service", "path", "method"):
                if key in filters:
                    query = query.where(getattr(m.AccessRule, key) == filters[key])
            query = query.order_by(m.AccessRule.service, m.AccessRule.path, m.AccessRule.id)
            return [rule_ref(r) for r in s.scalars(query).all()]

    def _owned(self, s: Session, ctx: RequestContext, user_id: str, rule_id: str) -> m.AccessRule:
        self.core.owned_user(s, ctx, user_id)
        rule = s.get(m.AccessRule, rule_id)
        if rule is None or rule.user_id != user_id:
            raise NotFound(f"Could not find Access Rule: {rule_id}.")
        return rule

    def get(self, ctx: RequestContext, user_id: str, rule_id: str) -> dict[str, Any]:
        with self.core.db.session() as s:
            rule = self._owned(s, ctx, user_id, rule_id)
            enforce(ctx, "identity:get_access_rule", owner_user_id=user_id)
            return rule_ref(rule)

    def delete(self, ctx: RequestContext, user_id: str, rule_id: str) -> None:
        with self.core.db.session() as s:
            rule = self._owned(s, ctx, user_id, rule_id)
            enforce(ctx, "identity:delete_access_rule", owner_user_id=user_id)
            used = s.scalars(
                select(m.AppCredAccessRule.app_cred_id).where(
                    m.AppCredAccessRule.access_rule_id == rule.id
                )
            ).first()
            if used is not None:
                raise Forbidden(
                    f"May not delete access rule in use: application credential {used} "
                    "uses it; delete that credential first."
                )
            s.delete(rule)
