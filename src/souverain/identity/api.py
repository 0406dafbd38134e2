"""Keystone v3 over HTTP: routes on the shared edge, each naming its policy action.

This module turns HTTP into calls on `IdentityService` and back. It holds no
rules: the edge authorizes the action, the service decides what depends on the
target, `schemas` checks bodies and `views` shapes answers.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Router
from starlette.types import ASGIApp, Receive, Scope, Send

from souverain.common.context import RequestContext
from souverain.common.errors import ApiError, BadRequest, Forbidden, NotFound
from souverain.common.jsoncodec import JSONResponse
from souverain.common.middleware import state_of
from souverain.common.pagination import paginate
from souverain.identity import schemas as sc
from souverain.identity import views
from souverain.identity.api_access_rules import AccessRuleApi
from souverain.identity.api_domain_config import DomainConfigApi
from souverain.identity.api_endpoint_filter import EndpointFilterApi
from souverain.identity.api_project_tags import ProjectTagApi
from souverain.identity.api_trusts import TrustApi
from souverain.identity.assignments import INHERIT_DOMAIN, INHERIT_PROJECT
from souverain.identity.catalog import for_project
from souverain.identity.mfa import AuthMethodsRequired
from souverain.identity.service import IdentityService, TokenView
from souverain.openstack.auth import audit
from souverain.openstack.body import member, read_json, validated
from souverain.openstack.faults import ErrorLayer, render_error
from souverain.openstack.links import base_url
from souverain.openstack.query import parse_flag, parse_limit
from souverain.openstack.routing import Edge, EdgeRoute, Endpoint

TAG_FILTERS = ("tags", "tags-any", "not-tags", "not-tags-any")
ASSIGNMENT_FILTERS = ("user.id", "group.id", "role.id", "scope.project.id", "scope.domain.id")


def query_filters(
    request: Request, names: tuple[str, ...], bools: tuple[str, ...] = ()
) -> dict[str, Any]:
    q = request.query_params
    filters: dict[str, Any] = {name: q[name] for name in names if name in q}
    filters.update({name: parse_flag(name, q[name]) for name in bools if name in q})
    return filters


@dataclass
class Crud:
    """One Keystone collection: its models, its service calls, its filters.

    Its routes' policy actions follow Keystone's names: `identity:list_<collection>`,
    `identity:get_<member>`, `identity:create_<member>`...
    """

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

    def collection_actions(self) -> dict[str, str]:
        return {
            "GET": f"identity:list_{self.collection}",
            "POST": f"identity:create_{self.member}",
        }

    def member_actions(self) -> dict[str, str]:
        return {
            "GET": f"identity:get_{self.member}",
            "PATCH": f"identity:update_{self.member}",
            "DELETE": f"identity:delete_{self.member}",
        }


def cruds(s: IdentityService) -> list[Crud]:
    return [
        Crud("domains", "domain", sc.DomainCreate, sc.DomainUpdate, s.list_domains, s.get_domain,
             s.create_domain, s.update_domain, s.delete_domain, bool_filters=("enabled",)),
        Crud("projects", "project", sc.ProjectCreate, sc.ProjectUpdate, s.list_projects,
             s.get_project, s.create_project, s.update_project, s.delete_project,
             filters=("name", "domain_id", "parent_id", *TAG_FILTERS), bool_filters=("enabled",)),
        Crud("users", "user", sc.UserCreate, sc.UserUpdate, s.list_users, s.get_user,
             s.create_user, s.update_user, s.delete_user, filters=("name", "domain_id"),
             bool_filters=("enabled",), slow_write=True),
        Crud("groups", "group", sc.GroupCreate, sc.GroupUpdate, s.list_groups, s.get_group,
             s.create_group, s.update_group, s.delete_group, filters=("name", "domain_id")),
        Crud("roles", "role", sc.RoleCreate, sc.RoleUpdate, s.list_roles, s.get_role,
             s.create_role, s.update_role, s.delete_role, filters=("name", "domain_id")),
        Crud("regions", "region", sc.RegionCreate, sc.RegionUpdate, s.list_regions, s.get_region,
             s.create_region, s.update_region, s.delete_region, filters=("parent_region_id",)),
        Crud("services", "service", sc.ServiceCreate, sc.ServiceUpdate, s.list_services,
             s.get_service, s.create_service, s.update_service, s.delete_service,
             filters=("type", "name")),
        Crud("endpoints", "endpoint", sc.EndpointCreate, sc.EndpointUpdate, s.list_endpoints,
             s.get_endpoint, s.create_endpoint, s.update_endpoint, s.delete_endpoint,
             filters=("service_id", "interface", "region_id")),
        Crud("credentials", "credential", sc.CredentialCreate, sc.CredentialUpdate,
             s.list_credentials, s.get_credential, s.create_credential, s.update_credential,
             s.delete_credential, filters=("user_id", "type")),
    ]  # fmt: skip


GRANTS = {"GET": "identity:list_grants"}
GRANT = {
    "PUT": "identity:create_grant",
    "HEAD": "identity:check_grant",
    "GET": "identity:check_grant",
    "DELETE": "identity:revoke_grant",
}
GROUP_MEMBER = {
    "PUT": "identity:add_user_to_group",
    "HEAD": "identity:check_user_in_group",
    "GET": "identity:check_user_in_group",
    "DELETE": "identity:remove_user_from_group",
}
APP_CREDS = {
    "GET": "identity:list_application_credentials",
    "POST": "identity:create_application_credential",
}
APP_CRED = {
    "GET": "identity:get_application_credential",
    "DELETE": "identity:delete_application_credential",
}
EC2S = {"GET": "identity:ec2_list_credentials", "POST": "identity:ec2_create_credential"}
EC2 = {"GET": "identity:ec2_get_credential", "DELETE": "identity:ec2_delete_credential"}
TOKEN_CHECKS = {
    "GET": "identity:validate_token",
    "HEAD": "identity:validate_token",
    "DELETE": "identity:revoke_token",
}
GRANT_TARGETS = {
    "projects": "project",
    "domains": "domain",
    "system": "system",
    # OS-INHERIT: granted on a domain or project, held on the projects under it
    "inherited_domains": INHERIT_DOMAIN,
    "inherited_projects": INHERIT_PROJECT,
}
GRANT_PATHS = {
    "projects": "projects/{target_id}",
    "domains": "domains/{target_id}",
    "system": "system",
    "inherited_domains": "OS-INHERIT/domains/{target_id}",
    "inherited_projects": "OS-INHERIT/projects/{target_id}",
}
TOKENS_PATH = "/v3/auth/tokens"


def _list_response(
    request: Request,
    base: str,
    collection: str,
    items: list[dict[str, Any]],
    link_path: str | None = None,
) -> JSONResponse:
    """One page of `items`; each gets a self link under `link_path` (the collection)."""
    limit = parse_limit(request.query_params.get("limit"))
    marker = request.query_params.get("marker")
    page = paginate(items, lambda r: str(r.get("id", "")), limit, marker)
    next_url = None
    if page.next_marker is not None:
        params = dict(request.query_params)
        params["marker"] = page.next_marker
        next_url = str(request.url.replace_query_params(**params))
    body = {
        collection: [views.with_link(base, link_path or collection, r) for r in page.items],
        "links": {"self": str(request.url), "previous": None, "next": next_url},
    }
    return JSONResponse(body)


def _unpaged(request: Request, key: str, items: list[dict[str, Any]]) -> JSONResponse:
    """A whole collection whose items carry their own links (EC2 keys, role assignments)."""
    return JSONResponse(
        {key: items, "links": {"self": str(request.url), "previous": None, "next": None}}
    )


class IdentityApi:
    def __init__(self, service: IdentityService, public_url: str = "") -> None:
        self.service = service
        self.public_url = public_url
        self.edge = Edge(service)
        version = {"GET": "identity:version:show"}
        self.issue_route = self.edge.public(
            TOKENS_PATH, self.issue_token, {"POST": "identity:token:issue"}
        )
        self.check_route = self.edge.route(TOKENS_PATH, self.tokens, TOKEN_CHECKS)
        self.versions_route = self.edge.public("/", self.versions, version)
        self.version_routes = [self.edge.public(p, self.version, version) for p in ("/v3", "/v3/")]

    def base(self, request: Request) -> str:
        return base_url(request, self.public_url, "/identity")

    def listing(
        self, request: Request, key: str, items: list[dict[str, Any]], path: str | None = None
    ) -> JSONResponse:
        return _list_response(request, self.base(request), key, items, path)

    def linked(self, request: Request, collection: str, ref: dict[str, Any]) -> dict[str, Any]:
        return views.with_link(self.base(request), collection, ref)

    # -------------------------------------------------------------- routes

    def routes(self) -> list[BaseRoute]:
        r = self.edge.route
        routes: list[BaseRoute] = [
            self.versions_route,
            *self.version_routes,
            self.issue_route,
            self.check_route,
            r("/v3/auth/catalog", self.auth_catalog, {"GET": "identity:get_auth_catalog"}),
            r("/v3/auth/projects", self.auth_projects, {"GET": "identity:get_auth_projects"}),
            r("/v3/auth/domains", self.auth_domains, {"GET": "identity:get_auth_domains"}),
            r("/v3/auth/system", self.auth_system, {"GET": "identity:get_auth_system"}),
            r("/v3/users/{user_id}/password", self.change_password,
              {"POST": "identity:change_password"}),
            r("/v3/users/{user_id}/projects", self.user_projects,
              {"GET": "identity:list_user_projects"}),
            r("/v3/users/{user_id}/groups", self.user_groups,
              {"GET": "identity:list_groups_for_user"}),
            r("/v3/groups/{group_id}/users", self.group_users,
              {"GET": "identity:list_users_in_group"}),
            r("/v3/groups/{group_id}/users/{user_id}", self.group_member, GROUP_MEMBER),
            r("/v3/role_assignments", self.role_assignments,
              {"GET": "identity:list_role_assignments"}),
            r("/v3/role_inferences", self.role_inferences,
              {"GET": "identity:list_role_inference_rules"}),
            r("/v3/roles/{prior_role_id}/implies", self.implied_roles,
              {"GET": "identity:list_implied_roles"}),
            r("/v3/roles/{prior_role_id}/implies/{implied_role_id}", self.implied_role,
              {"GET": "identity:get_implied_role", "HEAD": "identity:get_implied_role",
               "PUT": "identity:create_implied_role", "DELETE": "identity:delete_implied_role"}),
            r("/v3/users/{user_id}/application_credentials", self.app_creds, APP_CREDS),
            r("/v3/users/{user_id}/application_credentials/{cred_id}", self.app_cred, APP_CRED),
            r("/v3/users/{user_id}/credentials/OS-EC2", self.ec2s, EC2S),
            r("/v3/users/{user_id}/credentials/OS-EC2/{access}", self.ec2, EC2),
        ]  # fmt: skip
        for target, path in GRANT_PATHS.items():
            tail = "/inherited_to_projects" if target.startswith("inherited") else ""
            for actor in ("users", "groups"):
                base = f"/v3/{path}/{actor}/{{actor_id}}/roles"
                routes.append(r(base + tail, self._grants(target, actor), GRANTS))
                routes.append(r(f"{base}/{{role_id}}{tail}", self._grant(target, actor), GRANT))
        routes.extend(TrustApi(self.service, self.base).routes(self.edge))
        routes.extend(DomainConfigApi(self.service.domain_configs).routes(self.edge))
        routes.extend(AccessRuleApi(self.service.access_rules, self.base).routes(self.edge))
        routes.extend(ProjectTagApi(self.service.project_tags).routes(self.edge))
        routes.extend(EndpointFilterApi(self.service.endpoint_filter, self.base).routes(self.edge))
        for crud in cruds(self.service):
            path = f"/v3/{crud.collection}"
            routes.append(r(path, self._collection(crud), crud.collection_actions()))
            routes.append(r(path + "/{ident}", self._member(crud), crud.member_actions()))
        return routes

    # -------------------------------------------------------------- discovery

    async def versions(self, request: Request) -> Response:
        body = {"versions": {"values": [views.version_doc(self.base(request))]}}
        return JSONResponse(body, status_code=300)

    async def version(self, request: Request) -> Response:
        return JSONResponse({"version": views.version_doc(self.base(request))})

    # -------------------------------------------------------------- tokens

    def _catalog(self, request: Request, view: TokenView) -> list[dict[str, Any]] | None:
        if "nocatalog" in request.query_params:
            return None
        return self.service.catalog(view.payload.project_id)

    async def tokens(self, request: Request, ctx: RequestContext) -> Response:
        subject = request.headers.get("x-subject-token")
        if not subject:
            raise BadRequest("X-Subject-Token header is required.")
        if request.method == "DELETE":
            audit(request, "identity.token.revoke", "token", None)
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
        return JSONResponse(views.token_body(view, self._catalog(request, view)), headers=headers)

    async def issue_token(self, request: Request) -> Response:
        body = await read_json(request)
        auth = member(body, "auth")
        self._note_login(request, auth)
        receipt = request.headers.get("openstack-auth-receipt")
        try:
            if self._needs_hash(auth):
                view = await run_in_threadpool(self.service.authenticate, auth, receipt)
            else:  # a token re-scope costs no hash: keep it on the event loop
                view = self.service.authenticate(auth, receipt)
        except AuthMethodsRequired as exc:  # Keystone's receipt: 401, header and body
            error = {"code": 401, "title": exc.title, "message": exc.message}
            return JSONResponse(
                {"error": error, **exc.body},
                status_code=401,
                headers={**exc.headers, **_auth_challenge(exc)},
            )
        state = state_of(request.scope)
        state["initiator"] = {
            "user_id": view.payload.user_id,
            "project_id": view.payload.project_id,
        }
        audit(request, "identity.token.issue", "token", view.payload.audit_ids[0])
        return JSONResponse(
            views.token_body(view, self._catalog(request, view)),
            status_code=201,
            headers={"X-Subject-Token": view.token},
        )

    @staticmethod
    def _needs_hash(auth: dict[str, Any]) -> bool:
        identity = auth.get("identity")
        methods = identity.get("methods") if isinstance(identity, dict) else None
        return methods != ["token"]

    @staticmethod
    def _note_login(request: Request, auth: dict[str, Any]) -> None:
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
        totp = identity.get("totp")  # who, never the passcode
        if who["user_id"] is None and isinstance(totp, dict) and isinstance(totp.get("user"), dict):
            user = totp["user"]
            who["user_id"] = user.get("id") if isinstance(user.get("id"), str) else None
        app_cred = identity.get("application_credential")
        if isinstance(app_cred, dict) and isinstance(app_cred.get("id"), str):
            who["application_credential_id"] = app_cred["id"][:64]
        state_of(request.scope)["initiator"] = who
        audit(request, "identity.token.issue", "token", None)

    async def auth_catalog(self, request: Request, ctx: RequestContext) -> Response:
        if ctx.scope_label == "unscoped":
            raise Forbidden("An unscoped token has no catalog; request a project-scoped token.")
        return JSONResponse(
            {
                "catalog": for_project(self.service.catalog(ctx.project_id), ctx.project_id),
                "links": {"self": str(request.url)},
            }
        )

    async def auth_projects(self, request: Request, ctx: RequestContext) -> Response:
        return self.listing(request, "projects", self.service.auth_projects(ctx))

    async def auth_domains(self, request: Request, ctx: RequestContext) -> Response:
        return self.listing(request, "domains", self.service.auth_domains(ctx))

    async def auth_system(self, request: Request, ctx: RequestContext) -> Response:
        return JSONResponse(
            {"system": self.service.auth_system(ctx), "links": {"self": str(request.url)}}
        )

    # -------------------------------------------------------------- generic collections

    def _collection(self, crud: Crud) -> Endpoint:
        async def handler(request: Request, ctx: RequestContext) -> Response:
            if request.method == "GET":
                filters = query_filters(request, crud.filters, crud.bool_filters)
                return self.listing(request, crud.collection, crud.list_fn(ctx, filters))
            audit(request, f"identity.{crud.member}.create", crud.member, None)
            data = validated(
                crud.create_model, member(await read_json(request), crud.member), crud.member
            )
            if crud.member == "domain" and "explicit_domain_id" in data:
                data["id"] = data.pop("explicit_domain_id")
            if crud.slow_write:
                ref = await run_in_threadpool(crud.create_fn, ctx, data)
            else:
                ref = crud.create_fn(ctx, data)
            audit(request, f"identity.{crud.member}.create", crud.member, ref["id"])
            return JSONResponse(
                {crud.member: self.linked(request, crud.collection, ref)}, status_code=201
            )

        return handler

    def _member(self, crud: Crud) -> Endpoint:
        async def handler(request: Request, ctx: RequestContext) -> Response:
            ident = request.path_params["ident"]
            if request.method == "GET":
                ref = crud.get_fn(ctx, ident)
                return JSONResponse({crud.member: self.linked(request, crud.collection, ref)})
            if request.method == "DELETE":
                audit(request, f"identity.{crud.member}.delete", crud.member, ident)
                crud.delete_fn(ctx, ident)
                return Response(status_code=204)
            audit(request, f"identity.{crud.member}.update", crud.member, ident)
            data = validated(
                crud.update_model, member(await read_json(request), crud.member), crud.member
            )
            if crud.slow_write and "password" in data:
                ref = await run_in_threadpool(crud.update_fn, ctx, ident, data)
            else:
                ref = crud.update_fn(ctx, ident, data)
            return JSONResponse({crud.member: self.linked(request, crud.collection, ref)})

        return handler

    # -------------------------------------------------------------- users, groups

    async def change_password(self, request: Request, ctx: RequestContext) -> Response:
        user_id = request.path_params["user_id"]
        audit(request, "identity.user.change_password", "user", user_id)
        data = validated(sc.PasswordChange, member(await read_json(request), "user"), "user")
        await run_in_threadpool(
            self.service.change_password, ctx, user_id, data["original_password"], data["password"]
        )
        return Response(status_code=204)

    async def user_projects(self, request: Request, ctx: RequestContext) -> Response:
        items = self.service.list_user_projects(ctx, request.path_params["user_id"])
        return self.listing(request, "projects", items)

    async def user_groups(self, request: Request, ctx: RequestContext) -> Response:
        items = self.service.list_user_groups(ctx, request.path_params["user_id"])
        return self.listing(request, "groups", items)

    async def group_users(self, request: Request, ctx: RequestContext) -> Response:
        items = self.service.list_group_users(ctx, request.path_params["group_id"], {})
        return self.listing(request, "users", items)

    async def group_member(self, request: Request, ctx: RequestContext) -> Response:
        group_id, user_id = request.path_params["group_id"], request.path_params["user_id"]
        if request.method == "PUT":
            audit(request, "identity.group.add_user", "group", group_id)
            self.service.add_user_to_group(ctx, group_id, user_id)
        elif request.method == "DELETE":
            audit(request, "identity.group.remove_user", "group", group_id)
            self.service.remove_user_from_group(ctx, group_id, user_id)
        else:
            self.service.check_user_in_group(ctx, group_id, user_id)
        return Response(status_code=204)

    # -------------------------------------------------------------- grants

    @staticmethod
    def _grant_parts(request: Request, target: str, actor: str) -> tuple[str, str, str, str]:
        actor_type = "user" if actor == "users" else "group"
        target_id = request.path_params.get("target_id", "all")
        return actor_type, request.path_params["actor_id"], GRANT_TARGETS[target], target_id

    def _grants(self, target: str, actor: str) -> Endpoint:
        async def handler(request: Request, ctx: RequestContext) -> Response:
            parts = self._grant_parts(request, target, actor)
            return self.listing(request, "roles", self.service.list_grants(ctx, *parts))

        return handler

    def _grant(self, target: str, actor: str) -> Endpoint:
        async def handler(request: Request, ctx: RequestContext) -> Response:
            parts = self._grant_parts(request, target, actor)
            role_id = request.path_params["role_id"]
            if request.method == "PUT":
                audit(request, "identity.role_assignment.create", "role", role_id)
                self.service.create_grant(ctx, *parts, role_id)
            elif request.method == "DELETE":
                audit(request, "identity.role_assignment.delete", "role", role_id)
                self.service.revoke_grant(ctx, *parts, role_id)
            else:
                self.service.check_grant(ctx, *parts, role_id)
            return Response(status_code=204)

        return handler

    async def role_assignments(self, request: Request, ctx: RequestContext) -> Response:
        q = request.query_params
        filters = {k: q[k] for k in ASSIGNMENT_FILTERS if k in q}
        if "scope.system" in q:
            filters["scope.system"] = q["scope.system"]
        effective = "effective" in q and q.get("effective", "") != "false"
        include_names = (
            parse_flag("include_names", q.get("include_names")) if "include_names" in q else False
        )
        # Keystone's effective listing holds the implied roles too; include_implied asks
        # for them without expanding groups and inherited grants
        include_implied = effective or (
            parse_flag("include_implied", q.get("include_implied"))
            if "include_implied" in q
            else False
        )
        items = self.service.list_role_assignments(
            ctx, filters, effective, include_names, include_implied
        )
        items = views.with_assignment_links(self.base(request), items)
        return _unpaged(request, "role_assignments", items)

    # -------------------------------------------------------------- implied roles

    async def role_inferences(self, request: Request, ctx: RequestContext) -> Response:
        base = self.base(request)
        rules = self.service.roles.list_inferences(ctx)
        # Keystone's answer has no collection links
        return JSONResponse(
            {"role_inferences": [views.role_inference(base, p, i) for p, i in rules]}
        )

    async def implied_roles(self, request: Request, ctx: RequestContext) -> Response:
        prior_id = request.path_params["prior_role_id"]
        rules = self.service.roles.list_inferences(ctx, prior_id)
        if not rules:
            raise NotFound(f"Role {prior_id} implies no other role.")
        prior, implied = rules[0]
        inference = views.role_inference(self.base(request), prior, implied)
        return JSONResponse({"role_inference": inference, "links": {"self": str(request.url)}})

    async def implied_role(self, request: Request, ctx: RequestContext) -> Response:
        prior_id = request.path_params["prior_role_id"]
        implied_id = request.path_params["implied_role_id"]
        if request.method == "PUT":
            audit(request, "identity.implied_role.create", "role", prior_id)
            prior, implied = self.service.roles.create_inference(ctx, prior_id, implied_id)
            inference = views.role_inference(self.base(request), prior, implied)
            body = {"role_inference": inference, "links": {"self": str(request.url)}}
            return JSONResponse(body, status_code=201)
        if request.method == "DELETE":
            audit(request, "identity.implied_role.delete", "role", prior_id)
            self.service.roles.delete_inference(ctx, prior_id, implied_id)
            return Response(status_code=204)
        rules = self.service.roles.list_inferences(ctx, prior_id)
        found = [r for _, implied in rules for r in implied if r["id"] == implied_id]
        if not found:
            raise NotFound(f"Could not find implied role: {prior_id} does not imply {implied_id}.")
        inference = views.role_inference(self.base(request), rules[0][0], found[0])
        return JSONResponse({"role_inference": inference, "links": {"self": str(request.url)}})

    # -------------------------------------------------------------- application credentials

    async def app_creds(self, request: Request, ctx: RequestContext) -> Response:
        user_id = request.path_params["user_id"]
        collection = f"users/{user_id}/application_credentials"
        if request.method == "GET":
            items = self.service.list_app_creds(ctx, user_id, query_filters(request, ("name",)))
            return self.listing(request, "application_credentials", items, collection)
        kind = "application_credential"
        audit(request, "identity.application_credential.create", kind, None)
        self._refuse_trust_token(request, "an application credential")
        data = validated(sc.AppCredCreate, member(await read_json(request), kind), kind)
        ref = await run_in_threadpool(self.service.create_app_cred, ctx, user_id, data)
        audit(request, "identity.application_credential.create", kind, ref["id"])
        return JSONResponse({kind: self.linked(request, collection, ref)}, status_code=201)

    async def app_cred(self, request: Request, ctx: RequestContext) -> Response:
        user_id, cred_id = request.path_params["user_id"], request.path_params["cred_id"]
        kind = "application_credential"
        if request.method == "DELETE":
            audit(request, "identity.application_credential.delete", kind, cred_id)
            self.service.delete_app_cred(ctx, user_id, cred_id)
            return Response(status_code=204)
        ref = self.service.get_app_cred(ctx, user_id, cred_id)
        collection = f"users/{user_id}/application_credentials"
        return JSONResponse({kind: self.linked(request, collection, ref)})

    def _refuse_trust_token(self, request: Request, what: str) -> None:
        """A delegation must not outlive its trust: no credential made with a trust token."""
        view = self.service.validate(request.headers.get("x-auth-token", ""))
        if view is not None and view.payload.trust_id is not None:
            raise Forbidden(f"A trust-scoped token cannot create {what}.")

    # -------------------------------------------------------------- EC2 credentials

    async def ec2s(self, request: Request, ctx: RequestContext) -> Response:
        user_id = request.path_params["user_id"]
        base = self.base(request)
        if request.method == "GET":
            return _unpaged(request, "credentials", self.service.ec2_list(ctx, user_id, base))
        audit(request, "identity.ec2_credential.create", "credential", None)
        self._refuse_trust_token(request, "an EC2 credential")
        data = validated(sc.Ec2Create, await read_json(request), "")
        ref = self.service.ec2_create(ctx, user_id, data["tenant_id"], base)
        audit(request, "identity.ec2_credential.create", "credential", ref["access"])
        return JSONResponse({"credential": ref}, status_code=201)

    async def ec2(self, request: Request, ctx: RequestContext) -> Response:
        user_id, access = request.path_params["user_id"], request.path_params["access"]
        if request.method == "DELETE":
            audit(request, "identity.ec2_credential.delete", "credential", access)
            self.service.ec2_delete(ctx, user_id, access)
            return Response(status_code=204)
        return JSONResponse(
            {"credential": self.service.ec2_get(ctx, user_id, access, self.base(request))}
        )


def _auth_challenge(exc: ApiError) -> dict[str, str]:
    """Keystone names itself in every 401, so a client knows where to authenticate."""
    return {"WWW-Authenticate": 'Keystone uri="/identity"'} if exc.status == 401 else {}


class TokensFirst:
    """`/v3/auth/tokens` straight to its edge routes, everything else through the router.

    Every service of the cloud validates tokens here on each of its own calls;
    the router's linear walk and wrappers cost more than the handler itself.
    """

    PATH = TOKENS_PATH
    METHODS = frozenset({"GET", "HEAD", "POST", "DELETE"})

    def __init__(self, issue: EdgeRoute, check: EdgeRoute, router: Router) -> None:
        self.issue = issue
        self.check = check
        self.router = router

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if (
            scope["type"] == "http"
            and scope["method"] in self.METHODS
            and scope["path"][len(scope.get("root_path", "")) :] == self.PATH
        ):
            route = self.issue if scope["method"] == "POST" else self.check
            response = await route.endpoint(Request(scope, receive))
            await response(scope, receive, send)
            return
        await self.router(scope, receive, send)


def build_app(service: IdentityService, public_url: str = "") -> ASGIApp:
    api = IdentityApi(service, public_url)
    router = Router(routes=api.routes())
    return ErrorLayer(
        TokensFirst(api.issue_route, api.check_route, router), render_error, _auth_challenge
    )
