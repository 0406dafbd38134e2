"""Who is calling: the `X-Auth-Token` header checked against a `TokenValidator`.

A token from an application credential with access rules may only make the calls its
rules allow (service type, path relative to the service's root, method): any other is
refused here, once for every OpenStack API, with a 401 as keystonemiddleware answers.
The edge hands a HEAD over as the GET it stands for: a GET rule allows it, a HEAD-only
rule does not (Swift, which sees its HEADs, matches them against HEAD rules).
"""

from __future__ import annotations

from typing import Protocol
from urllib.parse import unquote

from starlette.requests import Request

from souverain.common.context import RequestContext
from souverain.common.errors import Unauthorized
from souverain.common.middleware import state_of


class ValidatedToken(Protocol):
    """What a valid token tells about its bearer."""

    def context(self, request_id: str = "") -> RequestContext: ...

    def permits(self, root_path: str, path: str, method: str) -> bool:
        """Whether the token may make this call (an application credential's access rules)."""
        ...


class TokenValidator(Protocol):
    """Identity's side of the edge: a token's meaning, or None if it is not valid."""

    def validate(self, token: str) -> ValidatedToken | None: ...


def authenticate(tokens: TokenValidator, request: Request) -> RequestContext:
    """The caller behind `X-Auth-Token`, recorded as the audit initiator; 401 otherwise."""
    token = request.headers.get("x-auth-token")
    view = tokens.validate(token) if token else None
    if view is None:
        raise Unauthorized("The request you have made requires authentication.")
    root, path = _service_path(request)
    if not view.permits(root, path, request.method):
        raise Unauthorized(
            "The request you have made requires authentication: the application credential "
            f"this token comes from has no access rule allowing {request.method} {path} here."
        )
    state = state_of(request.scope)
    ctx = view.context(state.get("request_id", ""))
    state["initiator"] = {
        "user_id": ctx.user_id,
        "project_id": ctx.project_id,
        "domain_id": ctx.domain_id,
        "system": ctx.system_scope,
    }
    state["caller_admin"] = ctx.is_admin  # with a target project: an admin action, audited
    return ctx


def audit(request: Request, action: str, target_type: str, target_id: str | None) -> None:
    """Name what a mutating call did; the audit middleware writes it with the outcome."""
    state_of(request.scope)["audit"] = {
        "action": action,
        "target": {"type": target_type, "id": target_id},
    }


def _service_path(request: Request) -> tuple[str, str]:
    """Where the called service is mounted, and the path the client asked for relative to
    it (`/v2.1/servers`, `/v3/<project>/volumes`): the path as sent, before a service
    rewrites it (Nova's and Cinder's optional project ids are taken out for routing)."""
    scope = request.scope
    root: str = scope.get("root_path", "")
    raw = scope.get("raw_path")
    path: str = unquote(raw.decode("ascii", "replace")) if raw else scope["path"]
    if not path.startswith(root):
        path = scope["path"]
    return root, path[len(root) :] or "/"
