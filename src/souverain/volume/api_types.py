"""Cinder's volume types on the edge: CRUD, extra specs, and project access to private ones."""

from __future__ import annotations

import asyncio
from typing import Any

from starlette.requests import Request
from starlette.responses import Response

from souverain.common.context import RequestContext
from souverain.common.errors import BadRequest, NotFound
from souverain.common.jsoncodec import JSONResponse
from souverain.openstack.auth import audit
from souverain.openstack.body import member, read_json
from souverain.openstack.query import parse_bool
from souverain.openstack.routing import Edge, EdgeRoute
from souverain.volume import models as m
from souverain.volume import schemas, views
from souverain.volume.api_common import viewer
from souverain.volume.service import VolumeService


class TypeApi:
    def __init__(self, service: VolumeService) -> None:
        self.service = service

    def routes(self, edge: Edge) -> list[EdgeRoute]:
        r = edge.route
        specs = "volume:type_extra_spec"
        return [
            r("/v3/types", self.types, {"GET": "volume:type:list", "POST": "volume:type:create"}),
            r("/v3/types/default", self.default_type, {"GET": "volume:type:show"}),
            r(
                "/v3/types/{id}",
                self.type,
                {
                    "GET": "volume:type:show",
                    "PUT": "volume:type:update",
                    "DELETE": "volume:type:delete",
                },
            ),
            r("/v3/types/{id}/action", self.type_action, {"POST": "volume:type_access:update"}),
            r(
                "/v3/types/{id}/os-volume-type-access",
                self.type_access,
                {"GET": "volume:type_access:list"},
            ),
            r(
                "/v3/types/{id}/extra_specs",
                self.extra_specs,
                {"GET": f"{specs}:list", "POST": f"{specs}:update"},
            ),
            r(
                "/v3/types/{id}/extra_specs/{key}",
                self.extra_spec,
                {"GET": f"{specs}:show", "PUT": f"{specs}:update", "DELETE": f"{specs}:delete"},
            ),
        ]

    def _view(
        self,
        request: Request,
        ctx: RequestContext,
        row: m.VolumeType,
        read: bool = True,
        updated: bool = False,
    ) -> dict[str, Any]:
        return views.type_view(row, viewer(request, ctx), read, row.qos_specs_id, updated)

    async def types(self, request: Request, ctx: RequestContext) -> Response:
        types = self.service.types
        if request.method == "GET":
            rows = await asyncio.to_thread(types.list_visible, ctx, _is_public(request, ctx))
            return JSONResponse({"volume_types": [self._view(request, ctx, t) for t in rows]})
        audit(request, "volume.type.create", "volume_type", None)
        req = schemas.type_create(member(await read_json(request), "volume_type"))
        row = await asyncio.to_thread(types.create, ctx, req)
        audit(request, "volume.type.create", "volume_type", row.id)
        return JSONResponse({"volume_type": self._view(request, ctx, row, read=False)})

    async def default_type(self, request: Request, ctx: RequestContext) -> Response:
        row = await asyncio.to_thread(self.service.types.get, ctx, "default")
        return JSONResponse({"volume_type": self._view(request, ctx, row)})

    async def type(self, request: Request, ctx: RequestContext) -> Response:
        type_id = request.path_params["id"]
        types = self.service.types
        if request.method == "GET":
            row = await asyncio.to_thread(types.get, ctx, type_id)
            return JSONResponse({"volume_type": self._view(request, ctx, row)})
        if request.method == "PUT":
            audit(request, "volume.type.update", "volume_type", type_id)
            req = schemas.type_update(member(await read_json(request), "volume_type"))
            row = await asyncio.to_thread(types.update, ctx, type_id, req)
            view = self._view(request, ctx, row, read=False, updated=True)
            return JSONResponse({"volume_type": view})
        audit(request, "volume.type.delete", "volume_type", type_id)
        await asyncio.to_thread(types.delete, ctx, type_id)
        return Response(status_code=202)

    async def type_action(self, request: Request, ctx: RequestContext) -> Response:
        """addProjectAccess / removeProjectAccess: `{"addProjectAccess": {"project": id}}`."""
        type_id = request.path_params["id"]
        data = await read_json(request)
        action = next(iter(data), "")
        if action not in ("addProjectAccess", "removeProjectAccess") or len(data) != 1:
            raise BadRequest(
                "Invalid input received: a volume type action is addProjectAccess or "
                "removeProjectAccess, one per request."
            )
        project = member(data, action).get("project")
        if not isinstance(project, str) or not 1 <= len(project) <= 64:
            raise BadRequest(f"Invalid input for field/attribute {action}: project is required.")
        audit(request, f"volume.type.{action}", "volume_type", type_id)
        types = self.service.types
        change = types.add_access if action == "addProjectAccess" else types.remove_access
        await asyncio.to_thread(change, ctx, type_id, project)
        return Response(status_code=202)

    async def type_access(self, request: Request, ctx: RequestContext) -> Response:
        grants = await asyncio.to_thread(
            self.service.types.access_list, ctx, request.path_params["id"]
        )
        items = [{"volume_type_id": t, "project_id": p} for t, p in grants]
        return JSONResponse({"volume_type_access": items})

    async def extra_specs(self, request: Request, ctx: RequestContext) -> Response:
        type_id = request.path_params["id"]
        types = self.service.types
        if request.method == "GET":
            row = await asyncio.to_thread(types.get, ctx, type_id)
            specs = views.type_view(row, viewer(request, ctx))["extra_specs"]
            return JSONResponse({"extra_specs": specs})
        audit(request, "volume.type.extra_specs.update", "volume_type", type_id)
        data = await read_json(request)
        items = schemas.metadata(data.get("extra_specs"), "extra_specs")
        specs = await asyncio.to_thread(types.set_extra_specs, ctx, type_id, items)
        return JSONResponse({"extra_specs": specs})

    async def extra_spec(self, request: Request, ctx: RequestContext) -> Response:
        type_id, key = request.path_params["id"], request.path_params["key"]
        types = self.service.types
        if request.method == "GET":
            row = await asyncio.to_thread(types.get, ctx, type_id)
            specs = views.type_view(row, viewer(request, ctx))["extra_specs"]
            if key not in specs:
                raise NotFound(f"Volume Type {type_id} has no extra specs with key {key[:255]}.")
            return JSONResponse({key: specs[key]})
        if request.method == "PUT":
            audit(request, "volume.type.extra_specs.update", "volume_type", type_id)
            items = schemas.metadata(await read_json(request), "extra_specs")
            specs = await asyncio.to_thread(types.set_extra_specs, ctx, type_id, items, key)
            return JSONResponse(specs)
        audit(request, "volume.type.extra_specs.delete", "volume_type", type_id)
        await asyncio.to_thread(types.delete_extra_spec, ctx, type_id, key)
        return Response(status_code=202)


def _is_public(request: Request, ctx: RequestContext) -> bool | None:
    """An admin's `is_public` filter: absent, public types (and those granted to the
    admin's project); `none`, all; true or false. Project users always see public types and
    those granted to them, whatever they send."""
    raw = request.query_params.get("is_public")
    if not ctx.is_admin or raw is None:
        return True
    if raw.strip().lower() == "none":
        return None
    return parse_bool("is_public", raw)
