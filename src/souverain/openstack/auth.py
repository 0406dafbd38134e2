"""Who is calling: the `X-Auth-Token` header checked against a `TokenValidator`."""

from __future__ import annotations

from typing import Protocol

from starlette.requests import Request

from souverain.common.context import RequestContext
from souverain.common.errors import Unauthorized
from souverain.common.middleware import state_of


class ValidatedToken(Protocol):
    """What a valid token tells about its bearer."""

    def context(self, request_id: str = "") -> RequestContext: ...


class TokenValidator(Protocol):
    """Identity's side of the edge: a token's meaning, or None if it is not valid."""

    def validate(self, token: str) -> ValidatedToken | None: ...


def authenticate(tokens: TokenValidator, request: Request) -> RequestContext:
    """The caller behind `X-Auth-Token`, recorded as the audit initiator; 401 otherwise."""
    token = request.headers.get("x-auth-token")
    view = tokens.validate(token) if token else None
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
