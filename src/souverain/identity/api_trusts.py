"""OS-TRUST over HTTP: trusts and the roles they delegate.

Routes only: who may create, see or delete a trust is decided in `trusts.py`
(trustor, trustee, admin); the edge only asks for a valid token.
"""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import Response

from souverain.common.context import RequestContext
from souverain.common.jsoncodec import JSONResponse
from souverain.identity import schemas as sc
from souverain.identity.service import IdentityService
from souverain.openstack.auth import audit
from souverain.openstack.body import member, read_json, validated
from souverain.openstack.routing import Edge, EdgeRoute

TRUSTS = "/v3/OS-TRUST/trusts"


class TrustApi:
    def __init__(self, service: IdentityService, base: Any) -> None:
        self.service = service
        self.trusts = service.trusts
        self.base = base  # the identity API's public root for a request

    def routes(self, edge: Edge) -> list[EdgeRoute]:
        r = edge.route
        collection = {"GET": "identity:list_trusts", "POST": "identity:create_trust"}
        one = {"GET": "identity:get_trust", "DELETE": "identity:delete_trust"}
        return [
            r(TRUSTS, self.collection, collection),
            r(f"{TRUSTS}/{{trust_id}}", self.one, one),
            r(f"{TRUSTS}/{{trust_id}}/roles", self.roles, {"GET": "identity:list_roles_for_trust"}),
            r(
                f"{TRUSTS}/{{trust_id}}/roles/{{role_id}}",
                self.role,
                {"GET": "identity:get_role_for_trust", "HEAD": "identity:get_role_for_trust"},
            ),
        ]  # fmt: skip

    def _linked(self, request: Request, ref: dict[str, Any]) -> dict[str, Any]:
        base = self.base(request)
        out = dict(ref)
        out["links"] = {"self": f"{base}{TRUSTS}/{ref['id']}"}
        out["roles_links"] = {"self": f"{base}{TRUSTS}/{ref['id']}/roles"}
        return out

    def _summary(self, request: Request, ref: dict[str, Any]) -> dict[str, Any]:
        """A listed trust: Keystone's list leaves out the roles (and their link)."""
        out = self._linked(request, ref)
        del out["roles"], out["roles_links"]
        return out

    def _via_trust(self, request: Request) -> bool:
        view = self.service.validate(request.headers.get("x-auth-token", ""))
        return view is None or view.payload.trust_id is not None

    async def collection(self, request: Request, ctx: RequestContext) -> Response:
        if request.method == "GET":
            q = request.query_params
            filters = {k: q[k] for k in ("trustor_user_id", "trustee_user_id") if k in q}
            items = self.trusts.list(ctx, filters)
            body = {
                "trusts": [self._summary(request, t) for t in items],
                "links": {"self": str(request.url), "previous": None, "next": None},
            }
            return JSONResponse(body)
        audit(request, "identity.trust.create", "trust", None)
        data = validated(sc.TrustCreate, member(await read_json(request), "trust"), "trust")
        ref = self.trusts.create(ctx, data, self._via_trust(request))
        audit(request, "identity.trust.create", "trust", ref["id"])
        return JSONResponse({"trust": self._linked(request, ref)}, status_code=201)

    async def one(self, request: Request, ctx: RequestContext) -> Response:
        trust_id = request.path_params["trust_id"]
        if request.method == "DELETE":
            audit(request, "identity.trust.delete", "trust", trust_id)
            self.trusts.delete(ctx, trust_id)
            return Response(status_code=204)
        return JSONResponse({"trust": self._linked(request, self.trusts.get(ctx, trust_id))})

    async def roles(self, request: Request, ctx: RequestContext) -> Response:
        ref = self.trusts.get(ctx, request.path_params["trust_id"])
        base = self.base(request)
        roles = [{**r, "links": {"self": f"{base}/v3/roles/{r['id']}"}} for r in ref["roles"]]
        body = {"roles": roles, "links": {"self": str(request.url), "previous": None, "next": None}}
        return JSONResponse(body)

    async def role(self, request: Request, ctx: RequestContext) -> Response:
        trust_id, role_id = request.path_params["trust_id"], request.path_params["role_id"]
        role = self.trusts.role(ctx, trust_id, role_id)
        role["links"] = {"self": f"{self.base(request)}/v3/roles/{role['id']}"}
        return JSONResponse({"role": role})
