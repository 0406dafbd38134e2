"""Servers over HTTP: list (brief and detailed), create, show, update, delete.

Part of compute's HTTP layer: query strings and bodies in, `views` out.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response

from souverain.common.clock import parse_isotime
from souverain.common.context import RequestContext
from souverain.common.errors import BadRequest
from souverain.common.jsoncodec import JSONResponse, encode
from souverain.common.pagination import paginate
from souverain.compute import schemas, views
from souverain.compute.api_base import Handlers
from souverain.openstack.auth import audit
from souverain.openstack.body import read_json
from souverain.openstack.microversion import Version
from souverain.openstack.query import parse_flag, parse_limit

# Every status Nova knows; from 2.38 a filter on any other is a 400, before it matches nothing.
SERVER_STATUSES = frozenset(
    [
        "ACTIVE",
        "BUILD",
        "DELETED",
        "ERROR",
        "HARD_REBOOT",
        "MIGRATING",
        "PASSWORD",
        "PAUSED",
        "REBOOT",
        "REBUILD",
        "RESCUE",
        "RESIZE",
        "REVERT_RESIZE",
        "SHELVED",
        "SHELVED_OFFLOADED",
        "SHUTOFF",
        "SOFT_DELETED",
        "SUSPENDED",
        "UNKNOWN",
        "VERIFY_RESIZE",
    ]
)
# A server list's sort_key (Nova's names) -> the server column it sorts on.
SERVER_SORT_KEYS = {
    "display_name": "name",
    "created_at": "created_at",
    "updated_at": "updated_at",
    "vm_state": "vm_state",
    "task_state": "task_state",
    "uuid": "id",
    "launched_at": "launched_at",
    "host": "host",
    "image_ref": "image_id",
}


def list_filters(request: Request, ctx: RequestContext, v: Version) -> dict[str, Any]:
    """A server list's query string as the service's filters."""
    q = request.query_params
    filters: dict[str, Any] = {}
    status = q.get("status")
    if status is not None and v >= (2, 38) and status.upper() not in SERVER_STATUSES:
        raise BadRequest(f"Invalid status value: {status}")
    for key in ("name", "status", "image", "flavor", "host", "project_id", "tenant_id"):
        if key in q:
            filters["project_id" if key == "tenant_id" else key] = q[key]
    if "image" in filters:
        filters["image"] = filters["image"].rstrip("/").rsplit("/", 1)[-1]
    if "flavor" in filters:
        filters["flavor"] = filters["flavor"].rstrip("/").rsplit("/", 1)[-1]
    if "changes-since" in q:
        try:
            filters["changes-since"] = parse_isotime(q["changes-since"])
        except ValueError:
            raise BadRequest("Invalid input for query parameters changes-since.") from None
    all_tenants = q.get("all_tenants")
    if all_tenants is not None:
        filters["all_tenants"] = parse_flag("all_tenants", all_tenants)
        if not ctx.is_admin:
            filters["all_tenants"] = False
    if q.get("deleted", "").lower() in ("true", "1"):
        filters["deleted"] = True
    for key in ("tags", "tags-any", "not-tags", "not-tags-any"):
        if key in q:
            filters[key] = [t for t in q[key].split(",") if t]
    return filters


class ServerHandlers(Handlers):
    def server_list(
        self, request: Request, ctx: RequestContext, v: Version, detail: bool
    ) -> Response:
        rows = self.service.find_servers(ctx, list_filters(request, ctx, v))
        sort_key = request.query_params.get("sort_key")
        if sort_key:
            if sort_key not in SERVER_SORT_KEYS:
                raise BadRequest(f"Invalid sort_key {sort_key!r}.")
            field = SERVER_SORT_KEYS[sort_key]
            reverse = request.query_params.get("sort_dir", "desc") == "desc"
            rows.sort(
                key=lambda r: (getattr(r, field) is None, getattr(r, field) or ""), reverse=reverse
            )
        page = paginate(
            rows,
            lambda r: r.id,
            parse_limit(request.query_params.get("limit")),
            request.query_params.get("marker"),
        )
        # Views only for the page, and only for the detailed list: the brief one is id and name.
        base = self.base(request)
        items: Iterator[dict[str, Any]]
        if detail:
            found = self.service.views_of_servers([r.id for r in page.items])
            items = (views.server_body(base, s, v, ctx.is_admin) for s in found)
        else:
            items = (views.server_brief(base, r.id, r.name) for r in page.items)
        body = b'{"servers":' + views.encode_items(items)
        if page.next_marker is not None:
            href = str(request.url.include_query_params(marker=page.next_marker))
            body += b',"servers_links":' + encode([{"rel": "next", "href": href}])
        return Response(body + b"}", media_type=JSONResponse.media_type)

    async def servers(self, request: Request, ctx: RequestContext, v: Version) -> Response:
        if request.method == "GET":
            return await run_in_threadpool(self.server_list, request, ctx, v, False)
        body = await read_json(request)
        data = schemas.object_member(body, "server")
        req = schemas.server_request(data, v, schemas.scheduler_group(body))
        audit(request, "compute.server.create", "server", None)
        created = await run_in_threadpool(self.service.create_servers, ctx, req)
        audit(request, "compute.server.create", "server", created[0]["id"])
        if data.get("return_reservation_id") in (True, "True", "true"):
            return JSONResponse({"reservation_id": created[0]["reservation_id"]}, status_code=202)
        first = created[0]["id"]
        return JSONResponse(
            {"server": views.created_server(self.base(request), first, created[0]["admin_pass"])},
            status_code=202,
            headers={"Location": f"{self.base(request)}/v2.1/servers/{first}"},
        )

    async def servers_detail(self, request: Request, ctx: RequestContext, v: Version) -> Response:
        return await run_in_threadpool(self.server_list, request, ctx, v, True)

    async def server(self, request: Request, ctx: RequestContext, v: Version) -> Response:
        server_id = request.path_params["id"]
        if request.method == "DELETE":
            audit(request, "compute.server.delete", "server", server_id)
            await run_in_threadpool(self.service.delete_server, ctx, server_id)
            return Response(status_code=204)
        if request.method == "PUT":
            changes = schemas.server_changes(await read_json(request), v)
            audit(request, "compute.server.update", "server", server_id)
            updated = self.service.update_server(ctx, server_id, changes)
            body = views.updated_server_body(self.base(request), updated, v, ctx.is_admin)
            return JSONResponse({"server": body})
        server = self.service.get_server(ctx, server_id)
        return JSONResponse(
            {"server": views.server_body(self.base(request), server, v, ctx.is_admin)}
        )

    async def ips(self, request: Request, ctx: RequestContext, v: Version) -> Response:
        return JSONResponse(
            {"addresses": self.service.get_server(ctx, request.path_params["id"])["addresses"]}
        )
