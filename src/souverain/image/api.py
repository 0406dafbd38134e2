"""Glance v2 wire format: routes, query parsing, JSON patch, schemas, streamed image data.

This module turns HTTP into calls on `ImageService` and back. It holds no rules:
tenancy, visibility and the upload state machine live in the service.
"""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import Callable, Iterator
from typing import Any
from urllib.parse import urlencode

from starlette.requests import Request
from starlette.responses import Response, StreamingResponse
from starlette.routing import Router
from starlette.types import ASGIApp

from souverain.common.context import RequestContext
from souverain.common.errors import (
    ApiError,
    BadRequest,
    NotFound,
    UnsupportedMediaType,
)
from souverain.common.jsoncodec import STRICT_JSON, JSONResponse
from souverain.config import ImageSettings
from souverain.image import schemas, views
from souverain.image.api_data import InsufficientStorage, octet_stream_only, receive_into
from souverain.image.api_imports import ImportApi
from souverain.image.api_metadefs import MetadefApi
from souverain.image.schemas import MEMBER_STATUSES, VISIBILITIES
from souverain.image.service import SORT_KEYS, ImageService, ListQuery
from souverain.image.store import StorageFull
from souverain.openstack.auth import audit
from souverain.openstack.body import read_json
from souverain.openstack.faults import ErrorLayer
from souverain.openstack.links import base_url
from souverain.openstack.query import parse_bool, parse_int, parse_limit
from souverain.openstack.routing import Edge, EdgeRoute

PREFIX = "/image"
DEFAULT_LIMIT = 25
PATCH_MEDIA_TYPES = (
    "application/openstack-images-v2.1-json-patch",
    "application/openstack-images-v2.0-json-patch",
)
_DATA_PATH = re.compile(r"^/v2/images/[^/]+/(file|stage)$")
# Query parameters with a meaning of their own; any other one filters on a custom property.
_LIST_PARAMS = frozenset(
    {
        "limit",
        "marker",
        "sort",
        "sort_key",
        "sort_dir",
        "name",
        "status",
        "visibility",
        "owner",
        "disk_format",
        "container_format",
        "tag",
        "size",
        "size_min",
        "size_max",
        "protected",
        "member_status",
        "os_hidden",
        "id",
        "checksum",
        "created_at",
        "updated_at",
    }
)


def render_error(_path: str, status: int, title: str, message: str) -> tuple[bytes, str]:
    """Glance's error body; the one place its shape is written."""
    body = {"code": status, "title": title, "message": message}
    return json.dumps(body).encode(), "application/json"


def body_limit_for(settings: ImageSettings) -> Callable[[str, str], int | None]:
    """The body limit of image data uploads; None (the server's) for every other request."""

    def limit(method: str, path: str) -> int | None:
        if method == "PUT" and _DATA_PATH.match(path):
            return settings.max_image_bytes
        return None

    return limit


# ---------------------------------------------------------------------- request parsing


async def read_patch(request: Request) -> list[schemas.PatchOp]:
    """A JSON patch body, in one of Glance's patch media types."""
    media_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if media_type not in PATCH_MEDIA_TYPES:
        raise UnsupportedMediaType(
            f"Unsupported Content-Type {media_type or '(none)'!r}: image updates take "
            f"{PATCH_MEDIA_TYPES[0]}."
        )
    raw = await request.body()
    try:
        ops = STRICT_JSON.decode(raw.decode("utf-8"))
    except (ValueError, UnicodeDecodeError, RecursionError):
        raise BadRequest("Malformed request body: it is not valid JSON.") from None
    # Glance's v2.0 patch type takes the draft-4 dialect, v2.1 RFC 6902's
    return schemas.patch(ops, dialect=4 if media_type == PATCH_MEDIA_TYPES[1] else 10)


