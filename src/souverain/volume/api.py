"""Cinder v3 wire format: version discovery, microversions, routes, request and response shapes.

Every route answers both with a project id in the path (`/v3/{project_id}/volumes`,
the classic catalog style) and without (`/v3/volumes`, 3.67 style). A project id
that is not the token's is a 404 unless the caller is an admin. This module holds
no rules: tenancy, quotas and the status machine live in `VolumeService`.
"""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import Awaitable, Callable
from typing import Any
from urllib.parse import urlencode

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route, Router
from starlette.types import ASGIApp, Receive, Scope, Send

from souverain.common.context import RequestContext
from souverain.common.errors import ApiError, BadRequest, NotFound
from souverain.common.jsoncodec import JSONResponse
from souverain.openstack.auth import audit, authenticate
from souverain.openstack.body import member, read_json
from souverain.openstack.faults import ErrorLayer
from souverain.openstack.links import base_url
from souverain.openstack.query import parse_limit
from souverain.volume.service import (
    SORT_KEYS,
    VolumeQuery,
    VolumeService,
    parse_metadata_filter,
)

PREFIX = "/volume"
MIN_VERSION = (3, 0)
MAX_VERSION = (3, 70)
PROJECT_KEY = "souverain.volume.path_project"
# the first segment after /v3/ that names a collection, not a project id
COLLECTIONS = frozenset(
    {
        "volumes",
        "types",
        "snapshots",
        "limits",
        "os-quota-sets",
        "os-availability-zone",
        "messages",
        "extensions",
    }
)
FAULT_NAMES = {
    400: "badRequest",
    401: "unauthorized",
    403: "forbidden",
    404: "itemNotFound",
    405: "badMethod",
    409: "conflictingRequest",
    413: "overLimit",
    415: "badMediaType",
    406: "computeFault",
}

Handler = Callable[[Request, RequestContext, tuple[int, int]], Awaitable[Response]]


class NotAcceptable(ApiError):
    status = 406
    title = "Not Acceptable"


def render_error(_path: str, status: int, title: str, message: str) -> tuple[bytes, str]:
    """Cinder's fault body: `{"itemNotFound": {"code": 404, "message": "..."}}`."""
    name = FAULT_NAMES.get(status, "computeFault")
    return json.dumps({name: {"code": status, "message": message}}).encode(), "application/json"


def _version_text(v: tuple[int, int]) -> str:
    return f"{v[0]}.{v[1]}"


def negotiate(request: Request) -> tuple[int, int]:
    """The microversion asked for in `OpenStack-API-Version: volume 3.x` (3.0 if none)."""
    raw = None
    for header in request.headers.getlist("openstack-api-version"):
        for item in header.split(","):
            parts = item.strip().split()
            if len(parts) == 2 and parts[0].lower() in ("volume", "block-storage"):
                raw = parts[1]
    if raw is None:
        return MIN_VERSION
    if raw.lower() == "latest":
        return MAX_VERSION
    match = re.fullmatch(r"(\d+)\.(\d+)", raw)
    if not match:
        raise BadRequest(
            f"API Version String {raw[:32]} is of invalid format. Must be of format "
            "MajorNum.MinorNum."
        )
    version = (int(match[1]), int(match[2]))
    if not MIN_VERSION <= version <= MAX_VERSION:
        raise NotAcceptable(
            f"Version {raw} is not supported by the API. Minimum is "
            f"{_version_text(MIN_VERSION)} and maximum is {_version_text(MAX_VERSION)}."
        )
    return version


def _bool_param(name: str, raw: str) -> bool:
    lowered = raw.lower()
    if lowered in ("true", "1", "yes", "t", "on"):
        return True
    if lowered in ("false", "0", "no", "f", "off"):
        return False
    raise BadRequest(f"Invalid input received: {name} {raw[:32]!r} is not a boolean.")


