"""What every part of identity shares: settings, token views, the generation that
invalidates caches, revocation events, password hashing, lookups and shapes.

The parts (authentication, resources, roles, catalog, credentials) each hold one
IdentityCore; nothing here decides who may do what.
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import bcrypt
from cryptography.fernet import Fernet, InvalidToken
from sqlalchemy import ColumnElement, Select, and_, or_, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from souverain.common.changes import ChangeCounter
from souverain.common.clock import Clock, as_utc, isotime
from souverain.common.context import RequestContext
from souverain.common.errors import BadRequest, Conflict, NotFound, Unauthorized
from souverain.common.ids import new_secret
from souverain.common.policy import IMPLIED_ROLES
from souverain.db.engine import Database
from souverain.identity import assignments
from souverain.identity import models as m
from souverain.identity.access_match import AllowedCall, permits
from souverain.identity.tokens import (
    RevocationList,
    RevocationRule,
    TokenFormatter,
    TokenPayload,
    to_timestamp,
)

DEFAULT_DOMAIN_ID = "default"
INVALID_CREDENTIALS = "The request you have made requires authentication."


def access_rule_ref(rule: m.AccessRule) -> dict[str, Any]:
    return {"id": rule.id, "service": rule.service, "path": rule.path, "method": rule.method}


def access_rules_of(s: Session, cred_ids: Sequence[str]) -> dict[str, list[m.AccessRule]]:
    """Each application credential's access rules, in one query."""
    found: dict[str, list[m.AccessRule]] = {}
    if not cred_ids:
        return found
    query = (
        select(m.AppCredAccessRule.app_cred_id, m.AccessRule)
        .join(m.AccessRule, m.AccessRule.id == m.AppCredAccessRule.access_rule_id)
        .where(m.AppCredAccessRule.app_cred_id.in_(list(cred_ids)))
        .order_by(m.AccessRule.service, m.AccessRule.path, m.AccessRule.method)
    )
    for cred_id, rule in s.execute(query).all():
        found.setdefault(cred_id, []).append(rule)
    return found


@dataclass(frozen=True)
class IdentityPolicySettings:
    token_expiration: int = 3600
    bcrypt_rounds: int = 12
    password_min_length: int = 8
    lockout_failure_attempts: int = 6
    lockout_duration: int = 1800
    hash_concurrency: int = 1
    mfa_required_for_privileged: bool = False
    mfa_receipt_expiration: int = 300


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
    trust: dict[str, Any] | None = None  # OS-TRUST:trust of a trust-scoped token
    # the calls an application credential with access rules may make; None: any
    access_rules: tuple[AllowedCall, ...] | None = None

    def permits(self, root_path: str, path: str, method: str) -> bool:
        """Whether this token may call `method path` on the service mounted at `root_path`."""
        return permits(self.access_rules, root_path, path, method)

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
class ResolvedToken:
    """The part of a TokenView that depends on the database, cached per generation."""

    generation: int
    user: dict[str, Any]
    user_domain_id: str
    roles: list[dict[str, Any]]
    project: dict[str, Any] | None
    domain: dict[str, Any] | None
    app_cred: dict[str, Any] | None
    error: str | None = None
    trust: dict[str, Any] | None = None
    access_rules: tuple[AllowedCall, ...] | None = None


@dataclass(frozen=True)
class Ec2Principal:
    """The owner of an EC2-style access key, as the S3 service needs it.

    A key made with an application credential carries that credential's roles (those
    the user still holds), its id and its expiry.
    """

    secret: str
    user_id: str
    project_id: str
    roles: frozenset[str]
    app_cred_id: str | None = None
    expires_at: float | None = None  # a UNIX time; None: never

    def expired(self, now: float) -> bool:
        return self.expires_at is not None and self.expires_at <= now

    def __repr__(self) -> str:  # never show the secret
        return (
            f"Ec2Principal(user_id={self.user_id!r}, project_id={self.project_id!r}, "
            f"app_cred_id={self.app_cred_id!r})"
        )


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


def naive_utc(value: dt.datetime) -> dt.datetime:
    return value.astimezone(dt.UTC).replace(tzinfo=None)


