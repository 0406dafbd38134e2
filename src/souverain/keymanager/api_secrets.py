"""Barbican's secret routes: create (one step, or two with a PUT of the payload), show,
list, delete, the payload by Accept, and user metadata. Reads requests, calls
`Secrets`, writes responses; the payload goes back only in a payload response body, never
in a log, an audit line or an error."""

from __future__ import annotations

import asyncio

from starlette.requests import Request
from starlette.responses import Response

from souverain.common.context import RequestContext
from souverain.common.errors import ApiError, BadRequest
from souverain.common.jsoncodec import JSONResponse
from souverain.keymanager import schemas, views
from souverain.keymanager.core import MAX_PAYLOAD_BYTES
from souverain.keymanager.schemas import OCTETS, TEXT
from souverain.keymanager.secrets import SecretRecord, check_payload, too_large
from souverain.keymanager.service import KeyManagerService
from souverain.openstack.auth import audit
from souverain.openstack.body import read_json
from souverain.openstack.links import base_url
from souverain.openstack.microversion import microversion_of
from souverain.openstack.query import parse_int

PREFIX = "/key-manager"
DEFAULT_LIMIT = 10
DELETE_REFUSED_SINCE = (1, 2)
MAX_LIMIT = 100


class NotAcceptable(ApiError):
    status = 406
    title = "Not Acceptable"


def paging(request: Request) -> tuple[int, int]:
    q = request.query_params
    limit = parse_int("limit", q.get("limit") or str(DEFAULT_LIMIT), 0)
    offset = parse_int("offset", q.get("offset") or "0", 0, 2**31 - 1)
    return min(limit or DEFAULT_LIMIT, MAX_LIMIT), offset


def representation(accept: str, stored: str, payload: bytes) -> str:
    """The content type a payload goes back as: the one Accept names (text/plain only for
    UTF-8 bytes, as Barbican), the stored one for `*/*` or no Accept; 406 otherwise."""
    for item in accept.split(","):
        base = item.split(";")[0].strip().lower()
        if base in ("", "*/*"):
            return stored
        if base == OCTETS:
            return OCTETS
        if base in (TEXT, "text/*"):
            try:
                payload.decode("utf-8")
            except UnicodeDecodeError:
                continue
            return TEXT
    raise NotAcceptable(f"Wrong payload content-type: this secret's is {stored}.")


def payload_response(record: SecretRecord, payload: bytes, accept: str) -> Response:
    kind = representation(accept, record.content_type or OCTETS, payload)
    media = f"{TEXT}; charset=utf-8" if kind == TEXT else OCTETS
    return Response(payload, media_type=media, headers={"Cache-Control": "no-store"})


