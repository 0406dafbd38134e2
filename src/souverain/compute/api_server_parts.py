"""A server's parts over HTTP: metadata, tags, network interfaces, volume attachments.

Part of compute's HTTP layer.
"""

from __future__ import annotations

import dataclasses

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response

from souverain.common.context import RequestContext
from souverain.common.errors import BadRequest, NotFound
from souverain.common.jsoncodec import JSONResponse
from souverain.compute import schemas, views
from souverain.compute.api_base import Handlers, require_version
from souverain.openstack.auth import audit
from souverain.openstack.body import read_json
from souverain.openstack.microversion import Version

TAGS_FROM: Version = (2, 26)


class ServerPartHandlers(Handlers):
    # -------------------------------------------------------------- metadata

    async def metadata(self, request: Request, ctx: RequestContext, v: Version) -> Response:
        server_id = request.path_params["id"]
        if request.method == "GET":
            return JSONResponse({"metadata": self.service.metadata(ctx, server_id)})
        body = await read_json(request)
        items = schemas.str_map(body.get("metadata"), "metadata")
        audit(request, "compute.server.metadata", "server", server_id)
        merged = self.service.set_metadata(ctx, server_id, items, replace=request.method == "PUT")
        return JSONResponse({"metadata": merged})

    async def metadata_item(self, request: Request, ctx: RequestContext, v: Version) -> Response:
        server_id, key = request.path_params["id"], request.path_params["key"]
        if request.method == "GET":
            items = self.service.metadata(ctx, server_id)
            if key not in items:
                raise NotFound("Metadata item was not found")
            return JSONResponse({"meta": {key: items[key]}})
        audit(request, "compute.server.metadata", "server", server_id)
        if request.method == "DELETE":
            self.service.delete_metadata(ctx, server_id, key)
            return Response(status_code=204)
        body = await read_json(request)
        meta = schemas.single_item(body.get("meta"), "meta", key)
        self.service.set_metadata(ctx, server_id, meta, replace=False)
        return JSONResponse({"meta": meta})

    # -------------------------------------------------------------- tags

    async def tags(self, request: Request, ctx: RequestContext, v: Version) -> Response:
        require_version(v, TAGS_FROM)
        server_id = request.path_params["id"]
        if request.method == "GET":
            return JSONResponse({"tags": self.service.tags(ctx, server_id)})
        audit(request, "compute.server.tags", "server", server_id)
        if request.method == "DELETE":
            self.service.delete_tag(ctx, server_id, None)
            return Response(status_code=204)
        body = await read_json(request)
        tags = schemas.tags(body.get("tags"))
        return JSONResponse({"tags": self.service.set_tags(ctx, server_id, tags)})

    async def tag(self, request: Request, ctx: RequestContext, v: Version) -> Response:
        require_version(v, TAGS_FROM)
        server_id, tag = request.path_params["id"], request.path_params["tag"]
        if request.method == "GET":
            if tag not in self.service.tags(ctx, server_id):
                raise NotFound(f"Tag '{tag}' could not be found.")
            return Response(status_code=204)
        audit(request, "compute.server.tags", "server", server_id)
        if request.method == "DELETE":
            self.service.delete_tag(ctx, server_id, tag)
            return Response(status_code=204)
        if not schemas.TAG_RE.match(tag):
            raise BadRequest("Invalid tag: at most 60 characters, no ',' or '/'.")
        created = self.service.add_tag(ctx, server_id, tag)
        location = f"{self.base(request)}/v2.1/servers/{server_id}/tags/{tag}"
        return Response(status_code=201 if created else 204, headers={"Location": location})

    # -------------------------------------------------------------- interfaces

    async def interfaces(self, request: Request, ctx: RequestContext, v: Version) -> Response:
        server_id = request.path_params["id"]
        if request.method == "GET":
            ports = await run_in_threadpool(self.service.interfaces, ctx, server_id)
            return JSONResponse(
                {"interfaceAttachments": [views.interface_body(p, v) for p in ports]}
            )
        wanted = schemas.interface_request(await read_json(request))
        audit(request, "compute.server.attach_interface", "server", server_id)
        port = await run_in_threadpool(
            self.service.attach_interface,
            ctx,
            server_id,
            wanted.port_id,
            wanted.net_id,
            wanted.fixed_ip,
        )
        return JSONResponse({"interfaceAttachment": views.interface_body(port, v)})

    async def interface(self, request: Request, ctx: RequestContext, v: Version) -> Response:
        server_id, port_id = request.path_params["id"], request.path_params["port"]
        if request.method == "DELETE":
            audit(request, "compute.server.detach_interface", "server", server_id)
            await run_in_threadpool(self.service.detach_interface, ctx, server_id, port_id)
            return Response(status_code=202)
        for port in await run_in_threadpool(self.service.interfaces, ctx, server_id):
            if port["id"] == port_id:
                return JSONResponse({"interfaceAttachment": views.interface_body(port, v)})
        raise NotFound(f"Instance {server_id} has no interface with port {port_id[:64]}.")

    # -------------------------------------------------------------- volume attachments

    async def volume_attachments(
        self, request: Request, ctx: RequestContext, v: Version
    ) -> Response:
        server_id = request.path_params["id"]
        if request.method == "GET":
            items = await run_in_threadpool(self.service.volume_attachments, ctx, server_id)
            return JSONResponse({"volumeAttachments": [views.attachment_body(a, v) for a in items]})
        volume_id, delete = schemas.volume_attachment_request(await read_json(request), v)
        audit(request, "compute.server.attach_volume", "server", server_id)
        attachment = await run_in_threadpool(
            self.service.attach_volume, ctx, server_id, volume_id, delete
        )
        return JSONResponse({"volumeAttachment": views.attachment_body(attachment, v)})

    async def volume_attachment(
        self, request: Request, ctx: RequestContext, v: Version
    ) -> Response:
        server_id, volume_id = request.path_params["id"], request.path_params["volume"]
        if request.method == "DELETE":
            audit(request, "compute.server.detach_volume", "server", server_id)
            await run_in_threadpool(self.service.detach_volume, ctx, server_id, volume_id)
            return Response(status_code=202)
        if request.method == "PUT":
            raise BadRequest("Swapping a server's volume is not supported by this cloud.")
        items = await run_in_threadpool(self.service.volume_attachments, ctx, server_id)
        for a in items:
            if a["volume_id"] == volume_id:
                return JSONResponse({"volumeAttachment": views.attachment_body(a, v)})
        raise NotFound(f"Volume {volume_id} is not attached to server {server_id}.")

    async def diagnostics(self, request: Request, ctx: RequestContext, v: Version) -> Response:
        found = await run_in_threadpool(
            self.service.diagnostics.diagnose, ctx, request.path_params["id"]
        )
        return JSONResponse(views.diagnostics_body(dataclasses.asdict(found), v))
