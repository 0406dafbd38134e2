"""The control plane's internal API for host agents (`/internal/v1`), outside the public
catalog. A host's token, not a Keystone token, authenticates; the route's action names the
one rule that allows it (`Rule.HOST_AGENT`), and every handler holds the caller to its own
host (node authorization): a path naming another host is a 403, another host's server a 404.

  GET  /v1/hosts/{host}/assignments?since=N&wait=S   what runs there; waits up to S seconds
                                                     for the host's revision to pass N; with
                                                     the overlay, its data plane's `network`
                                                     and each server's `ports`
  POST /v1/hosts/{host}/heartbeat                    capacity, address; the revision now
  PUT  /v1/hosts/{host}/servers/{id}/state           what the agent found a server to be
  PUT  /v1/hosts/{host}/servers/{id}/console         the newest part of its serial console
  PUT  /v1/hosts/{host}/servers/{id}/volumes         the volumes its guest holds (and the
                                                     attaches the host could not do)
  GET  /v1/hosts/{host}/images/{id}/file             an image one of its servers boots from
  PUT  /v1/hosts/{host}/migrations/{id}              a step of a move it is the source or
                                                     destination of (compute/migrations.py)

Part of compute's HTTP layer.
"""

from __future__ import annotations

import asyncio
import ipaddress
from dataclasses import dataclass
from typing import Any, Protocol

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import FileResponse, Response
from starlette.routing import Router
from starlette.types import ASGIApp

from souverain.common.context import RequestContext
from souverain.common.errors import BadRequest, Forbidden, NotFound
from souverain.common.jsoncodec import JSONResponse
from souverain.compute.agent_volumes import held_report
from souverain.compute.agents import HostAgents, HostReport
from souverain.openstack.body import read_json
from souverain.openstack.faults import ErrorLayer, render_error
from souverain.openstack.query import parse_int
from souverain.openstack.routing import Edge

HOSTS_DOMAIN = "hosts"  # the caller's domain in its context: not a Keystone domain
AGENT_ROLE = "host-agent"
MAX_WAIT = 60
POLL = 0.2
_INTS = (
    "vcpus",
    "memory_mib",
    "disk_gib",
    "physical_vcpus",
    "physical_memory_mib",
    "physical_disk_gib",
    "hypervisor_version",
)


@dataclass(frozen=True)
class _HostToken:
    host: str

    def context(self, request_id: str = "") -> RequestContext:
        return RequestContext(
            user_id=f"host:{self.host}",
            user_domain_id=HOSTS_DOMAIN,
            roles=frozenset({AGENT_ROLE}),
            request_id=request_id,
        )

    def permits(self, root_path: str, path: str, method: str) -> bool:
        return True


class _HostTokens:
    """Only hosts' tokens are valid here; a Keystone token is not (and the reverse)."""

    def __init__(self, agents: HostAgents) -> None:
        self.agents = agents

    def validate(self, token: str) -> _HostToken | None:
        host = self.agents.host_of(token)
        return _HostToken(host) if host is not None else None


def own_host(ctx: RequestContext, host: str) -> str:
    """The node authorizer: a host acts only on itself."""
    if ctx.user_domain_id != HOSTS_DOMAIN or ctx.user_id != f"host:{host}":
        raise Forbidden(f"This credential is not host {host[:255]}'s.")
    return host


def _report(body: dict[str, Any]) -> HostReport:
    values: dict[str, Any] = {}
    for key in _INTS:
        value = body.get(key, 0)
        if not isinstance(value, int) or isinstance(value, bool) or not 0 <= value < 2**40:
            raise BadRequest(f"'{key}' must be a non-negative integer.")
        values[key] = value
    for key, default, limit in (("address", None, 64), ("roles", "compute", 64)):
        value = body.get(key, default)
        if value is not None and (not isinstance(value, str) or len(value) > limit):
            raise BadRequest(f"'{key}' must be a string of at most {limit} characters.")
        values[key] = value
    values["address"] = _underlay_address(values["address"])
    kind = body.get("hypervisor_type", "QEMU")
    if not isinstance(kind, str) or not 0 < len(kind) <= 32:
        raise BadRequest("'hypervisor_type' must be a string of 1 to 32 characters.")
    return HostReport(hypervisor_type=kind, **values)


def _underlay_address(value: str | None) -> str | None:
    """A host's underlay address: other hosts' tunnels and migrations go there, so it must
    be a unicast IP address (empty: not reported; loopback is taken, for one-machine
    clouds, and the VXLAN plans leave it out)."""
    if not value:
        return None
    try:
        address = ipaddress.ip_address(value)
    except ValueError:
        raise BadRequest(f"'address' {value[:64]!r} is not an IP address.") from None
    if address.is_unspecified or address.is_multicast:
        raise BadRequest(f"'address' {address} cannot be a host's underlay address.")
    return str(address)


class _Revisions:
    """Every host's revision, read once per POLL by this process however many agents
    watch: a hundred watches cost one query five times a second, not five hundred."""

    def __init__(self, agents: HostAgents) -> None:
        self.agents = agents
        self._seen: dict[str, int] = {}
        self._read_at = float("-inf")
        self._lock = asyncio.Lock()

    async def of(self, host: str) -> int:
        loop = asyncio.get_running_loop()
        async with self._lock:
            if loop.time() - self._read_at >= POLL:
                self._seen = await run_in_threadpool(self.agents.revisions)
                self._read_at = loop.time()
        return self._seen.get(host, -1)


