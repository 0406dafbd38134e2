"""What every OpenStack-style API of the cloud shares: token check, error layer, base URL.

Each service keeps its own wire shapes (Nova's fault names, Glance's error
body); this module holds only the plumbing around them, so that one token
check and one "unexpected error" path serve all of them.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from souverain.common.context import RequestContext
from souverain.common.errors import ApiError, Unauthorized
from souverain.common.middleware import ErrorRenderer, state_of
from souverain.identity.service import IdentityService

log = logging.getLogger("souverain.api")

HTTP_TITLES = {
    400: "Bad Request",
    401: "Unauthorized",
    403: "Forbidden",
    404: "Not Found",
    405: "Method Not Allowed",
    409: "Conflict",
    413: "Request Entity Too Large",
    415: "Unsupported Media Type",
    500: "Internal Server Error",
    501: "Not Implemented",
    503: "Service Unavailable",
}


def authenticate(identity: IdentityService, request: Request) -> RequestContext:
    """The caller behind `X-Auth-Token`, recorded as the audit initiator; 401 otherwise."""
    token = request.headers.get("x-auth-token")
    view = identity.validate(token) if token else None
    if view is None:
        raise Unauthorized("The request you have made requires authentication.")
    state = state_of(request.scope)
    ctx = view.context(state.get("request_id", ""))
    state["initiator"] = {
        "user_id": ctx.user_id,
        "project_id": ctx.project_id,
        "domain_id": ctx.domain_id,
        "system": ctx.system_scope,
    }
    return ctx


def audit(request: Request, action: str, target_type: str, target_id: str | None) -> None:
    """Name what a mutating call did; the audit middleware writes it with the outcome."""
    state_of(request.scope)["audit"] = {
        "action": action,
        "target": {"type": target_type, "id": target_id},
    }


def base_url(request: Request, public_url: str, prefix: str) -> str:
    """The service's public root: configured, or as the client reached us."""
    if public_url:
        return f"{public_url}{prefix}"
    scope = request.scope
    host = request.headers.get("host") or "{}:{}".format(*scope.get("server", ("localhost", 80)))
    return f"{scope.get('scheme', 'http')}://{host}{scope.get('root_path', '')}"


class ErrorLayer:
    """Turns every error under one service into that service's body, in one thin layer.

    Unexpected exceptions become a 500 with no internals and a traceback in the log.
    """

    def __init__(
        self,
        app: ASGIApp,
        render: ErrorRenderer,
        headers: Callable[[ApiError], dict[str, str]] | None = None,
    ) -> None:
        self.app = app
        self.render = render
        self.extra_headers = headers

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        started = False

        async def watch(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        scope["app"] = self  # lets the router raise 404/405 instead of answering in plain text
        try:
            await self.app(scope, receive, watch)
        except Exception as exc:
            if started:
                raise
            await self.response_for(scope["path"], exc)(scope, receive, send)

    def response_for(self, path: str, exc: Exception) -> Response:
        headers: dict[str, str] = {}
        if isinstance(exc, ApiError):
            status, title, message = exc.status, exc.title, exc.message
            headers.update(exc.headers)
            if self.extra_headers is not None:
                headers.update(self.extra_headers(exc))
        elif isinstance(exc, HTTPException):
            status = exc.status_code
            title = HTTP_TITLES.get(status, "Error")
            message = {
                404: "The resource could not be found.",
                405: "The method is not allowed for the requested URL.",
            }.get(status, str(exc.detail))
        else:
            log.exception("unexpected error under %s", path)
            status, title = 500, "Internal Server Error"
            message = "An unexpected error prevented the server from fulfilling your request."
        body, content_type = self.render(path, status, title, message)
        return Response(body, status_code=status, media_type=content_type, headers=headers)


def json_body_of(data: Any, key: str) -> dict[str, Any]:
    """`data[key]` as an object, or a 400 naming the key."""
    from souverain.common.errors import BadRequest

    value = data.get(key) if isinstance(data, dict) else None
    if not isinstance(value, dict):
        raise BadRequest(f"Expecting to find {key} in request body.")
    return value
