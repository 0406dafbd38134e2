"""Barbican's consumer routes: `{secret}/consumers` (service, resource_type, resource_id)
and `{container}/consumers` (name, URL): list them (paged), register one, remove one (a
DELETE with a JSON body); a change answers with the entity's view, as Barbican's does.
Reads requests, calls `Consumers`, writes responses; the rules are the service's."""

from __future__ import annotations

import asyncio
from typing import Any

from starlette.requests import Request
from starlette.responses import Response

from souverain.common.context import RequestContext
from souverain.common.jsoncodec import JSONResponse
from souverain.keymanager import schemas, views
from souverain.keymanager.api_secrets import PREFIX, paging
from souverain.keymanager.consumers import CONTAINER, SECRET
from souverain.keymanager.service import KeyManagerService
from souverain.openstack.auth import audit
from souverain.openstack.body import read_json
from souverain.openstack.links import base_url
from souverain.openstack.microversion import microversion_of


class ConsumerHandlers:
    def __init__(self, service: KeyManagerService, public_url: str) -> None:
        self.service = service
        self.public_url = public_url

    async def secret_consumers(self, request: Request, ctx: RequestContext) -> Response:
        return await self._consumers(request, ctx, SECRET, "secrets")

    async def container_consumers(self, request: Request, ctx: RequestContext) -> Response:
        return await self._consumers(request, ctx, CONTAINER, "containers")

    async def _consumers(
        self, request: Request, ctx: RequestContext, kind: str, collection: str
    ) -> Response:
        entity_id = request.path_params["id"]
        base = base_url(request, self.public_url, PREFIX)
        consumers = self.service.consumers
        if request.method == "GET":
            limit, offset = paging(request)
            records, total = await asyncio.to_thread(
                consumers.page, ctx, kind, entity_id, limit, offset
            )
            items = [views.consumer(r) for r in records]
            href = f"{base}/v1/{collection}/{entity_id}/consumers"
            return JSONResponse(views.page("consumers", items, total, href, limit, offset, {}))
        verb = "create" if request.method == "POST" else "delete"
        audit(request, f"keymanager.{kind}_consumer.{verb}", kind, entity_id)
        fields = schemas.consumer_request(kind, await read_json(request))
        change = consumers.add if request.method == "POST" else consumers.remove
        await asyncio.to_thread(change, ctx, kind, entity_id, fields)
        return JSONResponse(await self._entity(request, ctx, kind, entity_id, base))

    async def _entity(
        self, request: Request, ctx: RequestContext, kind: str, entity_id: str, base: str
    ) -> dict[str, Any]:
        if kind == SECRET:
            record = await asyncio.to_thread(self.service.secrets.get, ctx, entity_id)
            return views.secret(base, record, microversion_of(request))
        found = await asyncio.to_thread(self.service.containers.get, ctx, entity_id)
        return views.container(base, found)
