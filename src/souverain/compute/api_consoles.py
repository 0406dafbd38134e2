"""Remote consoles over HTTP: `POST /servers/{id}/remote-consoles` (2.6+), the legacy
`os-get*Console` actions (to 2.5) and `GET /os-console-auth-tokens/{token}` (admin).

Only the serial console is enabled; the others get Nova's "Unavailable console type".
The URL handed out points at this API's own websocket (`api_serial`), ws:// or wss://
as the client reached us.

Part of compute's HTTP layer.
"""

from __future__ import annotations

from typing import Any

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response

from souverain.common.context import RequestContext
from souverain.common.errors import BadRequest
from souverain.common.jsoncodec import JSONResponse
from souverain.compute import schemas
from souverain.compute.api_base import Handlers, require_admin, require_at_most, require_version
from souverain.compute.api_serial import PATH
from souverain.openstack.auth import audit
from souverain.openstack.body import read_json
from souverain.openstack.microversion import Version

# the legacy action and the protocol it stands for
LEGACY_PROTOCOLS = {
    "os-getVNCConsole": "vnc",
    "os-getSPICEConsole": "spice",
    "os-getRDPConsole": "rdp",
    "os-getSerialConsole": "serial",
}


def websocket_url(base: str, token: str) -> str:
    """The console's URL from the compute API's public base (http -> ws, https -> wss)."""
    scheme, rest = base.split("://", 1)
    return f"{'wss' if scheme == 'https' else 'ws'}://{rest}{PATH}?token={token}"


class ConsoleHandlers(Handlers):
    async def remote_console(self, request: Request, ctx: RequestContext, v: Version) -> Response:
        require_version(v, (2, 6))
        server_id = request.path_params["id"]
        body = await read_json(request)
        protocol, console_type = schemas.remote_console_request(body, v)
        audit(request, "compute.server.remote_console", "server", server_id)
        url = await self.console_url(request, ctx, server_id, protocol, console_type)
        console = {"protocol": protocol, "type": console_type, "url": url}
        return JSONResponse({"remote_console": console})

    async def legacy_console(
        self,
        request: Request,
        ctx: RequestContext,
        v: Version,
        server_id: str,
        action: str,
        args: Any,
    ) -> Response:
        """`{"os-getSerialConsole": {"type": "serial"}}` and its siblings, to 2.5."""
        require_at_most(v, (2, 5))
        console_type = schemas.legacy_console_type({action: args}, action)
        url = await self.console_url(
            request, ctx, server_id, LEGACY_PROTOCOLS[action], console_type
        )
        return JSONResponse({"console": {"type": console_type, "url": url}})

    async def console_url(
        self, request: Request, ctx: RequestContext, server_id: str, protocol: str, kind: str
    ) -> str:
        consoles = self.service.consoles
        # as Nova: the server is found first (404), then the console type (400), then its
        # state (409)
        await run_in_threadpool(self.service.core.check_visible, ctx, server_id)
        consoles.check_console_type(protocol, kind)
        token = await run_in_threadpool(consoles.create_serial, ctx, server_id)
        return websocket_url(self.base(request), token)

    async def auth_token(self, request: Request, ctx: RequestContext, v: Version) -> Response:
        if v < (2, 31):
            raise BadRequest("Console tokens can be shown from microversion 2.31.")
        require_admin(ctx)
        token = request.path_params["token"]
        console = await run_in_threadpool(self.service.consoles.show, ctx, token)
        return JSONResponse({"console": console})
