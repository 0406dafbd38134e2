"""The key manager's API, Barbican v1 at `/key-manager`: the version documents, the route
table (each route naming its `key-manager:*` policy action), Barbican's error body and the
ASGI app. Microversions 1.0 to 1.2 as Barbican's (`OpenStack-API-Version: key-manager
1.1`): 1.1 shows a secret's consumers, 1.2 refuses deleting a secret with consumers unless
forced; a version document asked for at 1.1 or later gives the range. Handlers live in
api_secrets.py, api_resources.py and api_consumers.py; rules in the service. Nothing here
logs or echoes a payload."""

from __future__ import annotations

import json
from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Router
from starlette.types import ASGIApp, Receive, Scope, Send

from souverain.common.jsoncodec import JSONResponse
from souverain.keymanager.api_consumers import ConsumerHandlers
from souverain.keymanager.api_resources import ResourceHandlers
from souverain.keymanager.api_secrets import SecretHandlers
from souverain.keymanager.service import KeyManagerService
from souverain.openstack.auth import TokenValidator
from souverain.openstack.faults import ErrorLayer
from souverain.openstack.links import base_url
from souverain.openstack.microversion import Microversions, microversion_of, version_text
from souverain.openstack.routing import Edge, EdgeRoute

PREFIX = "/key-manager"
SERVICE_TYPE = "key-manager"
VERSIONS = Microversions((SERVICE_TYPE,), (1, 0), (1, 2))


def render_error(_path: str, status: int, title: str, message: str) -> tuple[bytes, str]:
    """Barbican's error body: `{"code": 404, "title": "Not Found", "description": "..."}`."""
    body = {"code": status, "title": title, "description": message}
    return json.dumps(body).encode(), "application/json"


def _version(base: str, ranged: bool) -> dict[str, Any]:
    """Barbican's v1 document: the legacy `stable` one to a client that asked for no
    microversion (or 1.0), the `CURRENT` one with the range to one that asked for more."""
    links = [
        {"rel": "self", "href": f"{base}/v1/"},
        {"rel": "describedby", "type": "text/html", "href": "https://docs.openstack.org/"},
    ]
    if ranged:
        return {
            "id": "v1",
            "status": "CURRENT",
            "min_version": version_text(VERSIONS.minimum),
            "max_version": version_text(VERSIONS.maximum),
            "links": links,
        }
    return {
        "id": "v1",
        "status": "stable",
        "links": links,
        "media-types": [
            {"base": "application/json", "type": "application/vnd.openstack.key-manager-v1+json"}
        ],
    }


class VersionHandlers:
    def __init__(self, public_url: str) -> None:
        self.public_url = public_url

    async def versions(self, request: Request) -> Response:
        base = base_url(request, self.public_url, PREFIX)
        document = _version(base, _ranged(request))
        listed = [document] if _ranged(request) else {"values": [document]}
        return JSONResponse({"versions": listed}, 300)

    async def version(self, request: Request) -> Response:
        base = base_url(request, self.public_url, PREFIX)
        return JSONResponse({"version": _version(base, _ranged(request))})


def _ranged(request: Request) -> bool:
    return microversion_of(request) > VERSIONS.minimum


def routes(service: KeyManagerService, tokens: TokenValidator, public_url: str) -> list[EdgeRoute]:
    e = Edge(tokens, versions=VERSIONS)
    v = VersionHandlers(public_url)
    sh = SecretHandlers(service, public_url)
    rh = ResourceHandlers(service, public_url)
    ch = ConsumerHandlers(service, public_url)
    km = "key-manager:"
    return [
        e.public("/", v.versions, {"GET": km + "version:show"}),
        e.public("/v1", v.version, {"GET": km + "version:show"}),
        e.route(
            "/v1/secrets", sh.secrets, {"GET": km + "secret:list", "POST": km + "secret:create"}
        ),
        e.route(
            "/v1/secrets/{id}",
            sh.secret,
            {
                "GET": km + "secret:show",
                "PUT": km + "secret:update",
                "DELETE": km + "secret:delete",
            },
        ),
        e.route("/v1/secrets/{id}/payload", sh.payload, {"GET": km + "secret:decrypt"}),
        e.route(
            "/v1/secrets/{id}/metadata",
            sh.metadata,
            {
                "GET": km + "secret_meta:list",
                "PUT": km + "secret_meta:update",
                "POST": km + "secret_meta:create",
            },
        ),
        e.route(
            "/v1/secrets/{id}/metadata/{key}",
            sh.metadatum,
            {
                "GET": km + "secret_meta:show",
                "PUT": km + "secret_meta:update",
                "DELETE": km + "secret_meta:delete",
            },
        ),
        _acl_route(e, "/v1/secrets/{id}/acl", rh.secret_acl),
        _consumers_route(e, "/v1/secrets/{id}/consumers", ch.secret_consumers, "secret"),
        e.route(
            "/v1/containers",
            rh.containers,
            {"GET": km + "container:list", "POST": km + "container:create"},
        ),
        e.route(
            "/v1/containers/{id}",
            rh.container,
            {"GET": km + "container:show", "DELETE": km + "container:delete"},
        ),
        _acl_route(e, "/v1/containers/{id}/acl", rh.container_acl),
        _consumers_route(e, "/v1/containers/{id}/consumers", ch.container_consumers, "container"),
        e.route("/v1/orders", rh.orders, {"GET": km + "order:list", "POST": km + "order:create"}),
        e.route(
            "/v1/orders/{id}", rh.order, {"GET": km + "order:show", "DELETE": km + "order:delete"}
        ),
        e.route("/v1/quotas", rh.quotas, {"GET": km + "quota:show"}),
        e.route("/v1/project-quotas", rh.project_quotas, {"GET": km + "project_quota:list"}),
        e.route(
            "/v1/project-quotas/{id}",
            rh.project_quota,
            {
                "GET": km + "project_quota:show",
                "PUT": km + "project_quota:update",
                "DELETE": km + "project_quota:delete",
            },
        ),
    ]


def _acl_route(e: Edge, path: str, handler: Any) -> EdgeRoute:
    km = "key-manager:acl:"
    actions = {"GET": km + "show", "PUT": km + "update", "PATCH": km + "update"}
    return e.route(path, handler, {**actions, "DELETE": km + "delete"})


def _consumers_route(e: Edge, path: str, handler: Any, kind: str) -> EdgeRoute:
    km = f"key-manager:{kind}_consumers:"
    return e.route(
        path, handler, {"GET": km + "list", "POST": km + "create", "DELETE": km + "delete"}
    )


class _NoTrailingSlash:
    """`/v1/secrets/` is `/v1/secrets`: python-barbicanclient posts to the former."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        path: str = scope.get("path", "")
        root: str = scope.get("root_path", "")
        inside = path[len(root) :] if path.startswith(root) else path
        if scope["type"] == "http" and len(inside) > 1 and inside.endswith("/"):
            scope = {**scope, "path": path[: len(path) - len(inside)] + inside.rstrip("/")}
        await self.app(scope, receive, send)


def build_app(service: KeyManagerService, tokens: TokenValidator, public_url: str = "") -> ASGIApp:
    router = Router(routes=routes(service, tokens, public_url), redirect_slashes=False)
    return ErrorLayer(_NoTrailingSlash(router), render_error)
