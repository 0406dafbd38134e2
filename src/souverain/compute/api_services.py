"""The host's services over HTTP (os-services): listed by host and binary, and enabled,
disabled or forced down by an admin, through Nova's action routes before 2.53 and by
the service's UUID from it.

Part of compute's HTTP layer.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response

from souverain.common.context import RequestContext
from souverain.common.errors import BadRequest, NotFound
from souverain.common.jsoncodec import JSONResponse
from souverain.compute import views
from souverain.compute.api_base import Handlers, require_admin, require_version
from souverain.compute.service import HostService, ServiceChange
from souverain.openstack.auth import audit
from souverain.openstack.body import read_json
from souverain.openstack.microversion import Version

# The action routes before 2.53: what each changes, and the first version it exists at.
LEGACY_ACTIONS: dict[str, Version] = {
    "enable": (2, 1),
    "disable": (2, 1),
    "disable-log-reason": (2, 1),
    "force-down": (2, 11),
}


def _text(data: dict[str, Any], field: str, limit: int = 255) -> str:
    value = data.get(field)
    if not isinstance(value, str) or not value or len(value) > limit:
        raise BadRequest(f"Invalid input for field/attribute {field}: 1-{limit} characters.")
    return value


def _flag(data: dict[str, Any], field: str) -> bool:
    value = data.get(field)
    if not isinstance(value, bool):
        raise BadRequest(f"Invalid input for field/attribute {field}: true or false.")
    return value


def legacy_change(action: str, data: dict[str, Any]) -> ServiceChange:
    if action == "enable":
        return ServiceChange(disabled=False)
    if action == "disable":
        return ServiceChange(disabled=True)
    if action == "disable-log-reason":
        return ServiceChange(disabled=True, disabled_reason=_text(data, "disabled_reason"))
    return ServiceChange(forced_down=_flag(data, "forced_down"))


def update_change(data: dict[str, Any]) -> ServiceChange:
    """2.53's update: `status` (with a reason when disabling) and/or `forced_down`."""
    unexpected = sorted(set(data) - {"status", "disabled_reason", "forced_down"})
    if unexpected:
        raise BadRequest(
            f"Additional properties are not allowed ('{unexpected[0]}' was unexpected)"
        )
    status = data.get("status")
    if status is not None and status not in ("enabled", "disabled"):
        raise BadRequest("Invalid input for field/attribute status: enabled or disabled.")
    if "disabled_reason" in data and status != "disabled":
        raise BadRequest("disabled_reason goes with status disabled only.")
    if status is None and "forced_down" not in data:
        raise BadRequest("Give status or forced_down (or both).")
    return ServiceChange(
        disabled=None if status is None else status == "disabled",
        disabled_reason=_text(data, "disabled_reason") if "disabled_reason" in data else None,
        forced_down=_flag(data, "forced_down") if "forced_down" in data else None,
    )


class ServiceHandlers(Handlers):
    def _body(self, svc: HostService, v: Version) -> dict[str, Any]:
        return views.service_body(dataclasses.asdict(svc), v)

    async def services(self, request: Request, ctx: RequestContext, v: Version) -> Response:
        require_admin(ctx)
        q = request.query_params
        found = [
            s
            for s in self.service.host_services.list()
            if q.get("host") in (None, s.host) and q.get("binary") in (None, s.binary)
        ]
        return JSONResponse({"services": [self._body(s, v) for s in found]})

    async def update(self, request: Request, ctx: RequestContext, v: Version) -> Response:
        """PUT /os-services/{action} before 2.53, PUT /os-services/{uuid} from it."""
        require_admin(ctx)
        name, data = request.path_params["id"], await read_json(request)
        if not isinstance(data, dict):
            raise BadRequest("The request body is a JSON object.")
        services = self.service.host_services
        audit(request, "compute.service.update", "service", name)
        if v >= (2, 53):
            svc = services.find(service_id=name)
            updated = await run_in_threadpool(services.update, svc, update_change(data))
            return JSONResponse({"service": self._body(updated, v)})
        if name not in LEGACY_ACTIONS:
            raise NotFound("The resource could not be found.")
        require_version(v, LEGACY_ACTIONS[name])
        svc = services.find(host=_text(data, "host"), binary=_text(data, "binary"))
        updated = await run_in_threadpool(services.update, svc, legacy_change(name, data))
        return JSONResponse({"service": self._legacy_body(name, updated)})

    @staticmethod
    def _legacy_body(action: str, svc: HostService) -> dict[str, Any]:
        body: dict[str, Any] = {"host": svc.host, "binary": svc.binary}
        if action == "force-down":
            body["forced_down"] = svc.forced_down
            return body
        body["status"] = "disabled" if svc.disabled else "enabled"
        if action == "disable-log-reason":
            body["disabled_reason"] = svc.disabled_reason
        return body
