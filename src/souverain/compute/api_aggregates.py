"""Host aggregates over HTTP (os-aggregates): list, create, show, update, delete, and the
action route's add_host, remove_host and set_metadata, shaped as Nova's (the `uuid`
from 2.41; a create's answer without hosts and metadata). Admin only.

Part of compute's HTTP layer.
"""

from __future__ import annotations

from typing import Any

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute

from souverain.common.context import RequestContext
from souverain.common.errors import BadRequest
from souverain.common.jsoncodec import JSONResponse
from souverain.compute.aggregates import (
    AggregateView,
    check_metadata,
    check_name,
    check_zone,
)
from souverain.compute.api_base import Handlers, require_admin, versioned
from souverain.openstack.auth import audit
from souverain.openstack.body import read_json
from souverain.openstack.microversion import Version
from souverain.openstack.routing import Edge

ACTIONS = ("add_host", "remove_host", "set_metadata")


def _time(value: Any) -> str | None:
    return None if value is None else value.isoformat(timespec="microseconds")


def aggregate_body(a: AggregateView, v: Version, created: bool = False) -> dict[str, Any]:
    body: dict[str, Any] = {
        "availability_zone": a.availability_zone,
        "created_at": _time(a.created_at),
        "deleted": False,
        "deleted_at": None,
        "id": a.id,
        "name": a.name,
        "updated_at": _time(a.updated_at),
    }
    if not created:
        body["hosts"] = list(a.hosts)
        body["metadata"] = dict(a.metadata)
    if v >= (2, 41):
        body["uuid"] = a.uuid
    return body


def _member(data: Any, key: str, allowed: set[str]) -> dict[str, Any]:
    """`{key: {...}}` with only the allowed fields, or Nova's 400."""
    if not isinstance(data, dict) or set(data) != {key} or not isinstance(data[key], dict):
        raise BadRequest(f"Invalid request body: an object with one member '{key}' is expected.")
    inner: dict[str, Any] = data[key]
    unexpected = sorted(set(inner) - allowed)
    if unexpected:
        raise BadRequest(
            f"Additional properties are not allowed ('{str(unexpected[0])[:64]}' was unexpected)"
        )
    return inner


def _host(args: dict[str, Any]) -> str:
    host = args.get("host")
    if not isinstance(host, str) or not 1 <= len(host) <= 255:
        raise BadRequest("Invalid input for field/attribute host: 1 to 255 characters.")
    return host


class AggregateHandlers(Handlers):
    async def aggregates(self, request: Request, ctx: RequestContext, v: Version) -> Response:
        require_admin(ctx)
        aggregates = self.service.aggregates
        if request.method == "GET":
            found = await run_in_threadpool(aggregates.list)
            return JSONResponse({"aggregates": [aggregate_body(a, v) for a in found]})
        args = _member(await read_json(request), "aggregate", {"name", "availability_zone"})
        if "name" not in args:
            raise BadRequest("'name' is a required property")
        name, zone = check_name(args["name"]), check_zone(args.get("availability_zone"))
        audit(request, "compute.aggregate.create", "aggregate", None)
        made = await run_in_threadpool(aggregates.create, name, zone)
        audit(request, "compute.aggregate.create", "aggregate", str(made.id))
        return JSONResponse({"aggregate": aggregate_body(made, v, created=True)})

    async def aggregate(self, request: Request, ctx: RequestContext, v: Version) -> Response:
        require_admin(ctx)
        aggregates, ident = self.service.aggregates, request.path_params["id"]
        if request.method == "GET":
            found = await run_in_threadpool(aggregates.get, ident)
            return JSONResponse({"aggregate": aggregate_body(found, v)})
        audit(request, f"compute.aggregate.{request.method.lower()}", "aggregate", ident)
        if request.method == "DELETE":
            await run_in_threadpool(aggregates.delete, ident)
            return Response(status_code=200)
        args = _member(await read_json(request), "aggregate", {"name", "availability_zone"})
        if not args:
            raise BadRequest("Give name or availability_zone (or both) to update.")
        name = check_name(args["name"]) if "name" in args else None
        if "availability_zone" in args:
            zone = check_zone(args["availability_zone"])
            updated = await run_in_threadpool(aggregates.update, ident, name, zone)
        else:
            updated = await run_in_threadpool(aggregates.update, ident, name)
        return JSONResponse({"aggregate": aggregate_body(updated, v)})

    async def action(self, request: Request, ctx: RequestContext, v: Version) -> Response:
        require_admin(ctx)
        aggregates, ident = self.service.aggregates, request.path_params["id"]
        data = await read_json(request)
        if not isinstance(data, dict) or len(data) != 1 or next(iter(data)) not in ACTIONS:
            raise BadRequest("Invalid request body: one of add_host, remove_host or set_metadata.")
        action = next(iter(data))
        audit(request, f"compute.aggregate.{action}", "aggregate", ident)
        if action == "set_metadata":
            args = _member(data, action, {"metadata"})
            changes = check_metadata(args.get("metadata"))
            done = await run_in_threadpool(aggregates.set_metadata, ident, changes)
        else:
            host = _host(_member(data, action, {"host"}))
            call = aggregates.add_host if action == "add_host" else aggregates.remove_host
            done = await run_in_threadpool(call, ident, host)
        return JSONResponse({"aggregate": aggregate_body(done, v)})


def aggregate_routes(edge: Edge, h: AggregateHandlers) -> list[BaseRoute]:
    r, a = edge.route, "/v2.1/os-aggregates"
    return [
        r(
            a,
            versioned(h.aggregates),
            {"GET": "compute:aggregate:list", "POST": "compute:aggregate:create"},
        ),
        r(
            f"{a}/{{id}}",
            versioned(h.aggregate),
            {
                "GET": "compute:aggregate:show",
                "PUT": "compute:aggregate:update",
                "DELETE": "compute:aggregate:delete",
            },
        ),
        r(f"{a}/{{id}}/action", versioned(h.action), {"POST": "compute:aggregate:action"}),
    ]
