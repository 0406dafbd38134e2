"""Barbican's container, order, ACL and quota routes. Reads requests, calls the service's
families, writes responses; the rules (who may, what is valid) are theirs."""

from __future__ import annotations

import asyncio

from starlette.requests import Request
from starlette.responses import Response

from souverain.common.context import RequestContext
from souverain.common.errors import BadRequest
from souverain.common.jsoncodec import JSONResponse
from souverain.keymanager import schemas, views
from souverain.keymanager.api_secrets import PREFIX, paging
from souverain.keymanager.service import KeyManagerService
from souverain.openstack.auth import audit
from souverain.openstack.body import read_json
from souverain.openstack.links import base_url


class ResourceHandlers:
    def __init__(self, service: KeyManagerService, public_url: str) -> None:
        self.service = service
        self.public_url = public_url

    def base(self, request: Request) -> str:
        return base_url(request, self.public_url, PREFIX)

    async def containers(self, request: Request, ctx: RequestContext) -> Response:
        base, containers = self.base(request), self.service.containers
        if request.method == "POST":
            audit(request, "keymanager.container.create", "container", None)
            kind, name, refs = schemas.container_request(await read_json(request))
            record = await asyncio.to_thread(containers.create, ctx, kind, name, refs)
            audit(request, "keymanager.container.create", "container", record.id)
            return JSONResponse({"container_ref": f"{base}/v1/containers/{record.id}"}, 201)
        limit, offset = paging(request)
        q = request.query_params
        wanted_name, wanted_type = q.get("name"), q.get("type")
        records, total = await asyncio.to_thread(
            containers.find, ctx, limit, offset, wanted_name, wanted_type
        )
        query = {k: v for k, v in (("name", wanted_name), ("type", wanted_type)) if v is not None}
        items = [views.container(base, r) for r in records]
        href = f"{base}/v1/containers"
        return JSONResponse(views.page("containers", items, total, href, limit, offset, query))

    async def container(self, request: Request, ctx: RequestContext) -> Response:
        container_id = request.path_params["id"]
        containers = self.service.containers
        if request.method == "DELETE":
            audit(request, "keymanager.container.delete", "container", container_id)
            await asyncio.to_thread(containers.delete, ctx, container_id)
            return Response(status_code=204)
        record = await asyncio.to_thread(containers.get, ctx, container_id)
        return JSONResponse(views.container(self.base(request), record))

    async def orders(self, request: Request, ctx: RequestContext) -> Response:
        base, orders = self.base(request), self.service.orders
        if request.method == "POST":
            audit(request, "keymanager.order.create", "order", None)
            kind, meta = schemas.order_request(await read_json(request))
            record = await asyncio.to_thread(orders.create, ctx, kind, meta)
            audit(request, "keymanager.order.create", "order", record.id)
            return JSONResponse({"order_ref": f"{base}/v1/orders/{record.id}"}, 202)
        limit, offset = paging(request)
        records, total = await asyncio.to_thread(orders.find, ctx, limit, offset)
        items = [views.order(base, r) for r in records]
        href = f"{base}/v1/orders"
        return JSONResponse(views.page("orders", items, total, href, limit, offset, {}))

    async def order(self, request: Request, ctx: RequestContext) -> Response:
        order_id = request.path_params["id"]
        if request.method == "DELETE":
            audit(request, "keymanager.order.delete", "order", order_id)
            await asyncio.to_thread(self.service.orders.delete, ctx, order_id)
            return Response(status_code=204)
        record = await asyncio.to_thread(self.service.orders.get, ctx, order_id)
        return JSONResponse(views.order(self.base(request), record))

    async def secret_acl(self, request: Request, ctx: RequestContext) -> Response:
        return await self._acl(request, ctx, "secret", "secrets")

    async def container_acl(self, request: Request, ctx: RequestContext) -> Response:
        return await self._acl(request, ctx, "container", "containers")

    async def _acl(
        self, request: Request, ctx: RequestContext, kind: str, collection: str
    ) -> Response:
        entity_id = request.path_params["id"]
        acls = self.service.acls
        if request.method == "GET":
            record = await asyncio.to_thread(acls.get, ctx, kind, entity_id)
            return JSONResponse(views.acl(record))
        audit(request, f"keymanager.{kind}_acl.{request.method.lower()}", kind, entity_id)
        if request.method == "DELETE":
            await asyncio.to_thread(acls.delete, ctx, kind, entity_id)
            return Response(status_code=200)
        project_access, users = schemas.acl_request(await read_json(request))
        whole = request.method == "PUT"
        await asyncio.to_thread(acls.set, ctx, kind, entity_id, project_access, users, whole)
        href = f"{self.base(request)}/v1/{collection}/{entity_id}/acl"
        return JSONResponse({"acl_ref": href})

    async def quotas(self, request: Request, ctx: RequestContext) -> Response:
        limits = await asyncio.to_thread(self.service.quotas.mine, ctx)
        return JSONResponse({"quotas": {**limits, "cas": -1}})

    async def project_quotas(self, request: Request, ctx: RequestContext) -> Response:
        limit, offset = paging(request)
        records, total = await asyncio.to_thread(self.service.quotas.listed, limit, offset)
        items = [{"project_id": r.project_id, "project_quotas": r.limits} for r in records]
        href = f"{self.base(request)}/v1/project-quotas"
        return JSONResponse(views.page("project_quotas", items, total, href, limit, offset, {}))

    async def project_quota(self, request: Request, ctx: RequestContext) -> Response:
        project_id = request.path_params["id"][:64]
        quotas = self.service.quotas
        if request.method == "GET":
            limits = await asyncio.to_thread(quotas.of_project, project_id)
            return JSONResponse({"project_quotas": limits})
        audit(request, f"keymanager.project_quota.{request.method.lower()}", "project", project_id)
        if request.method == "DELETE":
            await asyncio.to_thread(quotas.delete, project_id)
            return Response(status_code=204)
        body = await read_json(request)
        asked = body.get("project_quotas")
        if not isinstance(asked, dict):
            raise BadRequest("Expecting to find project_quotas in request body.")
        await asyncio.to_thread(quotas.set, project_id, asked)
        return Response(status_code=204)
