"""The host and the project's allowance over HTTP: availability zones, quotas, limits,
hypervisors, services and the (empty) extension list.

Part of compute's HTTP layer.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response

from souverain.common.context import RequestContext
from souverain.common.errors import NotFound
from souverain.common.jsoncodec import JSONResponse
from souverain.compute import schemas, views
from souverain.compute.api_base import Handlers, require_admin, require_at_most
from souverain.compute.qemu_host import uptime_text
from souverain.openstack.auth import audit
from souverain.openstack.body import read_json
from souverain.openstack.microversion import Version
from souverain.openstack.query import parse_flag


class HostHandlers(Handlers):
    # -------------------------------------------------------------- zones

    async def zones(self, request: Request, ctx: RequestContext, v: Version) -> Response:
        services = await run_in_threadpool(self._services)
        return JSONResponse({"availabilityZoneInfo": views.zones_summary(services)})

    async def zones_detail(self, request: Request, ctx: RequestContext, v: Version) -> Response:
        require_admin(ctx)
        services = await run_in_threadpool(self._services)
        return JSONResponse({"availabilityZoneInfo": views.zones_detail(services)})

    def _services(self) -> list[dict[str, Any]]:
        return [dataclasses.asdict(svc) for svc in self.service.host_services.list()]

    # -------------------------------------------------------------- quotas and limits

    async def quota_set(self, request: Request, ctx: RequestContext, v: Version) -> Response:
        project_id = request.path_params["project"]
        if request.method == "GET":
            limits = await run_in_threadpool(self.service.quota_limits, ctx, project_id)
            return JSONResponse({"quota_set": {"id": project_id, **views.quota_values(limits, v)}})
        if request.method == "DELETE":
            audit(request, "compute.quota.delete", "project", project_id)
            await run_in_threadpool(self.service.reset_quota, ctx, project_id)
            return Response(status_code=202)
        audit(request, "compute.quota.update", "project", project_id)
        changes, force = schemas.quota_changes(await read_json(request))
        limits = await run_in_threadpool(self.service.update_quota, ctx, project_id, changes, force)
        return JSONResponse({"quota_set": views.quota_values(limits, v)})

    async def quota_defaults(self, request: Request, ctx: RequestContext, v: Version) -> Response:
        project_id = request.path_params["project"]
        limits = self.service.default_quotas()
        return JSONResponse({"quota_set": {"id": project_id, **views.quota_values(limits, v)}})

    async def quota_detail(self, request: Request, ctx: RequestContext, v: Version) -> Response:
        project_id = request.path_params["project"]
        limits, used = await run_in_threadpool(self.service.quota_usage, ctx, project_id)
        detail: dict[str, Any] = {"id": project_id}
        for key, limit in views.quota_values(limits, v).items():
            detail[key] = {"in_use": used.get(key, 0), "limit": limit, "reserved": 0}
        return JSONResponse({"quota_set": detail})

    async def limits(self, request: Request, ctx: RequestContext, v: Version) -> Response:
        used = await run_in_threadpool(self.service.servers_in_use, ctx)
        quota = (
            await run_in_threadpool(self.service.quota_limits, ctx, ctx.project_id)
            if ctx.project_id
            else self.service.default_quotas()
        )
        absolute = views.absolute_limits(quota, used, v)
        return JSONResponse({"limits": {"rate": [], "absolute": absolute}})

    # -------------------------------------------------------------- hypervisors and services

    async def hypervisors(self, request: Request, ctx: RequestContext, v: Version) -> Response:
        return await self._hypervisor_list(request, ctx, v, detail=False)

    async def hypervisors_detail(
        self, request: Request, ctx: RequestContext, v: Version
    ) -> Response:
        return await self._hypervisor_list(request, ctx, v, detail=True)

    async def _hypervisor_list(
        self, request: Request, ctx: RequestContext, v: Version, detail: bool
    ) -> Response:
        """Every host; from 2.53 filtered by a hostname pattern and listing each one's
        servers when asked (`with_servers`)."""
        require_admin(ctx)
        hosts = await run_in_threadpool(self.service.hypervisors)
        q = request.query_params
        with_servers = False
        if v >= (2, 53):
            pattern = q.get("hypervisor_hostname_pattern")
            if pattern is not None:
                hosts = _matching(hosts, pattern)
            with_servers = parse_flag("with_servers", q.get("with_servers", "false"))
        bodies = []
        for h in hosts:
            body = views.hypervisor_body(h, v, detail)
            if with_servers:
                body["servers"] = await run_in_threadpool(self.service.servers_on_host, h["host"])
            bodies.append(body)
        return JSONResponse({"hypervisors": bodies})

    async def _one_hypervisor(self, request: Request, v: Version) -> dict[str, Any]:
        wanted = request.path_params["id"]
        for h in await run_in_threadpool(self.service.hypervisors):
            if wanted == str(views.hypervisor_body(h, v, False)["id"]):
                return h
        raise NotFound(f"Hypervisor with ID {wanted[:64]} could not be found.")

    def _uptime(self, h: dict[str, Any]) -> str | None:
        """Only this process's own host is read; another's is not known here."""
        return uptime_text() if h["host"] == self.service.host else None

    async def hypervisor(self, request: Request, ctx: RequestContext, v: Version) -> Response:
        require_admin(ctx)
        h = await self._one_hypervisor(request, v)
        body = views.hypervisor_body(h, v, True)
        if v >= (2, 88):
            body["uptime"] = self._uptime(h)
        return JSONResponse({"hypervisor": body})

    async def hypervisor_uptime(
        self, request: Request, ctx: RequestContext, v: Version
    ) -> Response:
        """Gone from 2.88, where the hypervisor's own document carries it."""
        require_admin(ctx)
        require_at_most(v, (2, 87))
        h = await self._one_hypervisor(request, v)
        body = views.hypervisor_body(h, v, False)
        return JSONResponse({"hypervisor": {**body, "uptime": self._uptime(h)}})

    async def hypervisor_match(self, request: Request, ctx: RequestContext, v: Version) -> Response:
        """`/{pattern}/search` and `/{pattern}/servers` (until 2.52): the hypervisors whose
        name holds the pattern, with their servers for the latter."""
        require_admin(ctx)
        require_at_most(v, (2, 52))
        hosts = _matching(
            await run_in_threadpool(self.service.hypervisors), request.path_params["id"]
        )
        bodies = []
        for h in hosts:
            body = views.hypervisor_body(h, v, False)
            if request.url.path.endswith("/servers"):  # an empty list when the host runs none
                body["servers"] = await run_in_threadpool(self.service.servers_on_host, h["host"])
            bodies.append(body)
        return JSONResponse({"hypervisors": bodies})

    async def hypervisor_stats(self, request: Request, ctx: RequestContext, v: Version) -> Response:
        require_admin(ctx)
        hosts = await run_in_threadpool(self.service.hypervisors)
        return JSONResponse({"hypervisor_statistics": views.hypervisor_statistics(hosts)})

    async def extensions(self, request: Request, ctx: RequestContext, v: Version) -> Response:
        return JSONResponse({"extensions": []})


def _matching(hosts: list[dict[str, Any]], pattern: str) -> list[dict[str, Any]]:
    """The hosts whose name holds the pattern; 404 when none does, as Nova."""
    found = [h for h in hosts if pattern in h["hypervisor_hostname"]]
    if not found:
        raise NotFound(f"No hypervisor matching '{pattern[:255]}' could be found.")
    return found
