"""Cinder's volume transfers on the edge: `/os-volume-transfer` (every microversion) and
`/volume-transfers` (3.55+), create, list, show, delete and accept."""

from __future__ import annotations

import asyncio
from typing import Any

from starlette.requests import Request
from starlette.responses import Response

from souverain.common.context import RequestContext
from souverain.common.errors import BadRequest
from souverain.common.jsoncodec import JSONResponse
from souverain.openstack.auth import audit
from souverain.openstack.body import member, read_json
from souverain.openstack.microversion import Version, microversion_of
from souverain.openstack.routing import Edge, EdgeRoute
from souverain.volume import schemas, views
from souverain.volume.api_common import Links, flag, require_version
from souverain.volume.service import VolumeService
from souverain.volume.transfers import Transfer, TransferCreate

WITH_SNAPSHOTS = (3, 55)  # /volume-transfers, and no_snapshots in the views
WITH_HISTORY = (3, 57)  # source and destination projects, accepted
COLLECTIONS = ("os-volume-transfer", "volume-transfers")


class TransferApi:
    def __init__(self, service: VolumeService, links: Links) -> None:
        self.transfers = service.transfers
        self.links = links

    def routes(self, edge: Edge) -> list[EdgeRoute]:
        r = edge.route
        found: list[EdgeRoute] = []
        for name in COLLECTIONS:
            found += [
                r(
                    f"/v3/{name}",
                    self.collection,
                    {"GET": "volume:transfer:list", "POST": "volume:transfer:create"},
                ),
                r(f"/v3/{name}/detail", self.detail, {"GET": "volume:transfer:list"}),
                r(
                    f"/v3/{name}/{{id}}",
                    self.item,
                    {"GET": "volume:transfer:show", "DELETE": "volume:transfer:delete"},
                ),
                r(f"/v3/{name}/{{id}}/accept", self.accept, {"POST": "volume:transfer:accept"}),
            ]
        return found

    def _where(self, request: Request) -> tuple[str, Version]:
        """The collection the request named, and its microversion (checked for it)."""
        version = microversion_of(request)
        name = "volume-transfers" if "/volume-transfers" in request.url.path else COLLECTIONS[0]
        if name == "volume-transfers":
            require_version(version, WITH_SNAPSHOTS)
        return name, version

    def _summary(self, request: Request, name: str, t: Transfer) -> dict[str, Any]:
        return {
            "id": t.id,
            "volume_id": t.volume_id,
            "name": t.name,
            "links": self.links.of(request, name, t.id),
        }

    def _detail(self, request: Request, t: Transfer) -> dict[str, Any]:
        name, version = self._where(request)
        body: dict[str, Any] = {
            "id": t.id,
            "created_at": views.time_text(t.created_at),
            "name": t.name,
            "volume_id": t.volume_id,
        }
        if t.auth_key is not None:
            body["auth_key"] = t.auth_key
        body["links"] = self.links.of(request, name, t.id)
        if version >= WITH_SNAPSHOTS:
            body["no_snapshots"] = t.no_snapshots
        if version >= WITH_HISTORY:
            body["destination_project_id"] = t.destination_project_id
            body["source_project_id"] = t.source_project_id
            body["accepted"] = t.accepted
        return body

    async def collection(self, request: Request, ctx: RequestContext) -> Response:
        name, version = self._where(request)
        if request.method == "GET":
            found = await asyncio.to_thread(
                self.transfers.list_visible, ctx, flag(request, "all_tenants")
            )
            return JSONResponse({"transfers": [self._summary(request, name, t) for t in found]})
        body = member(await read_json(request), "transfer")
        volume_id = body.get("volume_id")
        if not isinstance(volume_id, str) or not volume_id:
            raise BadRequest("Invalid input for field/attribute transfer: volume_id is required.")
        no_snapshots = False
        if version >= WITH_SNAPSHOTS and body.get("no_snapshots") is not None:
            no_snapshots = schemas.flag("no_snapshots", body["no_snapshots"])
        req = TransferCreate(volume_id, schemas.text("name", body.get("name")), no_snapshots)
        audit(request, "volume.transfer.create", "volume", volume_id)
        made = await asyncio.to_thread(self.transfers.create, ctx, req)
        return JSONResponse({"transfer": self._detail(request, made)}, 202)

    async def detail(self, request: Request, ctx: RequestContext) -> Response:
        self._where(request)
        found = await asyncio.to_thread(
            self.transfers.list_visible, ctx, flag(request, "all_tenants")
        )
        return JSONResponse({"transfers": [self._detail(request, t) for t in found]})

    async def item(self, request: Request, ctx: RequestContext) -> Response:
        self._where(request)
        transfer_id = request.path_params["id"]
        if request.method == "GET":
            found = await asyncio.to_thread(self.transfers.get, ctx, transfer_id)
            return JSONResponse({"transfer": self._detail(request, found)})
        audit(request, "volume.transfer.delete", "transfer", transfer_id)
        await asyncio.to_thread(self.transfers.delete, ctx, transfer_id)
        return Response(status_code=202)

    async def accept(self, request: Request, ctx: RequestContext) -> Response:
        name, _ = self._where(request)
        transfer_id = request.path_params["id"]
        key = member(await read_json(request), "accept").get("auth_key")
        if not isinstance(key, str) or not key:
            raise BadRequest("Invalid input for field/attribute accept: auth_key is required.")
        audit(request, "volume.transfer.accept", "transfer", transfer_id)
        done = await asyncio.to_thread(self.transfers.accept, ctx, transfer_id, key[:255])
        return JSONResponse({"transfer": self._summary(request, name, done)}, 202)
