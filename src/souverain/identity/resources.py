"""Domains, projects, users and groups: who exists, and who of them a caller may see.

Knows nothing of HTTP. Others' resources look absent (404) to a caller who may not
see them; every change revokes the tokens it invalidates before it commits.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import and_, delete, or_, select
from sqlalchemy.orm import Session

from souverain.common.context import RequestContext
from souverain.common.errors import BadRequest, Conflict, Forbidden, NotFound, Unauthorized
from souverain.common.ids import new_id
from souverain.common.policy import enforce
from souverain.identity import models as m
from souverain.identity.core import (
    DEFAULT_DOMAIN_ID,
    INVALID_CREDENTIALS,
    IdentityCore,
    naive_utc,
)
from souverain.identity.mfa import check_options, merged_options
from souverain.identity.project_tags import matches as tag_filter


class Resources:
    """The people and places of the cloud; every change revokes the tokens it invalidates."""

    def __init__(self, core: IdentityCore) -> None:
        self.core = core

    # ------------------------------------------------------------------ domains

    def list_domains(self, ctx: RequestContext, filters: dict[str, Any]) -> list[dict[str, Any]]:
        enforce(ctx, "identity:list_domains")
        with self.core.db.session() as s:
            query = select(m.Domain).order_by(m.Domain.name)
            if "name" in filters:
                query = query.where(m.Domain.name == filters["name"])
            if "enabled" in filters:
                query = query.where(m.Domain.enabled.is_(filters["enabled"]))
            rows = s.scalars(query).all()
            if not ctx.is_admin:
                allowed = {ctx.user_domain_id, ctx.project_domain_id, ctx.domain_id}
                rows = [d for d in rows if d.id in allowed]
            return [self.core.domain_ref(d) for d in rows]

    def get_domain(self, ctx: RequestContext, domain_id: str) -> dict[str, Any]:
        enforce(ctx, "identity:get_domain")
        with self.core.db.session() as s:
            d = self.core.get(s, m.Domain, domain_id, "domain")
            if not ctx.is_admin and d.id not in {
                ctx.user_domain_id,
                ctx.project_domain_id,
                ctx.domain_id,
            }:
                raise NotFound(f"Could not find domain: {domain_id}.")
            return self.core.domain_ref(d)

    def create_domain(self, ctx: RequestContext, data: dict[str, Any]) -> dict[str, Any]:
        enforce(ctx, "identity:create_domain")
        with self.core.db.session() as s:
            d = m.Domain(
                id=data.get("id") or new_id(),
                name=data["name"],
                description=data.get("description") or "",
                enabled=data.get("enabled", True),
                tags=data.get("tags") or [],
            )
            s.add(d)
            self.core.flush_unique(s, f"Duplicate entry: a domain named {data['name']!r} exists.")
            ref = self.core.domain_ref(d)
        self.core.changed()
        return ref

    def update_domain(
        self, ctx: RequestContext, domain_id: str, data: dict[str, Any]
    ) -> dict[str, Any]:
        enforce(ctx, "identity:update_domain")
        with self.core.db.session() as s:
            d = self.core.get(s, m.Domain, domain_id, "domain")
            if d.id == DEFAULT_DOMAIN_ID and data.get("enabled") is False:
                raise Forbidden("The default domain cannot be disabled.")
            for key in ("name", "description", "enabled", "tags"):
                if key in data:
                    setattr(d, key, data[key] if data[key] is not None else "")
            if data.get("enabled") is False:
                self.core.revoke(s, domain_id=d.id)
            self.core.flush_unique(s, f"Duplicate entry: a domain named {d.name!r} exists.")
            ref = self.core.domain_ref(d)
        self.core.changed()
        return ref

    def delete_domain(self, ctx: RequestContext, domain_id: str) -> None:
        enforce(ctx, "identity:delete_domain")
        with self.core.db.session() as s:
            d = self.core.get(s, m.Domain, domain_id, "domain")
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
        self.core.changed()

    # ------------------------------------------------------------------ projects

    def list_projects(self, ctx: RequestContext, filters: dict[str, Any]) -> list[dict[str, Any]]:
        enforce(ctx, "identity:list_projects")
        with self.core.db.session() as s:
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
                query = query.where(m.Project.id.in_(self.core.held_project_ids(ctx)))
            rows = s.scalars(query).all()
            return [self.core.project_ref(p) for p in rows if tag_filter(p.tags or [], filters)]

    def get_project(self, ctx: RequestContext, project_id: str) -> dict[str, Any]:
        enforce(ctx, "identity:get_project")
        with self.core.db.session() as s:
            p = self.core.get(s, m.Project, project_id, "project")
            if not ctx.is_admin and p.id not in self.core.visible_project_ids(s, ctx):
                raise NotFound(f"Could not find project: {project_id}.")
            return self.core.project_ref(p)

    def create_project(self, ctx: RequestContext, data: dict[str, Any]) -> dict[str, Any]:
        enforce(ctx, "identity:create_project")
        if data.get("is_domain"):
            raise BadRequest("Projects acting as domains are not supported; create a domain.")
        with self.core.db.session() as s:
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
            self.core.get(s, m.Domain, domain_id, "domain")
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
            self.core.flush_unique(
                s,
                f"Conflict occurred attempting to store project - it is not permitted to "
                f"have two projects with the same name in the same domain : {data['name']}.",
            )
            ref = self.core.project_ref(p)
        self.core.changed()
        return ref

    def update_project(
        self, ctx: RequestContext, project_id: str, data: dict[str, Any]
    ) -> dict[str, Any]:
        enforce(ctx, "identity:update_project")
        with self.core.db.session() as s:
            p = self.core.get(s, m.Project, project_id, "project")
            if "domain_id" in data and data["domain_id"] != p.domain_id:
                raise BadRequest("A project cannot move to another domain.")
            for key in ("name", "description", "enabled", "tags"):
                if key in data:
                    setattr(p, key, data[key] if data[key] is not None else "")
            if data.get("enabled") is False:
                self.core.revoke(s, project_id=p.id)
            self.core.flush_unique(s, f"Duplicate entry: a project named {p.name!r} exists.")
            ref = self.core.project_ref(p)
        self.core.changed()
        return ref

    def delete_project(self, ctx: RequestContext, project_id: str) -> None:
        enforce(ctx, "identity:delete_project")
        with self.core.db.session() as s:
            p = self.core.get(s, m.Project, project_id, "project")
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
            s.execute(delete(m.ProjectEndpoint).where(m.ProjectEndpoint.project_id == p.id))
            self.core.revoke(s, project_id=p.id)
            s.delete(p)
        self.core.changed()

    def list_user_projects(self, ctx: RequestContext, user_id: str) -> list[dict[str, Any]]:
        with self.core.db.session() as s:
            self.core.owned_user(s, ctx, user_id)  # another user's list looks absent, not forbidden
            enforce(ctx, "identity:list_user_projects", owner_user_id=user_id)
            return self._projects_of(s, user_id)

    def _projects_of(self, s: Session, user_id: str) -> list[dict[str, Any]]:
        actors = [user_id, *self.core.group_ids_of(s, user_id)]
        ids = set(
            s.scalars(
                select(m.Assignment.target_id).where(
                    m.Assignment.actor_id.in_(actors), m.Assignment.target_type == "project"
                )
            ).all()
        )
        for inherited in self.core.inherited_project_ids(s, actors).values():
            ids |= inherited  # OS-INHERIT grants on a domain or a parent project
        rows = s.scalars(
            select(m.Project).where(m.Project.id.in_(ids)).order_by(m.Project.name)
        ).all()
        return [self.core.project_ref(p) for p in rows]

    def auth_projects(self, ctx: RequestContext) -> list[dict[str, Any]]:
        with self.core.db.session() as s:
            return [p for p in self._projects_of(s, ctx.user_id) if p["enabled"]]

    def auth_domains(self, ctx: RequestContext) -> list[dict[str, Any]]:
        with self.core.db.session() as s:
            actors = [ctx.user_id, *self.core.group_ids_of(s, ctx.user_id)]
            ids = set(
                s.scalars(
                    select(m.Assignment.target_id).where(
                        m.Assignment.actor_id.in_(actors), m.Assignment.target_type == "domain"
                    )
                ).all()
            )
            rows = s.scalars(select(m.Domain).where(m.Domain.id.in_(ids))).all()
            return [self.core.domain_ref(d) for d in rows if d.enabled]

    def auth_system(self, ctx: RequestContext) -> list[dict[str, Any]]:
        with self.core.db.session() as s:
            return [{"all": True}] if self.core.role_ids_on(s, ctx.user_id, "system", "all") else []

    # ------------------------------------------------------------------ users

    def _check_password_policy(self, password: str) -> None:
        if len(password) < self.core.settings.password_min_length:
            raise BadRequest(
                f"Password does not meet the requirements: at least "
                f"{self.core.settings.password_min_length} characters."
            )

    def list_users(self, ctx: RequestContext, filters: dict[str, Any]) -> list[dict[str, Any]]:
        enforce(ctx, "identity:list_users")
        with self.core.db.session() as s:
            query = select(m.User).order_by(m.User.name, m.User.id)
            for key in ("name", "domain_id"):
                if key in filters:
                    query = query.where(getattr(m.User, key) == filters[key])
            if "enabled" in filters:
                query = query.where(m.User.enabled.is_(filters["enabled"]))
            if not ctx.is_admin:
                query = query.where(self.core.visible_users(ctx))
            return [self.core.user_ref(u) for u in s.scalars(query).all()]

    def get_user(self, ctx: RequestContext, user_id: str) -> dict[str, Any]:
        enforce(ctx, "identity:get_user")
        with self.core.db.session() as s:
            u = self.core.get(s, m.User, user_id, "user")
            if not ctx.is_admin and not s.scalar(
                select(m.User.id).where(m.User.id == u.id, self.core.visible_users(ctx))
            ):
                raise NotFound(f"Could not find user: {user_id}.")
            return self.core.user_ref(u)

    def create_user(self, ctx: RequestContext, data: dict[str, Any]) -> dict[str, Any]:
        enforce(ctx, "identity:create_user")
        password = data.get("password")
        if password is not None:
            self._check_password_policy(password)
        hashed = self.core.hash_secret(password) if password else None
        with self.core.db.session() as s:
            domain_id = data.get("domain_id") or ctx.project_domain_id or DEFAULT_DOMAIN_ID
            self.core.get(s, m.Domain, domain_id, "domain")
            known = {"name", "domain_id", "enabled", "password", "default_project_id", "options"}
            u = m.User(
                id=new_id(),
                name=data["name"],
                domain_id=domain_id,
                enabled=data.get("enabled", True),
                password_hash=hashed,
                password_changed_at=naive_utc(self.core.now()) if hashed else None,
                default_project_id=data.get("default_project_id"),
                extra={k: v for k, v in data.items() if k not in known},
                created_at=naive_utc(self.core.now()),
                options=merged_options(None, check_options(data.get("options") or {})),
            )
            s.add(u)
            self.core.flush_unique(
                s,
                f"Conflict occurred attempting to store user - Duplicate entry found "
                f"with name {data['name']} at domain ID {domain_id}.",
            )
            ref = self.core.user_ref(u)
        self.core.changed()
        return ref

    def update_user(
        self, ctx: RequestContext, user_id: str, data: dict[str, Any]
    ) -> dict[str, Any]:
        enforce(ctx, "identity:update_user")
        password = data.get("password")
        if password is not None:
            self._check_password_policy(password)
        hashed = self.core.hash_secret(password) if password else None
        with self.core.db.session() as s:
            u = self.core.get(s, m.User, user_id, "user")
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
            if data.get("options") is not None:
                u.options = merged_options(u.options, check_options(data["options"]))
            if data.get("enabled") is True:
                u.failed_auth_count = 0  # an administrator re-enabling a user unlocks it
                u.failed_auth_at = None
            if data.get("enabled") is False:
                self.core.revoke(s, user_id=u.id)
            if hashed:
                u.password_hash = hashed
                u.password_changed_at = naive_utc(self.core.now())
                u.failed_auth_count = 0
                u.failed_auth_at = None
                self.core.revoke(s, user_id=u.id)
            self.core.flush_unique(
                s, f"Duplicate entry: a user named {u.name!r} exists in the domain."
            )
            ref = self.core.user_ref(u)
        self.core.changed()
        return ref

    def change_password(
        self, ctx: RequestContext | None, user_id: str, original: str, new: str
    ) -> None:
        """The user's own password change; needs the original, revokes the user's tokens."""
        if ctx is not None:
            enforce(ctx, "identity:change_password", owner_user_id=user_id)
        self._check_password_policy(new)
        with self.core.db.session() as s:
            u = s.get(m.User, user_id)
            if u is None or not u.password_hash:
                raise Unauthorized(INVALID_CREDENTIALS)
            # The original password is checked like a login, lockout included, or this
            # endpoint would let a stolen token guess the password without limit.
            self.core.refuse_if_locked(u)
            if not self.core.check_secret(original, u.password_hash):
                self.core.count_failed_login(s, u)
                raise Unauthorized(INVALID_CREDENTIALS)
            u.failed_auth_count = 0
            u.failed_auth_at = None
            u.password_hash = self.core.hash_secret(new)
            u.password_changed_at = naive_utc(self.core.now())
            self.core.revoke(s, user_id=u.id)
        self.core.changed()

    def delete_user(self, ctx: RequestContext, user_id: str) -> None:
        enforce(ctx, "identity:delete_user")
        with self.core.db.session() as s:
            u = self.core.get(s, m.User, user_id, "user")
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
            self.core.revoke(s, user_id=u.id)
            s.delete(u)
        self.core.changed()

    # ------------------------------------------------------------------ groups

    def list_groups(self, ctx: RequestContext, filters: dict[str, Any]) -> list[dict[str, Any]]:
        enforce(ctx, "identity:list_groups")
        with self.core.db.session() as s:
            query = select(m.Group).order_by(m.Group.name, m.Group.id)
            for key in ("name", "domain_id"):
                if key in filters:
                    query = query.where(getattr(m.Group, key) == filters[key])
            if not ctx.is_admin:
                mine = select(m.GroupMember.group_id).where(m.GroupMember.user_id == ctx.user_id)
                query = query.where(m.Group.id.in_(mine))
            return [self.core.group_ref(g) for g in s.scalars(query).all()]

    def _visible_group(self, s: Session, ctx: RequestContext, group_id: str) -> m.Group:
        g: m.Group = self.core.get(s, m.Group, group_id, "group")
        if not ctx.is_admin and g.id not in self.core.group_ids_of(s, ctx.user_id):
            raise NotFound(f"Could not find group: {group_id}.")
        return g

    def get_group(self, ctx: RequestContext, group_id: str) -> dict[str, Any]:
        enforce(ctx, "identity:get_group")
        with self.core.db.session() as s:
            return self.core.group_ref(self._visible_group(s, ctx, group_id))

    def create_group(self, ctx: RequestContext, data: dict[str, Any]) -> dict[str, Any]:
        enforce(ctx, "identity:create_group")
        with self.core.db.session() as s:
            domain_id = data.get("domain_id") or ctx.project_domain_id or DEFAULT_DOMAIN_ID
            self.core.get(s, m.Domain, domain_id, "domain")
            g = m.Group(
                id=new_id(),
                name=data["name"],
                domain_id=domain_id,
                description=data.get("description") or "",
            )
            s.add(g)
            self.core.flush_unique(
                s,
                f"Conflict occurred attempting to store group - Duplicate entry found "
                f"with name {data['name']} at domain ID {domain_id}.",
            )
            ref = self.core.group_ref(g)
        self.core.changed()
        return ref

    def update_group(
        self, ctx: RequestContext, group_id: str, data: dict[str, Any]
    ) -> dict[str, Any]:
        enforce(ctx, "identity:update_group")
        with self.core.db.session() as s:
            g = self.core.get(s, m.Group, group_id, "group")
            for key in ("name", "description"):
                if key in data:
                    setattr(g, key, data[key] or "")
            self.core.flush_unique(s, f"Duplicate entry: a group named {g.name!r} exists.")
            ref = self.core.group_ref(g)
        self.core.changed()
        return ref

    def delete_group(self, ctx: RequestContext, group_id: str) -> None:
        enforce(ctx, "identity:delete_group")
        with self.core.db.session() as s:
            g = self.core.get(s, m.Group, group_id, "group")
            for user_id in s.scalars(
                select(m.GroupMember.user_id).where(m.GroupMember.group_id == g.id)
            ).all():
                self.core.revoke(s, user_id=user_id)
            s.execute(
                delete(m.Assignment).where(
                    m.Assignment.actor_type == "group", m.Assignment.actor_id == g.id
                )
            )
            s.execute(delete(m.GroupMember).where(m.GroupMember.group_id == g.id))
            s.delete(g)
        self.core.changed()

    def list_group_users(
        self, ctx: RequestContext, group_id: str, filters: dict[str, Any]
    ) -> list[dict[str, Any]]:
        enforce(ctx, "identity:list_users_in_group")
        with self.core.db.session() as s:
            self._visible_group(s, ctx, group_id)
            ids = s.scalars(
                select(m.GroupMember.user_id).where(m.GroupMember.group_id == group_id)
            ).all()
            rows = s.scalars(select(m.User).where(m.User.id.in_(ids)).order_by(m.User.name)).all()
            return [self.core.user_ref(u) for u in rows]

    def list_user_groups(self, ctx: RequestContext, user_id: str) -> list[dict[str, Any]]:
        with self.core.db.session() as s:
            self.core.owned_user(s, ctx, user_id)
            enforce(ctx, "identity:list_groups_for_user", owner_user_id=user_id)
            ids = self.core.group_ids_of(s, user_id)
            rows = s.scalars(select(m.Group).where(m.Group.id.in_(ids)).order_by(m.Group.name))
            return [self.core.group_ref(g) for g in rows.all()]

    def add_user_to_group(self, ctx: RequestContext, group_id: str, user_id: str) -> None:
        enforce(ctx, "identity:add_user_to_group")
        with self.core.db.session() as s:
            self.core.get(s, m.Group, group_id, "group")
            self.core.get(s, m.User, user_id, "user")
            if s.get(m.GroupMember, (group_id, user_id)) is None:
                s.add(m.GroupMember(group_id=group_id, user_id=user_id))
        self.core.changed()

    def check_user_in_group(self, ctx: RequestContext, group_id: str, user_id: str) -> None:
        enforce(ctx, "identity:check_user_in_group")
        with self.core.db.session() as s:
            self._visible_group(s, ctx, group_id)
            self.core.get(s, m.User, user_id, "user")
            if s.get(m.GroupMember, (group_id, user_id)) is None:
                raise NotFound(f"User {user_id} is not a member of group {group_id}.")

    def remove_user_from_group(self, ctx: RequestContext, group_id: str, user_id: str) -> None:
        enforce(ctx, "identity:remove_user_from_group")
        with self.core.db.session() as s:
            self.core.get(s, m.Group, group_id, "group")
            self.core.get(s, m.User, user_id, "user")
            member = s.get(m.GroupMember, (group_id, user_id))
            if member is None:
                raise NotFound(f"User {user_id} is not a member of group {group_id}.")
            s.delete(member)
            self.core.revoke(s, user_id=user_id)
        self.core.changed()
