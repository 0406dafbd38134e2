"""Glance v2 wire format: routes, query parsing, JSON patch, schemas, streamed image data.

This module turns HTTP into calls on `ImageService` and back. It holds no rules:
tenancy, visibility and the upload state machine live in the service.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
from collections.abc import Callable, Iterator
from typing import Any
from urllib.parse import urlencode

from starlette.requests import ClientDisconnect, Request
from starlette.responses import Response, StreamingResponse
from starlette.routing import Route, Router
from starlette.types import ASGIApp

from souverain.common.context import RequestContext
from souverain.common.errors import (
    ApiError,
    BadRequest,
    PayloadTooLarge,
    UnsupportedMediaType,
)
from souverain.common.jsoncodec import STRICT_JSON, JSONResponse
from souverain.config import ImageSettings
from souverain.image.service import (
    CONTAINER_FORMATS,
    DISK_FORMATS,
    MEMBER_STATUSES,
    SORT_KEYS,
    VISIBILITIES,
    ImageService,
    ListQuery,
)
from souverain.image.store import CHUNK, StorageFull
from souverain.openstack.auth import audit, authenticate
from souverain.openstack.body import read_json
from souverain.openstack.faults import ErrorLayer
from souverain.openstack.links import base_url
from souverain.openstack.query import parse_limit

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
        "size_min",
        "size_max",
        "protected",
        "member_status",
        "os_hidden",
        "id",
        "created_at",
        "updated_at",
    }
)
VERSIONS = [f"v2.{minor}" for minor in range(9, -1, -1)]


class _InsufficientStorage(ApiError):
    status = 413
    title = "Request Entity Too Large"


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


async def read_patch(request: Request) -> list[tuple[str, str, Any]]:
    """A JSON patch as (op, attribute, value): only top-level attributes, as Glance."""
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
    if not isinstance(ops, list):
        raise BadRequest("A JSON patch is a list of operations.")
    out: list[tuple[str, str, Any]] = []
    for op in ops:
        if not isinstance(op, dict) or op.get("op") not in ("add", "replace", "remove"):
            raise BadRequest("Each operation must be an object with op add, replace or remove.")
        path = op.get("path")
        if not isinstance(path, str) or not path.startswith("/") or path.count("/") != 1:
            raise BadRequest(f"Invalid JSON pointer {str(path)[:64]!r}: a top-level attribute.")
        name = path[1:].replace("~1", "/").replace("~0", "~")
        if op["op"] != "remove" and "value" not in op:
            raise BadRequest(f"Operation {op['op']} on {path} needs a value.")
        out.append((op["op"], name, op.get("value")))
    return out


def _int_param(name: str, raw: str) -> int:
    try:
        value = int(raw)
    except ValueError:
        raise BadRequest(f"Invalid value for '{name}': {raw[:64]!r} is not an integer.") from None
    if value < 0:
        raise BadRequest(f"Invalid value for '{name}': must not be negative.")
    return value


def _bool_param(name: str, raw: str) -> bool:
    lowered = raw.lower()
    if lowered not in ("true", "false"):
        raise BadRequest(f"Invalid value for '{name}': {raw[:64]!r} is not true or false.")
    return lowered == "true"


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
    for name in ("name", "status", "owner", "disk_format", "container_format", "id"):
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
    for name in ("size_min", "size_max"):
        if name in params:
            filters[name] = _int_param(name, params[name])
    for name in ("protected", "os_hidden"):
        if name in params:
            filters[name] = _bool_param(name, params[name])
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


# ---------------------------------------------------------------------- documents


def _versions(base: str) -> dict[str, Any]:
    return {
        "versions": [
            {
                "id": version,
                "status": "CURRENT" if i == 0 else "SUPPORTED",
                "links": [{"rel": "self", "href": f"{base}/v2/"}],
            }
            for i, version in enumerate(VERSIONS)
        ]
    }


def _nullable(kind: str, **extra: Any) -> dict[str, Any]:
    return {"type": ["null", kind], **extra}


IMAGE_SCHEMA: dict[str, Any] = {
    "name": "image",
    "additionalProperties": {"type": "string"},
    "links": [
        {"href": "{self}", "rel": "self"},
        {"href": "{file}", "rel": "enclosure"},
        {"href": "{schema}", "rel": "describedby"},
    ],
    "properties": {
        "id": {
            "type": "string",
            "pattern": "^([0-9a-fA-F]){8}-([0-9a-fA-F]){4}-([0-9a-fA-F]){4}"
            "-([0-9a-fA-F]){4}-([0-9a-fA-F]){12}$",
            "description": "An identifier for the image",
        },
        "name": _nullable("string", maxLength=255, description="Descriptive name for the image"),
        "status": {
            "type": "string",
            "readOnly": True,
            "enum": ["queued", "saving", "active", "killed", "deleted", "deactivated"],
        },
        "visibility": {"type": "string", "enum": list(VISIBILITIES)},
        "protected": {"type": "boolean"},
        "os_hidden": {"type": "boolean"},
        "checksum": _nullable("string", readOnly=True, maxLength=32),
        "os_hash_algo": _nullable("string", readOnly=True, maxLength=64),
        "os_hash_value": _nullable("string", readOnly=True, maxLength=128),
        "owner": _nullable("string", maxLength=255),
        "size": _nullable("integer", readOnly=True),
        "virtual_size": _nullable("integer", readOnly=True),
        "container_format": _nullable("string", enum=[None, *CONTAINER_FORMATS]),
        "disk_format": _nullable("string", enum=[None, *DISK_FORMATS]),
        "created_at": {"type": "string", "readOnly": True},
        "updated_at": {"type": "string", "readOnly": True},
        "tags": {"type": "array", "items": {"type": "string", "maxLength": 255}},
        "direct_url": {"type": "string", "readOnly": True},
        "min_ram": {"type": "integer"},
        "min_disk": {"type": "integer"},
        "self": {"type": "string", "readOnly": True},
        "file": {"type": "string", "readOnly": True},
        "stores": {"type": "string", "readOnly": True},
        "schema": {"type": "string", "readOnly": True},
        "locations": {"type": "array", "items": {"type": "object"}},
    },
}
IMAGES_SCHEMA: dict[str, Any] = {
    "name": "images",
    "properties": {
        "images": {"type": "array", "items": IMAGE_SCHEMA},
        "schema": {"type": "string"},
        "first": {"type": "string"},
        "next": {"type": "string"},
    },
    "links": [
        {"rel": "first", "href": "{first}"},
        {"rel": "next", "href": "{next}"},
        {"rel": "describedby", "href": "{schema}"},
    ],
}
MEMBER_SCHEMA: dict[str, Any] = {
    "name": "member",
    "properties": {
        "image_id": {"type": "string"},
        "member_id": {"type": "string"},
        "status": {"type": "string", "enum": list(MEMBER_STATUSES)},
        "created_at": {"type": "string"},
        "updated_at": {"type": "string"},
        "schema": {"type": "string", "readOnly": True},
    },
}
MEMBERS_SCHEMA: dict[str, Any] = {
    "name": "members",
    "properties": {
        "members": {"type": "array", "items": MEMBER_SCHEMA},
        "schema": {"type": "string"},
    },
    "links": [{"rel": "describedby", "href": "{schema}"}],
}
SCHEMAS = {
    "image": IMAGE_SCHEMA,
    "images": IMAGES_SCHEMA,
    "member": MEMBER_SCHEMA,
    "members": MEMBERS_SCHEMA,
}


# ---------------------------------------------------------------------- the API


class ImageApi:
    def __init__(self, service: ImageService, public_url: str = "") -> None:
        self.service = service
        self.public_url = public_url

    def auth(self, request: Request) -> RequestContext:
        return authenticate(self.service.identity, request)

    def routes(self) -> list[Route]:
        return [
            Route("/", self.root, methods=["GET"]),
            Route("/versions", self.versions, methods=["GET"]),
            Route("/v2/schemas/{name}", self.schema, methods=["GET"]),
            Route("/v2/images", self.list_images, methods=["GET"]),
            Route("/v2/images", self.create_image, methods=["POST"]),
            Route("/v2/images/{image_id}", self.show_image, methods=["GET"]),
            Route("/v2/images/{image_id}", self.update_image, methods=["PATCH"]),
            Route("/v2/images/{image_id}", self.delete_image, methods=["DELETE"]),
            Route("/v2/images/{image_id}/file", self.download, methods=["GET"]),
            Route("/v2/images/{image_id}/file", self.upload, methods=["PUT"]),
            Route("/v2/images/{image_id}/tags/{tag}", self.tag, methods=["PUT", "DELETE"]),
            Route("/v2/images/{image_id}/members", self.members, methods=["GET", "POST"]),
            Route(
                "/v2/images/{image_id}/members/{member_id}",
                self.member,
                methods=["GET", "PUT", "DELETE"],
            ),
            Route("/v2/images/{image_id}/actions/{action}", self.action, methods=["POST"]),
        ]

    # -------------------------------------------------------------- discovery

    async def root(self, request: Request) -> Response:
        # Glance answers its root with 300 Multiple Choices; keystoneauth expects that.
        return JSONResponse(_versions(base_url(request, self.public_url, PREFIX)), 300)

    async def versions(self, request: Request) -> Response:
        return JSONResponse(_versions(base_url(request, self.public_url, PREFIX)))

    async def schema(self, request: Request) -> Response:
        self.auth(request)
        schema = SCHEMAS.get(request.path_params["name"])
        if schema is None:
            raise _not_found()
        return JSONResponse(schema)

    # -------------------------------------------------------------- images

    async def list_images(self, request: Request) -> Response:
        ctx = self.auth(request)
        query = _list_query(request)
        images, more = await asyncio.to_thread(self.service.list_images, ctx, query)
        body: dict[str, Any] = {
            "images": images,
            "first": "/v2/images",
            "schema": "/v2/schemas/images",
        }
        if more and images:
            params = [(k, v) for k, v in request.query_params.multi_items() if k != "marker"]
            params.append(("marker", images[-1]["id"]))
            body["next"] = f"/v2/images?{urlencode(params)}"
        return JSONResponse(body)

    async def create_image(self, request: Request) -> Response:
        ctx = self.auth(request)
        audit(request, "image.create", "image", None)
        body = await read_json(request)
        view = await asyncio.to_thread(self.service.create, ctx, body)
        audit(request, "image.create", "image", view["id"])
        location = f"{base_url(request, self.public_url, PREFIX)}/v2/images/{view['id']}"
        return JSONResponse(view, 201, headers={"Location": location})

    async def show_image(self, request: Request) -> Response:
        ctx = self.auth(request)
        view = await asyncio.to_thread(self.service.get, ctx, request.path_params["image_id"])
        return JSONResponse(view)

    async def update_image(self, request: Request) -> Response:
        ctx = self.auth(request)
        image_id = request.path_params["image_id"]
        audit(request, "image.update", "image", image_id)
        changes = await read_patch(request)
        view = await asyncio.to_thread(self.service.update, ctx, image_id, changes)
        return JSONResponse(view)

    async def delete_image(self, request: Request) -> Response:
        ctx = self.auth(request)
        image_id = request.path_params["image_id"]
        audit(request, "image.delete", "image", image_id)
        await asyncio.to_thread(self.service.delete, ctx, image_id)
        return Response(status_code=204)

    async def tag(self, request: Request) -> Response:
        ctx = self.auth(request)
        image_id, tag = request.path_params["image_id"], request.path_params["tag"]
        if request.method == "PUT":
            audit(request, "image.tag.add", "image", image_id)
            await asyncio.to_thread(self.service.add_tag, ctx, image_id, tag)
        else:
            audit(request, "image.tag.remove", "image", image_id)
            await asyncio.to_thread(self.service.remove_tag, ctx, image_id, tag)
        return Response(status_code=204)

    async def action(self, request: Request) -> Response:
        ctx = self.auth(request)
        image_id, action = request.path_params["image_id"], request.path_params["action"]
        if action not in ("deactivate", "reactivate"):
            raise _not_found()
        audit(request, f"image.{action}", "image", image_id)
        await asyncio.to_thread(self.service.set_active, ctx, image_id, action == "reactivate")
        return Response(status_code=204)

    # -------------------------------------------------------------- members

    async def members(self, request: Request) -> Response:
        ctx = self.auth(request)
        image_id = request.path_params["image_id"]
        if request.method == "GET":
            rows = await asyncio.to_thread(self.service.list_members, ctx, image_id)
            return JSONResponse({"members": rows, "schema": "/v2/schemas/members"})
        audit(request, "image.member.create", "image", image_id)
        body = await read_json(request)
        view = await asyncio.to_thread(self.service.add_member, ctx, image_id, body.get("member"))
        return JSONResponse(view)

    async def member(self, request: Request) -> Response:
        ctx = self.auth(request)
        image_id, member_id = request.path_params["image_id"], request.path_params["member_id"]
        if request.method == "GET":
            view = await asyncio.to_thread(self.service.get_member, ctx, image_id, member_id)
            return JSONResponse(view)
        if request.method == "PUT":
            audit(request, "image.member.update", "image", image_id)
            body = await read_json(request)
            view = await asyncio.to_thread(
                self.service.update_member, ctx, image_id, member_id, body.get("status")
            )
            return JSONResponse(view)
        audit(request, "image.member.delete", "image", image_id)
        await asyncio.to_thread(self.service.remove_member, ctx, image_id, member_id)
        return Response(status_code=204)

    # -------------------------------------------------------------- data

    async def upload(self, request: Request) -> Response:
        ctx = self.auth(request)
        image_id = request.path_params["image_id"]
        audit(request, "image.upload", "image", image_id)
        media_type = request.headers.get("content-type", "application/octet-stream")
        if media_type.split(";")[0].strip().lower() != "application/octet-stream":
            raise UnsupportedMediaType("Image data must be sent as application/octet-stream.")
        disk_format = await asyncio.to_thread(self.service.begin_upload, ctx, image_id)
        image_id = image_id.lower()  # found, so a UUID: the stored form from here on
        try:
            writer = await asyncio.to_thread(self.service.store.writer)
        except BaseException:
            await asyncio.to_thread(self.service.abandon_upload, image_id)
            raise
        limit = self.service.settings.max_image_bytes
        loop = asyncio.get_running_loop()
        pending: asyncio.Future[None] | None = None
        buffer = bytearray()
        received = 0
        try:
            async for chunk in request.stream():
                buffer += chunk
                received += len(chunk)
                if received > limit:
                    raise PayloadTooLarge(f"The image is larger than the limit of {limit} bytes.")
                if len(buffer) >= CHUNK:
                    if pending is not None:
                        await pending
                    # hashing and writing on a thread while the loop receives the next chunk
                    pending = loop.run_in_executor(None, writer.write, bytes(buffer))
                    buffer.clear()
            if pending is not None:
                await pending
                pending = None
            if buffer:
                await asyncio.to_thread(writer.write, bytes(buffer))
        except BaseException as exc:
            if pending is not None:
                with contextlib.suppress(BaseException):  # the first error is the one to report
                    await pending
            writer.abort()
            await asyncio.to_thread(self.service.abandon_upload, image_id)
            if isinstance(exc, ClientDisconnect):
                raise BadRequest("The client went away before the image data ended.") from None
            if isinstance(exc, StorageFull):
                raise _InsufficientStorage("There is no room left to store the image.") from None
            raise
        try:
            await asyncio.to_thread(self.service.finish_upload, image_id, writer, disk_format)
        except StorageFull:
            raise _InsufficientStorage("There is no room left to store the image.") from None
        return Response(status_code=204)

    async def download(self, request: Request) -> Response:
        ctx = self.auth(request)
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
    from souverain.common.errors import NotFound

    if image_id is None:
        return NotFound("The resource could not be found.")
    return NotFound(f"No image found with ID {image_id}")


def build_app(service: ImageService, public_url: str = "") -> ASGIApp:
    return ErrorLayer(Router(routes=ImageApi(service, public_url).routes()), render_error)
