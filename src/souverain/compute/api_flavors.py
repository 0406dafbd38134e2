"""Flavors (with their extra specs and access lists) and keypairs over HTTP.

Part of compute's HTTP layer.
"""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import Response

from souverain.common.context import RequestContext
from souverain.common.errors import BadRequest, NotFound
from souverain.common.jsoncodec import JSONResponse
from souverain.common.pagination import paginate
from souverain.compute import schemas, views
from souverain.compute.api_base import Handlers
from souverain.openstack.auth import audit
from souverain.openstack.body import read_json
from souverain.openstack.microversion import Version
from souverain.openstack.query import parse_limit

# A flavor list's sort_key (Nova's names) -> the flavor field it sorts on.
FLAVOR_SORT_KEYS = {
    "flavorid": "id",
    "id": "id",
    "name": "name",
    "memory_mb": "ram",
    "ram": "ram",
    "vcpus": "vcpus",
    "root_gb": "disk",
    "disk": "disk",
}


class FlavorHandlers(Handlers):
    def flavor_list(
        self, request: Request, ctx: RequestContext, v: Version, detail: bool
    ) -> Response:
        q = request.query_params
        raw_public = q.get("is_public", "true")
        is_public: bool | None = (
            None if raw_public.lower() == "none" else schemas.boolean(raw_public, "is_public")
        )
        flavors = self.service.list_flavors(
            ctx,
            is_public,
            schemas.integer(q.get("minRam", 0), "minRam"),
            schemas.integer(q.get("minDisk", 0), "minDisk"),
        )
        sort_key = q.get("sort_key", "flavorid")
        if sort_key not in FLAVOR_SORT_KEYS:
            raise BadRequest(f"Invalid sort_key {sort_key!r}.")
        reverse = q.get("sort_dir", "asc") == "desc"
        if "sort_key" in q:
            flavors.sort(key=lambda f: f[FLAVOR_SORT_KEYS[sort_key]], reverse=reverse)
        page = paginate(
            flavors, lambda f: str(f["id"]), parse_limit(q.get("limit")), q.get("marker")
        )
        base = self.base(request)
        body: dict[str, Any] = {
            "flavors": [views.flavor_body(base, f, v, detail) for f in page.items]
        }
        if page.next_marker is not None:
            body["flavors_links"] = [
                {
                    "rel": "next",
                    "href": str(request.url.include_query_params(marker=page.next_marker)),
                }
            ]
        return JSONResponse(body)

    async def flavors(self, request: Request, ctx: RequestContext, v: Version) -> Response:
        if request.method == "GET":
            return self.flavor_list(request, ctx, v, detail=False)
        doc = schemas.flavor_create(await read_json(request), v)
        audit(request, "compute.flavor.create", "flavor", doc.get("id"))
        flavor = self.service.create_flavor(ctx, doc)
        audit(request, "compute.flavor.create", "flavor", flavor["id"])
        return JSONResponse({"flavor": views.flavor_body(self.base(request), flavor, v)})

    async def flavors_detail(self, request: Request, ctx: RequestContext, v: Version) -> Response:
        return self.flavor_list(request, ctx, v, detail=True)

    async def flavor(self, request: Request, ctx: RequestContext, v: Version) -> Response:
        flavor_id = request.path_params["id"]
        if request.method == "DELETE":
            audit(request, "compute.flavor.delete", "flavor", flavor_id)
            self.service.delete_flavor(ctx, flavor_id)
            return Response(status_code=202)
        if request.method == "PUT":
            if v < (2, 55):  # Nova has no flavor update before 2.55: the route is not there
                raise NotFound("The resource could not be found.")
            body = await read_json(request)
            data = body.get("flavor") or {}
            audit(request, "compute.flavor.update", "flavor", flavor_id)
            flavor = self.service.update_flavor(ctx, flavor_id, data.get("description"))
        else:
            flavor = self.service.get_flavor(ctx, flavor_id)
        return JSONResponse({"flavor": views.flavor_body(self.base(request), flavor, v)})

    async def extra_specs(self, request: Request, ctx: RequestContext, v: Version) -> Response:
        flavor_id = request.path_params["id"]
        if request.method == "GET":
            return JSONResponse({"extra_specs": self.service.flavor_extra_specs(ctx, flavor_id)})
        body = await read_json(request)
        specs = schemas.str_map(body.get("extra_specs"), "extra_specs")
        audit(request, "compute.flavor.extra_specs", "flavor", flavor_id)
        return JSONResponse(
            {"extra_specs": self.service.set_flavor_extra_specs(ctx, flavor_id, specs)}
        )

    async def extra_spec(self, request: Request, ctx: RequestContext, v: Version) -> Response:
        flavor_id, key = request.path_params["id"], request.path_params["key"]
        if request.method == "GET":
            specs = self.service.flavor_extra_specs(ctx, flavor_id)
            if key not in specs:
                raise NotFound(f"Flavor {flavor_id} has no extra specs with key {key}.")
            return JSONResponse({key: specs[key]})
        audit(request, "compute.flavor.extra_specs", "flavor", flavor_id)
        if request.method == "DELETE":
            self.service.delete_flavor_extra_spec(ctx, flavor_id, key)
            return Response(status_code=200)
        body = schemas.single_item(await read_json(request), "extra_specs", key)
        return JSONResponse(self.service.set_flavor_extra_specs(ctx, flavor_id, body))

    async def flavor_access(self, request: Request, ctx: RequestContext, v: Version) -> Response:
        access = self.service.flavor_access(ctx, request.path_params["id"])
        return JSONResponse({"flavor_access": access})

    async def flavor_action(self, request: Request, ctx: RequestContext, v: Version) -> Response:
        flavor_id = request.path_params["id"]
        body = await read_json(request)
        change = schemas.flavor_tenant(body)
        if change is None:
            raise BadRequest(
                "Unsupported flavor action: use addTenantAccess or removeTenantAccess."
            )
        tenant, add = change
        name = "addTenantAccess" if add else "removeTenantAccess"
        audit(request, f"compute.flavor.{name}", "flavor", flavor_id)
        access = self.service.change_flavor_access(ctx, flavor_id, tenant, add)
        return JSONResponse({"flavor_access": access})


