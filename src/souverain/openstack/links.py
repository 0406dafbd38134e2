"""The URLs a response points at."""

from __future__ import annotations

from starlette.requests import Request


def base_url(request: Request, public_url: str, prefix: str) -> str:
    """The service's public root: configured, or as the client reached us."""
    if public_url:
        return f"{public_url}{prefix}"
    scope = request.scope
    host = request.headers.get("host") or "{}:{}".format(*scope.get("server", ("localhost", 80)))
    return f"{scope.get('scheme', 'http')}://{host}{scope.get('root_path', '')}"