class SecretHandlers:
    def __init__(self, service: KeyManagerService, public_url: str) -> None:
        self.store = service.secrets
        self.public_url = public_url

    def base(self, request: Request) -> str:
        return base_url(request, self.public_url, PREFIX)

    async def secrets(self, request: Request, ctx: RequestContext) -> Response:
        base = self.base(request)
        if request.method == "POST":
            audit(request, "keymanager.secret.create", "secret", None)
            spec = schemas.secret_spec(await read_json(request))
            record = await asyncio.to_thread(self.store.create, ctx, spec)
            audit(request, "keymanager.secret.create", "secret", record.id)
            return JSONResponse({"secret_ref": f"{base}/v1/secrets/{record.id}"}, 201)
        limit, offset = paging(request)
        q = request.query_params
        name, kind = q.get("name"), q.get("secret_type")
        records, total = await asyncio.to_thread(self.store.find, ctx, limit, offset, name, kind)
        query = {k: v for k, v in (("name", name), ("secret_type", kind)) if v is not None}
        version = microversion_of(request)
        items = [views.secret(base, r, version) for r in records]
        href = f"{base}/v1/secrets"
        return JSONResponse(views.page("secrets", items, total, href, limit, offset, query))

    async def secret(self, request: Request, ctx: RequestContext) -> Response:
        secret_id = request.path_params["id"]
        if request.method == "DELETE":
            audit(request, "keymanager.secret.delete", "secret", secret_id)
            # from 1.2 a secret with consumers is deleted only when forced (Barbican's 400)
            refusing = microversion_of(request) >= DELETE_REFUSED_SINCE
            force = not refusing or schemas.force_flag(request.query_params.get("force"))
            await asyncio.to_thread(self.store.delete, ctx, secret_id, force)
            return Response(status_code=204)
        if request.method == "PUT":
            return await self._put_payload(request, ctx, secret_id)
        accept = request.headers.get("accept", "")
        if accept and "json" not in accept and "*/*" not in accept:  # Barbican's legacy payload GET
            record, payload = await asyncio.to_thread(self.store.payload, ctx, secret_id)
            return payload_response(record, payload, accept)
        record = await asyncio.to_thread(self.store.get, ctx, secret_id)
        return JSONResponse(views.secret(self.base(request), record, microversion_of(request)))

    async def _put_payload(self, request: Request, ctx: RequestContext, secret_id: str) -> Response:
        audit(request, "keymanager.secret.update", "secret", secret_id)
        kind = schemas.content_type(request.headers.get("content-type", ""), header=True)
        encoding = request.headers.get("content-encoding")
        body = await _bounded_body(request)
        payload = schemas.decode_payload(body, kind, encoding)
        check_payload(payload)
        await asyncio.to_thread(self.store.put_payload, ctx, secret_id, payload, kind)
        return Response(status_code=204)

    async def payload(self, request: Request, ctx: RequestContext) -> Response:
        secret_id = request.path_params["id"]
        record, payload = await asyncio.to_thread(self.store.payload, ctx, secret_id)
        return payload_response(record, payload, request.headers.get("accept", ""))

    async def metadata(self, request: Request, ctx: RequestContext) -> Response:
        secret_id = request.path_params["id"]
        if request.method == "GET":
            items = await asyncio.to_thread(self.store.metadata, ctx, secret_id)
            return JSONResponse({"metadata": items})
        if request.method == "PUT":
            audit(request, "keymanager.secret_metadata.update", "secret", secret_id)
            items = schemas.metadata_request(await read_json(request))
            await asyncio.to_thread(self.store.replace_metadata, ctx, secret_id, items)
            href = f"{self.base(request)}/v1/secrets/{secret_id}/metadata"
            return JSONResponse({"metadata_ref": href}, 201)
        audit(request, "keymanager.secret_metadata.create", "secret", secret_id)
        key, value = schemas.metadatum_request(await read_json(request))
        await asyncio.to_thread(self.store.set_metadatum, ctx, secret_id, key, value, True)
        return JSONResponse({"key": key, "value": value}, 201)

    async def metadatum(self, request: Request, ctx: RequestContext) -> Response:
        secret_id = request.path_params["id"]
        key = schemas.metadata_key(request.path_params["key"])
        if request.method == "GET":
            value = await asyncio.to_thread(self.store.metadatum, ctx, secret_id, key)
            return JSONResponse({"key": key, "value": value})
        if request.method == "DELETE":
            audit(request, "keymanager.secret_metadata.delete", "secret", secret_id)
            await asyncio.to_thread(self.store.delete_metadatum, ctx, secret_id, key)
            return Response(status_code=204)
        audit(request, "keymanager.secret_metadata.update", "secret", secret_id)
        body_key, value = schemas.metadatum_request(await read_json(request))
        if body_key != key:
            raise BadRequest("The key in the body must be the key in the URL.")
        await asyncio.to_thread(self.store.set_metadatum, ctx, secret_id, key, value, False)
        return JSONResponse({"key": key, "value": value})


async def _bounded_body(request: Request) -> bytes:
    """A PUT payload, read no further than a base64 payload of the largest size can be."""
    limit = MAX_PAYLOAD_BYTES * 4 // 3 + 8
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise too_large()
        chunks.append(chunk)
    return b"".join(chunks)
