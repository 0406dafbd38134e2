"""Builds the ASGI application from the services: routing by prefix, then middleware.

Nothing else happens here: no start-up work, no business rules.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Mount, Route, Router
from starlette.types import ASGIApp, Receive, Scope, Send

from souverain.common.audit import AuditLog
from souverain.common.clock import Clock
from souverain.common.middleware import (
    AuditMiddleware,
    BodyLimitMiddleware,
    ErrorRenderer,
    RequestLogMiddleware,
    state_of,
)
from souverain.config import ObjectStoreSettings
from souverain.identity import api as identity_api
from souverain.identity.service import CatalogEntry, IdentityService
from souverain.objectstore.api import S3App
from souverain.objectstore.service import ObjectStoreService
from souverain.openstack.faults import render_error

# Every service that runs, with the path it answers under: the catalog is built from this.
SERVICES = (
    CatalogEntry(type="identity", name="keystone", path="/identity"),
    CatalogEntry(type="compute", name="nova", path="/compute/v2.1"),
    CatalogEntry(type="image", name="glance", path="/image"),
    CatalogEntry(type="block-storage", name="cinder", path="/volume/v3"),
    CatalogEntry(type="network", name="neutron", path="/network"),
    # Keystone's template: each token's catalog carries its own project's account
    CatalogEntry(type="object-store", name="swift", path="/object-storage/v1/AUTH_%(project_id)s"),
    CatalogEntry(type="key-manager", name="barbican", path="/key-manager"),
)


@dataclass(frozen=True)
class Mounted:
    """One OpenStack service on the shared listener: its path prefix, app and error format."""

    prefix: str
    app: ASGIApp
    render: ErrorRenderer
    # (method, path) -> the body limit for that request, when it is not the server's
    body_limit: Callable[[str, str], int | None] | None = None


# Paths no service owns answer in the OpenStack JSON error shape, the same as identity's.
_render_plain = render_error


def error_renderer(mounts: Sequence[Mounted] = ()) -> ErrorRenderer:
    """Pick the wire format for errors raised outside a service, by path prefix."""
    by_prefix: dict[str, ErrorRenderer] = {"/identity": render_error}
    by_prefix.update({m.prefix: m.render for m in mounts})

    def render(path: str, status: int, title: str, message: str) -> tuple[bytes, str]:
        for prefix, renderer in by_prefix.items():
            if path == prefix or path.startswith(prefix + "/"):
                return renderer(path, status, title, message)
        return _render_plain(path, status, title, message)

    return render


class _RootOf:
    """Serve `/prefix` as `/prefix/` without a redirect: clients probe the bare URL."""

    def __init__(self, sub_app: ASGIApp, prefix: str) -> None:
        self.sub_app = sub_app
        self.prefix = prefix

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        scope = dict(scope)
        scope["path"] = scope["path"] + "/"
        scope["root_path"] = scope.get("root_path", "") + self.prefix
        await self.sub_app(scope, receive, send)


class _BodyLimits:
    """Raises the body limit for the few requests that carry bulk data (image uploads)."""

    def __init__(self, app: ASGIApp, mounts: Sequence[Mounted]) -> None:
        self.app = app
        self.rules = [(m.prefix, m.body_limit) for m in mounts if m.body_limit is not None]

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            path = scope["path"]
            for prefix, rule in self.rules:
                if path.startswith(prefix + "/"):
                    limit = rule(scope["method"], path[len(prefix) :])
                    if limit is not None:
                        state_of(scope)["max_body_bytes"] = limit
        await self.app(scope, receive, send)


def build_app(
    identity: IdentityService,
    audit_log: AuditLog,
    clock: Clock,
    max_body_bytes: int,
    public_url: str = "",
    access_sink: Callable[[str], None] | None = None,
    mounts: Sequence[Mounted] = (),
) -> ASGIApp:
    async def root(request: Request) -> Response:
        base = public_url or str(request.base_url).rstrip("/")
        return JSONResponse(
            {"services": [{"type": s.type, "name": s.name, "url": base + s.path} for s in SERVICES]}
        )

    async def not_found(scope: Scope, receive: Receive, send: Send) -> None:
        body, content_type = _render_plain("", 404, "Not Found", "No service answers at this path.")
        await Response(body, status_code=404, media_type=content_type)(scope, receive, send)

    routes: list[BaseRoute] = [Route("/", root, methods=["GET"])]
    served = [("/identity", identity_api.build_app(identity, public_url))]
    served += [(m.prefix, m.app) for m in mounts]
    for prefix, sub_app in served:
        routes.append(Route(prefix, _RootOf(sub_app, prefix)))
        routes.append(Mount(prefix, app=sub_app))
    router = Router(routes=routes, default=not_found)
    app: ASGIApp = BodyLimitMiddleware(router, max_body_bytes, error_renderer(mounts))
    app = _BodyLimits(app, mounts)
    app = AuditMiddleware(app, audit_log, clock)  # outside the limit: refusals are audited too
    return RequestLogMiddleware(app, access_sink)


def build_s3_app(
    objectstore: ObjectStoreService,
    settings: ObjectStoreSettings,
    audit_log: AuditLog,
    clock: Clock,
    access_sink: Callable[[str], None] | None = None,
) -> ASGIApp:
    """The S3 listener: its own limits (objects are large), audit and access log as the rest."""
    app: ASGIApp = S3App(objectstore, settings, clock)
    app = AuditMiddleware(app, audit_log, clock)
    return RequestLogMiddleware(app, access_sink)


def by_port(openstack: ASGIApp, s3: ASGIApp, s3_port: int) -> ASGIApp:
    """One server, two listeners: requests to the S3 port go to S3, the rest to OpenStack."""

    async def dispatch(scope: Scope, receive: Receive, send: Send) -> None:
        server = scope.get("server")
        if server is not None and server[1] == s3_port:
            await s3(scope, receive, send)
        else:
            await openstack(scope, receive, send)

    return dispatch
