"""Neutron's tag routes (standard-attr-tag) on every taggable collection:
`/v2.0/{collection}/{id}/tags` (list, replace all, remove all) and
`/v2.0/{collection}/{id}/tags/{tag}` (check, add, remove). Wire only: who may read or
change the tags is `tags`' rule."""

from __future__ import annotations

import asyncio

from starlette.requests import Request
from starlette.responses import Response

from souverain.common.context import RequestContext
from souverain.common.jsoncodec import JSONResponse
from souverain.network.service import NetworkService
from souverain.network.tags import TAGGABLE, check_tag, check_tags
from souverain.openstack.auth import audit
from souverain.openstack.body import read_json
from souverain.openstack.routing import Edge, EdgeRoute


class TagApi:
    def __init__(self, service: NetworkService) -> None:
        self.tags = service.tags

    def routes(self, edge: Edge) -> list[EdgeRoute]:
        routes = []
        for path in TAGGABLE:
            routes.append(
                edge.route(
                    f"/v2.0/{path}/{{id}}/tags",
                    self.all_tags,
                    {
                        "GET": "network:tag:list",
                        "PUT": "network:tag:update",
                        "DELETE": "network:tag:delete",
                    },
                )
            )
            routes.append(
                edge.route(
                    f"/v2.0/{path}/{{id}}/tags/{{tag}}",
                    self.one_tag,
                    {
                        "GET": "network:tag:show",
                        "PUT": "network:tag:update",
                        "DELETE": "network:tag:delete",
                    },
                )
            )
        return routes

    async def all_tags(self, request: Request, ctx: RequestContext) -> Response:
        path, resource_id = request.url.path.split("/")[-3], request.path_params["id"]
        if request.method == "GET":
            tags = await asyncio.to_thread(self.tags.tags_of, ctx, path, resource_id)
            return JSONResponse({"tags": tags})
        audit(request, f"network.{TAGGABLE[path]}.tags", TAGGABLE[path], resource_id)
        if request.method == "PUT":
            data = await read_json(request)
            wanted = check_tags(data.get("tags") if isinstance(data, dict) else None)
            tags = await asyncio.to_thread(self.tags.replace, ctx, path, resource_id, wanted)
            return JSONResponse({"tags": tags})
        await asyncio.to_thread(self.tags.replace, ctx, path, resource_id, [])
        return Response(status_code=204)

    async def one_tag(self, request: Request, ctx: RequestContext) -> Response:
        path = request.url.path.split("/")[-4]
        resource_id, tag = request.path_params["id"], check_tag(request.path_params["tag"])
        if request.method == "GET":
            await asyncio.to_thread(self.tags.has_tag, ctx, path, resource_id, tag)
            return Response(status_code=204)
        audit(request, f"network.{TAGGABLE[path]}.tags", TAGGABLE[path], resource_id)
        if request.method == "PUT":
            await asyncio.to_thread(self.tags.add, ctx, path, resource_id, tag)
            return Response(status_code=201)
        await asyncio.to_thread(self.tags.remove, ctx, path, resource_id, tag)
        return Response(status_code=204)
