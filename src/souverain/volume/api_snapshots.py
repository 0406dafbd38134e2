"""Cinder's snapshots on the edge: CRUD, actions and metadata."""

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
from souverain.openstack.microversion import microversion_of
from souverain.openstack.routing import Edge, EdgeRoute
from souverain.volume import models as m
from souverain.volume import schemas, views
from souverain.volume.api_common import (
    Links,
    list_query,
    metadata_collection,
    metadata_item,
    viewer,
    with_count,
)
from souverain.volume.rules import MANAGE_REFUSED, NotImplementedFault
from souverain.volume.service import VolumeService


class SnapshotApi:
    def __init__(self, service: VolumeService, links: Links) -> None:
        self.service = service
        self.links = links

    def routes(self, edge: Edge) -> list[EdgeRoute]:
        r = edge.route
        meta = "volume:snapshot_metadata"
        return [
            r(
                "/v3/snapshots",
                self.snapshots,
                {"GET": "volume:snapshot:list", "POST": "volume:snapshot:create"},
            ),
            r("/v3/snapshots/detail", self.snapshots_detail, {"GET": "volume:snapshot:list"}),
            r(
                "/v3/snapshots/{id}",
                self.snapshot,
                {
                    "GET": "volume:snapshot:show",
                    "PUT": "volume:snapshot:update",
                    "DELETE": "volume:snapshot:delete",
                },
            ),
            r(
                "/v3/snapshots/{id}/action",
                self.snapshot_action,
                {"POST": "volume:snapshot:action"},
            ),
            r(
                "/v3/snapshots/{id}/metadata",
                self.snapshot_metadata,
                {"GET": f"{meta}:list", "POST": f"{meta}:update", "PUT": f"{meta}:update"},
            ),
            r(
                "/v3/snapshots/{id}/metadata/{key}",
                self.snapshot_metadata_item,
                {"GET": f"{meta}:show", "PUT": f"{meta}:update", "DELETE": f"{meta}:delete"},
            ),
        ]

    def _view(
        self, request: Request, ctx: RequestContext, row: m.Snapshot, read: bool = True
    ) -> dict[str, Any]:
        return views.snapshot_view(row, viewer(request, ctx), read)

    async def _list(self, request: Request, ctx: RequestContext, detail: bool) -> Response:
        query = list_query(request, snapshots=True)
        page = await asyncio.to_thread(self.service.snapshots.list_visible, ctx, query)
        rows = page.items
        if detail:
            items = [self._view(request, ctx, r) for r in rows]
        else:
            items = [views.snapshot_summary(r) for r in rows]
        body: dict[str, Any] = {"snapshots": items}
        if rows and (page.more or len(rows) == query.limit):  # a full page links on
            body["snapshots_links"] = self.links.next(
                request, "snapshots/detail" if detail else "snapshots", rows[-1].id
            )
        if with_count(request):
            body["count"] = page.total
        return JSONResponse(body)

    async def snapshots(self, request: Request, ctx: RequestContext) -> Response:
        if request.method == "GET":
            return await self._list(request, ctx, detail=False)
        audit(request, "volume.snapshot.create", "snapshot", None)
        body = member(await read_json(request), "snapshot")
        req = schemas.snapshot_create(body, microversion_of(request))
        row = await asyncio.to_thread(self.service.snapshots.create, ctx, req)
        audit(request, "volume.snapshot.create", "snapshot", row.id)
        return JSONResponse({"snapshot": self._view(request, ctx, row, read=False)}, 202)

    async def snapshots_detail(self, request: Request, ctx: RequestContext) -> Response:
        return await self._list(request, ctx, detail=True)

    async def snapshot(self, request: Request, ctx: RequestContext) -> Response:
        snapshot_id = request.path_params["id"]
        snapshots = self.service.snapshots
        if request.method == "GET":
            row = await asyncio.to_thread(snapshots.get, ctx, snapshot_id)
            return JSONResponse({"snapshot": self._view(request, ctx, row)})
        if request.method == "PUT":
            audit(request, "volume.snapshot.update", "snapshot", snapshot_id)
            req = schemas.described(member(await read_json(request), "snapshot"))
            row = await asyncio.to_thread(snapshots.update, ctx, snapshot_id, req)
            return JSONResponse({"snapshot": self._view(request, ctx, row, read=False)})
        audit(request, "volume.snapshot.delete", "snapshot", snapshot_id)
        await asyncio.to_thread(snapshots.delete, ctx, snapshot_id)
        return Response(status_code=202)

    async def snapshot_action(self, request: Request, ctx: RequestContext) -> Response:
        snapshot_id = request.path_params["id"]
        data = await read_json(request)
        action = next(iter(data), "")
        audit(request, f"volume.snapshot.action.{action[:32]}", "snapshot", snapshot_id)
        snapshots = self.service.snapshots
        if action == "os-reset_status":
            status = schemas.snapshot_status(member(data, action).get("status"))
            await asyncio.to_thread(snapshots.reset_status, ctx, snapshot_id, status)
        elif action == "os-force_delete":
            await asyncio.to_thread(snapshots.delete, ctx, snapshot_id, True)
        elif action == "os-update_snapshot_status":
            report = schemas.snapshot_report(member(data, action))
            await asyncio.to_thread(
                snapshots.report_status, ctx, snapshot_id, report.status, report.progress
            )
        elif action == "os-unmanage":
            await asyncio.to_thread(snapshots.get, ctx, snapshot_id)
            raise NotImplementedFault(MANAGE_REFUSED.format(kind="snapshots"))
        else:
            raise BadRequest(f"Invalid input received: unknown action {action[:64]!r}.")
        return Response(status_code=202)

    async def snapshot_metadata(self, request: Request, ctx: RequestContext) -> Response:
        return await metadata_collection(request, ctx, self.service.snapshots, "snapshot")

    async def snapshot_metadata_item(self, request: Request, ctx: RequestContext) -> Response:
        return await metadata_item(request, ctx, self.service.snapshots, "snapshot")
