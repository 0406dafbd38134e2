"""Routes that name their policy action, and the one path a request takes through them.

A service's `api` module builds its routes with an `Edge`:

    edge = Edge(tokens, versions=Microversions(("compute",), (2, 1), (2, 100)))
    edge.route("/v2.1/servers", self.servers, {"GET": "compute:server:list",
                                               "POST": "compute:server:create"})
    edge.public("/", self.versions, {"GET": "compute:version:list"})

For each request the edge negotiates the microversion (if the API has them),
authenticates the caller, asks the policy table whether the caller's roles
allow the method's action, then calls the handler with the caller's context.
Rules that depend on the target (the owner of a credential) are checked again
by the service with the same table; the edge decides what it can without it.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from souverain.common import policy
from souverain.common.context import RequestContext
from souverain.common.errors import ApiError, BadRequest
from souverain.common.middleware import state_of
from souverain.openstack.auth import TokenValidator, authenticate
from souverain.openstack.microversion import SCOPE_KEY, Microversions

Endpoint = Callable[[Request, RequestContext], Awaitable[Response]]
PublicEndpoint = Callable[[Request], Awaitable[Response]]
Extra = Callable[[Request], Mapping[str, str]]
Check = Callable[[Request, RequestContext], None]


class EdgeRoute(Route):
    """A Starlette route that knows the policy action of each of its methods."""

    def __init__(
        self,
        path: str,
        endpoint: Callable[[Request], Awaitable[Response]],
        actions: Mapping[str, str],
        public: bool,
    ) -> None:
        super().__init__(path, endpoint, methods=list(actions))
        self.actions = dict(actions)
        self.public = public

    def action_for(self, method: str) -> str:
        if method == "HEAD" and "HEAD" not in self.actions:
            method = "GET"
        return self.actions[method]


class Edge:
    """How one API's requests are authenticated, versioned and authorized."""

    def __init__(
        self,
        tokens: TokenValidator,
        *,
        versions: Microversions | None = None,
        headers: Extra | None = None,
        check: Check | None = None,
    ) -> None:
        self.tokens = tokens
        self.versions = versions
        self.extra_headers = headers
        self.check = check  # e.g. the project in a Cinder path must be the token's

    def route(self, path: str, endpoint: Endpoint, actions: Mapping[str, str]) -> EdgeRoute:
        """A route for callers with a valid token whose roles allow the method's action."""
        _known(path, actions, public=False)
        holder: list[EdgeRoute] = []

        async def call(request: Request) -> Response:
            action = holder[0].action_for(request.method)
            request = as_get_if_head(request)
            extra = self._before(request)
            try:
                ctx = authenticate(self.tokens, request)
                state_of(request.scope)["policy_action"] = action
                policy.authorize(ctx, action)
                refuse_nul(request)
                if self.check is not None:
                    self.check(request, ctx)
                response = await endpoint(request, ctx)
            except ApiError as exc:
                exc.headers.update(extra)
                raise
            response.headers.update(extra)
            return response

        holder.append(EdgeRoute(path, call, actions, public=False))
        return holder[0]

    def public(self, path: str, endpoint: PublicEndpoint, actions: Mapping[str, str]) -> EdgeRoute:
        """A route anyone may call (version documents, token issue); its actions say so."""
        _known(path, actions, public=True)

        async def call(request: Request) -> Response:
            request = as_get_if_head(request)
            extra = self._before(request)
            try:
                response = await endpoint(request)
            except ApiError as exc:
                exc.headers.update(extra)
                raise
            response.headers.update(extra)
            return response

        return EdgeRoute(path, call, actions, public=True)

    def _before(self, request: Request) -> dict[str, str]:
        extra: dict[str, str] = {}
        if self.versions is not None:
            version = self.versions.negotiate(request)
            request.scope[SCOPE_KEY] = version
            extra.update(self.versions.headers(version))
        if self.extra_headers is not None:
            extra.update(self.extra_headers(request))
        return extra


def refuse_nul(request: Request) -> None:
    """No column may store a NUL (PostgreSQL refuses one) and no id holds one.

    A path parameter's NUL is read as U+FFFD, on every backend: the id names nothing and
    the service answers its own 404 (a tag or key made from a path keeps the U+FFFD). A
    query parameter with one is refused (400)."""
    params = request.scope.get("path_params") or {}
    for key, value in params.items():
        if isinstance(value, str) and "\x00" in value:
            params[key] = value.replace("\x00", "\ufffd")
    if "%00" in request.url.query or "\x00" in request.url.query:
        raise BadRequest("A query parameter holds a NUL character (%00); remove it.")


def as_get_if_head(request: Request) -> Request:
    """A HEAD request as the GET it stands for.

    Starlette routes HEAD to every GET route, and handlers branch on the method:
    without this, a HEAD fell through to the write branch after GET's (a HEAD on a
    billing account deleted it, with the rights of a reader). The server still
    answers HEAD without a body: uvicorn keeps the original scope's method.
    """
    if request.method != "HEAD":
        return request
    return Request({**request.scope, "method": "GET"}, request.receive)


def _known(path: str, actions: Mapping[str, str], public: bool) -> None:
    """Refuse, when the app is built, a route whose action the policy table does not know."""
    if not actions:
        raise ValueError(f"route {path} names no policy action")
    for method, action in actions.items():
        rule = policy.RULES.get(action)
        if rule is None:
            raise ValueError(f"route {method} {path}: {action!r} is not in the policy table")
        if public != (rule is policy.Rule.PUBLIC):
            kind = "public" if public else "authenticated"
            raise ValueError(f"route {method} {path}: {action!r} is {rule.name}, not {kind}")


def unnamed_routes(routes: list[BaseRoute]) -> list[str]:
    """Routes (by path) that name no policy action: what the layering test looks for."""
    return [getattr(r, "path", repr(r)) for r in routes if not isinstance(r, EdgeRoute)]