def _sort_of(request: Request) -> tuple[tuple[str, str], ...]:
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
    for key, direction in pairs:
        if key not in SORT_KEYS:
            raise BadRequest(f"Invalid input received: Invalid sort key {key[:64]!r}.")
        if direction not in ("asc", "desc"):
            raise BadRequest(f"Invalid input received: Invalid sort dir {direction[:64]!r}.")
    return tuple(pairs)


def _list_query(request: Request, snapshots: bool = False) -> VolumeQuery:
    params = request.query_params
    filters: dict[str, Any] = {}
    for name in ("name", "status", "project_id", *(("volume_id",) if snapshots else ())):
        if params.get(name):
            filters[name] = params[name]
    if "display_name" in params:
        filters["name"] = params["display_name"]
    if "bootable" in params and not snapshots:
        filters["bootable"] = _bool_param("bootable", params["bootable"])
    if params.get("metadata"):
        filters["metadata"] = parse_metadata_filter(params["metadata"])
    all_tenants = (
        _bool_param("all_tenants", params["all_tenants"]) if "all_tenants" in params else False
    )
    return VolumeQuery(
        filters=filters,
        all_tenants=all_tenants or bool(params.get("project_id")),
        sort=_sort_of(request),
        limit=parse_limit(params.get("limit")),
        marker=params.get("marker") or None,
    )


def _body(data: dict[str, Any], key: str) -> dict[str, Any]:
    return member(data, key)


