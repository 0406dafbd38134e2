"""OS-EP-FILTER over HTTP: endpoint groups and a project's endpoints. Routes only: the
rules (admins manage, what a project's catalog shows) are in `endpoint_filter.py`."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from starlette.requests import Request
from starlette.responses import Response

from souverain.common.context import RequestContext
from souverain.common.jsoncodec import JSONResponse
from souverain.identity.endpoint_filter import EndpointFilter
from souverain.openstack.auth import audit
from souverain.openstack.body import member, read_json
from souverain.openstack.routing import Edge, EdgeRoute

EP = "/v3/OS-EP-FILTER"
GROUPS = f"{EP}/endpoint_groups"
GROUP = f"{GROUPS}/{{endpoint_group_id}}"
ASSOCIATION = {
    "PUT": "identity:add_endpoint_to_project",
    "GET": "identity:check_endpoint_in_project",
    "HEAD": "identity:check_endpoint_in_project",
    "DELETE": "identity:remove_endpoint_from_project",
}


class EndpointFilterApi:
    def __init__(self, rules: EndpointFilter, base: Callable[[Request], str]) -> None:
        self.rules = rules
        self.base = base

    def routes(self, edge: Edge) -> list[EdgeRoute]:
        r = edge.route
        groups = {"GET": "identity:list_endpoint_groups", "POST": "identity:create_endpoint_group"}
        group = {
            "GET": "identity:get_endpoint_group",
            "HEAD": "identity:get_endpoint_group",
            "PATCH": "identity:update_endpoint_group",
            "DELETE": "identity:delete_endpoint_group",
        }
        return [
            r(GROUPS, self.groups, groups),
            r(GROUP, self.group, group),
            r(f"{GROUP}/endpoints", self.group_endpoints,
              {"GET": "identity:list_endpoints_associated_with_endpoint_group"}),
            r(f"{GROUP}/projects", self.group_projects,
              {"GET": "identity:list_projects_for_endpoint"}),
            r(f"{GROUP}/projects/{{project_id}}", self.group_association, ASSOCIATION),
            r(f"{EP}/projects/{{project_id}}/endpoints", self.project_endpoints,
              {"GET": "identity:list_endpoints_for_project"}),
            r(f"{EP}/projects/{{project_id}}/endpoints/{{endpoint_id}}", self.association,
              ASSOCIATION),
            r(f"{EP}/projects/{{project_id}}/endpoint_groups", self.project_groups,
              {"GET": "identity:list_endpoint_groups_for_project"}),
            r(f"{EP}/endpoints/{{endpoint_id}}/projects", self.endpoint_projects,
              {"GET": "identity:list_projects_for_endpoint"}),
        ]  # fmt: skip

    def _linked(self, request: Request, path: str, ref: dict[str, Any]) -> dict[str, Any]:
        return {**ref, "links": {"self": f"{self.base(request)}{path}/{ref['id']}"}}

    def _listing(
        self, request: Request, key: str, path: str, refs: list[dict[str, Any]]
    ) -> Response:
        links = {"self": str(request.url), "previous": None, "next": None}
        return JSONResponse({key: [self._linked(request, path, r) for r in refs], "links": links})

    async def groups(self, request: Request, ctx: RequestContext) -> Response:
        if request.method == "GET":
            return self._listing(request, "endpoint_groups", GROUPS, self.rules.list_groups(ctx))
        audit(request, "identity.endpoint_group.create", "endpoint_group", None)
        data = member(await read_json(request), "endpoint_group")
        ref = self.rules.create_group(ctx, data)
        audit(request, "identity.endpoint_group.create", "endpoint_group", ref["id"])
        return JSONResponse({"endpoint_group": self._linked(request, GROUPS, ref)}, 201)

    async def group(self, request: Request, ctx: RequestContext) -> Response:
        group_id = request.path_params["endpoint_group_id"]
        if request.method == "DELETE":
            audit(request, "identity.endpoint_group.delete", "endpoint_group", group_id)
            self.rules.delete_group(ctx, group_id)
            return Response(status_code=204)
        if request.method == "PATCH":
            audit(request, "identity.endpoint_group.update", "endpoint_group", group_id)
            data = member(await read_json(request), "endpoint_group")
            ref = self.rules.update_group(ctx, group_id, data)
        else:
            ref = self.rules.get_group(ctx, group_id)
        return JSONResponse({"endpoint_group": self._linked(request, GROUPS, ref)})

    async def group_endpoints(self, request: Request, ctx: RequestContext) -> Response:
        refs = self.rules.group_endpoints(ctx, request.path_params["endpoint_group_id"])
        return self._listing(request, "endpoints", "/v3/endpoints", refs)

    async def group_projects(self, request: Request, ctx: RequestContext) -> Response:
        group_id = request.path_params["endpoint_group_id"]
        refs = self.rules.projects_of(ctx, group_id=group_id)
        return self._listing(request, "projects", "/v3/projects", refs)

    async def endpoint_projects(self, request: Request, ctx: RequestContext) -> Response:
        refs = self.rules.projects_of(ctx, endpoint_id=request.path_params["endpoint_id"])
        return self._listing(request, "projects", "/v3/projects", refs)

    async def project_endpoints(self, request: Request, ctx: RequestContext) -> Response:
        refs = self.rules.project_endpoints(ctx, request.path_params["project_id"])
        return self._listing(request, "endpoints", "/v3/endpoints", refs)

    async def project_groups(self, request: Request, ctx: RequestContext) -> Response:
        refs = self.rules.project_groups(ctx, request.path_params["project_id"])
        return self._listing(request, "endpoint_groups", GROUPS, refs)

    async def association(self, request: Request, ctx: RequestContext) -> Response:
        p = request.path_params
        return self._associate(request, ctx, p["project_id"], p["endpoint_id"], "")

    async def group_association(self, request: Request, ctx: RequestContext) -> Response:
        p = request.path_params
        return self._associate(request, ctx, p["project_id"], "", p["endpoint_group_id"])

    def _associate(
        self, request: Request, ctx: RequestContext, project_id: str, endpoint: str, group: str
    ) -> Response:
        if request.method == "PUT":
            audit(request, "identity.project_endpoint.create", "project", project_id)
            self.rules.associate(ctx, project_id, endpoint, group)
        elif request.method == "DELETE":
            audit(request, "identity.project_endpoint.delete", "project", project_id)
            self.rules.dissociate(ctx, project_id, endpoint, group)
        else:
            self.rules.check(ctx, project_id, endpoint, group)
        return Response(status_code=204)
