"""What every part of the Cinder edge shares: faults, the path's project, query parsing,
links and the viewer (microversion and role) that decides a view's fields."""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any, Protocol
from urllib.parse import urlencode

from starlette.requests import Request
from starlette.responses import Response

from souverain.common.context import RequestContext
from souverain.common.errors import BadRequest, NotFound
from souverain.common.jsoncodec import JSONResponse
from souverain.openstack.auth import audit
from souverain.openstack.body import read_json
from souverain.openstack.faults import render_named_fault
from souverain.openstack.links import base_url
from souverain.openstack.microversion import Microversions, Version, microversion_of
from souverain.openstack.query import parse_bool, parse_limit
from souverain.volume import schemas
from souverain.volume.rules import MAX_INT, SORT_KEYS, VolumeQuery
from souverain.volume.views import Viewer

PREFIX = "/volume"
MIN_VERSION = (3, 0)
MAX_VERSION = (3, 70)
VERSIONS = Microversions(("volume", "block-storage"), MIN_VERSION, MAX_VERSION)
PROJECT_KEY = "souverain.volume.path_project"
render_error = render_named_fault


def check_path_project(request: Request, ctx: RequestContext) -> None:
    """A project id in the path must be the token's, unless the caller is an admin."""
    path_project = request.scope.get(PROJECT_KEY)
    if path_project and path_project != ctx.project_id and not ctx.is_admin:
        raise NotFound("The resource could not be found.")


def viewer(request: Request, ctx: RequestContext) -> Viewer:
    return Viewer(microversion_of(request), ctx.is_admin)


def require_version(v: Version, first: Version) -> None:
    if v < first:
        raise NotFound("The resource could not be found.")


def flag(request: Request, name: str, default: bool = False) -> bool:
    raw = request.query_params.get(name)
    return default if raw is None else parse_bool(name, raw)


COUNT_VERSION = (3, 45)  # `with_count=true` adds `count` to volume, snapshot, backup lists


def with_count(request: Request) -> bool:
    """Whether a listing adds `count`: the filtered total, whatever the limit and marker.
    Below 3.45 Cinder does not know the parameter, so it changes nothing."""
    return microversion_of(request) >= COUNT_VERSION and flag(request, "with_count")


# sort keys under their pre-v2 names, as Cinder still takes them
SORT_ALIASES = {"display_name": "name", "display_description": "description"}


def sort_of(request: Request) -> tuple[tuple[str, str], ...]:
    params = request.query_params
    pairs: list[tuple[str, str]] = []
    if "sort" in params:
        for item in params["sort"].split(","):
            key, _, direction = item.strip().partition(":")
            pairs.append((key, direction or "desc"))
    elif "sort_key" in params:
        pairs = [(params["sort_key"], params.get("sort_dir", "desc"))]
    else:
        pairs = [("created_at", params.get("sort_dir", "desc"))]
    pairs = [(SORT_ALIASES.get(key, key), direction) for key, direction in pairs]
    for key, direction in pairs:
        if key not in SORT_KEYS:
            raise BadRequest(f"Invalid input received: Invalid sort key {key[:64]!r}.")
        if direction not in ("asc", "desc"):
            raise BadRequest(f"Invalid input received: Invalid sort dir {direction[:64]!r}.")
    return tuple(pairs)


def list_query(request: Request, snapshots: bool = False) -> VolumeQuery:
    params = request.query_params
    filters: dict[str, Any] = {}
    for name in ("name", "status", "project_id", *(("volume_id",) if snapshots else ())):
        if params.get(name):
            filters[name] = params[name]
    if "display_name" in params:
        filters["name"] = params["display_name"]
    if "bootable" in params and not snapshots:
        filters["bootable"] = parse_bool("bootable", params["bootable"])
    if params.get("metadata"):
        filters["metadata"] = schemas.metadata_filter(params["metadata"])
    return VolumeQuery(
        filters=filters,
        all_tenants=flag(request, "all_tenants") or bool(params.get("project_id")),
        sort=sort_of(request),
        limit=page_size(params.get("limit")),
        marker=params.get("marker") or None,
        offset=offset_of(params.get("offset")),
    )


