"""A user's own credentials: application credentials, stored credentials and EC2 keys
(which the S3 service resolves through `ec2_principal`).

Knows nothing of HTTP. Blobs are stored encrypted; another user's credentials look
absent, and a delegated credential never carries a role its creator lacks. An EC2 key
made with an application credential belongs to it: it acts with the credential's roles
on the credential's project, stops when the credential expires and is deleted with it
(a foreign key). A restricted application credential reaches only the keys it made.
"""

from __future__ import annotations

import hmac
import json
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from souverain.common.clock import as_utc
from souverain.common.context import RequestContext
from souverain.common.errors import BadRequest, Forbidden, NotFound
from souverain.common.ids import new_id, new_secret
from souverain.common.policy import IMPLIED_ROLES, enforce
from souverain.identity import models as m
from souverain.identity.access_rules import AccessRules
from souverain.identity.core import (
    Ec2Principal,
    IdentityCore,
    access_rules_of,
    ec2_credential_id,
    naive_utc,
)
from souverain.identity.tokens import to_timestamp


class Credentials:
    """Application credentials, credentials and EC2 keys, each owned by one user."""

    def __init__(self, core: IdentityCore) -> None:
        self.core = core
        self.access_rules = AccessRules(core)
        self._ec2_cache: dict[str, tuple[int, Ec2Principal | None]] = {}

    # ------------------------------------------------------------------ application credentials

    def list_app_creds(
        self, ctx: RequestContext, user_id: str, filters: dict[str, Any]
    ) -> list[dict[str, Any]]:
        with self.core.db.session() as s:
            self.core.owned_user(s, ctx, user_id)
            enforce(ctx, "identity:list_application_credentials", owner_user_id=user_id)
            query = select(m.ApplicationCredential).where(
                m.ApplicationCredential.user_id == user_id
            )
            if "name" in filters:
                query = query.where(m.ApplicationCredential.name == filters["name"])
            rows = s.scalars(query.order_by(m.ApplicationCredential.name)).all()
            return self.core.app_cred_refs(s, rows)

    def get_app_cred(self, ctx: RequestContext, user_id: str, cred_id: str) -> dict[str, Any]:
        with self.core.db.session() as s:
            self.core.owned_user(s, ctx, user_id)
            enforce(ctx, "identity:get_application_credential", owner_user_id=user_id)
            a = s.get(m.ApplicationCredential, cred_id)
            if a is None or a.user_id != user_id:
                raise NotFound(f"Could not find Application Credential: {cred_id}.")
            return self.core.app_cred_ref(s, a)

    def create_app_cred(
        self, ctx: RequestContext, user_id: str, data: dict[str, Any]
    ) -> dict[str, Any]:
        with self.core.db.session() as s:
            self.core.owned_user(s, ctx, user_id)
        enforce(ctx, "identity:create_application_credential", owner_user_id=user_id)
        if user_id != ctx.user_id:
            raise Forbidden("Application credentials can only be created for yourself.")
        if ctx.project_id is None:
            raise Forbidden("Creating an application credential needs a project-scoped token.")
        if ctx.application_credential_id is not None:
            with self.core.db.session() as s:
                parent = s.get(m.ApplicationCredential, ctx.application_credential_id)
                if parent is None or not parent.unrestricted:
                    raise Forbidden(
                        "A restricted application credential cannot create another one; "
                        "use a password or an unrestricted application credential."
                    )
                if access_rules_of(s, [parent.id]):
                    raise Forbidden(
                        "An application credential limited by access rules cannot create "
                        "another one (it would not be limited); use a password."
                    )
        rules = AccessRules.check_request(data.get("access_rules") or [])
        secret = data.get("secret") or new_secret()
        hashed = self.core.hash_secret(secret)
        with self.core.db.session() as s:
            current = self.core.implied_role_ids(
                s, self.core.role_ids_on(s, user_id, "project", ctx.project_id)
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
            if expires_at is not None and expires_at <= self.core.now():
                raise BadRequest("expires_at must be in the future.")
            a = m.ApplicationCredential(
                id=new_id(),
                user_id=user_id,
                project_id=ctx.project_id,
                name=data["name"],
                description=data.get("description") or "",
                secret_hash=hashed,
                expires_at=naive_utc(expires_at) if expires_at else None,
                unrestricted=bool(data.get("unrestricted", False)),
                role_ids=sorted(wanted),
                created_at=naive_utc(self.core.now()),
            )
            s.add(a)
            self.core.flush_unique(
                s, f"Duplicate entry: an application credential named {data['name']!r} exists."
            )
            self.access_rules.attach(s, a, rules)
            s.flush()
            ref = self.core.app_cred_ref(s, a)
        ref["secret"] = secret
        self.core.changed()
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
        with self.core.db.session() as s:
            self.core.owned_user(s, ctx, user_id)
            enforce(ctx, "identity:delete_application_credential", owner_user_id=user_id)
            a = s.get(m.ApplicationCredential, cred_id)
            if a is None or a.user_id != user_id:
                raise NotFound(f"Could not find Application Credential: {cred_id}.")
            # Keystone refuses it too: a restricted credential deleting another (or an
            # unrestricted one) would cut off whoever relies on it.
            if self._confined_to(s, ctx) is not None:
                raise Forbidden("A restricted application credential cannot delete one.")
            self.core.revoke(s, user_id=user_id, app_cred_id=a.id)
            s.delete(a)  # its EC2 keys go with it (ON DELETE CASCADE)
        self.core.changed()

    # ------------------------------------------------------------------ credentials

    @staticmethod
    def _confined_to(s: Session, ctx: RequestContext) -> str | None:
        """The restricted application credential the caller acts through, if it does.

        Such a caller reaches only the credentials bound to it: the user's other EC2
        secrets would give it the user's full roles and no expiry.
        """
        if ctx.application_credential_id is None:
            return None
        used = s.get(m.ApplicationCredential, ctx.application_credential_id)
        if used is not None and used.unrestricted:
            return None
        return ctx.application_credential_id

    def _visible_credential(self, s: Session, ctx: RequestContext, cred_id: str) -> m.Credential:
        c = s.get(m.Credential, cred_id)
        if c is None or (not ctx.is_admin and c.user_id != ctx.user_id):
            raise NotFound(f"Could not find credential: {cred_id}.")
        confined = self._confined_to(s, ctx)
        if confined is not None and c.app_cred_id != confined:
            raise NotFound(f"Could not find credential: {cred_id}.")
        return c

    def _bind_to_app_cred(
        self, s: Session, ctx: RequestContext, user_id: str, project_id: str, named: Any
    ) -> m.ApplicationCredential | None:
        """The application credential a new EC2 key belongs to, or None for the user's own.

        A key made with an application credential's token is always its own; a user may
        also bind a key to one of its credentials by naming it in the blob (`app_cred_id`,
        as in Keystone), which only ever narrows what the key can do.
        """
        wanted = ctx.application_credential_id
        if wanted is not None and (named not in (None, wanted) or user_id != ctx.user_id):
            raise Forbidden(
                "An EC2 key made with an application credential belongs to that credential "
                "and its user; it cannot name another."
            )
        wanted = wanted or named
        if wanted is None:
            return None
        if not isinstance(wanted, str):
            raise BadRequest("app_cred_id in an ec2 credential blob must be a string.")
        a = s.get(m.ApplicationCredential, wanted)
        if a is None or a.user_id != user_id:
            raise NotFound(f"Could not find Application Credential: {wanted}.")
        if a.project_id != project_id:
            raise Forbidden(
                "An EC2 key of an application credential can only be for the credential's "
                f"project, {a.project_id}."
            )
        if a.expires_at is not None and as_utc(a.expires_at) <= self.core.now():
            raise BadRequest(f"The application credential {a.id} has expired.")
        if access_rules_of(s, [a.id]):
            raise Forbidden(
                "An application credential with access rules cannot have EC2 keys: S3 "
                "requests are not checked against access rules. Use a credential without "
                "access rules for S3."
            )
        return a

    def list_credentials(
        self, ctx: RequestContext, filters: dict[str, Any]
    ) -> list[dict[str, Any]]:
        enforce(ctx, "identity:list_credentials")
        with self.core.db.session() as s:
            query = select(m.Credential).order_by(m.Credential.created_at)
            for key in ("user_id", "type"):
                if key in filters:
                    query = query.where(getattr(m.Credential, key) == filters[key])
            if not ctx.is_admin:
                query = query.where(m.Credential.user_id == ctx.user_id)
            confined = self._confined_to(s, ctx)
            if confined is not None:
                query = query.where(m.Credential.app_cred_id == confined)
            return [self.core.credential_ref(c) for c in s.scalars(query).all()]

    def get_credential(self, ctx: RequestContext, cred_id: str) -> dict[str, Any]:
        enforce(ctx, "identity:get_credential")
        with self.core.db.session() as s:
            return self.core.credential_ref(self._visible_credential(s, ctx, cred_id))

    def create_credential(self, ctx: RequestContext, data: dict[str, Any]) -> dict[str, Any]:
        user_id = data["user_id"]
        with self.core.db.session() as s:
            self.core.owned_user(s, ctx, user_id)
        enforce(ctx, "identity:create_credential", owner_user_id=user_id)
        blob = data["blob"]
        cred_id = new_id()
        project_id = data.get("project_id")
        parsed: dict[str, Any] | None = None
        if data["type"] == "ec2":
            parsed = _ec2_blob(blob)
            if not project_id:
                raise BadRequest("An ec2 credential needs a project_id.")
            cred_id = ec2_credential_id(parsed["access"])
        with self.core.db.session() as s:
            if parsed is None and self._confined_to(s, ctx) is not None:
                raise Forbidden(
                    "A restricted application credential can only make EC2 keys, which "
                    "belong to it."
                )
            if project_id:
                project = s.get(m.Project, project_id)
                if project is None or (
                    not ctx.is_admin and project_id not in self.core.visible_project_ids(s, ctx)
                ):
                    raise NotFound(f"Could not find project: {project_id}.")
            bound = None
            if parsed is not None:
                named = parsed.get("app_cred_id")
                bound = self._bind_to_app_cred(s, ctx, user_id, str(project_id), named)
                if bound is not None:
                    parsed["app_cred_id"] = bound.id  # shown in the blob, as Keystone does
                    blob = json.dumps(parsed)
            c = m.Credential(
                id=cred_id,
                user_id=user_id,
                project_id=project_id,
                type=data["type"],
                blob=self.core.encrypt_blob(blob),
                created_at=naive_utc(self.core.now()),
                app_cred_id=bound.id if bound is not None else None,
            )
            s.add(c)
            self.core.flush_unique(s, "Duplicate entry: a credential with this access key exists.")
            ref = self.core.credential_ref(c)
        self.core.changed()
        return ref

    def update_credential(
        self, ctx: RequestContext, cred_id: str, data: dict[str, Any]
    ) -> dict[str, Any]:
        with self.core.db.session() as s:
            c = self._visible_credential(s, ctx, cred_id)
            enforce(ctx, "identity:update_credential", owner_user_id=c.user_id)
            if c.type == "ec2" and "blob" in data:
                raise BadRequest("The blob of an ec2 credential cannot change; create a new one.")
            if "blob" in data:
                c.blob = self.core.encrypt_blob(data["blob"])
            if "project_id" in data:
                # The same rule as on create: only a project the caller can see.
                project_id = data["project_id"]
                if project_id:
                    project = s.get(m.Project, project_id)
                    if project is None or (
                        not ctx.is_admin and project_id not in self.core.visible_project_ids(s, ctx)
                    ):
                        raise NotFound(f"Could not find project: {project_id}.")
                elif c.type == "ec2":
                    raise BadRequest("An ec2 credential needs a project_id.")
                if c.app_cred_id is not None and project_id != c.project_id:
                    raise BadRequest(
                        "An EC2 key of an application credential stays in the credential's project."
                    )
                c.project_id = project_id
            ref = self.core.credential_ref(c)
        self.core.changed()
        return ref

    def delete_credential(self, ctx: RequestContext, cred_id: str) -> None:
        with self.core.db.session() as s:
            c = self._visible_credential(s, ctx, cred_id)
            enforce(ctx, "identity:delete_credential", owner_user_id=c.user_id)
            s.delete(c)
        self.core.changed()

    # ------------------------------------------------------------------ EC2 keys (S3 access keys)

    def ec2_ref(self, c: m.Credential, base_url: str) -> dict[str, Any]:
        blob = json.loads(self.core.decrypt_blob(c.blob) or "{}")
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
        with self.core.db.session() as s:
            self.core.owned_user(s, ctx, user_id)
        enforce(ctx, "identity:ec2_create_credential", owner_user_id=user_id)
        access, secret = new_id(), new_id()
        blob = json.dumps({"access": access, "secret": secret, "trust_id": None})
        self.create_credential(
            ctx, {"user_id": user_id, "project_id": project_id, "type": "ec2", "blob": blob}
        )
        with self.core.db.session() as s:
            return self.ec2_ref(
                self.core.get(s, m.Credential, ec2_credential_id(access), "credential"), base_url
            )

    def ec2_list(self, ctx: RequestContext, user_id: str, base_url: str) -> list[dict[str, Any]]:
        with self.core.db.session() as s:
            self.core.owned_user(s, ctx, user_id)
            enforce(ctx, "identity:ec2_list_credentials", owner_user_id=user_id)
            query = select(m.Credential).where(
                m.Credential.user_id == user_id, m.Credential.type == "ec2"
            )
            confined = self._confined_to(s, ctx)
            if confined is not None:
                query = query.where(m.Credential.app_cred_id == confined)
            return [self.ec2_ref(c, base_url) for c in s.scalars(query).all()]

    def _ec2_owned(
        self, s: Session, ctx: RequestContext, user_id: str, access: str
    ) -> m.Credential:
        self.core.owned_user(s, ctx, user_id)
        c = s.get(m.Credential, ec2_credential_id(access))
        if c is None or c.user_id != user_id or c.type != "ec2":
            raise NotFound(f"Could not find credential: {access}.")
        confined = self._confined_to(s, ctx)
        if confined is not None and c.app_cred_id != confined:
            raise NotFound(f"Could not find credential: {access}.")
        return c

    def ec2_get(
        self, ctx: RequestContext, user_id: str, access: str, base_url: str
    ) -> dict[str, Any]:
        with self.core.db.session() as s:
            c = self._ec2_owned(s, ctx, user_id, access)
            enforce(ctx, "identity:ec2_get_credential", owner_user_id=user_id)
            return self.ec2_ref(c, base_url)

    def ec2_delete(self, ctx: RequestContext, user_id: str, access: str) -> None:
        with self.core.db.session() as s:
            c = self._ec2_owned(s, ctx, user_id, access)
            enforce(ctx, "identity:ec2_delete_credential", owner_user_id=user_id)
            s.delete(c)
        self.core.changed()

    def ec2_principal(self, access: str) -> Ec2Principal | None:
        """Who signs with this access key, and the secret to check the signature against.

        None when the key is unknown, or its user, project or role on the project is
        gone or disabled, or its application credential is gone or expired. Cached until
        identity data changes, like token views; expiry is checked on every use.
        """
        self.core.follow_changes()
        generation = self.core.generation
        cached = self._ec2_cache.get(access)
        if cached is not None and cached[0] == generation:
            found = cached[1]
        else:
            found = self._lookup_ec2(access)
            if len(self._ec2_cache) > 100_000:
                self._ec2_cache.clear()
            self._ec2_cache[access] = (generation, found)
        if found is not None and found.expired(self.core.clock.timestamp()):
            return None
        return found

    def _lookup_ec2(self, access: str) -> Ec2Principal | None:
        with self.core.db.session() as s:
            c = s.get(m.Credential, ec2_credential_id(access))
            if c is None or c.type != "ec2" or not c.project_id:
                return None
            blob = json.loads(self.core.decrypt_blob(c.blob) or "{}")
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
            role_ids = self.core.role_ids_on(s, user.id, "project", project.id)
            expires_at: float | None = None
            if c.app_cred_id is not None:
                a = s.get(m.ApplicationCredential, c.app_cred_id)
                if a is None or a.user_id != user.id or a.project_id != project.id:
                    return None
                if access_rules_of(s, [a.id]):  # S3 cannot hold a key to access rules
                    return None
                # what the credential's own tokens carry: its roles the user still holds
                role_ids = self.core.implied_role_ids(s, role_ids) & set(a.role_ids)
                expires_at = to_timestamp(a.expires_at) if a.expires_at is not None else None
            if not role_ids:
                return None
            roles = frozenset(r.name for r in self.core.roles_by_ids(s, sorted(role_ids)))
            roles |= frozenset(n for r in roles for n in IMPLIED_ROLES.get(r, frozenset()))
            secret = str(blob.get("secret", ""))
            return Ec2Principal(secret, user.id, project.id, roles, c.app_cred_id, expires_at)


def _ec2_blob(blob: str) -> dict[str, Any]:
    """An EC2 blob as a dict, refused unless it names a string access key and secret."""
    try:
        parsed = json.loads(blob)
        access = parsed["access"]
        if not isinstance(access, str) or not access or not isinstance(parsed.get("secret"), str):
            raise ValueError
    except (ValueError, KeyError, TypeError):
        raise BadRequest(
            "An ec2 credential blob must be JSON with string 'access' and 'secret'."
        ) from None
    return dict(parsed)
