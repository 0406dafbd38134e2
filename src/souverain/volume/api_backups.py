"""Cinder's backups on the edge: create, list, show, update, delete, restore, actions."""

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
from souverain.volume import backup_records, backup_schemas, backup_views
from souverain.volume import models as m
from souverain.volume.api_common import Links, list_query, viewer, with_count
from souverain.volume.service import VolumeService


class BackupApi:
    def __init__(self, service: VolumeService, links: Links) -> None:
        self.service = service
        self.links = links

    def routes(self, edge: Edge) -> list[EdgeRoute]:
        r = edge.route
        return [
            r(
                "/v3/backups",
                self.backups,
                {"GET": "volume:backup:list", "POST": "volume:backup:create"},
            ),
            r("/v3/backups/detail", self.backups_detail, {"GET": "volume:backup:list"}),
            r(
                "/v3/backups/import_record",
                self.import_record,
                {"POST": "volume:backup:import_record"},
            ),
            r(
                "/v3/backups/{id}",
                self.backup,
                {
                    "GET": "volume:backup:show",
                    "PUT": "volume:backup:update",
                    "DELETE": "volume:backup:delete",
                },
            ),
            r("/v3/backups/{id}/restore", self.restore, {"POST": "volume:backup:restore"}),
            r("/v3/backups/{id}/action", self.action, {"POST": "volume:backup:action"}),
            r(
                "/v3/backups/{id}/export_record",
                self.export_record,
                {"GET": "volume:backup:export_record"},
            ),
        ]

    def _links(self, request: Request, row: m.VolumeBackup) -> list[dict[str, str]]:
        return self.links.of(request, "backups", row.id)

    async def _detail(
        self, request: Request, ctx: RequestContext, rows: list[m.VolumeBackup]
    ) -> list[dict[str, Any]]:
        dependent = await asyncio.to_thread(self.service.backups.dependents, [r.id for r in rows])
        see = viewer(request, ctx)
        return [
            backup_views.backup_view(r, see, r.id in dependent, self._links(request, r))
            for r in rows
        ]

    async def _list(self, request: Request, ctx: RequestContext, detail: bool) -> Response:
        query = list_query(request, snapshots=True)
        page = await asyncio.to_thread(self.service.backups.list_visible, ctx, query)
        rows = page.items
        if detail:
            items = await self._detail(request, ctx, rows)
        else:
            see = viewer(request, ctx)
            items = [
                backup_views.backup_summary(r, see, self._links(request, r), listed=True)
                for r in rows
            ]
        body: dict[str, Any] = {"backups": items}
        if rows and (page.more or len(rows) == query.limit):
            body["backups_links"] = self.links.next(
                request, "backups/detail" if detail else "backups", rows[-1].id
            )
        if with_count(request):
            body["count"] = page.total
        return JSONResponse(body)

    async def backups(self, request: Request, ctx: RequestContext) -> Response:
        if request.method == "GET":
            return await self._list(request, ctx, detail=False)
        audit(request, "volume.backup.create", "backup", None)
        body = member(await read_json(request), "backup")
        req = backup_schemas.backup_create(body, microversion_of(request))
        row = await asyncio.to_thread(self.service.backups.create, ctx, req)
        audit(request, "volume.backup.create", "backup", row.id)
        summary = backup_views.backup_summary(row, viewer(request, ctx), self._links(request, row))
        return JSONResponse({"backup": summary}, 202)

    async def backups_detail(self, request: Request, ctx: RequestContext) -> Response:
        return await self._list(request, ctx, detail=True)

    async def backup(self, request: Request, ctx: RequestContext) -> Response:
        backup_id = request.path_params["id"]
        backups = self.service.backups
        if request.method == "GET":
            row = await asyncio.to_thread(backups.get, ctx, backup_id)
            return JSONResponse({"backup": (await self._detail(request, ctx, [row]))[0]})
        if request.method == "PUT":
            version = microversion_of(request)
            if version < (3, 9):
                raise BadRequest("Updating a backup needs microversion 3.9 or later.")
            audit(request, "volume.backup.update", "backup", backup_id)
            req = backup_schemas.backup_update(member(await read_json(request), "backup"), version)
            row = await asyncio.to_thread(backups.update, ctx, backup_id, req.fields, req.metadata)
            see = viewer(request, ctx)
            summary = backup_views.backup_summary(row, see, self._links(request, row))
            return JSONResponse({"backup": summary})
        audit(request, "volume.backup.delete", "backup", backup_id)
        await asyncio.to_thread(backups.delete, ctx, backup_id)
        return Response(status_code=202)

    async def restore(self, request: Request, ctx: RequestContext) -> Response:
        backup_id = request.path_params["id"]
        audit(request, "volume.backup.restore", "backup", backup_id)
        req = backup_schemas.restore_request(member(await read_json(request), "restore"))
        done = await asyncio.to_thread(
            self.service.restores.restore, ctx, backup_id, req.volume_id, req.name
        )
        body = {
            "backup_id": done.backup_id,
            "volume_id": done.volume_id,
            "volume_name": done.volume_name,
        }
        return JSONResponse({"restore": body}, 202)

    async def action(self, request: Request, ctx: RequestContext) -> Response:
        backup_id = request.path_params["id"]
        data = await read_json(request)
        action = next(iter(data), "") if isinstance(data, dict) else ""
        audit(request, f"volume.backup.action.{action[:32]}", "backup", backup_id)
        backups = self.service.backups
        if action == "os-reset_status":
            status = backup_schemas.backup_status(member(data, action).get("status"))
            await asyncio.to_thread(backups.reset_status, ctx, backup_id, status)
        elif action == "os-force_delete":
            await asyncio.to_thread(backups.delete, ctx, backup_id, True)
        else:
            raise BadRequest(f"Invalid input received: unknown action {action[:64]!r}.")
        return Response(status_code=202)

    async def export_record(self, request: Request, ctx: RequestContext) -> Response:
        backup_id = request.path_params["id"]
        record = await asyncio.to_thread(
            backup_records.export_record, self.service.backups, ctx, backup_id
        )
        return JSONResponse({"backup-record": record})

    async def import_record(self, request: Request, ctx: RequestContext) -> Response:
        audit(request, "volume.backup.import_record", "backup", None)
        record = member(await read_json(request), "backup-record")
        row = await asyncio.to_thread(
            backup_records.import_record,
            self.service.backups,
            ctx,
            record.get("backup_service"),
            record.get("backup_url"),
        )
        audit(request, "volume.backup.import_record", "backup", row.id)
        body = {"id": row.id, "name": row.name, "links": self._links(request, row)}
        return JSONResponse({"backup": body}, 201)
