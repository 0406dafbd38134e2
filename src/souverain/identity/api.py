"""Keystone v3 wire format: routes, request validation, response shapes, error bodies.

This module turns HTTP into calls on `IdentityService` and back. It holds no
rules: who may do what is decided by the service and `common.policy`.
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Annotated, Any, ClassVar

from pydantic import (
    BaseModel,
    ConfigDict,
    StringConstraints,
    field_validator,
    model_validator,
)
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route, Router
from starlette.types import ASGIApp, Receive, Scope, Send

from souverain.common.clock import isotime, parse_isotime
from souverain.common.context import RequestContext
from souverain.common.errors import ApiError, BadRequest, Forbidden, NotFound
from souverain.common.jsoncodec import JSONResponse
from souverain.common.middleware import state_of
from souverain.common.pagination import paginate
from souverain.identity.service import IdentityService, TokenView
from souverain.openstack.auth import authenticate
from souverain.openstack.body import member, read_json, validated
from souverain.openstack.faults import ErrorLayer, render_error
from souverain.openstack.query import parse_flag, parse_limit

log = logging.getLogger("souverain.identity")

API_VERSION = "v3.14"
MEDIA_TYPE = "application/vnd.openstack.identity-v3+json"
UPDATED = "2020-04-07T00:00:00Z"


def error_response(
    status: int, title: str, message: str, headers: dict[str, str] | None = None
) -> Response:
    body, content_type = render_error("", status, title, message)
    out = dict(headers or {})
    if status == 401:
        out.setdefault("WWW-Authenticate", 'Keystone uri="/identity"')
    return Response(body, status_code=status, media_type=content_type, headers=out)


# ---------------------------------------------------------------------- request models

Name = Annotated[str, StringConstraints(min_length=1, max_length=255, strip_whitespace=False)]
Text = Annotated[str, StringConstraints(max_length=65535)]
Id = Annotated[str, StringConstraints(min_length=1, max_length=64)]
Tags = list[Annotated[str, StringConstraints(min_length=1, max_length=255)]]


class _Body(BaseModel):
    model_config = ConfigDict(strict=True, extra="ignore")


class _Update(_Body):
    """A PATCH body: any field may be left out, but only those in `nullable` may be null.

    Without this, `{"name": null}` or `{"enabled": null}` reached the database as an
    empty name or a non-boolean and failed there (500) instead of here (400).
    """

    nullable: ClassVar[frozenset[str]] = frozenset({"description"})

    @model_validator(mode="before")
    @classmethod
    def _refuse_nulls(cls, data: Any) -> Any:
        if isinstance(data, dict):
            for key, value in data.items():
                if value is None and key in cls.model_fields and key not in cls.nullable:
                    raise ValueError(f"{key} cannot be null")
        return data


class DomainCreate(_Body):
    name: Name
    description: Text | None = None
    enabled: bool = True
    tags: Tags | None = None
    explicit_domain_id: Id | None = None


class DomainUpdate(_Update):
    name: Name | None = None
    description: Text | None = None
    enabled: bool | None = None
    tags: Tags | None = None


class ProjectCreate(_Body):
    name: Name
    domain_id: Id | None = None
    parent_id: Id | None = None
    description: Text | None = None
    enabled: bool = True
    is_domain: bool = False
    tags: Tags | None = None


class ProjectUpdate(_Update):
    name: Name | None = None
    domain_id: Id | None = None
    description: Text | None = None
    enabled: bool | None = None
    tags: Tags | None = None


class UserCreate(_Body):
    model_config = ConfigDict(strict=True, extra="allow")
    name: Name
    domain_id: Id | None = None
    enabled: bool = True
    password: Annotated[str, StringConstraints(max_length=4096)] | None = None
    default_project_id: Id | None = None
    description: Text | None = None
    email: Text | None = None


class UserUpdate(_Update):
    model_config = ConfigDict(strict=True, extra="allow")
    nullable = frozenset({"description", "email", "default_project_id", "password"})
    name: Name | None = None
    domain_id: Id | None = None
    enabled: bool | None = None
    password: Annotated[str, StringConstraints(max_length=4096)] | None = None
    default_project_id: Id | None = None
    description: Text | None = None
    email: Text | None = None


class PasswordChange(_Body):
    password: Annotated[str, StringConstraints(max_length=4096)]
    original_password: Annotated[str, StringConstraints(max_length=4096)]


class GroupCreate(_Body):
    name: Name
    domain_id: Id | None = None
    description: Text | None = None


class GroupUpdate(_Update):
    name: Name | None = None
    description: Text | None = None


class RoleCreate(_Body):
    name: Name
    domain_id: Id | None = None
    description: Text | None = None


class RoleUpdate(_Update):
    name: Name | None = None
    description: Text | None = None


class RegionCreate(_Body):
    id: Annotated[str, StringConstraints(min_length=1, max_length=255)] | None = None
    description: Text | None = None
    parent_region_id: Annotated[str, StringConstraints(max_length=255)] | None = None


class RegionUpdate(_Update):
    nullable = frozenset({"description", "parent_region_id"})
    description: Text | None = None
    parent_region_id: Annotated[str, StringConstraints(max_length=255)] | None = None


class ServiceCreate(_Body):
    type: Name
    name: Annotated[str, StringConstraints(max_length=255)] | None = None
    description: Text | None = None
    enabled: bool = True


class ServiceUpdate(_Update):
    nullable = frozenset({"description", "name"})
    type: Name | None = None
    name: Annotated[str, StringConstraints(max_length=255)] | None = None
    description: Text | None = None
    enabled: bool | None = None


Interface = Annotated[str, StringConstraints(pattern=r"^(public|internal|admin)$")]
Url = Annotated[str, StringConstraints(min_length=1, max_length=2048, pattern=r"^https?://")]


class EndpointCreate(_Body):
    service_id: Id
    interface: Interface
    url: Url
    region_id: Annotated[str, StringConstraints(max_length=255)] | None = None
    region: Annotated[str, StringConstraints(max_length=255)] | None = None
    enabled: bool = True


class EndpointUpdate(_Update):
    nullable = frozenset({"region_id", "region"})
    service_id: Id | None = None
    interface: Interface | None = None
    url: Url | None = None
    region_id: Annotated[str, StringConstraints(max_length=255)] | None = None
    region: Annotated[str, StringConstraints(max_length=255)] | None = None
    enabled: bool | None = None


class RoleRef(_Body):
    id: Id | None = None
    name: Name | None = None


class AppCredCreate(_Body):
    name: Name
    description: Text | None = None
    secret: Annotated[str, StringConstraints(min_length=1, max_length=4096)] | None = None
    expires_at: dt.datetime | None = None
    roles: list[dict[str, Any]] | None = None
    unrestricted: bool = False
    access_rules: list[Any] | None = None

    @field_validator("expires_at", mode="before")
    @classmethod
    def _parse_time(cls, value: Any) -> Any:
        if value is None:
            return None
        if not isinstance(value, str):
            raise ValueError("must be an ISO 8601 time string")
        try:
            return parse_isotime(value)
        except ValueError:
            raise ValueError("must be an ISO 8601 time string") from None


class CredentialCreate(_Body):
    type: Name
    blob: Annotated[str, StringConstraints(min_length=1, max_length=65535)]
    user_id: Id
    project_id: Id | None = None


class CredentialUpdate(_Update):
    nullable = frozenset({"project_id"})
    blob: Annotated[str, StringConstraints(min_length=1, max_length=65535)] | None = None
    project_id: Id | None = None


class Ec2Create(_Body):
    tenant_id: Id


# ---------------------------------------------------------------------- helpers


def query_filters(
    request: Request, names: Sequence[str], bools: Sequence[str] = ()
) -> dict[str, Any]:
    filters: dict[str, Any] = {}
    for name in names:
        if name in request.query_params:
            filters[name] = request.query_params[name]
    for name in bools:
        if name in request.query_params:
            filters[name] = parse_flag(name, request.query_params[name])
    return filters


@dataclass
class Crud:
    """One Keystone collection: how its routes map to service calls."""

    collection: str
    member: str
    create_model: type[BaseModel]
    update_model: type[BaseModel]
    list_fn: Callable[[RequestContext, dict[str, Any]], list[dict[str, Any]]]
    get_fn: Callable[[RequestContext, str], dict[str, Any]]
    create_fn: Callable[[RequestContext, dict[str, Any]], dict[str, Any]]
    update_fn: Callable[[RequestContext, str, dict[str, Any]], dict[str, Any]]
    delete_fn: Callable[[RequestContext, str], None]
    filters: tuple[str, ...] = ("name",)
    bool_filters: tuple[str, ...] = ()
    slow_write: bool = False  # runs a password hash: keep it off the event loop


class IdentityApi:
    def __init__(self, service: IdentityService, public_url: str = "") -> None:
        self.service = service
        self.public_url = public_url

    # -------------------------------------------------------------- plumbing

    def base(self, request: Request) -> str:
        if self.public_url:
            return f"{self.public_url}/identity"
        scope = request.scope
        host = request.headers.get("host") or "{}:{}".format(
            *scope.get("server", ("localhost", 80))
        )
        return f"{scope.get('scheme', 'http')}://{host}{scope.get('root_path', '')}"

    def link(self, request: Request, path: str) -> str:
        return f"{self.base(request)}/v3/{path}"

    def with_link(self, request: Request, collection: str, ref: dict[str, Any]) -> dict[str, Any]:
        ref = dict(ref)
        ref["links"] = {"self": self.link(request, f"{collection}/{ref['id']}")}
        return ref

    def authenticate(self, request: Request) -> RequestContext:
        return authenticate(self.service, request)

    @staticmethod
    def audit(request: Request, action: str, target_type: str, target_id: str | None) -> None:
        state_of(request.scope)["audit"] = {
            "action": action,
            "target": {"type": target_type, "id": target_id},
        }

    def list_response(
        self,
        request: Request,
        collection: str,
        items: list[dict[str, Any]],
        link: bool = True,
        link_path: str | None = None,
    ) -> JSONResponse:
        """One page of `items`; each gets a self link under `link_path` (the collection)."""
        limit = parse_limit(request.query_params.get("limit"))
        marker = request.query_params.get("marker")
        page = paginate(items, lambda r: str(r.get("id", "")), limit, marker)
        self_url = str(request.url)
        next_url = None
        if page.next_marker is not None:
            params = dict(request.query_params)
            params["marker"] = page.next_marker
            next_url = str(request.url.replace_query_params(**params))
        body = {
            collection: [
                self.with_link(request, link_path or collection, r) if link else r
                for r in page.items
            ],
            "links": {"self": self_url, "previous": None, "next": next_url},
        }
        return JSONResponse(body)

    # -------------------------------------------------------------- routes

    def routes(self) -> list[Route]:
        routes = [
            Route("/", self.versions, methods=["GET"]),
            Route("/v3", self.version, methods=["GET"]),
            Route("/v3/", self.version, methods=["GET"]),
            Route(
                "/v3/auth/tokens",
                self.tokens,
                methods=["POST", "GET", "HEAD", "DELETE"],
            ),
            Route("/v3/auth/catalog", self.auth_catalog, methods=["GET"]),
            Route("/v3/auth/projects", self.auth_projects, methods=["GET"]),
            Route("/v3/auth/domains", self.auth_domains, methods=["GET"]),
            Route("/v3/auth/system", self.auth_system, methods=["GET"]),
            Route("/v3/users/{user_id}/password", self.change_password, methods=["POST"]),
            Route("/v3/users/{user_id}/projects", self.user_projects, methods=["GET"]),
            Route("/v3/users/{user_id}/groups", self.user_groups, methods=["GET"]),
            Route("/v3/groups/{group_id}/users", self.group_users, methods=["GET"]),
            Route(
                "/v3/groups/{group_id}/users/{user_id}",
                self.group_member,
                methods=["PUT", "HEAD", "DELETE", "GET"],
            ),
            Route("/v3/role_assignments", self.role_assignments, methods=["GET"]),
            Route(
                "/v3/users/{user_id}/application_credentials",
                self.app_creds,
                methods=["GET", "POST"],
            ),
            Route(
                "/v3/users/{user_id}/application_credentials/{cred_id}",
                self.app_cred,
                methods=["GET", "DELETE"],
            ),
            Route("/v3/users/{user_id}/credentials/OS-EC2", self.ec2s, methods=["GET", "POST"]),
            Route(
                "/v3/users/{user_id}/credentials/OS-EC2/{access}",
                self.ec2,
                methods=["GET", "DELETE"],
            ),
        ]
        for target in ("projects", "domains"):
            for actor in ("users", "groups"):
                base = f"/v3/{target}/{{target_id}}/{actor}/{{actor_id}}/roles"
                routes.append(Route(base, self._grants(target, actor), methods=["GET"]))
                routes.append(
                    Route(
                        base + "/{role_id}",
                        self._grant(target, actor),
                        methods=["PUT", "HEAD", "GET", "DELETE"],
                    )
                )
        for actor in ("users", "groups"):
            base = f"/v3/system/{actor}/{{actor_id}}/roles"
            routes.append(Route(base, self._grants("system", actor), methods=["GET"]))
            routes.append(
                Route(
                    base + "/{role_id}",
                    self._grant("system", actor),
                    methods=["PUT", "HEAD", "GET", "DELETE"],
                )
            )
        s = self.service
        cruds = [
            Crud("domains", "domain", DomainCreate, DomainUpdate, s.list_domains, s.get_domain,
                 s.create_domain, s.update_domain, s.delete_domain, bool_filters=("enabled",)),
            Crud("projects", "project", ProjectCreate, ProjectUpdate, s.list_projects,
                 s.get_project, s.create_project, s.update_project, s.delete_project,
                 filters=("name", "domain_id", "parent_id"), bool_filters=("enabled",)),
            Crud("users", "user", UserCreate, UserUpdate, s.list_users, s.get_user, s.create_user,
                 s.update_user, s.delete_user, filters=("name", "domain_id"),
                 bool_filters=("enabled",), slow_write=True),
            Crud("groups", "group", GroupCreate, GroupUpdate, s.list_groups, s.get_group,
                 s.create_group, s.update_group, s.delete_group, filters=("name", "domain_id")),
            Crud("roles", "role", RoleCreate, RoleUpdate, s.list_roles, s.get_role, s.create_role,
                 s.update_role, s.delete_role, filters=("name", "domain_id")),
            Crud("regions", "region", RegionCreate, RegionUpdate, s.list_regions, s.get_region,
                 s.create_region, s.update_region, s.delete_region,
                 filters=("parent_region_id",)),
            Crud("services", "service", ServiceCreate, ServiceUpdate, s.list_services,
                 s.get_service, s.create_service, s.update_service, s.delete_service,
                 filters=("type", "name")),
            Crud("endpoints", "endpoint", EndpointCreate, EndpointUpdate, s.list_endpoints,
                 s.get_endpoint, s.create_endpoint, s.update_endpoint, s.delete_endpoint,
                 filters=("service_id", "interface", "region_id")),
            Crud("credentials", "credential", CredentialCreate, CredentialUpdate,
                 s.list_credentials, s.get_credential, s.create_credential,
                 s.update_credential, s.delete_credential, filters=("user_id", "type")),
        ]  # fmt: skip
        for crud in cruds:
            routes.append(
                Route(f"/v3/{crud.collection}", self._collection(crud), methods=["GET", "POST"])
            )
            routes.append(
                Route(
                    f"/v3/{crud.collection}/{{ident}}",
                    self._member(crud),
                    methods=["GET", "PATCH", "DELETE"],
                )
            )
        return routes

    # -------------------------------------------------------------- discovery

    def _version_doc(self, request: Request) -> dict[str, Any]:
        return {
            "id": API_VERSION,
            "status": "stable",
            "updated": UPDATED,
            "links": [{"rel": "self", "href": f"{self.base(request)}/v3/"}],
            "media-types": [{"base": "application/json", "type": MEDIA_TYPE}],
        }

    async def versions(self, request: Request) -> Response:
        body = {"versions": {"values": [self._version_doc(request)]}}
        return JSONResponse(body, status_code=300)

    async def version(self, request: Request) -> Response:
        return JSONResponse({"version": self._version_doc(request)})

    # -------------------------------------------------------------- tokens

    def token_body(self, view: TokenView, catalog: bool) -> dict[str, Any]:
        p = view.payload
        token: dict[str, Any] = {
            "methods": list(p.methods),
            "user": view.user,
            "audit_ids": list(p.audit_ids),
            "expires_at": isotime(dt.datetime.fromtimestamp(p.expires_at, dt.UTC)),
            "issued_at": isotime(dt.datetime.fromtimestamp(p.issued_at, dt.UTC)),
        }
        if view.project is not None:
            token["project"] = view.project
            token["is_domain"] = False
        elif view.domain is not None:
            token["domain"] = view.domain
        elif p.system:
            token["system"] = {"all": True}
        if view.project is not None or view.domain is not None or p.system:
            token["roles"] = view.roles
            if catalog:
                token["catalog"] = self.service.catalog()
        if view.app_cred is not None:
            token["application_credential"] = view.app_cred
        return {"token": token}

    async def tokens(self, request: Request) -> Response:
        if request.method == "POST":
            return await self.issue_token(request)
        ctx = self.authenticate(request)
        subject = request.headers.get("x-subject-token")
        if not subject:
            raise BadRequest("X-Subject-Token header is required.")
        if request.method == "DELETE":
            self.audit(request, "identity.token.revoke", "token", None)
            self.service.revoke_token(ctx, subject)
            return Response(status_code=204)
        view = self.service.validate(subject)
        # Another user's token is shown only to an admin or a system-scoped reader, as in
        # Keystone's default policy; a project reader must not read other people's tokens.
        system_reader = ctx.system_scope and "reader" in ctx.roles
        if view is None or (
            not ctx.is_admin and view.payload.user_id != ctx.user_id and not system_reader
        ):
            raise NotFound("Could not find token: the token is invalid, expired or revoked.")
        headers = {"X-Subject-Token": subject}
        if request.method == "HEAD":
            return Response(status_code=200, headers=headers)
        nocatalog = "nocatalog" in request.query_params
        return JSONResponse(self.token_body(view, not nocatalog), headers=headers)

    async def issue_token(self, request: Request) -> Response:
        body = await read_json(request)
        auth = member(body, "auth")
        self._note_login(request, auth)
        if self._needs_hash(auth):
            view = await run_in_threadpool(self.service.authenticate, auth)
        else:  # a token re-scope costs no hash: keep it on the event loop
            view = self.service.authenticate(auth)
        state = state_of(request.scope)
        state["initiator"] = {
            "user_id": view.payload.user_id,
            "project_id": view.payload.project_id,
        }
        self.audit(request, "identity.token.issue", "token", view.payload.audit_ids[0])
        nocatalog = "nocatalog" in request.query_params
        return JSONResponse(
            self.token_body(view, not nocatalog),
            status_code=201,
            headers={"X-Subject-Token": view.token},
        )

    @staticmethod
    def _needs_hash(auth: dict[str, Any]) -> bool:
        identity = auth.get("identity")
        methods = identity.get("methods") if isinstance(identity, dict) else None
        return methods != ["token"]

    def _note_login(self, request: Request, auth: dict[str, Any]) -> None:
        """Record who is trying to log in (names and ids only) before the outcome is known."""
        identity = auth.get("identity") if isinstance(auth.get("identity"), dict) else {}
        assert isinstance(identity, dict)
        methods = identity.get("methods")
        who: dict[str, Any] = {
            "user_id": None,
            "methods": methods if isinstance(methods, list) else None,
        }
        password = identity.get("password")
        if isinstance(password, dict) and isinstance(password.get("user"), dict):
            user = password["user"]
            who["user_id"] = user.get("id") if isinstance(user.get("id"), str) else None
            if isinstance(user.get("name"), str):
                who["user_name"] = user["name"][:255]
        app_cred = identity.get("application_credential")
        if isinstance(app_cred, dict) and isinstance(app_cred.get("id"), str):
            who["application_credential_id"] = app_cred["id"][:64]
        state_of(request.scope)["initiator"] = who
        self.audit(request, "identity.token.issue", "token", None)

    async def auth_catalog(self, request: Request) -> Response:
        ctx = self.authenticate(request)
        if ctx.scope_label == "unscoped":
            raise Forbidden("An unscoped token has no catalog; request a project-scoped token.")
        return JSONResponse(
            {"catalog": self.service.catalog(), "links": {"self": str(request.url)}}
        )

    async def auth_projects(self, request: Request) -> Response:
        ctx = self.authenticate(request)
        return self.list_response(request, "projects", self.service.auth_projects(ctx))

    async def auth_domains(self, request: Request) -> Response:
        ctx = self.authenticate(request)
        return self.list_response(request, "domains", self.service.auth_domains(ctx))

    async def auth_system(self, request: Request) -> Response:
        ctx = self.authenticate(request)
        return JSONResponse(
            {"system": self.service.auth_system(ctx), "links": {"self": str(request.url)}}
        )

    # -------------------------------------------------------------- generic collections

    def _collection(self, crud: Crud) -> Callable[[Request], Any]:
        async def handler(request: Request) -> Response:
            ctx = self.authenticate(request)
            if request.method == "GET":
                filters = query_filters(request, crud.filters, crud.bool_filters)
                return self.list_response(request, crud.collection, crud.list_fn(ctx, filters))
            self.audit(request, f"identity.{crud.member}.create", crud.member, None)
            data = validated(
                crud.create_model, member(await read_json(request), crud.member), crud.member
            )
            if crud.member == "domain" and "explicit_domain_id" in data:
                data["id"] = data.pop("explicit_domain_id")
            if crud.slow_write:
                ref = await run_in_threadpool(crud.create_fn, ctx, data)
            else:
                ref = crud.create_fn(ctx, data)
            self.audit(request, f"identity.{crud.member}.create", crud.member, ref["id"])
            return JSONResponse(
                {crud.member: self.with_link(request, crud.collection, ref)}, status_code=201
            )

        return handler

    def _member(self, crud: Crud) -> Callable[[Request], Any]:
        async def handler(request: Request) -> Response:
            ctx = self.authenticate(request)
            ident = request.path_params["ident"]
            if request.method == "GET":
                ref = crud.get_fn(ctx, ident)
                return JSONResponse({crud.member: self.with_link(request, crud.collection, ref)})
            if request.method == "DELETE":
                self.audit(request, f"identity.{crud.member}.delete", crud.member, ident)
                crud.delete_fn(ctx, ident)
                return Response(status_code=204)
            self.audit(request, f"identity.{crud.member}.update", crud.member, ident)
            data = validated(
                crud.update_model, member(await read_json(request), crud.member), crud.member
            )
            if crud.slow_write and "password" in data:
                ref = await run_in_threadpool(crud.update_fn, ctx, ident, data)
            else:
                ref = crud.update_fn(ctx, ident, data)
            return JSONResponse({crud.member: self.with_link(request, crud.collection, ref)})

        return handler

    # -------------------------------------------------------------- users, groups

    async def change_password(self, request: Request) -> Response:
        user_id = request.path_params["user_id"]
        self.audit(request, "identity.user.change_password", "user", user_id)
        ctx = self.authenticate(request)
        data = validated(PasswordChange, member(await read_json(request), "user"), "user")
        await run_in_threadpool(
            self.service.change_password, ctx, user_id, data["original_password"], data["password"]
        )
        return Response(status_code=204)

    async def user_projects(self, request: Request) -> Response:
        ctx = self.authenticate(request)
        items = self.service.list_user_projects(ctx, request.path_params["user_id"])
        return self.list_response(request, "projects", items)

    async def user_groups(self, request: Request) -> Response:
        ctx = self.authenticate(request)
        items = self.service.list_user_groups(ctx, request.path_params["user_id"])
        return self.list_response(request, "groups", items)

    async def group_users(self, request: Request) -> Response:
        ctx = self.authenticate(request)
        items = self.service.list_group_users(ctx, request.path_params["group_id"], {})
        return self.list_response(request, "users", items)

    async def group_member(self, request: Request) -> Response:
        ctx = self.authenticate(request)
        group_id, user_id = request.path_params["group_id"], request.path_params["user_id"]
        if request.method == "PUT":
            self.audit(request, "identity.group.add_user", "group", group_id)
            self.service.add_user_to_group(ctx, group_id, user_id)
        elif request.method == "DELETE":
            self.audit(request, "identity.group.remove_user", "group", group_id)
            self.service.remove_user_from_group(ctx, group_id, user_id)
        else:
            self.service.check_user_in_group(ctx, group_id, user_id)
        return Response(status_code=204)

    # -------------------------------------------------------------- grants

    @staticmethod
    def _grant_parts(request: Request, target: str, actor: str) -> tuple[str, str, str, str]:
        actor_type = "user" if actor == "users" else "group"
        target_type = {"projects": "project", "domains": "domain", "system": "system"}[target]
        target_id = request.path_params.get("target_id", "all")
        return actor_type, request.path_params["actor_id"], target_type, target_id

    def _grants(self, target: str, actor: str) -> Callable[[Request], Any]:
        async def handler(request: Request) -> Response:
            ctx = self.authenticate(request)
            parts = self._grant_parts(request, target, actor)
            roles = self.service.list_grants(ctx, *parts)
            return self.list_response(request, "roles", roles)

        return handler

    def _grant(self, target: str, actor: str) -> Callable[[Request], Any]:
        async def handler(request: Request) -> Response:
            ctx = self.authenticate(request)
            parts = self._grant_parts(request, target, actor)
            role_id = request.path_params["role_id"]
            if request.method == "PUT":
                self.audit(request, "identity.role_assignment.create", "role", role_id)
                self.service.create_grant(ctx, *parts, role_id)
            elif request.method == "DELETE":
                self.audit(request, "identity.role_assignment.delete", "role", role_id)
                self.service.revoke_grant(ctx, *parts, role_id)
            else:
                self.service.check_grant(ctx, *parts, role_id)
            return Response(status_code=204)

        return handler

    async def role_assignments(self, request: Request) -> Response:
        ctx = self.authenticate(request)
        q = request.query_params
        filters = {
            k: q[k]
            for k in ("user.id", "group.id", "role.id", "scope.project.id", "scope.domain.id")
            if k in q
        }
        if "scope.system" in q:
            filters["scope.system"] = q["scope.system"]
        effective = "effective" in q and q.get("effective", "") != "false"
        include_names = (
            parse_flag("include_names", q.get("include_names")) if "include_names" in q else False
        )
        items = self.service.list_role_assignments(ctx, filters, effective, include_names)
        base = self.base(request)
        for item in items:
            via = item.pop("_via_group", None)
            scope_kind = next(iter(item["scope"]))
            actor_kind = "user" if "user" in item else "group"
            scope_id = item["scope"][scope_kind].get("id", "")
            path = (
                f"system/{actor_kind}s/{item[actor_kind]['id']}/roles/{item['role']['id']}"
                if scope_kind == "system"
                else f"{scope_kind}s/{scope_id}/{actor_kind}s/{item[actor_kind]['id']}"
                f"/roles/{item['role']['id']}"
            )
            links: dict[str, str] = {"assignment": f"{base}/v3/{path}"}
            if via:
                links["membership"] = f"{base}/v3/groups/{via}/users/{item[actor_kind]['id']}"
            item["links"] = links
        return JSONResponse(
            {
                "role_assignments": items,
                "links": {"self": str(request.url), "previous": None, "next": None},
            }
        )

    # -------------------------------------------------------------- application credentials

    async def app_creds(self, request: Request) -> Response:
        ctx = self.authenticate(request)
        user_id = request.path_params["user_id"]
        collection = f"users/{user_id}/application_credentials"
        if request.method == "GET":
            items = self.service.list_app_creds(ctx, user_id, query_filters(request, ("name",)))
            return self.list_response(
                request, "application_credentials", items, link_path=collection
            )
        self.audit(
            request, "identity.application_credential.create", "application_credential", None
        )
        data = validated(
            AppCredCreate,
            member(await read_json(request), "application_credential"),
            "application_credential",
        )
        ref = await run_in_threadpool(self.service.create_app_cred, ctx, user_id, data)
        self.audit(
            request, "identity.application_credential.create", "application_credential", ref["id"]
        )
        return JSONResponse(
            {"application_credential": self.with_link(request, collection, ref)}, status_code=201
        )

    async def app_cred(self, request: Request) -> Response:
        ctx = self.authenticate(request)
        user_id, cred_id = request.path_params["user_id"], request.path_params["cred_id"]
        if request.method == "DELETE":
            self.audit(
                request, "identity.application_credential.delete", "application_credential", cred_id
            )
            self.service.delete_app_cred(ctx, user_id, cred_id)
            return Response(status_code=204)
        ref = self.service.get_app_cred(ctx, user_id, cred_id)
        collection = f"users/{user_id}/application_credentials"
        return JSONResponse({"application_credential": self.with_link(request, collection, ref)})

    # -------------------------------------------------------------- EC2 credentials

    async def ec2s(self, request: Request) -> Response:
        ctx = self.authenticate(request)
        user_id = request.path_params["user_id"]
        base = self.base(request)
        if request.method == "GET":
            return JSONResponse(
                {
                    "credentials": self.service.ec2_list(ctx, user_id, base),
                    "links": {"self": str(request.url), "previous": None, "next": None},
                }
            )
        self.audit(request, "identity.ec2_credential.create", "credential", None)
        data = validated(Ec2Create, await read_json(request), "")
        ref = self.service.ec2_create(ctx, user_id, data["tenant_id"], base)
        self.audit(request, "identity.ec2_credential.create", "credential", ref["access"])
        return JSONResponse({"credential": ref}, status_code=201)

    async def ec2(self, request: Request) -> Response:
        ctx = self.authenticate(request)
        user_id, access = request.path_params["user_id"], request.path_params["access"]
        if request.method == "DELETE":
            self.audit(request, "identity.ec2_credential.delete", "credential", access)
            self.service.ec2_delete(ctx, user_id, access)
            return Response(status_code=204)
        return JSONResponse(
            {"credential": self.service.ec2_get(ctx, user_id, access, self.base(request))}
        )


def _auth_challenge(exc: ApiError) -> dict[str, str]:
    """Keystone names itself in every 401, so a client knows where to authenticate."""
    return {"WWW-Authenticate": 'Keystone uri="/identity"'} if exc.status == 401 else {}


class TokensFirst:
    """`/v3/auth/tokens` straight to its handler, everything else through the router.

    Every service of the cloud validates tokens here on each of its own calls;
    the router's linear walk and wrappers cost more than the handler itself.
    """

    PATH = "/v3/auth/tokens"
    METHODS = frozenset({"GET", "HEAD", "POST", "DELETE"})

    def __init__(self, api: IdentityApi, router: Router) -> None:
        self.api = api
        self.router = router

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if (
            scope["type"] == "http"
            and scope["method"] in self.METHODS
            and scope["path"][len(scope.get("root_path", "")) :] == self.PATH
        ):
            response = await self.api.tokens(Request(scope, receive))
            await response(scope, receive, send)
            return
        await self.router(scope, receive, send)


def build_app(service: IdentityService, public_url: str = "") -> ASGIApp:
    api = IdentityApi(service, public_url)
    return ErrorLayer(TokensFirst(api, Router(routes=api.routes())), render_error, _auth_challenge)