class InternalHandlers:
    def __init__(self, agents: HostAgents) -> None:
        self.agents = agents
        self.revisions = _Revisions(agents)

    async def assignments(self, request: Request, ctx: RequestContext) -> Response:
        host = own_host(ctx, request.path_params["host"])
        query = request.query_params
        since = parse_int("since", query["since"], minimum=0) if "since" in query else -1
        wait = (
            parse_int("wait", query["wait"], minimum=0, maximum=MAX_WAIT) if "wait" in query else 0
        )
        loop = asyncio.get_running_loop()
        deadline = loop.time() + wait
        while since >= 0 and loop.time() < deadline:
            if await self.revisions.of(host) > since:
                break
            await asyncio.sleep(POLL)
        revision, servers = await run_in_threadpool(self.agents.assignments, host)
        network = await run_in_threadpool(self.agents.network_of, host, servers)
        body: dict[str, Any] = {"host": host, "revision": revision, "servers": servers}
        if network is not None:
            body["network"] = network
        return JSONResponse(body)

    async def heartbeat(self, request: Request, ctx: RequestContext) -> Response:
        host = own_host(ctx, request.path_params["host"])
        report = _report(await read_json(request))
        revision = await run_in_threadpool(self.agents.heartbeat, host, report)
        return JSONResponse({"host": host, "revision": revision})

    async def server_state(self, request: Request, ctx: RequestContext) -> Response:
        host = own_host(ctx, request.path_params["host"])
        body = await read_json(request)
        state, message = body.get("state"), body.get("message")
        if not isinstance(state, str):
            raise BadRequest("'state' is required: running, stopped, absent or error.")
        if message is not None and not isinstance(message, str):
            raise BadRequest("'message' must be a string.")
        action = body.get("action")
        if action is not None and (type(action) is not int or not 0 < action < 2**63):
            raise BadRequest("'action' must be the id of the instance action the host did.")
        server_id = request.path_params["server_id"]
        await run_in_threadpool(self.agents.report, host, server_id, state, message, action)
        return Response(status_code=204)

    async def console(self, request: Request, ctx: RequestContext) -> Response:
        host = own_host(ctx, request.path_params["host"])
        output = (await read_json(request)).get("output")
        if not isinstance(output, str):
            raise BadRequest("'output' is required: the newest part of the guest's console.")
        server_id = request.path_params["server_id"]
        await run_in_threadpool(self.agents.console, host, server_id, output)
        return Response(status_code=204)

    async def volumes(self, request: Request, ctx: RequestContext) -> Response:
        host = own_host(ctx, request.path_params["host"])
        body = await read_json(request)
        held, failed = held_report(body)
        server_id = request.path_params["server_id"]
        await run_in_threadpool(self.agents.volumes.report, host, server_id, held, failed)
        return Response(status_code=204)

    async def image_file(self, request: Request, ctx: RequestContext) -> Response:
        host = own_host(ctx, request.path_params["host"])
        image_id = request.path_params["image_id"]
        path = await run_in_threadpool(self.agents.image_file, host, image_id)
        return FileResponse(path, media_type="application/octet-stream")


class MigrationHandlers:
    def __init__(self, moves: MoveReports) -> None:
        self.moves = moves

    async def report(self, request: Request, ctx: RequestContext) -> Response:
        host = own_host(ctx, request.path_params["host"])
        raw = request.path_params["migration_id"]
        if not raw.isdigit() or len(raw) > 12:
            raise NotFound(f"Migration {raw[:64]} is not host {host}'s.")
        body = await read_json(request)
        step = body.get("step")
        if not isinstance(step, str):
            raise BadRequest("'step' is required: the step of the move the host took.")
        await run_in_threadpool(self.moves.report, host, int(raw), step, body)
        return Response(status_code=204)


class MoveReports(Protocol):
    def report(self, host: str, migration_id: int, step: str, body: dict[str, Any]) -> None: ...


def build_app(agents: HostAgents, moves: MoveReports | None = None) -> ASGIApp:
    edge = Edge(_HostTokens(agents))
    h = InternalHandlers(agents)
    base = "/v1/hosts/{host}"
    routes = [
        edge.route(f"{base}/assignments", h.assignments, {"GET": "internal:host:assignments"}),
        edge.route(f"{base}/heartbeat", h.heartbeat, {"POST": "internal:host:heartbeat"}),
        edge.route(
            f"{base}/servers/{{server_id}}/state",
            h.server_state,
            {"PUT": "internal:server:state"},
        ),
        edge.route(
            f"{base}/servers/{{server_id}}/console",
            h.console,
            {"PUT": "internal:server:console"},
        ),
        edge.route(
            f"{base}/servers/{{server_id}}/volumes",
            h.volumes,
            {"PUT": "internal:server:volumes"},
        ),
        edge.route(
            f"{base}/images/{{image_id}}/file", h.image_file, {"GET": "internal:image:download"}
        ),
    ]
    if moves is not None:
        routes.append(
            edge.route(
                f"{base}/migrations/{{migration_id}}",
                MigrationHandlers(moves).report,
                {"PUT": "internal:migration:report"},
            )
        )
    return ErrorLayer(Router(routes=routes), render_error)