def _sort_of(request: Request) -> tuple[tuple[str, str], ...]:
    params = request.query_params
    pairs: list[tuple[str, str]] = []
    if "sort" in params:
        if "sort_key" in params or "sort_dir" in params:
            raise BadRequest("The 'sort' parameter cannot be combined with sort_key or sort_dir.")
        for item in params["sort"].split(","):
            key, _, direction = item.strip().partition(":")
            pairs.append((key, direction or "desc"))
    else:
        keys = params.getlist("sort_key") or ["created_at"]
        dirs = params.getlist("sort_dir") or ["desc"]
        if len(dirs) > 1 and len(dirs) != len(keys):
            raise BadRequest("Give one sort_dir, or one per sort_key.")
        pairs = [(k, dirs[i] if len(dirs) > 1 else dirs[0]) for i, k in enumerate(keys)]
    for key, direction in pairs:
        if key not in SORT_KEYS:
            raise BadRequest(f"Invalid sort key {key[:64]!r}: one of {', '.join(SORT_KEYS)}.")
        if direction not in ("asc", "desc"):
            raise BadRequest(f"Invalid sort direction {direction[:64]!r}: asc or desc.")
    return tuple(pairs)


def _list_query(request: Request) -> ListQuery:
    params = request.query_params
    filters: dict[str, Any] = {}
    for name in ("name", "status", "owner", "disk_format", "container_format", "id", "checksum"):
        if name in params:
            filters[name] = params[name]
    if "visibility" in params:
        if params["visibility"] not in (*VISIBILITIES, "all"):
            raise BadRequest(f"Invalid visibility {params['visibility'][:64]!r}.")
        filters["visibility"] = params["visibility"]
    if "member_status" in params:
        if params["member_status"] not in (*MEMBER_STATUSES, "all"):
            raise BadRequest(f"Invalid member_status {params['member_status'][:64]!r}.")
        filters["member_status"] = params["member_status"]
    for name in ("size", "size_min", "size_max"):
        if name in params:
            filters[name] = parse_int(name, params[name], minimum=0)
    for name in ("protected", "os_hidden"):
        if name in params:
            filters[name] = parse_bool(name, params[name])
    for name, value in params.items():
        if name not in _LIST_PARAMS:
            filters[name] = value  # a custom property
    limit = parse_limit(params.get("limit"), DEFAULT_LIMIT)
    return ListQuery(
        filters=filters,
        tags=tuple(params.getlist("tag")),
        sort=_sort_of(request),
        limit=limit,
        marker=params.get("marker") or None,
    )


# ---------------------------------------------------------------------- the API


