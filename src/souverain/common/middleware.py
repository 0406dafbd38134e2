"""Cross-cutting ASGI middleware: request ids, access log, body-size limit, audit.

Plain ASGI, no per-request Starlette objects, because every API call crosses
these layers. Errors raised here are rendered by the wire format of the API
the path belongs to (`ErrorRenderer`), so a Keystone client sees a Keystone
error and an S3 client sees S3 XML.
"""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Callable
from typing import Any

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from souverain.common.audit import AuditLog, Target, collect_target, reset_target
from souverain.common.clock import Clock, isotime
from souverain.common.errors import PayloadTooLarge
from souverain.common.ids import new_request_id
from souverain.common.jsoncodec import encode

access_log = logging.getLogger("souverain.access")

# (path, status, title, message) -> (body, content type)
ErrorRenderer = Callable[[str, int, str, str], tuple[bytes, str]]

MUTATING = frozenset({"POST", "PUT", "PATCH", "DELETE"})
# Paths that name the project of what they act on: Nova's and Cinder's project-prefixed
# paths, and Keystone's project resources (project, its grants, its tags).
PROJECT_IN_PATH = re.compile(
    r"^/(?:compute/v2(?:\.1)?|volume/v[23]|block-storage/v3)/([0-9a-f]{32})(?:/|$)"
    r"|^/identity/v3/projects/([0-9a-f]{32})(?:/|$)"
)


def state_of(scope: Scope) -> dict[str, Any]:
    state: dict[str, Any] = scope.setdefault("state", {})
    return state


async def send_error(send: Send, render: ErrorRenderer, path: str, error: PayloadTooLarge) -> None:
    body, content_type = render(path, error.status, error.title, error.message)
    await send(
        {
            "type": "http.response.start",
            "status": error.status,
            "headers": [
                (b"content-type", content_type.encode()),
                (b"content-length", str(len(body)).encode()),
                (b"connection", b"close"),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})


class RequestLogMiddleware:
    """Gives every request an id (echoed in `x-openstack-request-id`) and logs one JSON line."""

    def __init__(self, app: ASGIApp, sink: Callable[[str], None] | None = None) -> None:
        """`sink` takes each formatted line; by default the `souverain.access` logger."""
        self.app = app
        self.sink = sink

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request_id = new_request_id()
        state = state_of(scope)
        state["request_id"] = request_id
        started = time.perf_counter()
        status = 500
        header = (b"x-openstack-request-id", request_id.encode())

        async def send_with_id(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                message.setdefault("headers", [])
                message["headers"] = [*message["headers"], header]
            await send(message)

        try:
            await self.app(scope, receive, send_with_id)
        finally:
            if self.sink is not None or access_log.isEnabledFor(logging.INFO):
                initiator = state.get("initiator") or {}
                line = encode(
                    {
                        "request_id": request_id,
                        "method": scope["method"],
                        "path": scope["path"],
                        "status": status,
                        "duration_ms": round((time.perf_counter() - started) * 1000, 2),
                        "client": (scope.get("client") or ("", 0))[0],
                        "user_id": initiator.get("user_id"),
                        "project_id": initiator.get("project_id"),
                    }
                ).decode()
                (self.sink or access_log.info)(line)


class BodyLimitMiddleware:
    """Refuses bodies over the limit: at once if declared, while streaming if chunked."""

    def __init__(self, app: ASGIApp, max_bytes: int, render: ErrorRenderer) -> None:
        self.app = app
        self.max_bytes = max_bytes
        self.render = render

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        limit = state_of(scope).get("max_body_bytes", self.max_bytes)
        too_large = PayloadTooLarge(
            f"The request body is larger than the limit of {limit} bytes; send a smaller request."
        )
        for name, value in scope.get("headers", ()):
            if name == b"content-length":
                try:
                    declared = int(value)
                except ValueError:
                    declared = -1
                if declared > limit:
                    await send_error(send, self.render, scope["path"], too_large)
                    return
        seen = 0

        async def counting_receive() -> Message:
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > limit:
                    raise too_large
            return message

        await self.app(scope, counting_receive, send)


class AuditMiddleware:
    """Appends one audit record per mutating call, after the response status is known.

    The API fills `state["audit"]` (action, target) and `state["initiator"]`
    (who); both hold ids and names only, never a password, token or secret.
    """

    def __init__(self, app: ASGIApp, log: AuditLog, clock: Clock) -> None:
        self.app = app
        self.log = log
        self.clock = clock

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] not in MUTATING:
            await self.app(scope, receive, send)
            return
        status = 500

        async def watch(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        slot, token = collect_target()
        found = PROJECT_IN_PATH.match(scope["path"])  # before a service rewrites the path
        if found:
            slot.path_project = next(group for group in found.groups() if group)
        try:
            await self.app(scope, receive, watch)
        finally:
            reset_target(token)
            self._record(scope, status, slot)

    def _record(self, scope: Scope, status: int, target: Target) -> None:
        state = state_of(scope)
        audit = state.get("audit") or {}
        initiator = state.get("initiator") or {"user_id": None}
        target_project = target.chosen(initiator.get("project_id"))
        where: dict[str, Any] = {}
        if target_project:
            where["target_project"] = target_project
        # an admin acting on what another project (or a customer's account) owns: flagged
        # for the owners to see
        if state.get("caller_admin") and (
            target.admin_over_customer
            or (target_project and target_project != initiator.get("project_id"))
        ):
            where["admin_action"] = True
        self.log.append(
            {
                "time": isotime(self.clock.now()),
                "request_id": state.get("request_id", ""),
                "initiator": initiator,
                # a call refused at the edge, before its handler named it, is recorded
                # under the policy action it was refused
                "action": audit.get("action")
                or state.get("policy_action")
                or f"{scope['method']} {scope['path']}",
                "target": audit.get("target") or {"path": scope["path"]},
                "outcome": "success" if status < 400 else "failure",
                "status": status,
                **where,
            }
        )
