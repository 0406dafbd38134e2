"""Glance v2 interoperable import on the wire: import info, staging, import, tasks.

Routes only; the rules (which status may stage or import, whose object may be
downloaded, what a failed import leaves) live in `imports.py`.
"""

from __future__ import annotations

import asyncio

from starlette.requests import Request
from starlette.responses import Response

from souverain.common.context import RequestContext
from souverain.common.jsoncodec import JSONResponse
from souverain.image import views
from souverain.image.api_data import InsufficientStorage, octet_stream_only, receive_into
from souverain.image.imports import import_request
from souverain.image.service import ImageService
from souverain.image.store import StorageFull
from souverain.openstack.auth import audit
from souverain.openstack.body import read_json
from souverain.openstack.links import base_url
from souverain.openstack.routing import Edge, EdgeRoute

PREFIX = "/image"


class ImportApi:
    def __init__(self, service: ImageService, public_url: str = "") -> None:
        self.service = service
        self.imports = service.imports
        self.public_url = public_url

    def routes(self, edge: Edge) -> list[EdgeRoute]:
        r = edge.route
        image = "/v2/images/{image_id}"
        return [
            r("/v2/info/import", self.info, {"GET": "image:info:show"}),
            r(f"{image}/stage", self.stage, {"PUT": "image:image:stage"}),
            r(f"{image}/import", self.start_import, {"POST": "image:image:import"}),
            r(f"{image}/tasks", self.image_tasks, {"GET": "image:task:list"}),
            r("/v2/tasks", self.tasks, {"GET": "image:task:list"}),
            r("/v2/tasks/{task_id}", self.task, {"GET": "image:task:show"}),
        ]

    async def info(self, request: Request, ctx: RequestContext) -> Response:
        return JSONResponse(views.import_info_view(self.imports.methods()))

    async def stage(self, request: Request, ctx: RequestContext) -> Response:
        image_id = request.path_params["image_id"]
        audit(request, "image.stage", "image", image_id)
        octet_stream_only(request)
        found = await asyncio.to_thread(self.imports.begin_stage, ctx, image_id)
        try:
            writer = await asyncio.to_thread(self.service.store.writer)
            await receive_into(request, writer, self.service.settings.max_image_bytes)
            await asyncio.to_thread(self.imports.finish_stage, found, writer)
        except StorageFull:
            await asyncio.to_thread(self.imports.abandon_stage, found)
            raise InsufficientStorage("There is no room left to stage the image.") from None
        except BaseException:
            await asyncio.to_thread(self.imports.abandon_stage, found)
            raise
        return Response(status_code=204)

    async def start_import(self, request: Request, ctx: RequestContext) -> Response:
        image_id = request.path_params["image_id"]
        audit(request, "image.import", "image", image_id)
        req = import_request(await read_json(request))
        base = base_url(request, self.public_url, PREFIX)
        origin = base[: -len(PREFIX)] if base.endswith(PREFIX) else base
        task = await asyncio.to_thread(self.imports.start, ctx, image_id, req, origin)
        # Glance answers 202 and imports behind it; the task says how it went.
        await asyncio.to_thread(self.imports.run, ctx, task.id, req)
        return Response(status_code=202)

    async def tasks(self, request: Request, ctx: RequestContext) -> Response:
        rows = await asyncio.to_thread(self.imports.list_tasks, ctx)
        body = {
            "tasks": [views.task_stub_view(t) for t in rows],
            "first": "/v2/tasks",
            "schema": "/v2/schemas/tasks",
        }
        return JSONResponse(body)

    async def image_tasks(self, request: Request, ctx: RequestContext) -> Response:
        image_id = request.path_params["image_id"]
        rows = await asyncio.to_thread(self.imports.list_tasks, ctx, image_id)
        return JSONResponse({"tasks": [views.image_task_view(t) for t in rows]})

    async def task(self, request: Request, ctx: RequestContext) -> Response:
        task_id = request.path_params["task_id"]
        row = await asyncio.to_thread(self.imports.show_task, ctx, task_id)
        return JSONResponse(views.task_view(row))