class KeypairHandlers(Handlers):
    async def keypairs(self, request: Request, ctx: RequestContext, v: Version) -> Response:
        user_id = request.query_params.get("user_id") if v >= (2, 10) else None
        if request.method == "GET":
            items = self.service.list_keypairs(ctx, user_id)
            page = paginate(
                items,
                lambda k: k["name"],
                parse_limit(request.query_params.get("limit")),
                request.query_params.get("marker"),
            )
            return JSONResponse(
                {"keypairs": [{"keypair": views.keypair_body(k, v, False)} for k in page.items]}
            )
        wanted = schemas.keypair_request(await read_json(request), v)
        audit(request, "compute.keypair.create", "keypair", wanted.name)
        created = self.service.create_keypair(
            ctx, wanted.name, wanted.public_key, wanted.type, wanted.user_id
        )
        status = 201 if v >= (2, 2) else 200
        return JSONResponse(
            {"keypair": views.keypair_body(created, v, False, created=True)}, status_code=status
        )

    async def keypair(self, request: Request, ctx: RequestContext, v: Version) -> Response:
        name = request.path_params["name"]
        user_id = request.query_params.get("user_id") if v >= (2, 10) else None
        if request.method == "DELETE":
            audit(request, "compute.keypair.delete", "keypair", name)
            self.service.delete_keypair(ctx, name, user_id)
            return Response(status_code=204 if v >= (2, 2) else 202)
        found = self.service.get_keypair(ctx, name, user_id)
        return JSONResponse({"keypair": views.keypair_body(found, v, True)})
