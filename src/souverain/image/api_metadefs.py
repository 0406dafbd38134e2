"""Glance v2 metadata definitions on the wire: namespaces (read; admin create, replace,
delete), and the objects, properties, tags and resource type associations they hold (read).

Routes only; visibility and who may change what live in `metadefs.py`.
"""

from __future__ import annotations

import asyncio
from typing import Any

from starlette.requests import Request
from starlette.responses import Response

from souverain.common.context import RequestContext
from souverain.common.errors import BadRequest, NotFound
from souverain.common.jsoncodec import JSONResponse
from souverain.image import views
from souverain.image.metadefs import Metadefs, namespace_body
from souverain.openstack.auth import audit
from souverain.openstack.body import read_json
from souverain.openstack.routing import Edge, EdgeRoute

BASE = "/v2/metadefs"
NS = f"{BASE}/namespaces/{{namespace}}"


class MetadefApi:
    def __init__(self, metadefs: Metadefs) -> None:
        self.metadefs = metadefs

    def routes(self, edge: Edge) -> list[EdgeRoute]:
        r = edge.route
        collection = {"GET": "image:metadef:show", "POST": "image:metadef:create"}
        one = {
            "GET": "image:metadef:show",
            "PUT": "image:metadef:update",
            "DELETE": "image:metadef:delete",
        }
        return [
            r(
                f"{BASE}/namespaces",
                self.namespaces,
                {"GET": "image:metadef:list", "POST": "image:metadef:create"},
            ),
            r(
                NS,
                self.namespace,
                {
                    "GET": "image:metadef:show",
                    "PUT": "image:metadef:update",
                    "DELETE": "image:metadef:delete",
                },
            ),
            r(f"{NS}/objects", self.objects, collection),
            r(f"{NS}/objects/{{name}}", self.one_object, one),
            r(f"{NS}/properties", self.properties, collection),
            r(f"{NS}/properties/{{name}}", self.one_property, one),
            r(f"{NS}/tags", self.tags, {**collection, "DELETE": "image:metadef:delete"}),
            r(f"{NS}/tags/{{name}}", self.one_tag, {**one, "POST": "image:metadef:create"}),
            r(f"{NS}/resource_types", self.associations, collection),
            r(
                f"{NS}/resource_types/{{name}}",
                self.one_association,
                {"DELETE": "image:metadef:delete"},
            ),
            r(f"{BASE}/resource_types", self.resource_types, {"GET": "image:metadef:list"}),
        ]

    async def namespaces(self, request: Request, ctx: RequestContext) -> Response:
        if request.method == "POST":
            audit(request, "image.metadef.create", "metadef_namespace", None)
            body = namespace_body(await read_json(request))
            row = await asyncio.to_thread(self.metadefs.create, ctx, body)
            audit(request, "image.metadef.create", "metadef_namespace", row.namespace)
            return JSONResponse(views.namespace_view(row, detail=True), 201)
        params = request.query_params
        visibility = params.get("visibility")
        if visibility not in (None, "public", "private"):
            raise BadRequest("Invalid visibility: public or private.")
        rows = await asyncio.to_thread(
            self.metadefs.list_namespaces, ctx, visibility, params.get("resource_types")
        )
        return JSONResponse(
            {
                "namespaces": [views.namespace_view(r, detail=False) for r in rows],
                "first": f"{BASE}/namespaces",
                "schema": "/v2/schemas/metadefs/namespaces",
            }
        )

    async def namespace(self, request: Request, ctx: RequestContext) -> Response:
        name = request.path_params["namespace"]
        if request.method == "GET":
            row = await asyncio.to_thread(self.metadefs.get, ctx, name)
            return JSONResponse(views.namespace_view(row, detail=True))
        if request.method == "PUT":
            audit(request, "image.metadef.update", "metadef_namespace", name)
            body = namespace_body(await read_json(request))
            row = await asyncio.to_thread(self.metadefs.replace, ctx, name, body)
            return JSONResponse(views.namespace_view(row, detail=True))
        audit(request, "image.metadef.delete", "metadef_namespace", name)
        await asyncio.to_thread(self.metadefs.delete, ctx, name)
        return Response(status_code=204)

    async def _row(self, request: Request, ctx: RequestContext) -> Any:
        return await asyncio.to_thread(self.metadefs.get, ctx, request.path_params["namespace"])

    async def _write(
        self, request: Request, ctx: RequestContext, kind: str, name: str | None
    ) -> Response | None:
        """POST (create), PUT (replace) or DELETE of one definition; None for a GET."""
        namespace = request.path_params["namespace"]
        if request.method == "GET":
            return None
        audit(
            request,
            f"image.metadef.{kind}.{request.method.lower()}",
            "metadef_namespace",
            namespace,
        )
        if request.method == "DELETE":
            await asyncio.to_thread(self.metadefs.remove_definition, ctx, namespace, kind, name)
            return Response(status_code=204)
        body = await read_json(request) if kind != "tags" or request.method == "PUT" else {}
        if kind == "tags" and request.method == "POST":
            body = {"name": name}
        old = name if request.method == "PUT" else None
        entry = await asyncio.to_thread(
            self.metadefs.put_definition, ctx, namespace, kind, old, body
        )
        status = 201 if request.method == "POST" else 200
        return JSONResponse(views.definition_view(kind, entry, namespace), status)

    async def objects(self, request: Request, ctx: RequestContext) -> Response:
        written = await self._write(request, ctx, "objects", None)
        if written is not None:
            return written
        row = await self._row(request, ctx)
        found = [views.object_view(o, row.namespace) for o in (row.objects or {}).values()]
        return JSONResponse({"objects": found, "schema": "v2/schemas/metadefs/objects"})

    async def one_object(self, request: Request, ctx: RequestContext) -> Response:
        written = await self._write(request, ctx, "objects", request.path_params["name"])
        if written is not None:
            return written
        row = await self._row(request, ctx)
        entry = (row.objects or {}).get(request.path_params["name"])
        if entry is None:
            raise _missing("object", request.path_params["name"], row.namespace)
        return JSONResponse(views.object_view(entry, row.namespace))

    async def properties(self, request: Request, ctx: RequestContext) -> Response:
        written = await self._write(request, ctx, "properties", None)
        if written is not None:
            return written
        row = await self._row(request, ctx)
        return JSONResponse({"properties": dict(row.properties or {})})

    async def one_property(self, request: Request, ctx: RequestContext) -> Response:
        written = await self._write(request, ctx, "properties", request.path_params["name"])
        if written is not None:
            return written
        row = await self._row(request, ctx)
        name = request.path_params["name"]
        entry = (row.properties or {}).get(name)
        if entry is None:
            raise _missing("property", name, row.namespace)
        return JSONResponse({"name": name, **entry})

    async def tags(self, request: Request, ctx: RequestContext) -> Response:
        namespace = request.path_params["namespace"]
        if request.method == "POST":
            audit(request, "image.metadef.tags.post", "metadef_namespace", namespace)
            body = await read_json(request)
            tags = await asyncio.to_thread(self.metadefs.replace_tags, ctx, namespace, body)
            return JSONResponse({"tags": [{"name": t} for t in tags]}, 201)
        written = await self._write(request, ctx, "tags", None)
        if written is not None:
            return written
        row = await self._row(request, ctx)
        return JSONResponse({"tags": [views.tag_view(n, t) for n, t in (row.tags or {}).items()]})

    async def one_tag(self, request: Request, ctx: RequestContext) -> Response:
        written = await self._write(request, ctx, "tags", request.path_params["name"])
        if written is not None:
            return written
        row = await self._row(request, ctx)
        name = request.path_params["name"]
        entry = (row.tags or {}).get(name)
        if entry is None:
            raise _missing("tag", name, row.namespace)
        return JSONResponse(views.tag_view(name, entry))

    async def associations(self, request: Request, ctx: RequestContext) -> Response:
        written = await self._write(request, ctx, "resource_types", None)
        if written is not None:
            return written
        row = await self._row(request, ctx)
        found = [views.association_view(a) for a in (row.resource_types or {}).values()]
        return JSONResponse({"resource_type_associations": found})

    async def one_association(self, request: Request, ctx: RequestContext) -> Response:
        written = await self._write(request, ctx, "resource_types", request.path_params["name"])
        assert written is not None  # DELETE only
        return written

    async def resource_types(self, request: Request, ctx: RequestContext) -> Response:
        found = await asyncio.to_thread(self.metadefs.resource_types, ctx)
        return JSONResponse({"resource_types": [views.resource_type_view(a) for a in found]})


def _missing(kind: str, name: str, namespace: str) -> NotFound:
    return NotFound(f"Metadata definition {kind}={name[:80]} not found in namespace={namespace}.")