class VolumeApi:
    def __init__(self, service: VolumeService, public_url: str = "") -> None:
        self.service = service
        self.public_url = public_url

    # -------------------------------------------------------------- plumbing

    def base(self, request: Request) -> str:
        return base_url(request, self.public_url, PREFIX)

    def _call(self, handler: Handler) -> Callable[[Request], Awaitable[Response]]:
        async def endpoint(request: Request) -> Response:
            version = negotiate(request)
            headers = {
                "OpenStack-API-Version": f"volume {_version_text(version)}",
                "Vary": "OpenStack-API-Version",
            }
            try:
                ctx = authenticate(self.service.identity, request)
                path_project = request.scope.get(PROJECT_KEY)
                if path_project and path_project != ctx.project_id and not ctx.is_admin:
                    raise NotFound("The resource could not be found.")
                response = await handler(request, ctx, version)
            except ApiError as exc:
                exc.headers.update(headers)
                raise
            response.headers.update(headers)
            return response

        return endpoint

    def routes(self) -> list[Route]:
        c = self._call
        return [
            Route("/", self.versions, methods=["GET"]),
            Route("/v3", self.version, methods=["GET"]),
            Route("/v3/", self.version, methods=["GET"]),
            Route("/v3/volumes", c(self.volumes), methods=["GET", "POST"]),
            Route("/v3/volumes/detail", c(self.volumes_detail), methods=["GET"]),
            Route("/v3/volumes/{id}", c(self.volume), methods=["GET", "PUT", "DELETE"]),
            Route("/v3/volumes/{id}/action", c(self.volume_action), methods=["POST"]),
            Route(
                "/v3/volumes/{id}/metadata", c(self.volume_metadata), methods=["GET", "POST", "PUT"]
            ),
            Route(
                "/v3/volumes/{id}/metadata/{key}",
                c(self.volume_metadata_item),
                methods=["GET", "PUT", "DELETE"],
            ),
            Route("/v3/snapshots", c(self.snapshots), methods=["GET", "POST"]),
            Route("/v3/snapshots/detail", c(self.snapshots_detail), methods=["GET"]),
            Route("/v3/snapshots/{id}", c(self.snapshot), methods=["GET", "PUT", "DELETE"]),
            Route("/v3/snapshots/{id}/action", c(self.snapshot_action), methods=["POST"]),
            Route(
                "/v3/snapshots/{id}/metadata",
                c(self.snapshot_metadata),
                methods=["GET", "POST", "PUT"],
            ),
            Route(
                "/v3/snapshots/{id}/metadata/{key}",
                c(self.snapshot_metadata_item),
                methods=["GET", "PUT", "DELETE"],
            ),
            Route("/v3/types", c(self.types), methods=["GET", "POST"]),
            Route("/v3/types/default", c(self.default_type), methods=["GET"]),
            Route("/v3/types/{id}", c(self.type), methods=["GET", "PUT", "DELETE"]),
            Route("/v3/types/{id}/extra_specs", c(self.extra_specs), methods=["GET", "POST"]),
            Route(
                "/v3/types/{id}/extra_specs/{key}",
                c(self.extra_spec),
                methods=["GET", "PUT", "DELETE"],
            ),
            Route("/v3/limits", c(self.limits), methods=["GET"]),
            Route(
                "/v3/os-quota-sets/{project}",
                c(self.quota_set),
                methods=["GET", "PUT", "DELETE"],
            ),
            Route("/v3/os-quota-sets/{project}/defaults", c(self.quota_defaults), methods=["GET"]),
            Route("/v3/os-availability-zone", c(self.zones), methods=["GET"]),
            Route("/v3/messages", c(self.messages), methods=["GET"]),
            Route("/v3/messages/{id}", c(self.message), methods=["GET"]),
            Route("/v3/extensions", c(self.extensions), methods=["GET"]),
        ]

    # -------------------------------------------------------------- versions

    def _version_doc(self, request: Request) -> dict[str, Any]:
        return {
            "id": "v3.0",
            "status": "CURRENT",
            "version": _version_text(MAX_VERSION),
            "min_version": _version_text(MIN_VERSION),
            "updated": "2022-08-31T00:00:00Z",
            "links": [{"rel": "self", "href": f"{self.base(request)}/v3/"}],
            "media-types": [
                {
                    "base": "application/json",
                    "type": "application/vnd.openstack.volume+json;version=3",
                }
            ],
        }

    async def versions(self, request: Request) -> Response:
        return JSONResponse({"versions": [self._version_doc(request)]}, 300)

    async def version(self, request: Request) -> Response:
        return JSONResponse({"version": self._version_doc(request)})

    # -------------------------------------------------------------- volumes

    def _v3(self, request: Request) -> str:
        return f"{self.base(request)}/v3"

    def _links(self, request: Request, kind: str, item_id: str) -> list[dict[str, str]]:
        return [
            {"rel": "self", "href": f"{self._v3(request)}/{kind}/{item_id}"},
            {"rel": "bookmark", "href": f"{self.base(request)}/{kind}/{item_id}"},
        ]

    def _volume_body(self, request: Request, view: dict[str, Any]) -> dict[str, Any]:
        return {**view, "links": self._links(request, "volumes", view["id"])}

    def _next_link(self, request: Request, collection: str, last_id: str) -> list[dict[str, str]]:
        params = [(k, v) for k, v in request.query_params.multi_items() if k != "marker"]
        params.append(("marker", last_id))
        href = f"{self._v3(request)}/{collection}?{urlencode(params)}"
        return [{"rel": "next", "href": href}]

    async def _volume_list(self, request: Request, ctx: RequestContext, detail: bool) -> Response:
        query = _list_query(request)
        views, more = await asyncio.to_thread(self.service.list_volumes, ctx, query)
        if detail:
            items = [self._volume_body(request, v) for v in views]
        else:
            items = [
                {
                    "id": v["id"],
                    "name": v["name"],
                    "links": self._links(request, "volumes", v["id"]),
                }
                for v in views
            ]
        body: dict[str, Any] = {"volumes": items}
        if more and views:
            body["volumes_links"] = self._next_link(
                request, "volumes/detail" if detail else "volumes", views[-1]["id"]
            )
        return JSONResponse(body)

    async def volumes(self, request: Request, ctx: RequestContext, v: tuple[int, int]) -> Response:
        if request.method == "GET":
            return await self._volume_list(request, ctx, detail=False)
        audit(request, "volume.create", "volume", None)
        data = await read_json(request)
        body = _body(data, "volume")
        view = await asyncio.to_thread(self.service.create_volume, ctx, body)
        audit(request, "volume.create", "volume", view["id"])
        return JSONResponse({"volume": self._volume_body(request, view)}, 202)

    async def volumes_detail(
        self, request: Request, ctx: RequestContext, v: tuple[int, int]
    ) -> Response:
        return await self._volume_list(request, ctx, detail=True)

    async def volume(self, request: Request, ctx: RequestContext, v: tuple[int, int]) -> Response:
        volume_id = request.path_params["id"]
        if request.method == "GET":
            view = await asyncio.to_thread(self.service.get, ctx, volume_id)
            return JSONResponse({"volume": self._volume_body(request, view)})
        if request.method == "PUT":
            audit(request, "volume.update", "volume", volume_id)
            body = _body(await read_json(request), "volume")
            view = await asyncio.to_thread(self.service.update_volume, ctx, volume_id, body)
            return JSONResponse({"volume": self._volume_body(request, view)})
        audit(request, "volume.delete", "volume", volume_id)
        params = request.query_params
        cascade = _bool_param("cascade", params["cascade"]) if "cascade" in params else False
        force = _bool_param("force", params["force"]) if "force" in params else False
        await asyncio.to_thread(self.service.delete_volume, ctx, volume_id, cascade, force)
        return Response(status_code=202)

    async def volume_action(
        self, request: Request, ctx: RequestContext, v: tuple[int, int]
    ) -> Response:
        volume_id = request.path_params["id"]
        data = await read_json(request)
        if len(data) != 1:
            raise BadRequest("Invalid input received: exactly one action per request.")
        action = next(iter(data))
        audit(request, f"volume.action.{action[:32]}", "volume", volume_id)
        s = self.service
        if action == "os-extend":
            new_size = _body(data, action).get("new_size")
            await asyncio.to_thread(s.extend, ctx, volume_id, new_size)
        elif action == "os-set_bootable":
            await asyncio.to_thread(
                s.set_bootable, ctx, volume_id, _body(data, action).get("bootable")
            )
        elif action == "os-update_readonly_flag":
            await asyncio.to_thread(
                s.set_readonly, ctx, volume_id, _body(data, action).get("readonly")
            )
        elif action == "os-reset_status":
            await asyncio.to_thread(s.reset_status, ctx, volume_id, _body(data, action))
        elif action == "os-force_delete":
            await asyncio.to_thread(s.delete_volume, ctx, volume_id, True, True)
        elif action == "os-volume_upload_image":
            result = await asyncio.to_thread(s.upload_to_image, ctx, volume_id, _body(data, action))
            return JSONResponse({"os-volume_upload_image": result}, 202)
        else:
            raise BadRequest(f"Invalid input received: unknown action {action[:64]!r}.")
        return Response(status_code=202)

    async def volume_metadata(
        self, request: Request, ctx: RequestContext, v: tuple[int, int]
    ) -> Response:
        volume_id = request.path_params["id"]
        if request.method == "GET":
            meta = await asyncio.to_thread(self.service.metadata, ctx, volume_id)
            return JSONResponse({"metadata": meta})
        audit(request, "volume.metadata.update", "volume", volume_id)
        data = await read_json(request)
        meta = await asyncio.to_thread(
            self.service.set_metadata,
            ctx,
            volume_id,
            data.get("metadata"),
            request.method == "PUT",
        )
        return JSONResponse({"metadata": meta})

    async def volume_metadata_item(
        self, request: Request, ctx: RequestContext, v: tuple[int, int]
    ) -> Response:
        volume_id, key = request.path_params["id"], request.path_params["key"]
        if request.method == "GET":
            meta = await asyncio.to_thread(self.service.metadata, ctx, volume_id)
            if key not in meta:
                raise NotFound(f"Metadata item was not found: {key[:255]}")
            return JSONResponse({"meta": {key: meta[key]}})
        if request.method == "PUT":
            audit(request, "volume.metadata.update", "volume", volume_id)
            item = _meta_item(await read_json(request), key)
            await asyncio.to_thread(self.service.set_metadata, ctx, volume_id, item)
            return JSONResponse({"meta": item})
        audit(request, "volume.metadata.delete", "volume", volume_id)
        await asyncio.to_thread(self.service.delete_metadata_item, ctx, volume_id, key)
        return Response(status_code=200)

    # -------------------------------------------------------------- snapshots

    def _snapshot_body(self, request: Request, view: dict[str, Any]) -> dict[str, Any]:
        return {**view, "links": self._links(request, "snapshots", view["id"])}

    async def _snapshot_list(self, request: Request, ctx: RequestContext, detail: bool) -> Response:
        query = _list_query(request, snapshots=True)
        views, more = await asyncio.to_thread(self.service.list_snapshots, ctx, query)
        items = [self._snapshot_body(request, v) for v in views]
        if not detail:
            for item in items:
                item.pop("os-extended-snapshot-attributes:progress", None)
                item.pop("os-extended-snapshot-attributes:project_id", None)
        body: dict[str, Any] = {"snapshots": items}
        if more and views:
            body["snapshots_links"] = self._next_link(
                request, "snapshots/detail" if detail else "snapshots", views[-1]["id"]
            )
        return JSONResponse(body)

    async def snapshots(
        self, request: Request, ctx: RequestContext, v: tuple[int, int]
    ) -> Response:
        if request.method == "GET":
            return await self._snapshot_list(request, ctx, detail=False)
        audit(request, "volume.snapshot.create", "snapshot", None)
        body = _body(await read_json(request), "snapshot")
        view = await asyncio.to_thread(self.service.create_snapshot, ctx, body)
        audit(request, "volume.snapshot.create", "snapshot", view["id"])
        return JSONResponse({"snapshot": self._snapshot_body(request, view)}, 202)

    async def snapshots_detail(
        self, request: Request, ctx: RequestContext, v: tuple[int, int]
    ) -> Response:
        return await self._snapshot_list(request, ctx, detail=True)

    async def snapshot(self, request: Request, ctx: RequestContext, v: tuple[int, int]) -> Response:
        snapshot_id = request.path_params["id"]
        if request.method == "GET":
            view = await asyncio.to_thread(self.service.get_snapshot, ctx, snapshot_id)
            return JSONResponse({"snapshot": self._snapshot_body(request, view)})
        if request.method == "PUT":
            audit(request, "volume.snapshot.update", "snapshot", snapshot_id)
            body = _body(await read_json(request), "snapshot")
            view = await asyncio.to_thread(self.service.update_snapshot, ctx, snapshot_id, body)
            return JSONResponse({"snapshot": self._snapshot_body(request, view)})
        audit(request, "volume.snapshot.delete", "snapshot", snapshot_id)
        await asyncio.to_thread(self.service.delete_snapshot, ctx, snapshot_id)
        return Response(status_code=202)

    async def snapshot_action(
        self, request: Request, ctx: RequestContext, v: tuple[int, int]
    ) -> Response:
        snapshot_id = request.path_params["id"]
        data = await read_json(request)
        action = next(iter(data), "")
        audit(request, f"volume.snapshot.action.{action[:32]}", "snapshot", snapshot_id)
        if action == "os-reset_status":
            status = _body(data, action).get("status")
            await asyncio.to_thread(self.service.reset_snapshot_status, ctx, snapshot_id, status)
        elif action == "os-force_delete":
            await asyncio.to_thread(self.service.delete_snapshot, ctx, snapshot_id, True)
        else:
            raise BadRequest(f"Invalid input received: unknown action {action[:64]!r}.")
        return Response(status_code=202)

    async def snapshot_metadata(
        self, request: Request, ctx: RequestContext, v: tuple[int, int]
    ) -> Response:
        snapshot_id = request.path_params["id"]
        if request.method == "GET":
            meta = await asyncio.to_thread(self.service.snapshot_metadata, ctx, snapshot_id)
            return JSONResponse({"metadata": meta})
        audit(request, "volume.snapshot.metadata.update", "snapshot", snapshot_id)
        data = await read_json(request)
        meta = await asyncio.to_thread(
            self.service.set_snapshot_metadata,
            ctx,
            snapshot_id,
            data.get("metadata"),
            request.method == "PUT",
        )
        return JSONResponse({"metadata": meta})

    async def snapshot_metadata_item(
        self, request: Request, ctx: RequestContext, v: tuple[int, int]
    ) -> Response:
        snapshot_id, key = request.path_params["id"], request.path_params["key"]
        if request.method == "GET":
            meta = await asyncio.to_thread(self.service.snapshot_metadata, ctx, snapshot_id)
            if key not in meta:
                raise NotFound(f"Metadata item was not found: {key[:255]}")
            return JSONResponse({"meta": {key: meta[key]}})
        if request.method == "PUT":
            audit(request, "volume.snapshot.metadata.update", "snapshot", snapshot_id)
            item = _meta_item(await read_json(request), key)
            await asyncio.to_thread(self.service.set_snapshot_metadata, ctx, snapshot_id, item)
            return JSONResponse({"meta": item})
        audit(request, "volume.snapshot.metadata.delete", "snapshot", snapshot_id)
        await asyncio.to_thread(self.service.delete_snapshot_metadata_item, ctx, snapshot_id, key)
        return Response(status_code=200)

    # -------------------------------------------------------------- types

    async def types(self, request: Request, ctx: RequestContext, v: tuple[int, int]) -> Response:
        if request.method == "GET":
            rows = await asyncio.to_thread(self.service.list_types, ctx)
            return JSONResponse({"volume_types": rows})
        audit(request, "volume.type.create", "volume_type", None)
        body = _body(await read_json(request), "volume_type")
        view = await asyncio.to_thread(self.service.create_type, ctx, body)
        audit(request, "volume.type.create", "volume_type", view["id"])
        return JSONResponse({"volume_type": view})

    async def default_type(
        self, request: Request, ctx: RequestContext, v: tuple[int, int]
    ) -> Response:
        view = await asyncio.to_thread(self.service.get_type, ctx, "default")
        return JSONResponse({"volume_type": view})

    async def type(self, request: Request, ctx: RequestContext, v: tuple[int, int]) -> Response:
        type_id = request.path_params["id"]
        if request.method == "GET":
            view = await asyncio.to_thread(self.service.get_type, ctx, type_id)
            return JSONResponse({"volume_type": view})
        if request.method == "PUT":
            audit(request, "volume.type.update", "volume_type", type_id)
            body = _body(await read_json(request), "volume_type")
            view = await asyncio.to_thread(self.service.update_type, ctx, type_id, body)
            return JSONResponse({"volume_type": view})
        audit(request, "volume.type.delete", "volume_type", type_id)
        await asyncio.to_thread(self.service.delete_type, ctx, type_id)
        return Response(status_code=202)

    async def extra_specs(
        self, request: Request, ctx: RequestContext, v: tuple[int, int]
    ) -> Response:
        type_id = request.path_params["id"]
        if request.method == "GET":
            specs = await asyncio.to_thread(self.service.type_extra_specs, ctx, type_id)
            return JSONResponse({"extra_specs": specs})
        audit(request, "volume.type.extra_specs.update", "volume_type", type_id)
        data = await read_json(request)
        specs = await asyncio.to_thread(
            self.service.set_type_extra_specs, ctx, type_id, data.get("extra_specs")
        )
        return JSONResponse({"extra_specs": specs})

    async def extra_spec(
        self, request: Request, ctx: RequestContext, v: tuple[int, int]
    ) -> Response:
        type_id, key = request.path_params["id"], request.path_params["key"]
        if request.method == "GET":
            specs = await asyncio.to_thread(self.service.type_extra_specs, ctx, type_id)
            if key not in specs:
                raise NotFound(f"Volume Type {type_id} has no extra specs with key {key[:255]}.")
            return JSONResponse({key: specs[key]})
        if request.method == "PUT":
            audit(request, "volume.type.extra_specs.update", "volume_type", type_id)
            data = await read_json(request)
            specs = await asyncio.to_thread(
                self.service.set_type_extra_specs, ctx, type_id, data, key
            )
            return JSONResponse(specs)
        audit(request, "volume.type.extra_specs.delete", "volume_type", type_id)
        await asyncio.to_thread(self.service.delete_type_extra_spec, ctx, type_id, key)
        return Response(status_code=202)

    # -------------------------------------------------------------- quotas, limits, zones

    async def limits(self, request: Request, ctx: RequestContext, v: tuple[int, int]) -> Response:
        absolute = await asyncio.to_thread(self.service.limits, ctx)
        return JSONResponse({"limits": {"rate": [], "absolute": absolute}})

    async def quota_set(
        self, request: Request, ctx: RequestContext, v: tuple[int, int]
    ) -> Response:
        project_id = request.path_params["project"]
        if request.method == "GET":
            usage = request.query_params.get("usage", "false")
            body = await asyncio.to_thread(
                self.service.quota_set, ctx, project_id, _bool_param("usage", usage)
            )
            return JSONResponse({"quota_set": body})
        if request.method == "DELETE":
            audit(request, "volume.quota.delete", "project", project_id)
            await asyncio.to_thread(self.service.reset_quota, ctx, project_id)
            return Response(status_code=200)
        audit(request, "volume.quota.update", "project", project_id)
        changes = _body(await read_json(request), "quota_set")
        body = await asyncio.to_thread(self.service.update_quota, ctx, project_id, changes)
        return JSONResponse({"quota_set": body})

    async def quota_defaults(
        self, request: Request, ctx: RequestContext, v: tuple[int, int]
    ) -> Response:
        body = self.service.default_quota_set(request.path_params["project"])
        return JSONResponse({"quota_set": body})

    async def zones(self, request: Request, ctx: RequestContext, v: tuple[int, int]) -> Response:
        zone = {"zoneName": "nova", "zoneState": {"available": True}}
        return JSONResponse({"availabilityZoneInfo": [zone]})

    async def messages(self, request: Request, ctx: RequestContext, v: tuple[int, int]) -> Response:
        _require_version(v, (3, 3))
        rows = await asyncio.to_thread(self.service.messages, ctx)
        return JSONResponse({"messages": rows})

    async def message(self, request: Request, ctx: RequestContext, v: tuple[int, int]) -> Response:
        _require_version(v, (3, 3))
        rows = await asyncio.to_thread(self.service.messages, ctx)
        for row in rows:
            if row["id"] == request.path_params["id"]:
                return JSONResponse({"message": row})
        raise NotFound(f"Message {request.path_params['id'][:64]} could not be found.")

    async def extensions(
        self, request: Request, ctx: RequestContext, v: tuple[int, int]
    ) -> Response:
        return JSONResponse({"extensions": []})


