"""Cinder's QoS specs on the edge (admin only): CRUD, keys, and volume type associations."""

from __future__ import annotations

import asyncio
from typing import Any

from starlette.requests import Request
from starlette.responses import Response

from souverain.common.context import RequestContext
from souverain.common.errors import BadRequest
from souverain.common.jsoncodec import JSONResponse
from souverain.openstack.auth import audit
from souverain.openstack.body import member, read_json
from souverain.openstack.routing import Edge, EdgeRoute
from souverain.volume import models as m
from souverain.volume import schemas
from souverain.volume.api_common import Links, flag
from souverain.volume.qos import QosSpecs, qos_create
from souverain.volume.service import VolumeService

READ = {"GET": "volume:qos_specs:show"}
CHANGE = {"GET": "volume:qos_specs:update"}  # Cinder's associate calls are GETs


class QosApi:
    def __init__(self, service: VolumeService, links: Links) -> None:
        self.qos = QosSpecs(service.shared)
        self.links = links

    def routes(self, edge: Edge) -> list[EdgeRoute]:
        r = edge.route
        base = "/v3/qos-specs/{id}"
        return [
            r(
                "/v3/qos-specs",
                self.collection,
                {"GET": "volume:qos_specs:list", "POST": "volume:qos_specs:create"},
            ),
            r(
                base,
                self.item,
                {
                    "GET": "volume:qos_specs:show",
                    "PUT": "volume:qos_specs:update",
                    "DELETE": "volume:qos_specs:delete",
                },
            ),
            r(f"{base}/delete_keys", self.delete_keys, {"PUT": "volume:qos_specs:update"}),
            r(f"{base}/associations", self.associations, READ),
            r(f"{base}/associate", self.associate, CHANGE),
            r(f"{base}/disassociate", self.disassociate, CHANGE),
            r(f"{base}/disassociate_all", self.disassociate_all, CHANGE),
        ]

    def _detail(self, request: Request, row: m.QosSpecs) -> dict[str, Any]:
        return {
            "qos_specs": _view(row),
            "links": self.links.of(request, "qos-specs", row.id),
        }

    async def collection(self, request: Request, ctx: RequestContext) -> Response:
        if request.method == "GET":
            rows = await asyncio.to_thread(self.qos.list_all, ctx)
            return JSONResponse({"qos_specs": [_view(r) for r in rows]})
        audit(request, "volume.qos_specs.create", "qos_specs", None)
        req = qos_create(member(await read_json(request), "qos_specs"))
        row = await asyncio.to_thread(self.qos.create, ctx, req)
        audit(request, "volume.qos_specs.create", "qos_specs", row.id)
        return JSONResponse(self._detail(request, row))

    async def item(self, request: Request, ctx: RequestContext) -> Response:
        qos_id = request.path_params["id"]
        if request.method == "GET":
            row = await asyncio.to_thread(self.qos.get, ctx, qos_id)
            return JSONResponse(self._detail(request, row))
        if request.method == "PUT":
            audit(request, "volume.qos_specs.update", "qos_specs", qos_id)
            specs = schemas.metadata(member(await read_json(request), "qos_specs"), "qos_specs")
            changed = await asyncio.to_thread(self.qos.set_keys, ctx, qos_id, dict(specs))
            return JSONResponse({"qos_specs": {**changed, **_consumer(specs)}})
        audit(request, "volume.qos_specs.delete", "qos_specs", qos_id)
        await asyncio.to_thread(self.qos.delete, ctx, qos_id, flag(request, "force"))
        return Response(status_code=202)

    async def delete_keys(self, request: Request, ctx: RequestContext) -> Response:
        qos_id = request.path_params["id"]
        keys = (await read_json(request)).get("keys")
        if not isinstance(keys, list) or not all(isinstance(k, str) for k in keys):
            raise BadRequest("Invalid input for field/attribute keys: a list of keys is expected.")
        audit(request, "volume.qos_specs.delete_keys", "qos_specs", qos_id)
        await asyncio.to_thread(self.qos.delete_keys, ctx, qos_id, keys)
        return Response(status_code=202)

    async def associations(self, request: Request, ctx: RequestContext) -> Response:
        found = await asyncio.to_thread(self.qos.associations, ctx, request.path_params["id"])
        items = [{"association_type": "volume_type", "id": i, "name": n} for i, n in found]
        return JSONResponse({"qos_associations": items})

    async def associate(self, request: Request, ctx: RequestContext) -> Response:
        qos_id, type_id = request.path_params["id"], _type_param(request)
        audit(request, "volume.qos_specs.associate", "qos_specs", qos_id)
        await asyncio.to_thread(self.qos.associate, ctx, qos_id, type_id)
        return Response(status_code=202)

    async def disassociate(self, request: Request, ctx: RequestContext) -> Response:
        qos_id, type_id = request.path_params["id"], _type_param(request)
        audit(request, "volume.qos_specs.disassociate", "qos_specs", qos_id)
        await asyncio.to_thread(self.qos.disassociate, ctx, qos_id, type_id)
        return Response(status_code=202)

    async def disassociate_all(self, request: Request, ctx: RequestContext) -> Response:
        qos_id = request.path_params["id"]
        audit(request, "volume.qos_specs.disassociate_all", "qos_specs", qos_id)
        await asyncio.to_thread(self.qos.disassociate, ctx, qos_id, None)
        return Response(status_code=202)


def _view(row: m.QosSpecs) -> dict[str, Any]:
    return {"id": row.id, "name": row.name, "consumer": row.consumer, "specs": dict(row.specs)}


def _consumer(specs: dict[str, str]) -> dict[str, str]:
    return {"consumer": specs["consumer"]} if "consumer" in specs else {}


def _type_param(request: Request) -> str:
    type_id = request.query_params.get("vol_type_id")
    if not type_id:
        raise BadRequest("Volume Type id must not be None: give vol_type_id in the query.")
    return type_id
