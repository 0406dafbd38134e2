"""The host and the project's allowance over HTTP: availability zones, quotas, limits,
hypervisors, services and the (empty) extension list.

Part of compute's HTTP layer.
"""

from __future__ import annotations

from typing import Any

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response

from souverain.common.clock import isotime
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
        zone = self.service.settings.availability_zone
        return JSONResponse(
            {
                "availabilityZoneInfo": [
                    {"zoneName": zone, "zoneState": {"available": True}, "hosts": None}
                ]
            }
        )

    async def zones_detail(self, request: Request, ctx: RequestContext, v: Version) -> Response:
        require_admin(ctx)
        zone = self.service.settings.availability_zone
        now = isotime(self.service.clock.now())
        info = views.zones_detail(self.service.host, zone, now)
        return JSONResponse({"availabilityZoneInfo": info})

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
        """This host, as the one hypervisor; from 2.53 filtered by a hostname pattern and
        listing its servers when asked (`with_servers`)."""
        require_admin(ctx)
        h = self.service.hypervisor()
        body = views.hypervisor_body(h, v, detail)
        q = request.query_params
        if v >= (2, 53):
            pattern = q.get("hypervisor_hostname_pattern")
            if pattern is not None and pattern not in h["hypervisor_hostname"]:
                raise NotFound(f"No hypervisor matching '{pattern[:255]}' could be found.")
            if parse_flag("with_servers", q.get("with_servers", "false")):
                body["servers"] = await run_in_threadpool(self.service.servers_on_host)
        return JSONResponse({"hypervisors": [body]})

    def _this_hypervisor(self, request: Request, v: Version) -> dict[str, Any]:
        h = self.service.hypervisor()
        wanted = request.path_params["id"]
        if wanted != str(views.hypervisor_body(h, v, False)["id"]):
            raise NotFound(f"Hypervisor with ID {wanted[:64]} could not be found.")
        return h

    async def hypervisor(self, request: Request, ctx: RequestContext, v: Version) -> Response:
        require_admin(ctx)
        body = views.hypervisor_body(self._this_hypervisor(request, v), v, True)
        if v >= (2, 88):
            body["uptime"] = uptime_text()
        return JSONResponse({"hypervisor": body})

    async def hypervisor_uptime(
        self, request: Request, ctx: RequestContext, v: Version
    ) -> Response:
        """Gone from 2.88, where the hypervisor's own document carries it."""
        require_admin(ctx)
        require_at_most(v, (2, 87))
        body = views.hypervisor_body(self._this_hypervisor(request, v), v, False)
        return JSONResponse({"hypervisor": {**body, "uptime": uptime_text()}})

    async def hypervisor_match(self, request: Request, ctx: RequestContext, v: Version) -> Response:
        """`/{pattern}/search` and `/{pattern}/servers` (until 2.52): the hypervisors whose
        name holds the pattern, with their servers for the latter."""
        require_admin(ctx)
        require_at_most(v, (2, 52))
        pattern = request.path_params["id"]
        h = self.service.hypervisor()
        if pattern not in h["hypervisor_hostname"]:
            raise NotFound(f"No hypervisor matching '{pattern[:255]}' could be found.")
        body = views.hypervisor_body(h, v, False)
        if request.url.path.endswith("/servers"):  # an empty list when the host runs none
            body["servers"] = await run_in_threadpool(self.service.servers_on_host)
        return JSONResponse({"hypervisors": [body]})

    async def hypervisor_stats(self, request: Request, ctx: RequestContext, v: Version) -> Response:
        require_admin(ctx)
        stats = views.hypervisor_statistics(self.service.hypervisor())
        return JSONResponse({"hypervisor_statistics": stats})

    async def extensions(self, request: Request, ctx: RequestContext, v: Version) -> Response:
        return JSONResponse({"extensions": []})