def _require_version(v: tuple[int, int], first: tuple[int, int]) -> None:
    if v < first:
        raise NotFound("The resource could not be found.")


def _meta_item(data: dict[str, Any], key: str) -> dict[str, str]:
    item = member(data, "meta")
    if list(item) != [key]:
        raise BadRequest("Request body and URI mismatch.")
    if not isinstance(item[key], str) or len(item[key]) > 255:
        raise BadRequest("Invalid input for field/attribute meta: a string of at most 255.")
    return {key: item[key]}


class _StripProject:
    """`/v3/{project_id}/volumes` is `/v3/volumes`, the project id kept aside for the check."""

    PROJECT = re.compile(r"^/v3/([^/]+)(?=/|$)")

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            root = scope.get("root_path", "")
            path = scope["path"][len(root) :] if scope["path"].startswith(root) else scope["path"]
            match = self.PROJECT.match(path)
            if match and match[1] not in COLLECTIONS:
                scope = dict(scope)
                scope[PROJECT_KEY] = match[1]
                scope["path"] = root + "/v3" + path[match.end() :]
        await self.app(scope, receive, send)


def build_app(service: VolumeService, public_url: str = "") -> ASGIApp:
    api = VolumeApi(service, public_url)
    return ErrorLayer(_StripProject(Router(routes=api.routes())), render_error)