class IdentityCore:
    """The state the identity parts share, and the helpers they all use."""

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
        self.fernet = Fernet(credential_key)
        self.generation = 0  # bumped on every change: cached views older than it are stale
        self._inherited: tuple[int, bool] = (-1, False)  # (generation, any OS-INHERIT grant)
        self._stored_inferences: tuple[int, dict[str, set[str]]] = (-1, {})
        self.lock = threading.Lock()
        self._sync_lock = threading.Lock()
        self.resolved: dict[tuple[Any, ...], ResolvedToken] = {}
        self.revoked = RevocationList()
        self._shared_generation: int | None = None
        # Slow hashes run on threads; more at once than this process's share of the
        # cores only adds switching, so they queue for a slot instead.
        self._hash_slots = threading.BoundedSemaphore(max(1, settings.hash_concurrency))
        self.dummy_hash = hash_secret(new_secret(), settings.bcrypt_rounds)
        self.sync_from_store()

    # ------------------------------------------------------------------ plumbing

    def hash_secret(self, secret: str) -> str:
        with self._hash_slots:
            return hash_secret(secret, self.settings.bcrypt_rounds)

    def check_secret(self, secret: str, hashed: str) -> bool:
        with self._hash_slots:
            return check_secret(secret, hashed)

    def changed(self) -> None:
        """Drop cached token views here, and tell other API processes to do the same."""
        self.bump_local()
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

    def bump_local(self) -> None:
        with self.lock:
            self.generation += 1
            if len(self.resolved) > 100_000:
                self.resolved.clear()

    def sync_from_store(self) -> bool:
        """Pick up changes other processes made (revocations, roles, users); cheap when none.

        Called about once a second by the server; with one process it finds nothing new.
        """
        # one reload at a time, and the generation marked seen only once it is loaded: a
        # request thread must not take another thread's half-done reload for a done one
        with self._sync_lock:
            with self.db.session() as s:
                shared = s.scalar(select(m.IdentityState.generation).where(m.IdentityState.id == 1))
            if shared is None or shared == self._shared_generation:
                return False
            self.load_revocations()
            self.bump_local()
            self._shared_generation = shared
            return True

    def now(self) -> dt.datetime:
        return self.clock.now()

    def load_revocations(self) -> None:
        now = self.now()
        with self.db.session() as s:
            rows = s.scalars(
                select(m.RevocationEvent).where(m.RevocationEvent.expires_at > naive_utc(now))
            ).all()
            self.revoked = RevocationList()
            self.revoked.extend(self.rule(row) for row in rows)

    @staticmethod
    def rule(row: m.RevocationEvent) -> RevocationRule:
        return RevocationRule(
            issued_before=to_timestamp(row.issued_before),
            expires_at=to_timestamp(row.expires_at),
            user_id=row.user_id,
            project_id=row.project_id,
            domain_id=row.domain_id,
            audit_id=row.audit_id,
            app_cred_id=row.app_cred_id,
        )

    def revoke(self, s: Session, **match: str | None) -> None:
        """Record that every matching token issued until now is revoked."""
        now = self.now()
        row = m.RevocationEvent(
            issued_before=naive_utc(now),
            expires_at=naive_utc(now + dt.timedelta(seconds=self.settings.token_expiration)),
            **match,
        )
        s.add(row)
        s.flush()
        self.revoked.add(self.rule(row))

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
                "enabled": u.enabled and self.locked_until(u) is None,
                "password_expires_at": None,
                "options": dict(u.options or {}),
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
        roles = {r.id: r for r in self.roles_by_ids(s, [i for a in creds for i in a.role_ids])}
        rules = access_rules_of(s, [a.id for a in creds])
        # by role id, as `id IN (...)` on the primary key lists them
        return [
            self.app_cred_body(
                a,
                [roles[i] for i in sorted(set(a.role_ids)) if i in roles],
                rules.get(a.id, []),
            )
            for a in creds
        ]

    def app_cred_body(
        self,
        a: m.ApplicationCredential,
        role_rows: list[m.Role],
        rules: Sequence[m.AccessRule] = (),
    ) -> dict[str, Any]:
        roles = [self.role_ref(r) for r in role_rows]
        return {
            "id": a.id,
            "name": a.name,
            "description": a.description,
            "user_id": a.user_id,
            "project_id": a.project_id,
            # naive UTC in Python's ISO form, as Keystone shows it (Tempest compares it so)
            "expires_at": naive_utc(as_utc(a.expires_at)).isoformat() if a.expires_at else None,
            "unrestricted": a.unrestricted,
            "roles": [
                {"id": r["id"], "name": r["name"], "domain_id": r["domain_id"]} for r in roles
            ],
            "access_rules": [access_rule_ref(r) for r in rules],
        }

    def credential_ref(self, c: m.Credential) -> dict[str, Any]:
        return {
            "id": c.id,
            "user_id": c.user_id,
            "project_id": c.project_id,
            "type": c.type,
            "blob": self.decrypt_blob(c.blob),
        }

    # ------------------------------------------------------------------ lookups

    def get(self, s: Session, model: type[Any], ident: str, label: str) -> Any:
        obj = s.get(model, ident) if ident else None
        if obj is None:
            raise NotFound(f"Could not find {label}: {ident}.")
        return obj

    def domain_by_ref(self, s: Session, ref: dict[str, Any]) -> m.Domain:
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

    def roles_by_ids(self, s: Session, ids: Sequence[str]) -> list[m.Role]:
        if not ids:
            return []
        return list(s.scalars(select(m.Role).where(m.Role.id.in_(sorted(set(ids))))).all())

    def group_ids_of(self, s: Session, user_id: str) -> list[str]:
        return list(
            s.scalars(select(m.GroupMember.group_id).where(m.GroupMember.user_id == user_id)).all()
        )

    def role_ids_on(self, s: Session, user_id: str, target_type: str, target_id: str) -> set[str]:
        """The roles the user holds on the target, directly or through its groups: one query
        (token validation and every S3 key lookup pass here; a user may be in many groups)."""
        held = set(s.scalars(assignments.role_ids_on(user_id, target_type, target_id)).all())
        if target_type == "project" and self._any_inherited(s):
            targets = self.inheriting_targets(s, target_id)
            if targets:
                held |= set(s.scalars(assignments.role_ids_inherited(user_id, targets)).all())
        return held

    def _any_inherited(self, s: Session) -> bool:
        """Whether any OS-INHERIT grant exists: one query per change of identity data, so
        clouds without inherited grants pay nothing more per token."""
        generation, found = self._inherited
        if generation != self.generation:
            a = m.Assignment
            row = s.scalars(
                select(a.target_type).where(a.target_type.in_(assignments.INHERITED)).limit(1)
            ).first()
            found = row is not None
            self._inherited = (self.generation, found)
        return found

    @staticmethod
    def inheriting_targets(s: Session, project_id: str) -> list[tuple[str, str]]:
        """Where a grant inherited by this project may sit: its domain and its ancestors."""
        project = s.get(m.Project, project_id)
        if project is None:
            return []
        targets = [(assignments.INHERIT_DOMAIN, project.domain_id)]
        seen: set[str] = set()
        parent_id = project.parent_id
        while parent_id and parent_id not in seen and len(seen) < 64:
            seen.add(parent_id)
            targets.append((assignments.INHERIT_PROJECT, parent_id))
            parent = s.get(m.Project, parent_id)
            parent_id = parent.parent_id if parent else None
        return targets

    def inherited_project_ids(self, s: Session, actors: Sequence[str]) -> dict[str, set[str]]:
        """For each OS-INHERIT grant target of these actors ("kind:id"), the projects under
        it that inherit it."""
        a = m.Assignment
        rows = s.execute(
            select(a.target_type, a.target_id)
            .where(a.actor_id.in_(actors), a.target_type.in_(assignments.INHERITED))
            .distinct()
        ).all()
        return {f"{t}:{i}": self.projects_under(s, t, i) for t, i in rows}

    @staticmethod
    def projects_under(s: Session, target_type: str, target_id: str) -> set[str]:
        """The projects that inherit a grant on this domain (all of its projects) or this
        project (its subtree, not itself)."""
        if target_type == assignments.INHERIT_DOMAIN:
            return set(s.scalars(select(m.Project.id).where(m.Project.domain_id == target_id)))
        found: set[str] = set()
        frontier = [target_id]
        while frontier and len(found) < 100_000:
            children = set(s.scalars(select(m.Project.id).where(m.Project.parent_id.in_(frontier))))
            frontier = list(children - found)
            found |= children
        return found

    def expand_implied(self, s: Session, roles: list[m.Role]) -> list[m.Role]:
        """These roles and every role they imply, by the fixed rules (admin > member >
        reader, by name) and the rules administrators added (by id), transitively."""
        found = {r.id: r for r in roles}
        for _ in range(16):  # rules may chain; a cycle stops growing, so this ends
            names = {r.name for r in found.values()}
            by_name = set().union(*(IMPLIED_ROLES.get(n, frozenset()) for n in names)) - names
            stored = self.stored_inferences(s)
            by_id = {i for rid in found for i in stored.get(rid, ())} - found.keys()
            new: list[m.Role] = []
            if by_name:
                new += s.scalars(
                    select(m.Role).where(
                        m.Role.name.in_(sorted(by_name)), m.Role.domain_id.is_(None)
                    )
                ).all()
            if by_id:
                new += self.roles_by_ids(s, sorted(by_id))
            new = [r for r in new if r.id not in found]
            if not new:
                break
            found.update((r.id, r) for r in new)
        return sorted(found.values(), key=lambda r: r.name)

    def stored_inferences(self, s: Session) -> dict[str, set[str]]:
        """The implied-role rules administrators added, prior id -> implied ids; read once
        per change of identity data."""
        generation, rules = self._stored_inferences
        if generation != self.generation:
            rules = {}
            for prior, implied in s.execute(
                select(m.ImpliedRole.prior_role_id, m.ImpliedRole.implied_role_id)
            ):
                rules.setdefault(prior, set()).add(implied)
            self._stored_inferences = (self.generation, rules)
        return rules

    def implied_role_ids(self, s: Session, role_ids: set[str]) -> set[str]:
        """The ids of these roles and of every role they imply."""
        return {r.id for r in self.expand_implied(s, self.roles_by_ids(s, sorted(role_ids)))}

    # ------------------------------------------------------------------ failed logins

    def locked_until(self, user: m.User) -> dt.datetime | None:
        attempts = self.settings.lockout_failure_attempts
        if not attempts or user.failed_auth_count < attempts or user.failed_auth_at is None:
            return None
        until = as_utc(user.failed_auth_at) + dt.timedelta(seconds=self.settings.lockout_duration)
        return until if until > self.now() else None

    def refuse_if_locked(self, user: m.User) -> None:
        locked = self.locked_until(user)
        if locked is not None:
            raise Unauthorized(
                "The account is locked after too many failed logins. Try again after "
                f"{isotime(locked)} or ask an administrator to unlock it."
            )

    def count_failed_login(self, s: Session, user: m.User) -> None:
        """Count a wrong password and commit it, even though the caller then raises."""
        # Counted in SQL, not read-modify-write: wrong guesses sent in parallel
        # must each count, or a burst of them never reaches the lockout.
        restart = self.locked_was_expired(user)
        s.execute(
            update(m.User)
            .where(m.User.id == user.id)
            .values(
                failed_auth_count=1 if restart else m.User.failed_auth_count + 1,
                failed_auth_at=naive_utc(self.now()),
            )
        )
        s.commit()

    def forget_failed_logins(self, user_id: str) -> None:
        """A login passed every factor: the failures before it no longer count."""
        with self.db.session() as s:
            s.execute(
                update(m.User)
                .where(m.User.id == user_id, m.User.failed_auth_count != 0)
                .values(failed_auth_count=0, failed_auth_at=None)
            )

    def locked_was_expired(self, user: m.User) -> bool:
        attempts = self.settings.lockout_failure_attempts
        return bool(attempts) and user.failed_auth_count >= attempts

    def check_user_enabled(self, s: Session, user: m.User) -> None:
        domain = s.get(m.Domain, user.domain_id)
        if not user.enabled or domain is None or not domain.enabled:
            raise Unauthorized(INVALID_CREDENTIALS)

    # ------------------------------------------------------------------ visibility

    # Each rule is a SQL condition, so a listing filters in the database instead of
    # loading every project or user and keeping the visible ones.

    @staticmethod
    def held_project_ids(ctx: RequestContext) -> Select[str]:
        """Projects a non-admin caller may see: those it holds a role on."""
        groups = select(m.GroupMember.group_id).where(m.GroupMember.user_id == ctx.user_id)
        return select(m.Assignment.target_id).where(
            or_(m.Assignment.actor_id == ctx.user_id, m.Assignment.actor_id.in_(groups)),
            m.Assignment.target_type == "project",
        )

    def visible_project_ids(self, s: Session, ctx: RequestContext) -> set[str]:
        return set(s.scalars(self.held_project_ids(ctx)).all())

    @staticmethod
    def visible_users(ctx: RequestContext) -> ColumnElement[bool]:
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

    def owned_user(self, s: Session, ctx: RequestContext, user_id: str) -> m.User:
        """The user whose credentials are addressed; others' look absent to non-admins."""
        u = s.get(m.User, user_id)
        if u is None or (not ctx.is_admin and u.id != ctx.user_id):
            raise NotFound(f"Could not find user: {user_id}.")
        return u

    # ------------------------------------------------------------------ credential blobs

    def encrypt_blob(self, blob: str) -> bytes:
        return self.fernet.encrypt(blob.encode())

    def decrypt_blob(self, data: bytes) -> str:
        try:
            return self.fernet.decrypt(data).decode()
        except InvalidToken:
            return ""

    @staticmethod
    def flush_unique(s: Session, message: str) -> None:
        try:
            s.flush()
        except IntegrityError:
            s.rollback()
            raise Conflict(message) from None
