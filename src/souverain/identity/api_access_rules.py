"""A user's access rules over HTTP (/v3/users/{user_id}/access_rules[/{id}]).
Routes only: `access_rules.py` rules. Rules are made with application credentials."""

from __future__ import annotations

from collections.abc import Callable

from starlette.requests import Request
from starlette.responses import Response

from souverain.common.context import RequestContext
from souverain.common.jsoncodec import JSONResponse
from souverain.identity import views
from souverain.identity.access_rules import AccessRules
from souverain.openstack.auth import audit
from souverain.openstack.routing import Edge, EdgeRoute

RULES = "/v3/users/{user_id}/access_rules"
FILTERS = ("service", "path", "method")


class AccessRuleApi:
    def __init__(self, rules: AccessRules, base: Callable[[Request], str]) -> None:
        self.rules = rules
        self.base = base

    def routes(self, edge: Edge) -> list[EdgeRoute]:
        one = {
            "GET": "identity:get_access_rule",
            "HEAD": "identity:get_access_rule",
            "DELETE": "identity:delete_access_rule",
        }
        every = {"GET": "identity:list_access_rules", "HEAD": "identity:list_access_rules"}
        return [
            edge.route(RULES, self.listing, every),
            edge.route(RULES + "/{rule_id}", self.one, one),
        ]

    async def listing(self, request: Request, ctx: RequestContext) -> Response:
        user_id = request.path_params["user_id"]
        q = request.query_params
        found = self.rules.list(ctx, user_id, {k: q[k] for k in FILTERS if k in q})
        base = self.base(request)
        items = [views.with_link(base, f"users/{user_id}/access_rules", r) for r in found]
        links = {"self": str(request.url), "previous": None, "next": None}
        return JSONResponse({"access_rules": items, "links": links})

    async def one(self, request: Request, ctx: RequestContext) -> Response:
        user_id, rule_id = request.path_params["user_id"], request.path_params["rule_id"]
        if request.method == "DELETE":
            audit(request, "identity.access_rule.delete", "access_rule", rule_id)
            self.rules.delete(ctx, user_id, rule_id)
            return Response(status_code=204)
        rule = self.rules.get(ctx, user_id, rule_id)
        base = self.base(request)
        return JSONResponse(
            {"access_rule": views.with_link(base, f"users/{user_id}/access_rules", rule)}
        )