def page_size(raw: str | None) -> int | None:
    """Cinder's `limit`: 0 is an empty page, not an error; a negative or non-integer is."""
    with contextlib.suppress(ValueError):
        if raw is not None and int(raw) == 0:
            return 0
    return parse_limit(raw)


def offset_of(raw: str | None) -> int:
    """Cinder's `offset`: how many matches a page skips (after the marker), 0 by default."""
    if raw is None or raw == "":
        return 0
    try:
        value = int(raw)
    except ValueError:
        raise BadRequest(
            f"Invalid input received: offset must be an integer, not {raw[:32]!r}."
        ) from None
    if not 0 <= value <= MAX_INT:
        raise BadRequest(f"Invalid input received: offset must be between 0 and {MAX_INT}.")
    return value


class Links:
    """Cinder's self/bookmark and next links under the API's public base URL."""

    def __init__(self, public_url: str) -> None:
        self.public_url = public_url

    def base(self, request: Request) -> str:
        return base_url(request, self.public_url, PREFIX)

    def of(self, request: Request, kind: str, item_id: str) -> list[dict[str, str]]:
        return [
            {"rel": "self", "href": f"{self.base(request)}/v3/{kind}/{item_id}"},
            {"rel": "bookmark", "href": f"{self.base(request)}/{kind}/{item_id}"},
        ]

    def next(self, request: Request, collection: str, last_id: str) -> list[dict[str, str]]:
        params = [(k, v) for k, v in request.query_params.multi_items() if k != "marker"]
        params.append(("marker", last_id))
        href = f"{self.base(request)}/v3/{collection}?{urlencode(params)}"
        return [{"rel": "next", "href": href}]


class MetadataOwner(Protocol):
    """Volumes and snapshots alike: user metadata read, merged or replaced, one key removed."""

    def metadata(self, ctx: RequestContext, owner_id: str, /) -> dict[str, str]: ...

    def set_metadata(
        self, ctx: RequestContext, owner_id: str, items: dict[str, str], replace: bool = False, /
    ) -> dict[str, str]: ...

    def delete_metadata_item(self, ctx: RequestContext, owner_id: str, key: str, /) -> None: ...


async def metadata_collection(
    request: Request, ctx: RequestContext, owner: MetadataOwner, kind: str
) -> Response:
    """GET, POST (merge) or PUT (replace) `/{kind}s/{id}/metadata`; `kind` names the audit
    event and resource (`volume`, `snapshot`)."""
    owner_id = request.path_params["id"]
    if request.method == "GET":
        return JSONResponse({"metadata": await asyncio.to_thread(owner.metadata, ctx, owner_id)})
    audit(request, _event(kind, "update"), kind, owner_id)
    items = schemas.metadata((await read_json(request)).get("metadata"))
    replace = request.method == "PUT"
    meta = await asyncio.to_thread(owner.set_metadata, ctx, owner_id, items, replace)
    return JSONResponse({"metadata": meta})


async def metadata_item(
    request: Request, ctx: RequestContext, owner: MetadataOwner, kind: str
) -> Response:
    """GET, PUT or DELETE `/{kind}s/{id}/metadata/{key}`."""
    owner_id, key = request.path_params["id"], request.path_params["key"]
    if request.method == "GET":
        meta = await asyncio.to_thread(owner.metadata, ctx, owner_id)
        if key not in meta:
            raise NotFound(f"Metadata item was not found: {key[:255]}")
        return JSONResponse({"meta": {key: meta[key]}})
    if request.method == "PUT":
        audit(request, _event(kind, "update"), kind, owner_id)
        item = schemas.meta_item(await read_json(request), key)
        await asyncio.to_thread(owner.set_metadata, ctx, owner_id, item)
        return JSONResponse({"meta": item})
    audit(request, _event(kind, "delete"), kind, owner_id)
    await asyncio.to_thread(owner.delete_metadata_item, ctx, owner_id, key)
    return Response(status_code=200)


def _event(kind: str, verb: str) -> str:
    """volume.metadata.update, volume.snapshot.metadata.delete, ..."""
    prefix = "volume" if kind == "volume" else f"volume.{kind}"
    return f"{prefix}.metadata.{verb}"
