"""What every compute handler module shares: the service, the public base URL, the
microversion the edge negotiated, and Nova's admin-only refusal.

Part of compute's HTTP layer; the service never imports it.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from starlette.requests import Request
from starlette.responses import Response

from souverain.common.context import RequestContext
from souverain.common.errors import ApiError, NotFound
from souverain.common.middleware import state_of
from souverain.compute.service import ComputeService
from souverain.openstack.links import base_url
from souverain.openstack.microversion import Version, microversion_of
from souverain.openstack.routing import Endpoint

VersionedEndpoint = Callable[[Request, RequestContext, Version], Awaitable[Response]]


class Handlers:
    """A family of compute handlers: the service they call and where the API is reached."""

    def __init__(self, service: ComputeService, public_url: str = "") -> None:
        self.service = service
        self.public_url = public_url

    def base(self, request: Request) -> str:
        """Worked out once per request: a list of 1,000 servers links to it 3,000 times."""
        state = state_of(request.scope)
        if "compute_base" not in state:
            state["compute_base"] = base_url(request, self.public_url, "/compute")
        return str(state["compute_base"])


def versioned(handler: VersionedEndpoint) -> Endpoint:
    """An edge endpoint calling `handler` with the microversion the edge negotiated."""

    async def endpoint(request: Request, ctx: RequestContext) -> Response:
        return await handler(request, ctx, microversion_of(request))

    return endpoint


def require_version(v: Version, first: Version) -> None:
    """A route that starts at microversion `first` does not exist before it: 404, as Nova."""
    if v < first:
        raise NotFound("The resource could not be found.")


def require_at_most(v: Version, last: Version) -> None:
    """A route Nova removed after microversion `last` is gone from the next one: 404."""
    if v > last:
        raise NotFound("The resource could not be found.")


class AdminRequired(ApiError):
    status = 403
    title = "Forbidden"

    def __init__(self) -> None:
        super().__init__("Policy doesn't allow this operation: an admin role is required.")


def require_admin(ctx: RequestContext) -> None:
    if not ctx.is_admin:
        raise AdminRequired()
