"""Identity rules: who exists, who may act where, and tokens. Knows nothing of HTTP.

Every mutating method commits, bumps the generation so cached token views are
rebuilt, and records the revocation events its change implies (user disabled,
password changed, role removed, project disabled or deleted).
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import hmac
import json
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import bcrypt
from cryptography.fernet import Fernet, InvalidToken
from sqlalchemy import ColumnElement, Select, and_, delete, or_, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from souverain.common.changes import ChangeCounter
from souverain.common.clock import Clock, as_utc, isotime
from souverain.common.context import RequestContext
from souverain.common.errors import BadRequest, Conflict, Forbidden, NotFound, Unauthorized
from souverain.common.ids import new_id, new_secret
from souverain.common.policy import IMPLIED_ROLES, enforce
from souverain.db.engine import Database
from souverain.identity import assignments
from souverain.identity import models as m
from souverain.identity.tokens import (
    RevocationList,
    RevocationRule,
    TokenFormatter,
    TokenPayload,
    new_audit_id,
    to_timestamp,
)

DEFAULT_DOMAIN_ID = "default"
INVALID_CREDENTIALS = "The request you have made requires authentication."


@dataclass(frozen=True)
class IdentityPolicySettings:
    token_expiration: int = 3600
    bcrypt_rounds: int = 12
    password_min_length: int = 8
    lockout_failure_attempts: int = 6
    lockout_duration: int = 1800
    hash_concurrency: int = 1


@dataclass(frozen=True)
class CatalogEntry:
    """A running service and the path under the public base URL where it answers."""

    type: str
    name: str
    path: str
    url: str = ""  # a service on a listener of its own (S3): its whole base URL


@dataclass
class TokenView:
    """A validated token with everything a response or a policy decision needs."""

    token: str
    payload: TokenPayload
    user: dict[str, Any]
    user_domain_id: str
    roles: list[dict[str, Any]]
    project: dict[str, Any] | None = None
    domain: dict[str, Any] | None = None
    app_cred: dict[str, Any] | None = None

    def context(self, request_id: str = "") -> RequestContext:
        return RequestContext(
            user_id=self.payload.user_id,
            user_domain_id=self.user_domain_id,
            roles=frozenset(r["name"] for r in self.roles),
            project_id=self.payload.project_id,
            project_domain_id=(self.project or {}).get("domain", {}).get("id"),
            domain_id=self.payload.domain_id,
            system_scope=self.payload.system,
            application_credential_id=self.payload.app_cred_id,
            request_id=request_id,
        )


@dataclass
class _Resolved:
    """The part of a TokenView that depends on the database, cached per generation."""

    generation: int
    user: dict[str, Any]
    user_domain_id: str
    roles: list[dict[str, Any]]
    project: dict[str, Any] | None
    domain: dict[str, Any] | None
    app_cred: dict[str, Any] | None
    error: str | None = None


@dataclass(frozen=True)
class Ec2Principal:
    """The owner of an EC2-style access key, as the S3 service needs it."""

    secret: str
    user_id: str
    project_id: str
    roles: frozenset[str]

    def __repr__(self) -> str:  # never show the secret
        return f"Ec2Principal(user_id={self.user_id!r}, project_id={self.project_id!r})"


@dataclass
class Scope:
    project_id: str | None = None
    domain_id: str | None = None
    system: bool = False


def _bcrypt_input(secret: str) -> bytes:
    """bcrypt reads only 72 bytes: hash longer secrets down first so every byte counts."""
    raw = secret.encode()
    if len(raw) <= 72:
        return raw
    return b"sha256:" + base64.b64encode(hashlib.sha256(raw).digest())


def hash_secret(secret: str, rounds: int) -> str:
    return bcrypt.hashpw(_bcrypt_input(secret), bcrypt.gensalt(rounds)).decode()


def check_secret(secret: str, hashed: str) -> bool:
    try:
        return bcrypt.checkpw(_bcrypt_input(secret), hashed.encode())
    except ValueError:
        return False


def ec2_credential_id(access: str) -> str:
    return hashlib.sha256(access.encode()).hexdigest()


def _naive(value: dt.datetime) -> dt.datetime:
    return value.astimezone(dt.UTC).replace(tzinfo=None)


class IdentityService:
    def __init__(
        self,
        db: Database,
        tokens: TokenFormatter,
        credential_key: bytes,
        settings: IdentityPolicySettings,
        clock: Clock | None = None,
        changes: ChangeCounter | None = None,
    ) -> None:
        self.db = db
        self.changes = changes
        self._seen_change = changes.value() if changes is not None else 0
        self.tokens = tokens
        self.settings = settings
        self.clock = clock or Clock()
        self._credential_fernet = Fernet(credential_key)
        self._generation = 0
        self._lock = threading.Lock()
        self._resolved: dict[tuple[Any, ...], _Resolved] = {}
        self._revoked = RevocationList()
        self._catalog: tuple[int, list[dict[str, Any]]] | None = None
        self._scope_cache: dict[tuple[str, str], tuple[int, Scope]] = {}
        self._ec2_cache: dict[str, tuple[int, Ec2Principal | None]] = {}
        self._shared_generation: int | None = None
        # Slow hashes run on threads; more at once than this process's share of the
        # cores only adds switching, so they queue for a slot instead.
        self._hash_slots = threading.BoundedSemaphore(max(1, settings.hash_concurrency))
        self._dummy_hash = hash_secret(new_secret(), settings.bcrypt_rounds)
        self.sync_from_store()

    # ------------------------------------------------------------------ plumbing

    def _hash_secret(self, secret: str) -> str:
        with self._hash_slots:
            return hash_secret(secret, self.settings.bcrypt_rounds)

    def _check_secret(self, secret: str, hashed: str) -> bool:
        with self._hash_slots:
            return check_secret(secret, hashed)

    def _changed(self) -> None:
        """Drop cached token views here, and tell other API processes to do the same."""
        self._bump_local()
        with self.db.session() as s:
            s.execute(
                update(m.IdentityState)
                .where(m.IdentityState.id == 1)
                .values(generation=m.IdentityState.generation + 1)
            )
        if self.changes is not None:
            seen = self._seen_change
            new = self.changes.bump()
            if new == seen + 1:  # nobody else changed anything meanwhile: nothing to reload
                self._seen_change = new

    def follow_changes(self) -> None:
        """Before trusting caches: has another process on this host changed identity data?"""
        if self.changes is None:
            return
        current = self.changes.value()
        if current != self._seen_change:
            self._seen_change = current
            self.sync_from_store()

    def _bump_local(self) -> None:
        with self._lock:
            self._generation += 1
            if len(self._resolved) > 100_000:
                self._resolved.clear()

    def sync_from_store(self) -> bool:
        """Pick up changes other processes made (revocations, roles, users); cheap when none.

        Called about once a second by the server; with one process it finds nothing new.
        """
        with self.db.session() as s:
            shared = s.scalar(select(m.IdentityState.generation).where(m.IdentityState.id == 1))
        if shared is None or shared == self._shared_generation:
            return False
        self._shared_generation = shared
        self.load_revocations()
        self._bump_local()
        return True

    def _now(self) -> dt.datetime:
        return self.clock.now()

    def load_revocations(self) -> None:
        now = self._now()
        with self.db.session() as s:
            rows = s.scalars(
                select(m.RevocationEvent).where(m.RevocationEvent.expires_at > _naive(now))
            ).all()
            self._revoked = RevocationList()
            self._revoked.extend(self._rule(row) for row in rows)

    @staticmethod
    def _rule(row: m.RevocationEvent) -> RevocationRule:
        return RevocationRule(
            issued_before=to_timestamp(row.issued_before),
            expires_at=to_timestamp(row.expires_at),
            user_id=row.user_id,
            project_id=row.project_id,
            domain_id=row.domain_id,
            audit_id=row.audit_id,
            app_cred_id=row.app_cred_id,
        )

    def _revoke(self, s: Session, **match: str | None) -> None:
        """Record that every matching token issued until now is revoked."""
        now = self._now()
        row = m.RevocationEvent(
            issued_before=_naive(now),
            expires_at=_naive(now + dt.timedelta(seconds=self.settings.token_expiration)),
            **match,
        )
        s.add(row)
        s.flush()
        self._revoked.add(self._rule(row))

    # ------------------------------------------------------------------ shaping

    @staticmethod
    def domain_ref(d: m.Domain) -> dict[str, Any]:
        return {
            "id": d.id,
            "name": d.name,
            "description": d.description,
            "enabled": d.enabled,
            "tags": list(d.tags or []),
            "options": {},
        }

    @staticmethod
    def project_ref(p: m.Project) -> dict[str, Any]:
        return {
            "id": p.id,
            "name": p.name,
            "domain_id": p.domain_id,
            "parent_id": p.parent_id or p.domain_id,
            "description": p.description,
            "enabled": p.enabled,
            "is_domain": False,
            "tags": list(p.tags or []),
            "options": {},
        }

    def user_ref(self, u: m.User) -> dict[str, Any]:
        ref = dict(u.extra or {})
        ref.update(
            {
                "id": u.id,
                "name": u.name,
                "domain_id": u.domain_id,
                # A locked-out account shows as disabled: `openstack user set --enable`
                # only sends what differs from what it read, and enabling is the unlock.
                "enabled": u.enabled and self._locked_until(u) is None,
                "password_expires_at": None,
                "options": {},
            }
        )
        if u.default_project_id:
            ref["default_project_id"] = u.default_project_id
        return ref

    @staticmethod
    def group_ref(g: m.Group) -> dict[str, Any]:
        return {"id": g.id, "name": g.name, "domain_id": g.domain_id, "description": g.description}

    @staticmethod
    def role_ref(r: m.Role) -> dict[str, Any]:
        return {
            "id": r.id,
            "name": r.name,
            "domain_id": r.domain_id,
            "description": r.description,
            "options": {},
        }

    @staticmethod
    def region_ref(r: m.Region) -> dict[str, Any]:
        return {"id": r.id, "description": r.description, "parent_region_id": r.parent_region_id}

    @staticmethod
    def service_ref(sv: m.Service) -> dict[str, Any]:
        return {
            "id": sv.id,
            "type": sv.type,
            "name": sv.name,
            "description": sv.description,
            "enabled": sv.enabled,
        }

    @staticmethod
    def endpoint_ref(e: m.Endpoint) -> dict[str, Any]:
        return {
            "id": e.id,
            "service_id": e.service_id,
            "region_id": e.region_id,
            "region": e.region_id,
            "interface": e.interface,
            "url": e.url,
            "enabled": e.enabled,
        }

    def app_cred_ref(self, s: Session, a: m.ApplicationCredential) -> dict[str, Any]:
        return self.app_cred_refs(s, [a])[0]

    def app_cred_refs(
        self, s: Session, creds: Sequence[m.ApplicationCredential]
    ) -> list[dict[str, Any]]:
        """Many application credentials, with the roles of all of them in one query."""
        roles = {r.id: r for r in self._roles_by_ids(s, [i for a in creds for i in a.role_ids])}
        # by role id, as `id IN (...)` on the primary key lists them
        return [
            self._app_cred_body(a, [roles[i] for i in sorted(set(a.role_ids)) if i in roles])
            for a in creds
        ]

    def _app_cred_body(self, a: m.ApplicationCredential, role_rows: list[m.Role]) -> dict[str, Any]:
        roles = [self.role_ref(r) for r in role_rows]
        return {
            "id": a.id,
            "name": a.name,
            "description": a.description,
            "user_id": a.user_id,
            "project_id": a.project_id,
            "expires_at": isotime(a.expires_at),
            "unrestricted": a.unrestricted,
            "roles": [
                {"id": r["id"], "name": r["name"], "domain_id": r["domain_id"]} for r in roles
            ],
            "access_rules": [],
        }

    def credential_ref(self, c: m.Credential) -> dict[str, Any]:
        return {
            "id": c.id,
            "user_id": c.user_id,
            "project_id": c.project_id,
            "type": c.type,
            "blob": self._decrypt_blob(c.blob),
        }

    # ------------------------------------------------------------------ lookups

    def _get(self, s: Session, model: type[Any], ident: str, label: str) -> Any:
        obj = s.get(model, ident) if ident else None
        if obj is None:
            raise NotFound(f"Could not find {label}: {ident}.")
        return obj

    def _domain_by_ref(self, s: Session, ref: dict[str, Any]) -> m.Domain:
        if not isinstance(ref, dict):
            raise BadRequest("domain must be an object with an id or a name")
        if ref.get("id"):
            domain = s.get(m.Domain, str(ref["id"]))
            if domain is None:
                raise Unauthorized(INVALID_CREDENTIALS)
            return domain
        if ref.get("name"):
            found = s.scalars(select(m.Domain).where(m.Domain.name == str(ref["name"]))).first()
            if found is None:
                raise Unauthorized(INVALID_CREDENTIALS)
            return found
        raise BadRequest("domain must have an id or a name")

    def _roles_by_ids(self, s: Session, ids: Sequence[str]) -> list[m.Role]:
        if not ids:
            return []
        return list(s.scalars(select(m.Role).where(m.Role.id.in_(sorted(set(ids))))).all())

    def _group_ids_of(self, s: Session, user_id: str) -> list[str]:
        return list(
            s.scalars(select(m.GroupMember.group_id).where(m.GroupMember.user_id == user_id)).all()
        )

    def _role_ids_on(self, s: Session, user_id: str, target_type: str, target_id: str) -> set[str]:
        """The roles the user holds on the target, directly or through its groups: one query
        (token validation and every S3 key lookup pass here; a user may be in many groups)."""
        return set(s.scalars(assignments.role_ids_on(user_id, target_type, target_id)).all())

    def _expand_implied(self, s: Session, roles: list[m.Role]) -> list[m.Role]:
        names = {r.name for r in roles}
        wanted = set(names)
        for name in names:
            wanted |= IMPLIED_ROLES.get(name, frozenset())
        extra = wanted - names
        if extra:
            roles = roles + list(
                s.scalars(
                    select(m.Role).where(m.Role.name.in_(sorted(extra)), m.Role.domain_id.is_(None))
                ).all()
            )
        return sorted(roles, key=lambda r: r.name)

    def _implied_role_ids(self, s: Session, role_ids: set[str]) -> set[str]:
        """The ids of these roles and of every role they imply."""
        return {r.id for r in self._expand_implied(s, self._roles_by_ids(s, sorted(role_ids)))}

    # ------------------------------------------------------------------ catalog

    def catalog(self) -> list[dict[str, Any]]:
        cached = self._catalog
        if cached is not None and cached[0] == self._generation:
            return cached[1]
        generation = self._generation
        with self.db.session() as s:
            services = s.scalars(select(m.Service).where(m.Service.enabled.is_(True))).all()
            endpoints = s.scalars(select(m.Endpoint).where(m.Endpoint.enabled.is_(True))).all()
            by_service: dict[str, list[dict[str, Any]]] = {}
            for e in endpoints:
                by_service.setdefault(e.service_id, []).append(
                    {
                        "id": e.id,
                        "interface": e.interface,
                        "region": e.region_id,
                        "region_id": e.region_id,
                        "url": e.url,
                    }
                )
            catalog = [
                {
                    "id": sv.id,
                    "type": sv.type,
                    "name": sv.name,
                    "endpoints": by_service.get(sv.id, []),
                }
                for sv in services
            ]
        self._catalog = (generation, catalog)
        return catalog

    # ------------------------------------------------------------------ authentication

    def authenticate(self, auth: dict[str, Any]) -> TokenView:
        """Check the identity methods, pick the scope, issue a token. Runs off the event loop."""
        self.follow_changes()
        identity = auth.get("identity")
        if not isinstance(identity, dict):
            raise BadRequest("auth.identity is required")
        methods = identity.get("methods")
        if (
            not isinstance(methods, list)
            or not methods
            or not all(isinstance(x, str) for x in methods)
        ):
            raise BadRequest("auth.identity.methods must be a non-empty list of strings")
        if len(methods) != 1:
            raise Unauthorized("Exactly one authentication method is supported per request.")
        method = methods[0]
        if method not in identity:
            raise BadRequest(f"auth.identity.{method} is required")
        scope_req = auth.get("scope")
        now = self._now()
        expires = now + dt.timedelta(seconds=self.settings.token_expiration)
        audit_ids: tuple[str, ...] = (new_audit_id(),)
        app_cred_id: str | None = None
        inherited: tuple[str, ...] = ()
        if method == "password":
            user_id = self._auth_password(identity["password"])
        elif method == "token":
            parent = self._auth_token(identity["token"])
            user_id = parent.payload.user_id
            expires = dt.datetime.fromtimestamp(parent.payload.expires_at, dt.UTC)
            audit_ids = (new_audit_id(), parent.payload.audit_ids[-1])
            inherited = parent.payload.methods
            if parent.payload.app_cred_id:
                app_cred_id = parent.payload.app_cred_id
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
            raise Unauthorized(f"Attempted to authenticate with an unsupported method: {method}.")
        scope = self._resolve_scope(user_id, scope_req)
        if app_cred_id and method == "token":
            scope_expected = self._app_cred_project(app_cred_id)
            if scope.project_id != scope_expected:
                raise Forbidden("A token from an application credential cannot be re-scoped.")
        payload = TokenPayload(
            user_id=user_id,
            # A re-scoped token keeps the methods that proved the identity, as Keystone does.
            methods=tuple(dict.fromkeys((method, *inherited))),
            expires_at=expires.timestamp(),
            issued_at=now.timestamp(),
            audit_ids=audit_ids,
            project_id=scope.project_id,
            domain_id=scope.domain_id,
            system=scope.system,
            app_cred_id=app_cred_id,
        )
        token = self.tokens.issue(payload)
        view = self._view(token, payload)
        if view is None:
            raise Unauthorized(INVALID_CREDENTIALS)
        return view

    def _locked_until(self, user: m.User) -> dt.datetime | None:
        attempts = self.settings.lockout_failure_attempts
        if not attempts or user.failed_auth_count < attempts or user.failed_auth_at is None:
            return None
        until = as_utc(user.failed_auth_at) + dt.timedelta(seconds=self.settings.lockout_duration)
        return until if until > self._now() else None

    def _auth_password(self, body: Any) -> str:
        user_ref = body.get("user") if isinstance(body, dict) else None
        if not isinstance(user_ref, dict):
            raise BadRequest("auth.identity.password.user is required")
        password = user_ref.get("password")
        if not isinstance(password, str):
            raise BadRequest("auth.identity.password.user.password must be a string")
        with self.db.session() as s:
            user: m.User | None = None
            if user_ref.get("id"):
                user = s.get(m.User, str(user_ref["id"]))
            elif user_ref.get("name"):
                if "domain" not in user_ref:
                    raise BadRequest("a user given by name needs its domain (id or name)")
                try:
                    domain = self._domain_by_ref(s, user_ref["domain"])
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
        hashed = user.password_hash if user and user.password_hash else self._dummy_hash
        ok = self._check_secret(password, hashed)
        if user is None or not user.password_hash:
            raise Unauthorized(INVALID_CREDENTIALS)
        self._refuse_if_locked(user)
        with self.db.session() as s:
            if not ok:
                self._count_failed_login(s, user)
                raise Unauthorized(INVALID_CREDENTIALS)
            if user.failed_auth_count:
                s.execute(
                    update(m.User)
                    .where(m.User.id == user.id)
                    .values(failed_auth_count=0, failed_auth_at=None)
                )
            self._check_user_enabled(s, user)
            return user.id

    def _refuse_if_locked(self, user: m.User) -> None:
        locked = self._locked_until(user)
        if locked is not None:
            raise Unauthorized(
                "The account is locked after too many failed logins. Try again after "
                f"{isotime(locked)} or ask an administrator to unlock it."
            )

    def _count_failed_login(self, s: Session, user: m.User) -> None:
        """Count a wrong password and commit it, even though the caller then raises."""
        # Counted in SQL, not read-modify-write: wrong guesses sent in parallel
        # must each count, or a burst of them never reaches the lockout.
        restart = self._locked_was_expired(user)
        s.execute(
            update(m.User)
            .where(m.User.id == user.id)
            .values(
                failed_auth_count=1 if restart else m.User.failed_auth_count + 1,
                failed_auth_at=_naive(self._now()),
            )
        )
        s.commit()

    def _locked_was_expired(self, user: m.User) -> bool:
        attempts = self.settings.lockout_failure_attempts
        return bool(attempts) and user.failed_auth_count >= attempts

    def _check_user_enabled(self, s: Session, user: m.User) -> None:
        domain = s.get(m.Domain, user.domain_id)
        if not user.enabled or domain is None or not domain.enabled:
            raise Unauthorized(INVALID_CREDENTIALS)

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
        with self.db.session() as s:
            cred: m.ApplicationCredential | None = None
            if body.get("id"):
                cred = s.get(m.ApplicationCredential, str(body["id"]))
            elif body.get("name") and isinstance(body.get("user"), dict):
                user_ref = body["user"]
                user_id = user_ref.get("id")
                if not user_id and user_ref.get("name") and "domain" in user_ref:
                    try:
                        domain = self._domain_by_ref(s, user_ref["domain"])
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
            hashed = cred.secret_hash if cred else self._dummy_hash
            ok = self._check_secret(body["secret"], hashed)
            if cred is None or not ok:
                raise Unauthorized(INVALID_CREDENTIALS)
            expiry = as_utc(cred.expires_at) if cred.expires_at else None
            if expiry is not None and expiry <= self._now():
                raise Unauthorized("The application credential has expired.")
            user = s.get(m.User, cred.user_id)
            if user is None:
                raise Unauthorized(INVALID_CREDENTIALS)
            self._check_user_enabled(s, user)
            return cred.user_id, cred.id, cred.project_id, expiry

    def _app_cred_project(self, app_cred_id: str) -> str | None:
        with self.db.session() as s:
            cred = s.get(m.ApplicationCredential, app_cred_id)
            return cred.project_id if cred else None

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
        generation = self._generation
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
        with self.db.session() as s:
            if kind == "project":
                if not isinstance(ref, dict):
                    raise BadRequest("auth.scope.project must be an object")
                project: m.Project | None = None
                if ref.get("id"):
                    project = s.get(m.Project, str(ref["id"]))
                elif ref.get("name"):
                    if "domain" not in ref:
                        raise BadRequest("a project given by name needs its domain (id or name)")
                    domain = self._domain_by_ref(s, ref["domain"])
                    project = s.scalars(
                        select(m.Project).where(
                            m.Project.domain_id == domain.id, m.Project.name == str(ref["name"])
                        )
                    ).first()
                else:
                    raise BadRequest("auth.scope.project needs an id or a name")
                if project is None or not self._role_ids_on(s, user_id, "project", project.id):
                    raise Unauthorized(
                        "The user has no role on the requested project, or it does not exist."
                    )
                return Scope(project_id=project.id)
            if kind == "domain":
                domain = self._domain_by_ref(s, ref)
                if not self._role_ids_on(s, user_id, "domain", domain.id):
                    raise Unauthorized("The user has no role on the requested domain.")
                return Scope(domain_id=domain.id)
            if kind == "system":
                if not isinstance(ref, dict) or ref.get("all") is not True:
                    raise BadRequest('auth.scope.system must be {"all": true}')
                if not self._role_ids_on(s, user_id, "system", "all"):
                    raise Unauthorized("The user has no role on the system.")
                return Scope(system=True)
            if kind == "OS-TRUST:trust":
                raise Unauthorized("Trusts are not supported.")
        raise BadRequest(f"unknown scope {kind!r}; use project, domain or system")

    # ------------------------------------------------------------------ validation

    def validate(self, token: str) -> TokenView | None:
        """The token's view, or None if it is malformed, expired, revoked or no longer valid."""
        self.follow_changes()
        payload = self.tokens.read(token)
        if payload is None:
            return None
        if payload.expires_at <= self.clock.timestamp():
            return None
        return self._view(token, payload)

    def _view(self, token: str, payload: TokenPayload) -> TokenView | None:
        key = (
            payload.user_id,
            payload.project_id,
            payload.domain_id,
            payload.system,
            payload.app_cred_id,
        )
        resolved = self._resolved.get(key)
        if resolved is None or resolved.generation != self._generation:
            resolved = self._resolve(payload)
            self._resolved[key] = resolved
        if resolved.error is not None:
            return None
        if self._revoked.is_revoked(payload, resolved.user_domain_id):
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
        )

    def _resolve(self, payload: TokenPayload) -> _Resolved:
        generation = self._generation
        with self.db.session() as s:

            def fail(reason: str) -> _Resolved:
                return _Resolved(generation, {}, "", [], None, None, None, error=reason)

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
            project_ref = domain_ref = app_ref = None
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
                role_ids = self._role_ids_on(s, user.id, "project", project.id)
            elif payload.domain_id:
                domain = s.get(m.Domain, payload.domain_id)
                if domain is None or not domain.enabled:
                    return fail("domain gone or disabled")
                domain_ref = {"id": domain.id, "name": domain.name}
                role_ids = self._role_ids_on(s, user.id, "domain", domain.id)
            elif payload.system:
                role_ids = self._role_ids_on(s, user.id, "system", "all")
            if payload.app_cred_id:
                cred = s.get(m.ApplicationCredential, payload.app_cred_id)
                if cred is None or cred.user_id != user.id:
                    return fail("application credential gone")
                # Delegated roles are checked against the effective ones, as Keystone
                # does: a member may delegate just `reader`.
                role_ids = self._implied_role_ids(s, role_ids) & set(cred.role_ids)
                app_ref = {"id": cred.id, "name": cred.name, "restricted": not cred.unrestricted}
            scoped = bool(payload.project_id or payload.domain_id or payload.system)
            if scoped and not role_ids:
                return fail("no role left on the scope")
            roles = self._expand_implied(s, self._roles_by_ids(s, sorted(role_ids)))
            return _Resolved(
                generation,
                user_ref,
                user.domain_id,
                [{"id": r.id, "name": r.name} for r in roles],
                project_ref,
                domain_ref,
                app_ref,
            )

    def revoke_token(self, ctx: RequestContext, token: str) -> None:
        view = self.validate(token)
        if view is None:
            raise NotFound("Could not find token: the token is invalid, expired or revoked.")
        if not ctx.is_admin and view.payload.user_id != ctx.user_id:
            raise NotFound("Could not find token: the token is invalid, expired or revoked.")
        with self.db.session() as s:
            self._revoke(s, audit_id=view.payload.audit_ids[0])
        self._changed()  # other API processes must drop it too

    # ------------------------------------------------------------------ visibility

    # Each rule is a SQL condition, so a listing filters in the database instead of
    # loading every project or user and keeping the visible ones.

    @staticmethod
    def _held_project_ids(ctx: RequestContext) -> Select[str]:
        """Projects a non-admin caller may see: those it holds a role on."""
        groups = select(m.GroupMember.group_id).where(m.GroupMember.user_id == ctx.user_id)
        return select(m.Assignment.target_id).where(
            or_(m.Assignment.actor_id == ctx.user_id, m.Assignment.actor_id.in_(groups)),
            m.Assignment.target_type == "project",
        )

    def _visible_project_ids(self, s: Session, ctx: RequestContext) -> set[str]:
        return set(s.scalars(self._held_project_ids(ctx)).all())

    @staticmethod
    def _visible_users(ctx: RequestContext) -> ColumnElement[bool]:
        """Users a non-admin caller may see: itself and the members of its scoped project."""
        itself = m.User.id == ctx.user_id
        if not ctx.project_id:
            return itself
        here = and_(m.Assignment.target_type == "project", m.Assignment.target_id == ctx.project_id)
        # actor types are "user" and "group": `!= "group"` picks the same rows as `== "user"`
        # and lets the database find them by project (an index), not among all users' rows
        users = select(m.Assignment.actor_id).where(here, m.Assignment.actor_type != "group")
        groups = select(m.Assignment.actor_id).where(here, m.Assignment.actor_type != "user")
        members = select(m.GroupMember.user_id).where(m.GroupMember.group_id.in_(groups))
        return or_(itself, m.User.id.in_(users), m.User.id.in_(members))

    # ------------------------------------------------------------------ domains

    def list_domains(self, ctx: RequestContext, filters: dict[str, Any]) -> list[dict[str, Any]]:
        enforce(ctx, "identity:list_domains")
        with self.db.session() as s:
            query = select(m.Domain).order_by(m.Domain.name)
            if "name" in filters:
                query = query.where(m.Domain.name == filters["name"])
            if "enabled" in filters:
                query = query.where(m.Domain.enabled.is_(filters["enabled"]))
            rows = s.scalars(query).all()
            if not ctx.is_admin:
                allowed = {ctx.user_domain_id, ctx.project_domain_id, ctx.domain_id}
                rows = [d for d in rows if d.id in allowed]
            return [self.domain_ref(d) for d in rows]

    def get_domain(self, ctx: RequestContext, domain_id: str) -> dict[str, Any]:
        enforce(ctx, "identity:get_domain")
        with self.db.session() as s:
            d = self._get(s, m.Domain, domain_id, "domain")
            if not ctx.is_admin and d.id not in {
                ctx.user_domain_id,
                ctx.project_domain_id,
                ctx.domain_id,
            }:
                raise NotFound(f"Could not find domain: {domain_id}.")
            return self.domain_ref(d)

    def create_domain(self, ctx: RequestContext, data: dict[str, Any]) -> dict[str, Any]:
        enforce(ctx, "identity:create_domain")
        with self.db.session() as s:
            d = m.Domain(
                id=data.get("id") or new_id(),
                name=data["name"],
                description=data.get("description") or "",
                enabled=data.get("enabled", True),
                tags=data.get("tags") or [],
            )
            s.add(d)
            self._flush_unique(s, f"Duplicate entry: a domain named {data['name']!r} exists.")
            ref = self.domain_ref(d)
        self._changed()
        return ref

    def update_domain(
        self, ctx: RequestContext, domain_id: str, data: dict[str, Any]
    ) -> dict[str, Any]:
        enforce(ctx, "identity:update_domain")
        with self.db.session() as s:
            d = self._get(s, m.Domain, domain_id, "domain")
            if d.id == DEFAULT_DOMAIN_ID and data.get("enabled") is False:
                raise Forbidden("The default domain cannot be disabled.")
            for key in ("name", "description", "enabled", "tags"):
                if key in data:
                    setattr(d, key, data[key] if data[key] is not None else "")
            if data.get("enabled") is False:
                self._revoke(s, domain_id=d.id)
            self._flush_unique(s, f"Duplicate entry: a domain named {d.name!r} exists.")
            ref = self.domain_ref(d)
        self._changed()
        return ref

    def delete_domain(self, ctx: RequestContext, domain_id: str) -> None:
        enforce(ctx, "identity:delete_domain")
        with self.db.session() as s:
            d = self._get(s, m.Domain, domain_id, "domain")
            if d.enabled:
                raise Forbidden("Disable the domain before deleting it.")
            for model in (m.Project, m.User, m.Group):
                if s.scalars(select(model).where(model.domain_id == d.id)).first() is not None:
                    raise Conflict(
                        f"The domain still holds {model.__name__.lower()}s; delete them first."
                    )
            s.execute(
                delete(m.Assignment).where(
                    m.Assignment.target_type == "domain", m.Assignment.target_id == d.id
                )
            )
            s.delete(d)
        self._changed()

    # ------------------------------------------------------------------ projects

    def list_projects(self, ctx: RequestContext, filters: dict[str, Any]) -> list[dict[str, Any]]:
        enforce(ctx, "identity:list_projects")
        with self.db.session() as s:
            query = select(m.Project).order_by(m.Project.name, m.Project.id)
            for key in ("name", "domain_id"):
                if key in filters:
                    query = query.where(getattr(m.Project, key) == filters[key])
            if "parent_id" in filters:
                # A top-level project is shown with its domain as parent; filter the same way.
                parent = filters["parent_id"]
                query = query.where(
                    or_(
                        m.Project.parent_id == parent,
                        and_(m.Project.parent_id.is_(None), m.Project.domain_id == parent),
                    )
                )
            if "enabled" in filters:
                query = query.where(m.Project.enabled.is_(filters["enabled"]))
            if not ctx.is_admin:
                query = query.where(m.Project.id.in_(self._held_project_ids(ctx)))
            return [self.project_ref(p) for p in s.scalars(query).all()]

    def get_project(self, ctx: RequestContext, project_id: str) -> dict[str, Any]:
        enforce(ctx, "identity:get_project")
        with self.db.session() as s:
            p = self._get(s, m.Project, project_id, "project")
            if not ctx.is_admin and p.id not in self._visible_project_ids(s, ctx):
                raise NotFound(f"Could not find project: {project_id}.")
            return self.project_ref(p)

    def create_project(self, ctx: RequestContext, data: dict[str, Any]) -> dict[str, Any]:
        enforce(ctx, "identity:create_project")
        if data.get("is_domain"):
            raise BadRequest("Projects acting as domains are not supported; create a domain.")
        with self.db.session() as s:
            domain_id = data.get("domain_id") or ctx.project_domain_id or DEFAULT_DOMAIN_ID
            parent_id = data.get("parent_id")
            if parent_id and parent_id != domain_id:
                parent = s.get(m.Project, parent_id)
                if parent is None:
                    raise NotFound(f"Could not find project: {parent_id}.")
                if data.get("domain_id") and parent.domain_id != domain_id:
                    raise BadRequest("A project's parent must be in the same domain.")
                domain_id = parent.domain_id
            else:
                parent_id = None
            self._get(s, m.Domain, domain_id, "domain")
            p = m.Project(
                id=new_id(),
                name=data["name"],
                domain_id=domain_id,
                parent_id=parent_id,
                description=data.get("description") or "",
                enabled=data.get("enabled", True),
                tags=data.get("tags") or [],
            )
            s.add(p)
            self._flush_unique(
                s,
                f"Conflict occurred attempting to store project - it is not permitted to "
                f"have two projects with the same name in the same domain : {data['name']}.",
            )
            ref = self.project_ref(p)
        self._changed()
        return ref

    def update_project(
        self, ctx: RequestContext, project_id: str, data: dict[str, Any]
    ) -> dict[str, Any]:
        enforce(ctx, "identity:update_project")
        with self.db.session() as s:
            p = self._get(s, m.Project, project_id, "project")
            if "domain_id" in data and data["domain_id"] != p.domain_id:
                raise BadRequest("A project cannot move to another domain.")
            for key in ("name", "description", "enabled", "tags"):
                if key in data:
                    setattr(p, key, data[key] if data[key] is not None else "")
            if data.get("enabled") is False:
                self._revoke(s, project_id=p.id)
            self._flush_unique(s, f"Duplicate entry: a project named {p.name!r} exists.")
            ref = self.project_ref(p)
        self._changed()
        return ref

    def delete_project(self, ctx: RequestContext, project_id: str) -> None:
        enforce(ctx, "identity:delete_project")
        with self.db.session() as s:
            p = self._get(s, m.Project, project_id, "project")
            if s.scalars(select(m.Project).where(m.Project.parent_id == p.id)).first():
                raise Forbidden("The project has child projects; delete them first.")
            s.execute(
                delete(m.Assignment).where(
                    m.Assignment.target_type == "project", m.Assignment.target_id == p.id
                )
            )
            s.execute(
                delete(m.ApplicationCredential).where(m.ApplicationCredential.project_id == p.id)
            )
            s.execute(delete(m.Credential).where(m.Credential.project_id == p.id))
            self._revoke(s, project_id=p.id)
            s.delete(p)
        self._changed()

    def list_user_projects(self, ctx: RequestContext, user_id: str) -> list[dict[str, Any]]:
        with self.db.session() as s:
            self._owned_user(s, ctx, user_id)  # another user's list looks absent, not forbidden
            enforce(ctx, "identity:list_user_projects", owner_user_id=user_id)
            return self._projects_of(s, user_id)

    def _projects_of(self, s: Session, user_id: str) -> list[dict[str, Any]]:
        actors = [user_id, *self._group_ids_of(s, user_id)]
        ids = set(
            s.scalars(
                select(m.Assignment.target_id).where(
                    m.Assignment.actor_id.in_(actors), m.Assignment.target_type == "project"
                )
            ).all()
        )
        rows = s.scalars(
            select(m.Project).where(m.Project.id.in_(ids)).order_by(m.Project.name)
        ).all()
        return [self.project_ref(p) for p in rows]

    def auth_projects(self, ctx: RequestContext) -> list[dict[str, Any]]:
        with self.db.session() as s:
            return [p for p in self._projects_of(s, ctx.user_id) if p["enabled"]]

    def auth_domains(self, ctx: RequestContext) -> list[dict[str, Any]]:
        with self.db.session() as s:
            actors = [ctx.user_id, *self._group_ids_of(s, ctx.user_id)]
            ids = set(
                s.scalars(
                    select(m.Assignment.target_id).where(
                        m.Assignment.actor_id.in_(actors), m.Assignment.target_type == "domain"
                    )
                ).all()
            )
            rows = s.scalars(select(m.Domain).where(m.Domain.id.in_(ids))).all()
            return [self.domain_ref(d) for d in rows if d.enabled]

    def auth_system(self, ctx: RequestContext) -> list[dict[str, Any]]:
        with self.db.session() as s:
            return [{"all": True}] if self._role_ids_on(s, ctx.user_id, "system", "all") else []

    # ------------------------------------------------------------------ users

    def _check_password_policy(self, password: str) -> None:
        if len(password) < self.settings.password_min_length:
            raise BadRequest(
                f"Password does not meet the requirements: at least "
                f"{self.settings.password_min_length} characters."
            )

    def list_users(self, ctx: RequestContext, filters: dict[str, Any]) -> list[dict[str, Any]]:
        enforce(ctx, "identity:list_users")
        with self.db.session() as s:
            query = select(m.User).order_by(m.User.name, m.User.id)
            for key in ("name", "domain_id"):
                if key in filters:
                    query = query.where(getattr(m.User, key) == filters[key])
            if "enabled" in filters:
                query = query.where(m.User.enabled.is_(filters["enabled"]))
            if not ctx.is_admin:
                query = query.where(self._visible_users(ctx))
            return [self.user_ref(u) for u in s.scalars(query).all()]

    def get_user(self, ctx: RequestContext, user_id: str) -> dict[str, Any]:
        enforce(ctx, "identity:get_user")
        with self.db.session() as s:
            u = self._get(s, m.User, user_id, "user")
            if not ctx.is_admin and not s.scalar(
                select(m.User.id).where(m.User.id == u.id, self._visible_users(ctx))
            ):
                raise NotFound(f"Could not find user: {user_id}.")
            return self.user_ref(u)

    def create_user(self, ctx: RequestContext, data: dict[str, Any]) -> dict[str, Any]:
        enforce(ctx, "identity:create_user")
        password = data.get("password")
        if password is not None:
            self._check_password_policy(password)
        hashed = self._hash_secret(password) if password else None
        with self.db.session() as s:
            domain_id = data.get("domain_id") or ctx.project_domain_id or DEFAULT_DOMAIN_ID
            self._get(s, m.Domain, domain_id, "domain")
            known = {"name", "domain_id", "enabled", "password", "default_project_id", "options"}
            u = m.User(
                id=new_id(),
                name=data["name"],
                domain_id=domain_id,
                enabled=data.get("enabled", True),
                password_hash=hashed,
                password_changed_at=_naive(self._now()) if hashed else None,
                default_project_id=data.get("default_project_id"),
                extra={k: v for k, v in data.items() if k not in known},
                created_at=_naive(self._now()),
            )
            s.add(u)
            self._flush_unique(
                s,
                f"Conflict occurred attempting to store user - Duplicate entry found "
                f"with name {data['name']} at domain ID {domain_id}.",
            )
            ref = self.user_ref(u)
        self._changed()
        return ref

    def update_user(
        self, ctx: RequestContext, user_id: str, data: dict[str, Any]
    ) -> dict[str, Any]:
        enforce(ctx, "identity:update_user")
        password = data.get("password")
        if password is not None:
            self._check_password_policy(password)
        hashed = self._hash_secret(password) if password else None
        with self.db.session() as s:
            u = self._get(s, m.User, user_id, "user")
            if "domain_id" in data and data["domain_id"] != u.domain_id:
                raise BadRequest("A user cannot move to another domain.")
            for key in ("name", "enabled", "default_project_id"):
                if key in data:
                    setattr(u, key, data[key])
            extra = dict(u.extra or {})
            known = {
                "id",
                "name",
                "domain_id",
                "enabled",
                "password",
                "default_project_id",
                "options",
            }
            extra.update({k: v for k, v in data.items() if k not in known})
            u.extra = extra
            if data.get("enabled") is True:
                u.failed_auth_count = 0  # an administrator re-enabling a user unlocks it
                u.failed_auth_at = None
            if data.get("enabled") is False:
                self._revoke(s, user_id=u.id)
            if hashed:
                u.password_hash = hashed
                u.password_changed_at = _naive(self._now())
                u.failed_auth_count = 0
                u.failed_auth_at = None
                self._revoke(s, user_id=u.id)
            self._flush_unique(s, f"Duplicate entry: a user named {u.name!r} exists in the domain.")
            ref = self.user_ref(u)
        self._changed()
        return ref

    def change_password(
        self, ctx: RequestContext | None, user_id: str, original: str, new: str
    ) -> None:
        """The user's own password change; needs the original, revokes the user's tokens."""
        if ctx is not None:
            enforce(ctx, "identity:change_password", owner_user_id=user_id)
        self._check_password_policy(new)
        with self.db.session() as s:
            u = s.get(m.User, user_id)
            if u is None or not u.password_hash:
                raise Unauthorized(INVALID_CREDENTIALS)
            # The original password is checked like a login, lockout included, or this
            # endpoint would let a stolen token guess the password without limit.
            self._refuse_if_locked(u)
            if not self._check_secret(original, u.password_hash):
                self._count_failed_login(s, u)
                raise Unauthorized(INVALID_CREDENTIALS)
            u.failed_auth_count = 0
            u.failed_auth_at = None
            u.password_hash = self._hash_secret(new)
            u.password_changed_at = _naive(self._now())
            self._revoke(s, user_id=u.id)
        self._changed()

    def delete_user(self, ctx: RequestContext, user_id: str) -> None:
        enforce(ctx, "identity:delete_user")
        with self.db.session() as s:
            u = self._get(s, m.User, user_id, "user")
            if u.id == ctx.user_id:
                raise Forbidden("You cannot delete the user you are authenticated as.")
            s.execute(
                delete(m.Assignment).where(
                    m.Assignment.actor_type == "user", m.Assignment.actor_id == u.id
                )
            )
            s.execute(delete(m.GroupMember).where(m.GroupMember.user_id == u.id))
            s.execute(
                delete(m.ApplicationCredential).where(m.ApplicationCredential.user_id == u.id)
            )
            s.execute(delete(m.Credential).where(m.Credential.user_id == u.id))
            self._revoke(s, user_id=u.id)
            s.delete(u)
        self._changed()

    # ------------------------------------------------------------------ groups

    def list_groups(self, ctx: RequestContext, filters: dict[str, Any]) -> list[dict[str, Any]]:
        enforce(ctx, "identity:list_groups")
        with self.db.session() as s:
            query = select(m.Group).order_by(m.Group.name, m.Group.id)
            for key in ("name", "domain_id"):
                if key in filters:
                    query = query.where(getattr(m.Group, key) == filters[key])
            if not ctx.is_admin:
                mine = select(m.GroupMember.group_id).where(m.GroupMember.user_id == ctx.user_id)
                query = query.where(m.Group.id.in_(mine))
            return [self.group_ref(g) for g in s.scalars(query).all()]

    def _visible_group(self, s: Session, ctx: RequestContext, group_id: str) -> m.Group:
        g: m.Group = self._get(s, m.Group, group_id, "group")
        if not ctx.is_admin and g.id not in self._group_ids_of(s, ctx.user_id):
            raise NotFound(f"Could not find group: {group_id}.")
        return g

    def get_group(self, ctx: RequestContext, group_id: str) -> dict[str, Any]:
        enforce(ctx, "identity:get_group")
        with self.db.session() as s:
            return self.group_ref(self._visible_group(s, ctx, group_id))

    def create_group(self, ctx: RequestContext, data: dict[str, Any]) -> dict[str, Any]:
        enforce(ctx, "identity:create_group")
        with self.db.session() as s:
            domain_id = data.get("domain_id") or ctx.project_domain_id or DEFAULT_DOMAIN_ID
            self._get(s, m.Domain, domain_id, "domain")
            g = m.Group(
                id=new_id(),
                name=data["name"],
                domain_id=domain_id,
                description=data.get("description") or "",
            )
            s.add(g)
            self._flush_unique(
                s,
                f"Conflict occurred attempting to store group - Duplicate entry found "
                f"with name {data['name']} at domain ID {domain_id}.",
            )
            ref = self.group_ref(g)
        self._changed()
        return ref

    def update_group(
        self, ctx: RequestContext, group_id: str, data: dict[str, Any]
    ) -> dict[str, Any]:
        enforce(ctx, "identity:update_group")
        with self.db.session() as s:
            g = self._get(s, m.Group, group_id, "group")
            for key in ("name", "description"):
                if key in data:
                    setattr(g, key, data[key] or "")
            self._flush_unique(s, f"Duplicate entry: a group named {g.name!r} exists.")
            ref = self.group_ref(g)
        self._changed()
        return ref

    def delete_group(self, ctx: RequestContext, group_id: str) -> None:
        enforce(ctx, "identity:delete_group")
        with self.db.session() as s:
            g = self._get(s, m.Group, group_id, "group")
            for user_id in s.scalars(
                select(m.GroupMember.user_id).where(m.GroupMember.group_id == g.id)
            ).all():
                self._revoke(s, user_id=user_id)
            s.execute(
                delete(m.Assignment).where(
                    m.Assignment.actor_type == "group", m.Assignment.actor_id == g.id
                )
            )
            s.execute(delete(m.GroupMember).where(m.GroupMember.group_id == g.id))
            s.delete(g)
        self._changed()

    def list_group_users(
        self, ctx: RequestContext, group_id: str, filters: dict[str, Any]
    ) -> list[dict[str, Any]]:
        enforce(ctx, "identity:list_users_in_group")
        with self.db.session() as s:
            self._visible_group(s, ctx, group_id)
            ids = s.scalars(
                select(m.GroupMember.user_id).where(m.GroupMember.group_id == group_id)
            ).all()
            rows = s.scalars(select(m.User).where(m.User.id.in_(ids)).order_by(m.User.name)).all()
            return [self.user_ref(u) for u in rows]

    def list_user_groups(self, ctx: RequestContext, user_id: str) -> list[dict[str, Any]]:
        with self.db.session() as s:
            self._owned_user(s, ctx, user_id)
            enforce(ctx, "identity:list_groups_for_user", owner_user_id=user_id)
            ids = self._group_ids_of(s, user_id)
            rows = s.scalars(select(m.Group).where(m.Group.id.in_(ids)).order_by(m.Group.name))
            return [self.group_ref(g) for g in rows.all()]

    def add_user_to_group(self, ctx: RequestContext, group_id: str, user_id: str) -> None:
        enforce(ctx, "identity:add_user_to_group")
        with self.db.session() as s:
            self._get(s, m.Group, group_id, "group")
            self._get(s, m.User, user_id, "user")
            if s.get(m.GroupMember, (group_id, user_id)) is None:
                s.add(m.GroupMember(group_id=group_id, user_id=user_id))
        self._changed()

    def check_user_in_group(self, ctx: RequestContext, group_id: str, user_id: str) -> None:
        enforce(ctx, "identity:check_user_in_group")
        with self.db.session() as s:
            self._visible_group(s, ctx, group_id)
            self._get(s, m.User, user_id, "user")
            if s.get(m.GroupMember, (group_id, user_id)) is None:
                raise NotFound(f"User {user_id} is not a member of group {group_id}.")

    def remove_user_from_group(self, ctx: RequestContext, group_id: str, user_id: str) -> None:
        enforce(ctx, "identity:remove_user_from_group")
        with self.db.session() as s:
            self._get(s, m.Group, group_id, "group")
            self._get(s, m.User, user_id, "user")
            member = s.get(m.GroupMember, (group_id, user_id))
            if member is None:
                raise NotFound(f"User {user_id} is not a member of group {group_id}.")
            s.delete(member)
            self._revoke(s, user_id=user_id)
        self._changed()

    # ------------------------------------------------------------------ roles

    def list_roles(self, ctx: RequestContext, filters: dict[str, Any]) -> list[dict[str, Any]]:
        enforce(ctx, "identity:list_roles")
        with self.db.session() as s:
            query = select(m.Role).order_by(m.Role.name)
            if "name" in filters:
                query = query.where(m.Role.name == filters["name"])
            if filters.get("domain_id"):
                query = query.where(m.Role.domain_id == filters["domain_id"])
            else:
                query = query.where(m.Role.domain_id.is_(None))
            return [self.role_ref(r) for r in s.scalars(query).all()]

    def get_role(self, ctx: RequestContext, role_id: str) -> dict[str, Any]:
        enforce(ctx, "identity:get_role")
        with self.db.session() as s:
            return self.role_ref(self._get(s, m.Role, role_id, "role"))

    def create_role(self, ctx: RequestContext, data: dict[str, Any]) -> dict[str, Any]:
        enforce(ctx, "identity:create_role")
        with self.db.session() as s:
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
            ref = self.role_ref(r)
        self._changed()
        return ref

    def update_role(
        self, ctx: RequestContext, role_id: str, data: dict[str, Any]
    ) -> dict[str, Any]:
        enforce(ctx, "identity:update_role")
        with self.db.session() as s:
            r = self._get(s, m.Role, role_id, "role")
            if "name" in data and data["name"] != r.name and r.name in IMPLIED_ROLES:
                raise Forbidden(f"The built-in role {r.name!r} cannot be renamed.")
            for key in ("name", "description"):
                if key in data:
                    setattr(r, key, data[key] or "")
            ref = self.role_ref(r)
        self._changed()
        return ref

    def delete_role(self, ctx: RequestContext, role_id: str) -> None:
        enforce(ctx, "identity:delete_role")
        with self.db.session() as s:
            r = self._get(s, m.Role, role_id, "role")
            if r.name in IMPLIED_ROLES and r.domain_id is None:
                raise Forbidden(f"The built-in role {r.name!r} cannot be deleted.")
            holders = s.scalars(select(m.Assignment).where(m.Assignment.role_id == r.id)).all()
            for a in holders:
                self._revoke_for_assignment(s, a)
            s.execute(delete(m.Assignment).where(m.Assignment.role_id == r.id))
            s.delete(r)
        self._changed()

    # ------------------------------------------------------------------ assignments

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
                self._revoke(s, user_id=user_id, project_id=a.target_id)
            else:
                self._revoke(s, user_id=user_id)

    def _check_grant_parts(
        self,
        s: Session,
        actor_type: str,
        actor_id: str,
        target_type: str,
        target_id: str,
        role_id: str,
    ) -> None:
        self._get(s, m.User if actor_type == "user" else m.Group, actor_id, actor_type)
        if target_type == "project":
            self._get(s, m.Project, target_id, "project")
        elif target_type == "domain":
            self._get(s, m.Domain, target_id, "domain")
        self._get(s, m.Role, role_id, "role")

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
        with self.db.session() as s:
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
        self._changed()

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
        with self.db.session() as s:
            self._check_grant_parts(s, actor_type, actor_id, target_type, target_id, role_id)
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
        with self.db.session() as s:
            self._check_grant_parts(s, actor_type, actor_id, target_type, target_id, role_id)
            a = s.get(m.Assignment, (actor_type, actor_id, target_type, target_id, role_id))
            if a is None:
                raise NotFound(f"Could not find role assignment: role {role_id} is not granted.")
            self._revoke_for_assignment(s, a)
            s.delete(a)
        self._changed()

    def list_grants(
        self, ctx: RequestContext, actor_type: str, actor_id: str, target_type: str, target_id: str
    ) -> list[dict[str, Any]]:
        enforce(ctx, "identity:list_grants")
        with self.db.session() as s:
            self._get(s, m.User if actor_type == "user" else m.Group, actor_id, actor_type)
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
            return [self.role_ref(r) for r in self._roles_by_ids(s, ids)]

    def list_role_assignments(
        self, ctx: RequestContext, filters: dict[str, Any], effective: bool, include_names: bool
    ) -> list[dict[str, Any]]:
        """The filters narrow the rows in SQL first (a superset of the answer), then the
        exact rules below pick the items: a constant number of queries for any list."""
        enforce(ctx, "identity:list_role_assignments")
        with self.db.session() as s:
            narrowed = assignments.narrowing(filters, effective)
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
            if not ctx.is_admin:
                visible = self._visible_project_ids(s, ctx) if ctx.project_id else set()
                items = [
                    i
                    for i in items
                    if (i[0] == "user" and i[1] == ctx.user_id)
                    or (i[2] == "project" and i[3] == ctx.project_id and i[3] in visible)
                ]
            items = _matching(items, filters)
            names = assignments.names_for(s, items) if include_names else None
            return [assignments.assignment_ref(i, names) for i in items]

    # ------------------------------------------------------------------ catalog admin

    def list_regions(self, ctx: RequestContext, filters: dict[str, Any]) -> list[dict[str, Any]]:
        enforce(ctx, "identity:list_regions")
        with self.db.session() as s:
            query = select(m.Region).order_by(m.Region.id)
            if "parent_region_id" in filters:
                query = query.where(m.Region.parent_region_id == filters["parent_region_id"])
            return [self.region_ref(r) for r in s.scalars(query).all()]

    def get_region(self, ctx: RequestContext, region_id: str) -> dict[str, Any]:
        enforce(ctx, "identity:get_region")
        with self.db.session() as s:
            return self.region_ref(self._get(s, m.Region, region_id, "region"))

    def create_region(self, ctx: RequestContext, data: dict[str, Any]) -> dict[str, Any]:
        enforce(ctx, "identity:create_region")
        with self.db.session() as s:
            parent = data.get("parent_region_id")
            if parent:
                self._get(s, m.Region, parent, "region")
            r = m.Region(
                id=data.get("id") or new_id(),
                description=data.get("description") or "",
                parent_region_id=parent,
            )
            s.add(r)
            self._flush_unique(s, f"Duplicate ID, {r.id}.")
            ref = self.region_ref(r)
        self._changed()
        return ref

    def update_region(
        self, ctx: RequestContext, region_id: str, data: dict[str, Any]
    ) -> dict[str, Any]:
        enforce(ctx, "identity:update_region")
        with self.db.session() as s:
            r = self._get(s, m.Region, region_id, "region")
            if "description" in data:
                r.description = data["description"] or ""
            if "parent_region_id" in data:
                parent = data["parent_region_id"]
                if parent == r.id:
                    raise BadRequest("A region cannot be its own parent.")
                if parent:
                    self._get(s, m.Region, parent, "region")
                r.parent_region_id = parent
            ref = self.region_ref(r)
        self._changed()
        return ref

    def delete_region(self, ctx: RequestContext, region_id: str) -> None:
        enforce(ctx, "identity:delete_region")
        with self.db.session() as s:
            r = self._get(s, m.Region, region_id, "region")
            if s.scalars(select(m.Endpoint).where(m.Endpoint.region_id == r.id)).first():
                raise Conflict("The region still has endpoints; delete them first.")
            if s.scalars(select(m.Region).where(m.Region.parent_region_id == r.id)).first():
                raise Conflict("The region has child regions; delete them first.")
            s.delete(r)
        self._changed()

    def list_services(self, ctx: RequestContext, filters: dict[str, Any]) -> list[dict[str, Any]]:
        enforce(ctx, "identity:list_services")
        with self.db.session() as s:
            query = select(m.Service).order_by(m.Service.type, m.Service.name)
            for key in ("type", "name"):
                if key in filters:
                    query = query.where(getattr(m.Service, key) == filters[key])
            return [self.service_ref(sv) for sv in s.scalars(query).all()]

    def get_service(self, ctx: RequestContext, service_id: str) -> dict[str, Any]:
        enforce(ctx, "identity:get_service")
        with self.db.session() as s:
            return self.service_ref(self._get(s, m.Service, service_id, "service"))

    def create_service(self, ctx: RequestContext, data: dict[str, Any]) -> dict[str, Any]:
        enforce(ctx, "identity:create_service")
        with self.db.session() as s:
            sv = m.Service(
                id=new_id(),
                type=data["type"],
                name=data.get("name") or "",
                description=data.get("description") or "",
                enabled=data.get("enabled", True),
            )
            s.add(sv)
            ref = self.service_ref(sv)
        self._changed()
        return ref

    def update_service(
        self, ctx: RequestContext, service_id: str, data: dict[str, Any]
    ) -> dict[str, Any]:
        enforce(ctx, "identity:update_service")
        with self.db.session() as s:
            sv = self._get(s, m.Service, service_id, "service")
            for key in ("type", "name", "description", "enabled"):
                if key in data:
                    setattr(sv, key, data[key] if data[key] is not None else "")
            ref = self.service_ref(sv)
        self._changed()
        return ref

    def delete_service(self, ctx: RequestContext, service_id: str) -> None:
        enforce(ctx, "identity:delete_service")
        with self.db.session() as s:
            sv = self._get(s, m.Service, service_id, "service")
            s.execute(delete(m.Endpoint).where(m.Endpoint.service_id == sv.id))
            s.delete(sv)
        self._changed()

    def list_endpoints(self, ctx: RequestContext, filters: dict[str, Any]) -> list[dict[str, Any]]:
        enforce(ctx, "identity:list_endpoints")
        with self.db.session() as s:
            query = select(m.Endpoint).order_by(m.Endpoint.service_id, m.Endpoint.interface)
            for key in ("service_id", "interface", "region_id"):
                if key in filters:
                    query = query.where(getattr(m.Endpoint, key) == filters[key])
            return [self.endpoint_ref(e) for e in s.scalars(query).all()]

    def get_endpoint(self, ctx: RequestContext, endpoint_id: str) -> dict[str, Any]:
        enforce(ctx, "identity:get_endpoint")
        with self.db.session() as s:
            return self.endpoint_ref(self._get(s, m.Endpoint, endpoint_id, "endpoint"))

    def create_endpoint(self, ctx: RequestContext, data: dict[str, Any]) -> dict[str, Any]:
        enforce(ctx, "identity:create_endpoint")
        with self.db.session() as s:
            self._get(s, m.Service, data["service_id"], "service")
            region_id = data.get("region_id") or data.get("region")
            if region_id:
                self._get(s, m.Region, region_id, "region")
            e = m.Endpoint(
                id=new_id(),
                service_id=data["service_id"],
                region_id=region_id,
                interface=data["interface"],
                url=data["url"],
                enabled=data.get("enabled", True),
            )
            s.add(e)
            ref = self.endpoint_ref(e)
        self._changed()
        return ref

    def update_endpoint(
        self, ctx: RequestContext, endpoint_id: str, data: dict[str, Any]
    ) -> dict[str, Any]:
        enforce(ctx, "identity:update_endpoint")
        with self.db.session() as s:
            e = self._get(s, m.Endpoint, endpoint_id, "endpoint")
            if "service_id" in data:
                self._get(s, m.Service, data["service_id"], "service")
            region = data.get("region_id", data.get("region"))
            if region:
                self._get(s, m.Region, region, "region")
                e.region_id = region
            for key in ("service_id", "interface", "url", "enabled"):
                if key in data:
                    setattr(e, key, data[key])
            ref = self.endpoint_ref(e)
        self._changed()
        return ref

    def delete_endpoint(self, ctx: RequestContext, endpoint_id: str) -> None:
        enforce(ctx, "identity:delete_endpoint")
        with self.db.session() as s:
            s.delete(self._get(s, m.Endpoint, endpoint_id, "endpoint"))
        self._changed()

    # ------------------------------------------------------------------ application credentials

    def _owned_user(self, s: Session, ctx: RequestContext, user_id: str) -> m.User:
        """The user whose credentials are addressed; others' look absent to non-admins."""
        u = s.get(m.User, user_id)
        if u is None or (not ctx.is_admin and u.id != ctx.user_id):
            raise NotFound(f"Could not find user: {user_id}.")
        return u

    def list_app_creds(
        self, ctx: RequestContext, user_id: str, filters: dict[str, Any]
    ) -> list[dict[str, Any]]:
        with self.db.session() as s:
            self._owned_user(s, ctx, user_id)
            enforce(ctx, "identity:list_application_credentials", owner_user_id=user_id)
            query = select(m.ApplicationCredential).where(
                m.ApplicationCredential.user_id == user_id
            )
            if "name" in filters:
                query = query.where(m.ApplicationCredential.name == filters["name"])
            rows = s.scalars(query.order_by(m.ApplicationCredential.name)).all()
            return self.app_cred_refs(s, rows)

    def get_app_cred(self, ctx: RequestContext, user_id: str, cred_id: str) -> dict[str, Any]:
        with self.db.session() as s:
            self._owned_user(s, ctx, user_id)
            enforce(ctx, "identity:get_application_credential", owner_user_id=user_id)
            a = s.get(m.ApplicationCredential, cred_id)
            if a is None or a.user_id != user_id:
                raise NotFound(f"Could not find Application Credential: {cred_id}.")
            return self.app_cred_ref(s, a)

    def create_app_cred(
        self, ctx: RequestContext, user_id: str, data: dict[str, Any]
    ) -> dict[str, Any]:
        with self.db.session() as s:
            self._owned_user(s, ctx, user_id)
        enforce(ctx, "identity:create_application_credential", owner_user_id=user_id)
        if user_id != ctx.user_id:
            raise Forbidden("Application credentials can only be created for yourself.")
        if ctx.project_id is None:
            raise Forbidden("Creating an application credential needs a project-scoped token.")
        if ctx.application_credential_id is not None:
            with self.db.session() as s:
                parent = s.get(m.ApplicationCredential, ctx.application_credential_id)
                if parent is None or not parent.unrestricted:
                    raise Forbidden(
                        "A restricted application credential cannot create another one; "
                        "use a password or an unrestricted application credential."
                    )
        secret = data.get("secret") or new_secret()
        hashed = self._hash_secret(secret)
        with self.db.session() as s:
            current = self._implied_role_ids(
                s, self._role_ids_on(s, user_id, "project", ctx.project_id)
            )
            if ctx.application_credential_id:
                parent = s.get(m.ApplicationCredential, ctx.application_credential_id)
                current &= set(parent.role_ids if parent else [])
            wanted = current
            if data.get("roles"):
                wanted = set()
                for ref in data["roles"]:
                    role = self._role_from_ref(s, ref)
                    if role.id not in current:
                        raise Forbidden(
                            f"You cannot delegate the role {role.name!r}: you do not hold it "
                            "on this project."
                        )
                    wanted.add(role.id)
            expires_at = data.get("expires_at")
            if expires_at is not None and expires_at <= self._now():
                raise BadRequest("expires_at must be in the future.")
            a = m.ApplicationCredential(
                id=new_id(),
                user_id=user_id,
                project_id=ctx.project_id,
                name=data["name"],
                description=data.get("description") or "",
                secret_hash=hashed,
                expires_at=_naive(expires_at) if expires_at else None,
                unrestricted=bool(data.get("unrestricted", False)),
                role_ids=sorted(wanted),
                created_at=_naive(self._now()),
            )
            s.add(a)
            self._flush_unique(
                s, f"Duplicate entry: an application credential named {data['name']!r} exists."
            )
            ref = self.app_cred_ref(s, a)
        ref["secret"] = secret
        self._changed()
        return ref

    def _role_from_ref(self, s: Session, ref: Any) -> m.Role:
        if not isinstance(ref, dict):
            raise BadRequest("each role must be an object with an id or a name")
        role: m.Role | None = None
        if ref.get("id"):
            role = s.get(m.Role, str(ref["id"]))
        elif ref.get("name"):
            role = s.scalars(
                select(m.Role).where(m.Role.name == str(ref["name"]), m.Role.domain_id.is_(None))
            ).first()
        if role is None:
            raise NotFound(f"Could not find role: {ref.get('id') or ref.get('name')}.")
        return role

    def delete_app_cred(self, ctx: RequestContext, user_id: str, cred_id: str) -> None:
        with self.db.session() as s:
            self._owned_user(s, ctx, user_id)
            enforce(ctx, "identity:delete_application_credential", owner_user_id=user_id)
            a = s.get(m.ApplicationCredential, cred_id)
            if a is None or a.user_id != user_id:
                raise NotFound(f"Could not find Application Credential: {cred_id}.")
            if ctx.application_credential_id and not a.unrestricted:
                parent = s.get(m.ApplicationCredential, ctx.application_credential_id)
                if parent is None or not parent.unrestricted:
                    raise Forbidden("A restricted application credential cannot delete one.")
            self._revoke(s, user_id=user_id, app_cred_id=a.id)
            s.delete(a)
        self._changed()

    # ------------------------------------------------------------------ credentials (EC2 / S3 keys)

    def _encrypt_blob(self, blob: str) -> bytes:
        return self._credential_fernet.encrypt(blob.encode())

    def _decrypt_blob(self, data: bytes) -> str:
        try:
            return self._credential_fernet.decrypt(data).decode()
        except InvalidToken:
            return ""

    def _visible_credential(self, s: Session, ctx: RequestContext, cred_id: str) -> m.Credential:
        c = s.get(m.Credential, cred_id)
        if c is None or (not ctx.is_admin and c.user_id != ctx.user_id):
            raise NotFound(f"Could not find credential: {cred_id}.")
        return c

    def list_credentials(
        self, ctx: RequestContext, filters: dict[str, Any]
    ) -> list[dict[str, Any]]:
        enforce(ctx, "identity:list_credentials")
        with self.db.session() as s:
            query = select(m.Credential).order_by(m.Credential.created_at)
            for key in ("user_id", "type"):
                if key in filters:
                    query = query.where(getattr(m.Credential, key) == filters[key])
            if not ctx.is_admin:
                query = query.where(m.Credential.user_id == ctx.user_id)
            return [self.credential_ref(c) for c in s.scalars(query).all()]

    def get_credential(self, ctx: RequestContext, cred_id: str) -> dict[str, Any]:
        enforce(ctx, "identity:get_credential")
        with self.db.session() as s:
            return self.credential_ref(self._visible_credential(s, ctx, cred_id))

    def create_credential(self, ctx: RequestContext, data: dict[str, Any]) -> dict[str, Any]:
        user_id = data["user_id"]
        with self.db.session() as s:
            self._owned_user(s, ctx, user_id)
        enforce(ctx, "identity:create_credential", owner_user_id=user_id)
        blob = data["blob"]
        cred_id = new_id()
        project_id = data.get("project_id")
        if data["type"] == "ec2":
            try:
                parsed = json.loads(blob)
                access = parsed["access"]
                if (
                    not isinstance(access, str)
                    or not access
                    or not isinstance(parsed.get("secret"), str)
                ):
                    raise ValueError
            except (ValueError, KeyError, TypeError):
                raise BadRequest(
                    "An ec2 credential blob must be JSON with string 'access' and 'secret'."
                ) from None
            if not project_id:
                raise BadRequest("An ec2 credential needs a project_id.")
            cred_id = ec2_credential_id(access)
        with self.db.session() as s:
            if project_id:
                project = s.get(m.Project, project_id)
                if project is None or (
                    not ctx.is_admin and project_id not in self._visible_project_ids(s, ctx)
                ):
                    raise NotFound(f"Could not find project: {project_id}.")
            c = m.Credential(
                id=cred_id,
                user_id=user_id,
                project_id=project_id,
                type=data["type"],
                blob=self._encrypt_blob(blob),
                created_at=_naive(self._now()),
            )
            s.add(c)
            self._flush_unique(s, "Duplicate entry: a credential with this access key exists.")
            ref = self.credential_ref(c)
        self._changed()
        return ref

    def update_credential(
        self, ctx: RequestContext, cred_id: str, data: dict[str, Any]
    ) -> dict[str, Any]:
        with self.db.session() as s:
            c = self._visible_credential(s, ctx, cred_id)
            enforce(ctx, "identity:update_credential", owner_user_id=c.user_id)
            if c.type == "ec2" and "blob" in data:
                raise BadRequest("The blob of an ec2 credential cannot change; create a new one.")
            if "blob" in data:
                c.blob = self._encrypt_blob(data["blob"])
            if "project_id" in data:
                # The same rule as on create: only a project the caller can see.
                project_id = data["project_id"]
                if project_id:
                    project = s.get(m.Project, project_id)
                    if project is None or (
                        not ctx.is_admin and project_id not in self._visible_project_ids(s, ctx)
                    ):
                        raise NotFound(f"Could not find project: {project_id}.")
                elif c.type == "ec2":
                    raise BadRequest("An ec2 credential needs a project_id.")
                c.project_id = project_id
            ref = self.credential_ref(c)
        self._changed()
        return ref

    def delete_credential(self, ctx: RequestContext, cred_id: str) -> None:
        with self.db.session() as s:
            c = self._visible_credential(s, ctx, cred_id)
            enforce(ctx, "identity:delete_credential", owner_user_id=c.user_id)
            s.delete(c)
        self._changed()

    def ec2_ref(self, c: m.Credential, base_url: str) -> dict[str, Any]:
        blob = json.loads(self._decrypt_blob(c.blob) or "{}")
        return {
            "user_id": c.user_id,
            "tenant_id": c.project_id,
            "access": blob.get("access"),
            "secret": blob.get("secret"),
            "trust_id": blob.get("trust_id"),
            "links": {
                "self": f"{base_url}/v3/users/{c.user_id}/credentials/OS-EC2/{blob.get('access')}"
            },
        }

    def ec2_create(
        self, ctx: RequestContext, user_id: str, project_id: str, base_url: str
    ) -> dict[str, Any]:
        with self.db.session() as s:
            self._owned_user(s, ctx, user_id)
        enforce(ctx, "identity:ec2_create_credential", owner_user_id=user_id)
        access, secret = new_id(), new_id()
        blob = json.dumps({"access": access, "secret": secret, "trust_id": None})
        self.create_credential(
            ctx, {"user_id": user_id, "project_id": project_id, "type": "ec2", "blob": blob}
        )
        with self.db.session() as s:
            return self.ec2_ref(
                self._get(s, m.Credential, ec2_credential_id(access), "credential"), base_url
            )

    def ec2_list(self, ctx: RequestContext, user_id: str, base_url: str) -> list[dict[str, Any]]:
        with self.db.session() as s:
            self._owned_user(s, ctx, user_id)
            enforce(ctx, "identity:ec2_list_credentials", owner_user_id=user_id)
            rows = s.scalars(
                select(m.Credential).where(
                    m.Credential.user_id == user_id, m.Credential.type == "ec2"
                )
            ).all()
            return [self.ec2_ref(c, base_url) for c in rows]

    def _ec2_owned(
        self, s: Session, ctx: RequestContext, user_id: str, access: str
    ) -> m.Credential:
        self._owned_user(s, ctx, user_id)
        c = s.get(m.Credential, ec2_credential_id(access))
        if c is None or c.user_id != user_id or c.type != "ec2":
            raise NotFound(f"Could not find credential: {access}.")
        return c

    def ec2_get(
        self, ctx: RequestContext, user_id: str, access: str, base_url: str
    ) -> dict[str, Any]:
        with self.db.session() as s:
            c = self._ec2_owned(s, ctx, user_id, access)
            enforce(ctx, "identity:ec2_get_credential", owner_user_id=user_id)
            return self.ec2_ref(c, base_url)

    def ec2_delete(self, ctx: RequestContext, user_id: str, access: str) -> None:
        with self.db.session() as s:
            c = self._ec2_owned(s, ctx, user_id, access)
            enforce(ctx, "identity:ec2_delete_credential", owner_user_id=user_id)
            s.delete(c)
        self._changed()

    def ec2_principal(self, access: str) -> Ec2Principal | None:
        """Who signs with this access key, and the secret to check the signature against.

        None when the key is unknown, or its user, project or role on the project is
        gone or disabled. Cached until identity data changes, like token views.
        """
        self.follow_changes()
        generation = self._generation
        cached = self._ec2_cache.get(access)
        if cached is not None and cached[0] == generation:
            return cached[1]
        found = self._lookup_ec2(access)
        if len(self._ec2_cache) > 100_000:
            self._ec2_cache.clear()
        self._ec2_cache[access] = (generation, found)
        return found

    def _lookup_ec2(self, access: str) -> Ec2Principal | None:
        with self.db.session() as s:
            c = s.get(m.Credential, ec2_credential_id(access))
            if c is None or c.type != "ec2" or not c.project_id:
                return None
            blob = json.loads(self._decrypt_blob(c.blob) or "{}")
            if not hmac.compare_digest(str(blob.get("access", "")), access):
                return None
            user = s.get(m.User, c.user_id)
            project = s.get(m.Project, c.project_id)
            if user is None or project is None or not user.enabled or not project.enabled:
                return None
            for domain_id in {user.domain_id, project.domain_id}:
                domain = s.get(m.Domain, domain_id)
                if domain is None or not domain.enabled:
                    return None
            role_ids = self._role_ids_on(s, user.id, "project", project.id)
            if not role_ids:
                return None
            roles = frozenset(r.name for r in self._roles_by_ids(s, sorted(role_ids)))
            roles |= frozenset(n for r in roles for n in IMPLIED_ROLES.get(r, frozenset()))
            return Ec2Principal(str(blob.get("secret", "")), user.id, project.id, roles)

    # ------------------------------------------------------------------ helpers

    @staticmethod
    def _flush_unique(s: Session, message: str) -> None:
        try:
            s.flush()
        except IntegrityError:
            s.rollback()
            raise Conflict(message) from None


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
