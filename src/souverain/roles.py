"""Which parts of the cloud one `souverain serve` runs (`server.roles`, `--roles`).

- `api`: the public APIs (OpenStack and S3) and the host agents' internal API; stateless,
  any number of nodes behind a load balancer.
- `network`: this node's data plane (bridges, DHCP, routers, floating IPs, nftables),
  its start-up reconcile and its egress metering.
- `background`: the cloud-wide loops (`server.LEASED_WORK`), run by whichever node holds
  each one's lease; a node without it never takes a lease.

All three (the default) is the all-in-one of before. A hypervisor host is not a role of
`serve`: it is `souverain agent`. Guests run on this node itself (`compute.local_host`)
only when it has both `api` and `network` (they are started in the serving process and
need its data plane); any other node leaves them to agent hosts. A node without `api`
still listens, and answers only `GET /health` (its roles and the leases it holds).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # the settings import this module: HTTP only when a node serves
    from starlette.requests import Request
    from starlette.responses import JSONResponse
    from starlette.types import ASGIApp

    from souverain.config import Settings

API = "api"
NETWORK = "network"
BACKGROUND = "background"
ROLES = (API, NETWORK, BACKGROUND)
ALL = ",".join(ROLES)


def canonical(text: str) -> str:
    """The setting's value in its one spelling: the roles named, in ROLES' order."""
    named = parse(text)
    return ",".join(role for role in ROLES if role in named)


def parse(text: str) -> frozenset[str]:
    """The roles a comma-separated list names; ValueError naming the valid ones otherwise."""
    names = [name.strip().lower() for name in text.split(",")]
    valid = ", ".join(ROLES)
    if not any(names):
        raise ValueError(f"name at least one role of {valid} (comma-separated)")
    unknown = sorted({name for name in names if name not in ROLES})
    if unknown:
        hint = " (a hypervisor host runs `souverain agent`)" if "host" in unknown else ""
        raise ValueError(
            f"unknown role(s) {', '.join(repr(n) for n in unknown)}; "
            f"the roles are {valid} (comma-separated){hint}"
        )
    return frozenset(names)


def of(settings: Settings) -> frozenset[str]:
    return parse(settings.server.roles)


def runs(settings: Settings, role: str) -> bool:
    return role in of(settings)


def apply(settings: Settings) -> None:
    """Turn off what this node's roles leave out, before anything is set up: without
    `network` no data plane; without `api` and `network` both, no guests of its own."""
    roles = of(settings)
    if NETWORK not in roles:
        settings.network.dataplane = False
    if not {API, NETWORK} <= roles:
        settings.compute.local_host = False


def describe(settings: Settings) -> str:
    return ", ".join(role for role in ROLES if role in of(settings))


def health_app(settings: Settings, held: Callable[[], list[str]]) -> ASGIApp:
    """What a node without `api` serves: `GET /health` says it is up, its roles and the
    cloud-wide work it holds now; any other path is 404 (no API lives here)."""
    from starlette.applications import Starlette
    from starlette.responses import JSONResponse
    from starlette.routing import Route

    async def health(_request: Request) -> JSONResponse:
        return JSONResponse(
            {"status": "ok", "roles": sorted(of(settings)), "leases": sorted(held())}
        )

    async def elsewhere(_request: Request) -> JSONResponse:
        message = f"this node runs {describe(settings)}, not the APIs: ask an api node"
        return JSONResponse({"error": {"code": 404, "message": message}}, status_code=404)

    routes = [
        Route("/health", health, methods=["GET"]),
        Route("/{path:path}", elsewhere, methods=["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE"]),
    ]
    return Starlette(routes=routes)
