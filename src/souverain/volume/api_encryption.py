"""Cinder's volume type encryption on the edge (`/v3/types/{id}/encryption`): admins say
which types are LUKS. The rules (no change while volumes of the type exist) are
`encryption.EncryptionTypes`'; this module reads bodies and shapes answers."""

from __future__ import annotations

import asyncio

from starlette.requests import Request
from starlette.responses import Response

from souverain.common.context import RequestContext
from souverain.common.errors import NotFound
from souverain.common.jsoncodec import JSONResponse
from souverain.openstack.auth import audit
from souverain.openstack.body import read_json
from souverain.openstack.routing import Edge, EdgeRoute
from souverain.volume import schemas, views
from souverain.volume.encryption import EncryptionTypes

# what a create answers (Cinder's api-ref): the spec and its ids, no timestamps
CREATED_FIELDS = ("volume_type_id", "encryption_id", *schemas.ENCRYPTION_FIELDS)


class EncryptionApi:
    def __init__(self, types: EncryptionTypes) -> None:
        self.types = types

    def routes(self, edge: Edge) -> list[EdgeRoute]:
        r = edge.route
        action = "volume:type_encryption"
        return [
            r(
                "/v3/types/{id}/encryption",
                self.encryption,
                {"GET": f"{action}:show", "POST": f"{action}:create"},
            ),
            r(
                "/v3/types/{id}/encryption/{encryption_id}",
                self.encryption_item,
                {"GET": f"{action}:show", "PUT": f"{action}:update", "DELETE": f"{action}:delete"},
            ),
        ]

    async def encryption(self, request: Request, ctx: RequestContext) -> Response:
        """GET: the type's encryption, `{}` when it has none (as Cinder); POST: add it."""
        type_id = request.path_params["id"]
        if request.method == "GET":
            row = await asyncio.to_thread(self.types.get, ctx, type_id)
            return JSONResponse({} if row is None else views.encryption_view(row))
        audit(request, "volume.type.encryption.create", "volume_type", type_id)
        spec = schemas.encryption_spec(await read_json(request))
        row = await asyncio.to_thread(self.types.create, ctx, type_id, spec)
        return JSONResponse({"encryption": views.encryption_view(row, CREATED_FIELDS)})

    async def encryption_item(self, request: Request, ctx: RequestContext) -> Response:
        """GET names one field (`.../encryption/cipher`); PUT and DELETE name the encryption
        by its id."""
        type_id, ref = request.path_params["id"], request.path_params["encryption_id"]
        if request.method == "GET":
            row = await asyncio.to_thread(self.types.get, ctx, type_id)
            if row is None or ref not in schemas.ENCRYPTION_FIELDS:
                raise NotFound(f"Volume type encryption for type {type_id[:64]} has no {ref[:64]}.")
            return JSONResponse({ref: views.encryption_view(row, (ref,))[ref]})
        if request.method == "PUT":
            audit(request, "volume.type.encryption.update", "volume_type", type_id)
            spec = schemas.encryption_spec(await read_json(request), partial=True)
            row = await asyncio.to_thread(self.types.update, ctx, type_id, ref, spec)
            changed = tuple(f for f in schemas.ENCRYPTION_FIELDS if getattr(spec, f) is not None)
            return JSONResponse({"encryption": views.encryption_view(row, changed)})
        audit(request, "volume.type.encryption.delete", "volume_type", type_id)
        await asyncio.to_thread(self.types.delete, ctx, type_id, ref)
        return Response(status_code=202)
