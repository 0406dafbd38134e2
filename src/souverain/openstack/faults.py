"""Faults: every error under one API rendered in that API's own wire format.

Each API keeps its own body (Nova's fault names, Neutron's `NeutronError`,
Keystone's `error`); `ErrorLayer` is the one path from an exception to it, so
an unexpected exception is a 500 with no internals everywhere.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable

from starlette.exceptions import HTTPException
from starlette.requests import ClientDisconnect
from starlette.responses import Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from souverain.common.errors import ApiError
from souverain.common.middleware import ErrorRenderer
from souverain.db.engine import RETRY_AFTER_SECONDS, is_outage

log = logging.getLogger("souverain.api")


def render_error(_path: str, status: int, title: str, message: str) -> tuple[bytes, str]:
    """The plain OpenStack error body, Keystone's: `{"error": {code, title, message}}`.

    Identity and billing answer in it, and so does anything outside every API."""
    body = {"error": {"code": status, "title": title, "message": message}}
    return json.dumps(body).encode(), "application/json"


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


# The fault names Nova and Cinder share (their WSGI layer's map); anything else is computeFault.
FAULT_NAMES = {
    400: "badRequest",
    401: "unauthorized",
    403: "forbidden",
    404: "itemNotFound",
    405: "badMethod",
    409: "conflictingRequest",
    413: "overLimit",
    415: "badMediaType",
    429: "overLimit",
    501: "notImplemented",
    503: "serviceUnavailable",
}


def render_named_fault(_path: str, status: int, title: str, message: str) -> tuple[bytes, str]:
    """Nova's and Cinder's fault body: `{"itemNotFound": {"code": 404, "message": "..."}}`."""
    name = FAULT_NAMES.get(status, "computeFault")
    return json.dumps({name: {"code": status, "message": message}}).encode(), "application/json"


DATABASE_OUTAGE = (
    "The service cannot reach its database right now; retry after the number of seconds "
    "in Retry-After."
)


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
        except ClientDisconnect:
            return  # the client left mid-body (or a slow body was cut off): nobody to answer
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
        elif is_outage(exc):
            log.warning("database unreachable under %s: %s", path, exc.__class__.__name__)
            status, title = 503, "Service Unavailable"
            message = DATABASE_OUTAGE
            headers["Retry-After"] = str(RETRY_AFTER_SECONDS)
        else:
            log.exception("unexpected error under %s", path)
            status, title = 500, "Internal Server Error"
            message = "An unexpected error prevented the server from fulfilling your request."
        body, content_type = self.render(path, status, title, message)
        return Response(body, status_code=status, media_type=content_type, headers=headers)
