"""Server groups over HTTP (os-server-groups): create, list, show, delete, each shaped
for its microversion (`policies` and `metadata` before 2.64, `policy` and `rules` from
it; the owner from 2.13).

Part of compute's HTTP layer.
"""

from __future__ import annotations

from typing import Any

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response

from souverain.common.context import RequestContext
from souverain.common.jsoncodec import JSONResponse
from souverain.common.pagination import paginate
from souverain.compute import schemas
from souverain.compute.api_base import Handlers
from souverain.openstack.auth import audit
from souverain.openstack.body import read_json
from souverain.openstack.microversion import Version
from souverain.openstack.query import parse_flag, parse_limit


def group_body(g: dict[str, Any], v: Version) -> dict[str, Any]:
    body: dict[str, Any] = {"id": g["id"], "name": g["name"]}
    if v >= (2, 64):
        body["policy"] = g["policy"]
        body["rules"] = g["rules"]
    else:
        body["policies"] = [g["policy"]]
        body["metadata"] = {}
    body["members"] = g["members"]
    if v >= (2, 13):
        body["project_id"] = g["project_id"]
        body["user_id"] = g["user_id"]
    return body


class ServerGroupHandlers(Handlers):
    async def groups(self, request: Request, ctx: RequestContext, v: Version) -> Response:
        groups = self.service.server_groups
        if request.method == "POST":
            req = schemas.server_group_request(await read_json(request), v)
            audit(request, "compute.server_group.create", "server_group", None)
            made = await run_in_threadpool(groups.create, ctx, req)
            audit(request, "compute.server_group.create", "server_group", made["id"])
            return JSONResponse({"server_group": group_body(made, v)})
        q = request.query_params
        every = parse_flag("all_projects", q.get("all_projects", "false"))
        found = await run_in_threadpool(groups.list, ctx, every)
        offset = int(q.get("offset", "0")) if q.get("offset", "0").isdigit() else 0
        page = paginate(found[offset:], lambda g: g["id"], parse_limit(q.get("limit")), None)
        return JSONResponse({"server_groups": [group_body(g, v) for g in page.items]})

    async def group(self, request: Request, ctx: RequestContext, v: Version) -> Response:
        groups, group_id = self.service.server_groups, request.path_params["id"]
        if request.method == "DELETE":
            audit(request, "compute.server_group.delete", "server_group", group_id)
            await run_in_threadpool(groups.delete, ctx, group_id)
            return Response(status_code=204)
        found = await run_in_threadpool(groups.get, ctx, group_id)
        return JSONResponse({"server_group": group_body(found, v)})