class ImageApi:
    def __init__(self, service: ImageService, public_url: str = "") -> None:
        self.service = service
        self.public_url = public_url

    def routes(self) -> list[EdgeRoute]:
        edge = Edge(self.service.identity)
        r = edge.route
        version = {"GET": "image:version:show"}
        image = "/v2/images/{image_id}"
        return [
            edge.public("/", self.root, version),
            edge.public("/versions", self.versions, version),
            r("/v2/schemas/{name}", self.schema, {"GET": "image:schema:show"}),
            r("/v2/schemas/metadefs/{name}", self.metadef_schema, {"GET": "image:schema:show"}),
            r("/v2/images", self.images, {"GET": "image:image:list", "POST": "image:image:create"}),
            r(
                image,
                self.image,
                {
                    "GET": "image:image:show",
                    "PATCH": "image:image:update",
                    "DELETE": "image:image:delete",
                },
            ),
            r(
                f"{image}/file",
                self.data,
                {"GET": "image:image:download", "PUT": "image:image:upload"},
            ),
            r(
                f"{image}/tags/{{tag}}",
                self.tag,
                {"PUT": "image:tag:create", "DELETE": "image:tag:delete"},
            ),
            r(
                f"{image}/members",
                self.members,
                {"GET": "image:member:list", "POST": "image:member:create"},
            ),
            r(
                f"{image}/members/{{member_id}}",
                self.member,
                {
                    "GET": "image:member:show",
                    "PUT": "image:member:update",
                    "DELETE": "image:member:delete",
                },
            ),
            r(f"{image}/actions/deactivate", self.deactivate, {"POST": "image:image:deactivate"}),
            r(f"{image}/actions/reactivate", self.reactivate, {"POST": "image:image:reactivate"}),
            r(f"{image}/actions/{{action}}", self.unknown_action, {"POST": "image:image:update"}),
            *ImportApi(self.service, self.public_url).routes(edge),
            *MetadefApi(self.service.metadefs).routes(edge),
        ]

    # -------------------------------------------------------------- discovery

    async def root(self, request: Request) -> Response:
        # Glance answers its root with 300 Multiple Choices; keystoneauth expects that.
        return JSONResponse(views.versions_view(base_url(request, self.public_url, PREFIX)), 300)

    async def versions(self, request: Request) -> Response:
        return JSONResponse(views.versions_view(base_url(request, self.public_url, PREFIX)))

    async def schema(self, request: Request, ctx: RequestContext) -> Response:
        schema = views.SCHEMAS.get(request.path_params["name"])
        if schema is None:
            raise _not_found()
        return JSONResponse(schema)

    async def metadef_schema(self, request: Request, ctx: RequestContext) -> Response:
        schema = views.METADEF_SCHEMAS.get(request.path_params["name"])
        if schema is None:
            raise _not_found()
        return JSONResponse(schema)

    # -------------------------------------------------------------- images

    async def images(self, request: Request, ctx: RequestContext) -> Response:
        if request.method == "POST":
            return await self.create_image(request, ctx)
        query = _list_query(request)
        rows, more = await asyncio.to_thread(self.service.list_images, ctx, query)
        body: dict[str, Any] = {
            "images": [views.image_view(r) for r in rows],
            "first": "/v2/images",
            "schema": "/v2/schemas/images",
        }
        if more and rows:
            params = [(k, v) for k, v in request.query_params.multi_items() if k != "marker"]
            params.append(("marker", rows[-1].id))
            body["next"] = f"/v2/images?{urlencode(params)}"
        return JSONResponse(body)

    async def create_image(self, request: Request, ctx: RequestContext) -> Response:
        audit(request, "image.create", "image", None)
        req = schemas.image_create(await read_json(request))
        row = await asyncio.to_thread(self.service.create, ctx, req)
        audit(request, "image.create", "image", row.id)
        location = f"{base_url(request, self.public_url, PREFIX)}/v2/images/{row.id}"
        headers = {
            "Location": location,
            # clients choose an import method from it (openstack image create --import)
            "OpenStack-image-import-methods": ",".join(self.service.imports.methods()),
        }
        return JSONResponse(views.image_view(row), 201, headers=headers)

    async def image(self, request: Request, ctx: RequestContext) -> Response:
        image_id = request.path_params["image_id"]
        if request.method == "GET":
            row = await asyncio.to_thread(self.service.show, ctx, image_id)
            return JSONResponse(views.image_view(row))
        if request.method == "PATCH":
            audit(request, "image.update", "image", image_id)
            changes = await read_patch(request)
            row = await asyncio.to_thread(self.service.update, ctx, image_id, changes)
            return JSONResponse(views.image_view(row))
        audit(request, "image.delete", "image", image_id)
        await asyncio.to_thread(self.service.delete, ctx, image_id)
        return Response(status_code=204)

    async def tag(self, request: Request, ctx: RequestContext) -> Response:
        image_id, tag = request.path_params["image_id"], request.path_params["tag"]
        if request.method == "PUT":
            audit(request, "image.tag.add", "image", image_id)
            await asyncio.to_thread(self.service.add_tag, ctx, image_id, tag)
        else:
            audit(request, "image.tag.remove", "image", image_id)
            await asyncio.to_thread(self.service.remove_tag, ctx, image_id, tag)
        return Response(status_code=204)

    async def deactivate(self, request: Request, ctx: RequestContext) -> Response:
        return await self._set_active(request, ctx, False)

    async def reactivate(self, request: Request, ctx: RequestContext) -> Response:
        return await self._set_active(request, ctx, True)

    async def unknown_action(self, request: Request, ctx: RequestContext) -> Response:
        raise _not_found()

    async def _set_active(self, request: Request, ctx: RequestContext, active: bool) -> Response:
        image_id = request.path_params["image_id"]
        audit(request, f"image.{'reactivate' if active else 'deactivate'}", "image", image_id)
        await asyncio.to_thread(self.service.set_active, ctx, image_id, active)
        return Response(status_code=204)

    # -------------------------------------------------------------- members

    async def members(self, request: Request, ctx: RequestContext) -> Response:
        image_id = request.path_params["image_id"]
        members = self.service.members
        if request.method == "GET":
            rows = await asyncio.to_thread(members.list_members, ctx, image_id)
            body = {
                "members": [views.member_view(r) for r in rows],
                "schema": "/v2/schemas/members",
            }
            return JSONResponse(body)
        audit(request, "image.member.create", "image", image_id)
        member_id = schemas.member(await read_json(request))
        row = await asyncio.to_thread(members.add_member, ctx, image_id, member_id)
        return JSONResponse(views.member_view(row))

    async def member(self, request: Request, ctx: RequestContext) -> Response:
        image_id, member_id = request.path_params["image_id"], request.path_params["member_id"]
        members = self.service.members
        if request.method == "GET":
            row = await asyncio.to_thread(members.get_member, ctx, image_id, member_id)
            return JSONResponse(views.member_view(row))
        if request.method == "PUT":
            audit(request, "image.member.update", "image", image_id)
            status = schemas.member_status(await read_json(request))
            row = await asyncio.to_thread(members.update_member, ctx, image_id, member_id, status)
            return JSONResponse(views.member_view(row))
        audit(request, "image.member.delete", "image", image_id)
        await asyncio.to_thread(members.remove_member, ctx, image_id, member_id)
        return Response(status_code=204)

    # -------------------------------------------------------------- data

    async def data(self, request: Request, ctx: RequestContext) -> Response:
        if request.method == "PUT":
            return await self.upload(request, ctx)
        return await self.download(request, ctx)

    async def upload(self, request: Request, ctx: RequestContext) -> Response:
        image_id = request.path_params["image_id"]
        audit(request, "image.upload", "image", image_id)
        octet_stream_only(request)
        disk_format = await asyncio.to_thread(self.service.begin_upload, ctx, image_id)
        image_id = image_id.lower()  # found, so a UUID: the stored form from here on
        try:
            writer = await asyncio.to_thread(self.service.store.writer)
        except BaseException:
            await asyncio.to_thread(self.service.abandon_upload, image_id)
            raise
        try:
            await receive_into(request, writer, self.service.settings.max_image_bytes)
        except BaseException:
            await asyncio.to_thread(self.service.abandon_upload, image_id)
            raise
        try:
            await asyncio.to_thread(self.service.finish_upload, image_id, writer, disk_format)
        except StorageFull:
            raise InsufficientStorage("There is no room left to store the image.") from None
        return Response(status_code=204)

    async def download(self, request: Request, ctx: RequestContext) -> Response:
        image_id = request.path_params["image_id"]
        data = await asyncio.to_thread(self.service.data_for, ctx, image_id)
        if data.file_id is None:
            return Response(status_code=204)
        try:
            reader = self.service.store.open(data.file_id)
        except FileNotFoundError:  # deleted between the lookup and the open
            raise _not_found(image_id) from None

        def chunks() -> Iterator[bytes]:  # a plain iterator: Starlette reads it on a thread
            try:
                yield from reader.chunks()
            finally:
                reader.close()

        headers = {"Content-Length": str(data.size)}
        if data.checksum:
            headers["Content-MD5"] = data.checksum
        return StreamingResponse(chunks(), media_type="application/octet-stream", headers=headers)


def _not_found(image_id: str | None = None) -> ApiError:
    if image_id is None:
        return NotFound("The resource could not be found.")
    return NotFound(f"No image found with ID {image_id}")


def build_app(service: ImageService, public_url: str = "") -> ASGIApp:
    # No slash redirection: /v2/images/ is an image with an empty id (404), as in Glance,
    # not the list it would redirect to.
    routes = ImageApi(service, public_url).routes()
    return ErrorLayer(Router(routes=routes, redirect_slashes=False), render_error)
