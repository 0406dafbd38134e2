"""Who is calling: password, token and application credential logins, scopes, token
validation and revocation.

Knows nothing of HTTP. A failed login says no more than "requires authentication",
whatever the reason, and costs a hash even for an unknown user.
"""

from __future__ import annotations

import datetime as dt
import json
from typing import Any

from sqlalchemy import select, update

from souverain.common.clock import as_utc
from souverain.common.context import RequestContext
from souverain.common.errors import BadRequest, Forbidden, NotFound, Unauthorized
from souverain.identity import models as m
from souverain.identity.access_match import AllowedCall
from souverain.identity.core import (
    INVALID_CREDENTIALS,
    IdentityCore,
    ResolvedToken,
    Scope,
    TokenView,
    access_rule_ref,
    access_rules_of,
)
from souverain.identity.mfa import MultiFactor
from souverain.identity.tokens import (
    TokenPayload,
    new_audit_id,
)
from souverain.identity.trusts import TrustGrant, Trusts

TRUST_SCOPE = "OS-TRUST:trust"


class Authentication:
    """Issues and validates tokens; a view is cached until identity data changes."""

    def __init__(self, core: IdentityCore, trusts: Trusts) -> None:
        self.core = core
        self.trusts = trusts
        self.mfa = MultiFactor(core)
        self._scope_cache: dict[tuple[str, str], tuple[int, Scope]] = {}

    # ------------------------------------------------------------------ login

    def authenticate(self, auth: dict[str, Any], receipt: str | None = None) -> TokenView:
        """Check the identity methods, pick the scope, issue a token. Runs off the event loop.

        `receipt` is an auth receipt from an earlier, partly successful login: the methods
        it proved count with those of this request (keystoneauth's multi-factor flow)."""
        self.core.follow_changes()
        identity, methods = _identity_methods(auth)
        scope_req = auth.get("scope")
        now = self.core.now()
        expires = now + dt.timedelta(seconds=self.core.settings.token_expiration)
        audit_ids: tuple[str, ...] = (new_audit_id(),)
        app_cred_id: str | None = None
        inherited: tuple[str, ...] = ()
        method = methods[0]
        alone = {"token", "application_credential"}
        if (len(methods) > 1 and alone & set(methods)) or (receipt and method in alone):
            raise Unauthorized("The token and application_credential methods stand alone.")
        if method == "token":
            parent = self._auth_token(identity["token"])
            user_id = parent.payload.user_id
            expires = dt.datetime.fromtimestamp(parent.payload.expires_at, dt.UTC)
            audit_ids = (new_audit_id(), parent.payload.audit_ids[-1])
            inherited = parent.payload.methods
            if parent.payload.app_cred_id:
                app_cred_id = parent.payload.app_cred_id
            if parent.payload.trust_id:
                raise Forbidden("A trust-scoped token cannot be re-scoped.")
        elif method == "application_credential":
            user_id, app_cred_id, project_id, cred_expiry = self._auth_app_cred(
                identity["application_credential"]
            )
            requested = scope_req.get("project") if isinstance(scope_req, dict) else None
            if scope_req and not (
                isinstance(requested, dict) and requested.get("id") == project_id
            ):
                raise Unauthorized("Application credentials cannot request a scope.")
            scope_req = {"project": {"id": project_id}}
            if cred_expiry is not None and cred_expiry < expires:
                expires = cred_expiry
        else:
            user_id, inherited = self._auth_factors(identity, methods, receipt)
        grant = self._trust_grant(user_id, scope_req, app_cred_id)
        if grant is not None:
            user_id, scope = grant.user_id, Scope(project_id=grant.project_id)
            if grant.expires_at is not None and grant.expires_at < expires:
                expires = grant.expires_at
        else:
            scope = self._resolve_scope(user_id, scope_req)
        if app_cred_id and method == "token":
            scope_expected = self._app_cred_project(app_cred_id)
            if scope.project_id != scope_expected:
                raise Forbidden("A token from an application credential cannot be re-scoped.")
        payload = TokenPayload(
            user_id=user_id,
            # A re-scoped token keeps the methods that proved the identity, as Keystone does.
            methods=tuple(dict.fromkeys((*methods, *inherited))),
            expires_at=expires.timestamp(),
            issued_at=now.timestamp(),
            audit_ids=audit_ids,
            project_id=scope.project_id,
            domain_id=scope.domain_id,
            system=scope.system,
            app_cred_id=app_cred_id,
            trust_id=grant.trust_id if grant else None,
        )
        token = self.core.tokens.issue(payload)
        view = self._view(token, payload)
        if view is None:
            raise Unauthorized(INVALID_CREDENTIALS)
        return view

    def _auth_factors(
        self, identity: dict[str, Any], methods: list[str], receipt: str | None
    ) -> tuple[str, tuple[str, ...]]:
        """Password and TOTP, each naming the same user; then the user's multi-factor rules.

        Any failed factor is the same 401. Returns the user and the methods a receipt
        proved earlier."""
        users: set[str] = set()
        earlier: tuple[str, ...] = ()
        for method in methods:
            if method == "password":
                # failures are forgotten only once every factor passed: a right password
                # must not reset the count a TOTP guesser is running up
                users.add(self._auth_password(identity["password"], last_factor=False))
            elif method == "totp":
                users.add(self.mfa.check_totp(identity["totp"], self._user_id_by_ref))
            else:
                raise Unauthorized(
                    f"Attempted to authenticate with an unsupported method: {method[:64]}."
                )
        if receipt:
            proved = self.mfa.open(receipt)
            users.add(proved.user_id)
            earlier = proved.methods
        if len(users) != 1:
            raise Unauthorized(INVALID_CREDENTIALS)
        user_id = users.pop()
        self.mfa.require(user_id, {*methods, *earlier})
        self.core.forget_failed_logins(user_id)
        return user_id, earlier

    def _user_id_by_ref(self, user_ref: dict[str, Any]) -> str | None:
        """The user an auth method names by id, or by name and domain; None if unknown."""
        with self.core.db.session() as s:
            if user_ref.get("id"):
                return str(user_ref["id"])[:64]
            if not user_ref.get("name") or "domain" not in user_ref:
                raise BadRequest("a user is given by id, or by name and domain")
            try:
                domain = self.core.domain_by_ref(s, user_ref["domain"])
            except Unauthorized:
                return None
            return s.scalar(
                select(m.User.id).where(
                    m.User.domain_id == domain.id, m.User.name == str(user_ref["name"])
                )
            )

    def _trust_grant(
        self, user_id: str, scope_req: Any, app_cred_id: str | None
    ) -> TrustGrant | None:
        """The trust a token is asked to be scoped to (OS-TRUST:trust), if any."""
        if not (isinstance(scope_req, dict) and TRUST_SCOPE in scope_req):
            return None
        if app_cred_id:
            raise Forbidden("An application credential cannot use a trust.")
        return self.trusts.grant(user_id, scope_req[TRUST_SCOPE])

    def _auth_password(self, body: Any, last_factor: bool = True) -> str:
        user_ref = body.get("user") if isinstance(body, dict) else None
        if not isinstance(user_ref, dict):
            raise BadRequest("auth.identity.password.user is required")
        password = user_ref.get("password")
        if not isinstance(password, str):
            raise BadRequest("auth.identity.password.user.password must be a string")
        with self.core.db.session() as s:
            user: m.User | None = None
            if user_ref.get("id"):
                user = s.get(m.User, str(user_ref["id"]))
            elif user_ref.get("name"):
                if "domain" not in user_ref:
                    raise BadRequest("a user given by name needs its domain (id or name)")
                try:
                    domain = self.core.domain_by_ref(s, user_ref["domain"])
                except Unauthorized:
                    domain = None
                if domain is not None:
                    user = s.scalars(
                        select(m.User).where(
                            m.User.domain_id == domain.id, m.User.name == str(user_ref["name"])
                        )
                    ).first()
            else:
                raise BadRequest("auth.identity.password.user needs an id or a name")
        # The hash runs with no database connection held: a slow hash must not
        # starve the pool. It runs even for an unknown user, so that both
        # failures cost the same time.
        hashed = user.password_hash if user and user.password_hash else self.core.dummy_hash
        ok = self.core.check_secret(password, hashed)
        if user is None or not user.password_hash:
            raise Unauthorized(INVALID_CREDENTIALS)
        self.core.refuse_if_locked(user)
        with self.core.db.session() as s:
            if not ok:
                self.core.count_failed_login(s, user)
                raise Unauthorized(INVALID_CREDENTIALS)
            if user.failed_auth_count and last_factor:
                s.execute(
                    update(m.User)
                    .where(m.User.id == user.id)
                    .values(failed_auth_count=0, failed_auth_at=None)
                )
            self.core.check_user_enabled(s, user)
            return user.id

    def _auth_token(self, body: Any) -> TokenView:
        token = body.get("id") if isinstance(body, dict) else None
        if not isinstance(token, str):
            raise BadRequest("auth.identity.token.id must be a string")
        view = self.validate(token)
        if view is None:
            raise Unauthorized(INVALID_CREDENTIALS)
        return view

    def _auth_app_cred(self, body: Any) -> tuple[str, str, str, dt.datetime | None]:
        if not isinstance(body, dict) or not isinstance(body.get("secret"), str):
            raise BadRequest("auth.identity.application_credential needs a secret")
        with self.core.db.session() as s:
            cred: m.ApplicationCredential | None = None
            if body.get("id"):
                cred = s.get(m.ApplicationCredential, str(body["id"]))
            elif body.get("name") and isinstance(body.get("user"), dict):
                user_ref = body["user"]
                user_id = user_ref.get("id")
                if not user_id and user_ref.get("name") and "domain" in user_ref:
                    try:
                        domain = self.core.domain_by_ref(s, user_ref["domain"])
                        found = s.scalars(
                            select(m.User).where(
                                m.User.domain_id == domain.id, m.User.name == str(user_ref["name"])
                            )
                        ).first()
                        user_id = found.id if found else None
                    except Unauthorized:
                        user_id = None
                if user_id:
                    cred = s.scalars(
                        select(m.ApplicationCredential).where(
                            m.ApplicationCredential.user_id == str(user_id),
                            m.ApplicationCredential.name == str(body["name"]),
                        )
                    ).first()
            else:
                raise BadRequest("an application credential is given by id, or by name and user")
            hashed = cred.secret_hash if cred else self.core.dummy_hash
            ok = self.core.check_secret(body["secret"], hashed)
            if cred is None or not ok:
                raise Unauthorized(INVALID_CREDENTIALS)
            expiry = as_utc(cred.expires_at) if cred.expires_at else None
            if expiry is not None and expiry <= self.core.now():
                raise Unauthorized("The application credential has expired.")
            user = s.get(m.User, cred.user_id)
            if user is None:
                raise Unauthorized(INVALID_CREDENTIALS)
            self.core.check_user_enabled(s, user)
            return cred.user_id, cred.id, cred.project_id, expiry

    def _app_cred_project(self, app_cred_id: str) -> str | None:
        with self.core.db.session() as s:
            cred = s.get(m.ApplicationCredential, app_cred_id)
            return cred.project_id if cred else None

    # ------------------------------------------------------------------ scope

    def _resolve_scope(self, user_id: str, scope_req: Any) -> Scope:
        """The scope asked for, if the user holds a role on it; cached until identity changes."""
        if scope_req is None or scope_req == {}:
            return Scope()
        if scope_req == "unscoped":
            return Scope()
        if not isinstance(scope_req, dict) or len(scope_req) != 1:
            raise BadRequest("auth.scope must name exactly one of project, domain or system")
        try:
            key = (user_id, json.dumps(scope_req, sort_keys=True))
        except (TypeError, ValueError):
            raise BadRequest("auth.scope is not valid") from None
        generation = self.core.generation
        cached = self._scope_cache.get(key)
        if cached is not None and cached[0] == generation:
            return cached[1]
        scope = self._lookup_scope(user_id, scope_req)
        if len(self._scope_cache) > 100_000:
            self._scope_cache.clear()
        self._scope_cache[key] = (generation, scope)
        return scope

    def _lookup_scope(self, user_id: str, scope_req: dict[str, Any]) -> Scope:
        kind, ref = next(iter(scope_req.items()))
        with self.core.db.session() as s:
            if kind == "project":
                if not isinstance(ref, dict):
                    raise BadRequest("auth.scope.project must be an object")
                project: m.Project | None = None
                if ref.get("id"):
                    project = s.get(m.Project, str(ref["id"]))
                elif ref.get("name"):
                    if "domain" not in ref:
                        raise BadRequest("a project given by name needs its domain (id or name)")
                    domain = self.core.domain_by_ref(s, ref["domain"])
                    project = s.scalars(
                        select(m.Project).where(
                            m.Project.domain_id == domain.id, m.Project.name == str(ref["name"])
                        )
                    ).first()
                else:
                    raise BadRequest("auth.scope.project needs an id or a name")
                if project is None or not self.core.role_ids_on(s, user_id, "project", project.id):
                    raise Unauthorized(
                        "The user has no role on the requested project, or it does not exist."
                    )
                return Scope(project_id=project.id)
            if kind == "domain":
                domain = self.core.domain_by_ref(s, ref)
                if not self.core.role_ids_on(s, user_id, "domain", domain.id):
                    raise Unauthorized("The user has no role on the requested domain.")
                return Scope(domain_id=domain.id)
            if kind == "system":
                if not isinstance(ref, dict) or ref.get("all") is not True:
                    raise BadRequest('auth.scope.system must be {"all": true}')
                if not self.core.role_ids_on(s, user_id, "system", "all"):
                    raise Unauthorized("The user has no role on the system.")
                return Scope(system=True)
        raise BadRequest(f"unknown scope {kind!r}; use project, domain or system")

    # ------------------------------------------------------------------ validation and revocation

    def validate(self, token: str) -> TokenView | None:
        """The token's view, or None if it is malformed, expired, revoked or no longer valid."""
        self.core.follow_changes()
        payload = self.core.tokens.read(token)
        if payload is None:
            return None
        if payload.expires_at <= self.core.clock.timestamp():
            return None
        return self._view(token, payload)

    def _view(self, token: str, payload: TokenPayload) -> TokenView | None:
        key = (
            payload.user_id,
            payload.project_id,
            payload.domain_id,
            payload.system,
            payload.app_cred_id,
            payload.trust_id,
        )
        resolved = self.core.resolved.get(key)
        if resolved is None or resolved.generation != self.core.generation:
            resolved = self._resolve(payload)
            self.core.resolved[key] = resolved
        if resolved.error is not None:
            return None
        if self.core.revoked.is_revoked(payload, resolved.user_domain_id):
            return None
        return TokenView(
            token=token,
            payload=payload,
            user=resolved.user,
            user_domain_id=resolved.user_domain_id,
            roles=resolved.roles,
            project=resolved.project,
            domain=resolved.domain,
            app_cred=resolved.app_cred,
            trust=resolved.trust,
            access_rules=resolved.access_rules,
        )

    def _resolve(self, payload: TokenPayload) -> ResolvedToken:
        generation = self.core.generation
        with self.core.db.session() as s:

            def fail(reason: str) -> ResolvedToken:
                return ResolvedToken(generation, {}, "", [], None, None, None, error=reason)

            user = s.get(m.User, payload.user_id)
            if user is None or not user.enabled:
                return fail("user gone or disabled")
            user_domain = s.get(m.Domain, user.domain_id)
            if user_domain is None or not user_domain.enabled:
                return fail("user's domain disabled")
            user_ref = {
                "id": user.id,
                "name": user.name,
                "domain": {"id": user_domain.id, "name": user_domain.name},
                "password_expires_at": None,
            }
            project_ref = domain_ref = app_ref = trust_ref = None
            limits: tuple[AllowedCall, ...] | None = None
            role_ids: set[str] = set()
            if payload.project_id:
                project = s.get(m.Project, payload.project_id)
                if project is None or not project.enabled:
                    return fail("project gone or disabled")
                pdomain = s.get(m.Domain, project.domain_id)
                if pdomain is None or not pdomain.enabled:
                    return fail("project's domain disabled")
                project_ref = {
                    "id": project.id,
                    "name": project.name,
                    "domain": {"id": pdomain.id, "name": pdomain.name},
                }
                role_ids = self.core.role_ids_on(s, user.id, "project", project.id)
                if payload.trust_id:
                    try:
                        role_ids, trust_ref = self.trusts.resolve(s, payload.trust_id, user.id)
                    except Unauthorized as exc:
                        return fail(str(exc))
            elif payload.domain_id:
                domain = s.get(m.Domain, payload.domain_id)
                if domain is None or not domain.enabled:
                    return fail("domain gone or disabled")
                domain_ref = {"id": domain.id, "name": domain.name}
                role_ids = self.core.role_ids_on(s, user.id, "domain", domain.id)
            elif payload.system:
                role_ids = self.core.role_ids_on(s, user.id, "system", "all")
            if payload.app_cred_id:
                cred = s.get(m.ApplicationCredential, payload.app_cred_id)
                if cred is None or cred.user_id != user.id:
                    return fail("application credential gone")
                # Delegated roles are checked against the effective ones, as Keystone
                # does: a member may delegate just `reader`.
                role_ids = self.core.implied_role_ids(s, role_ids) & set(cred.role_ids)
                app_ref = {"id": cred.id, "name": cred.name, "restricted": not cred.unrestricted}
                rules = access_rules_of(s, [cred.id]).get(cred.id)
                if rules:
                    app_ref["access_rules"] = [access_rule_ref(r) for r in rules]
                    limits = tuple(AllowedCall(r.service, r.path, r.method) for r in rules)
            scoped = bool(payload.project_id or payload.domain_id or payload.system)
            if scoped and not role_ids:
                return fail("no role left on the scope")
            roles = self.core.expand_implied(s, self.core.roles_by_ids(s, sorted(role_ids)))
            # a domain-specific role only implies others: tokens carry global roles
            roles = [r for r in roles if r.domain_id is None]
            return ResolvedToken(
                generation,
                user_ref,
                user.domain_id,
                [{"id": r.id, "name": r.name} for r in roles],
                project_ref,
                domain_ref,
                app_ref,
                trust=trust_ref,
                access_rules=limits,
            )

    def revoke_token(self, ctx: RequestContext, token: str) -> None:
        view = self.validate(token)
        if view is None:
            raise NotFound("Could not find token: the token is invalid, expired or revoked.")
        if not ctx.is_admin and view.payload.user_id != ctx.user_id:
            raise NotFound("Could not find token: the token is invalid, expired or revoked.")
        with self.core.db.session() as s:
            self.core.revoke(s, audit_id=view.payload.audit_ids[0])
        self.core.changed()  # other API processes must drop it too


def _identity_methods(auth: dict[str, Any]) -> tuple[dict[str, Any], list[str]]:
    """`auth.identity` and its methods: distinct strings, each with its own member."""
    identity = auth.get("identity")
    if not isinstance(identity, dict):
        raise BadRequest("auth.identity is required")
    methods = identity.get("methods")
    if not isinstance(methods, list) or not methods or not all(isinstance(x, str) for x in methods):
        raise BadRequest("auth.identity.methods must be a non-empty list of strings")
    if len(set(methods)) != len(methods):
        raise BadRequest("auth.identity.methods must not repeat a method")
    for method in methods:
        if method not in identity:
            raise BadRequest(f"auth.identity.{method[:64]} is required")
    return identity, methods
