"""Cinder v3 on the edge: routes naming their policy actions, bodies in, views out.

Every route answers both with a project id in the path (`/v3/{project_id}/volumes`,
the classic catalog style) and without (`/v3/volumes`, 3.67 style). A project id
that is not the token's is a 404 unless the caller is an admin: the edge's
`check`. This module holds no rules: tenancy, quotas and the status machine
live in the service's parts.
"""

from __future__ import annotations

import asyncio
import json
import re
from typing import Any
from urllib.parse import urlencode

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Router
from starlette.types import ASGIApp, Receive, Scope, Send

from souverain.common.context import RequestContext
from souverain.common.errors import BadRequest, NotFound
from souverain.common.jsoncodec import JSONResponse
from souverain.openstack.auth import audit
from souverain.openstack.body import member, read_json
from souverain.openstack.faults import ErrorLayer
from souverain.openstack.links import base_url
from souverain.openstack.microversion import Microversions, Version, microversion_of, version_text
from souverain.openstack.query import parse_bool, parse_limit
from souverain.openstack.routing import Edge, EdgeRoute
from souverain.volume import models as m
from souverain.volume import schemas, views
from souverain.volume.rules import SORT_KEYS, VolumeQuery, VolumeRecord
from souverain.volume.service import VolumeService

PREFIX = "/volume"
MIN_VERSION = (3, 0)
MAX_VERSION = (3, 70)
VERSIONS = Microversions(("volume", "block-storage"), MIN_VERSION, MAX_VERSION)
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


def render_error(_path: str, status: int, title: str, message: str) -> tuple[bytes, str]:
    """Cinder's fault body: `{"itemNotFound": {"code": 404, "message": "..."}}`."""
    name = FAULT_NAMES.get(status, "computeFault")
    return json.dumps({name: {"code": status, "message": message}}).encode(), "application/json"


def check_path_project(request: Request, ctx: RequestContext) -> None:
    """A project id in the path must be the token's, unless the caller is an admin."""
    path_project = request.scope.get(PROJECT_KEY)
    if path_project and path_project != ctx.project_id and not ctx.is_admin:
        raise NotFound("The resource could not be found.")


def _flag(request: Request, name: str, default: bool = False) -> bool:
    raw = request.query_params.get(name)
    return default if raw is None else parse_bool(name, raw)


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
        filters["bootable"] = parse_bool("bootable", params["bootable"])
    if params.get("metadata"):
        filters["metadata"] = schemas.metadata_filter(params["metadata"])
    return VolumeQuery(
        filters=filters,
        all_tenants=_flag(request, "all_tenants") or bool(params.get("project_id")),
        sort=_sort_of(request),
        limit=parse_limit(params.get("limit")),
        marker=params.get("marker") or None,
    )


def _require_version(v: Version, first: Version) -> None:
    if v < first:
        raise NotFound("The resource could not be found.")


class VolumeApi:
    def __init__(self, service: VolumeService, public_url: str = "") -> None:
        self.service = service
        self.public_url = public_url

    def routes(self) -> list[EdgeRoute]:
        edge = Edge(self.service.identity, versions=VERSIONS, check=check_path_project)
        docs = Edge(self.service.identity)  # the version documents are not versioned
        r = edge.route
        version = {"GET": "volume:version:show"}
        return [
            docs.public("/", self.versions, version),
            docs.public("/v3", self.version, version),
            docs.public("/v3/", self.version, version),
            *self._volume_routes(edge),
            *self._snapshot_routes(edge),
            *self._type_routes(edge),
            r("/v3/limits", self.limits, {"GET": "volume:limits:show"}),
            r(
                "/v3/os-quota-sets/{project}",
                self.quota_set,
                {
                    "GET": "volume:quota:show",
                    "PUT": "volume:quota:update",
                    "DELETE": "volume:quota:delete",
                },
            ),
            r(
                "/v3/os-quota-sets/{project}/defaults",
                self.quota_defaults,
                {"GET": "volume:quota:show"},
            ),
            r("/v3/os-availability-zone", self.zones, {"GET": "volume:availability_zone:list"}),
            r("/v3/messages", self.messages, {"GET": "volume:message:list"}),
            r("/v3/messages/{id}", self.message, {"GET": "volume:message:show"}),
            r("/v3/extensions", self.extensions, {"GET": "volume:extension:list"}),
        ]

    def _volume_routes(self, edge: Edge) -> list[EdgeRoute]:
        r = edge.route
        meta = "volume:volume_metadata"
        return [
            r(
                "/v3/volumes",
                self.volumes,
                {"GET": "volume:volume:list", "POST": "volume:volume:create"},
            ),
            r("/v3/volumes/detail", self.volumes_detail, {"GET": "volume:volume:list"}),
            r(
                "/v3/volumes/{id}",
                self.volume,
                {
                    "GET": "volume:volume:show",
                    "PUT": "volume:volume:update",
                    "DELETE": "volume:volume:delete",
                },
            ),
            r("/v3/volumes/{id}/action", self.volume_action, {"POST": "volume:volume:action"}),
            r(
                "/v3/volumes/{id}/metadata",
                self.volume_metadata,
                {"GET": f"{meta}:list", "POST": f"{meta}:update", "PUT": f"{meta}:update"},
            ),
            r(
                "/v3/volumes/{id}/metadata/{key}",
                self.volume_metadata_item,
                {"GET": f"{meta}:show", "PUT": f"{meta}:update", "DELETE": f"{meta}:delete"},
            ),
        ]

    def _snapshot_routes(self, edge: Edge) -> list[EdgeRoute]:
        r = edge.route
        meta = "volume:snapshot_metadata"
        return [
            r(
                "/v3/snapshots",
                self.snapshots,
                {"GET": "volume:snapshot:list", "POST": "volume:snapshot:create"},
            ),
            r("/v3/snapshots/detail", self.snapshots_detail, {"GET": "volume:snapshot:list"}),
            r(
                "/v3/snapshots/{id}",
                self.snapshot,
                {
                    "GET": "volume:snapshot:show",
                    "PUT": "volume:snapshot:update",
                    "DELETE": "volume:snapshot:delete",
                },
            ),
            r(
                "/v3/snapshots/{id}/action",
                self.snapshot_action,
                {"POST": "volume:snapshot:action"},
            ),
            r(
                "/v3/snapshots/{id}/metadata",
                self.snapshot_metadata,
                {"GET": f"{meta}:list", "POST": f"{meta}:update", "PUT": f"{meta}:update"},
            ),
            r(
                "/v3/snapshots/{id}/metadata/{key}",
                self.snapshot_metadata_item,
                {"GET": f"{meta}:show", "PUT": f"{meta}:update", "DELETE": f"{meta}:delete"},
            ),
        ]

    def _type_routes(self, edge: Edge) -> list[EdgeRoute]:
        r = edge.route
        specs = "volume:type_extra_spec"
        return [
            r(
                "/v3/types",
                self.types,
                {"GET": "volume:type:list", "POST": "volume:type:create"},
            ),
            r("/v3/types/default", self.default_type, {"GET": "volume:type:show"}),
            r(
                "/v3/types/{id}",
                self.type,
                {
                    "GET": "volume:type:show",
                    "PUT": "volume:type:update",
                    "DELETE": "volume:type:delete",
                },
            ),
            r(
                "/v3/types/{id}/extra_specs",
                self.extra_specs,
                {"GET": f"{specs}:list", "POST": f"{specs}:update"},
            ),
            r(
                "/v3/types/{id}/extra_specs/{key}",
                self.extra_spec,
                {"GET": f"{specs}:show", "PUT": f"{specs}:update", "DELETE": f"{specs}:delete"},
            ),
        ]

    # -------------------------------------------------------------- versions

    def base(self, request: Request) -> str:
        return base_url(request, self.public_url, PREFIX)

    def _version_doc(self, request: Request) -> dict[str, Any]:
        return {
            "id": "v3.0",
            "status": "CURRENT",
            "version": version_text(MAX_VERSION),
            "min_version": version_text(MIN_VERSION),
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

    # -------------------------------------------------------------- links

    def _links(self, request: Request, kind: str, item_id: str) -> list[dict[str, str]]:
        return [
            {"rel": "self", "href": f"{self.base(request)}/v3/{kind}/{item_id}"},
            {"rel": "bookmark", "href": f"{self.base(request)}/{kind}/{item_id}"},
        ]

    def _next_link(self, request: Request, collection: str, last_id: str) -> list[dict[str, str]]:
        params = [(k, v) for k, v in request.query_params.multi_items() if k != "marker"]
        params.append(("marker", last_id))
        href = f"{self.base(request)}/v3/{collection}?{urlencode(params)}"
        return [{"rel": "next", "href": href}]

    def _volume_body(
        self, request: Request, ctx: RequestContext, record: VolumeRecord
    ) -> dict[str, Any]:
        view = views.volume_view(record, ctx.is_admin)
        return {**view, "links": self._links(request, "volumes", record.row.id)}

    # -------------------------------------------------------------- volumes

    async def _volume_list(self, request: Request, ctx: RequestContext, detail: bool) -> Response:
        query = _list_query(request)
        records, more = await asyncio.to_thread(self.service.volumes.list_visible, ctx, query)
        if detail:
            items = [self._volume_body(request, ctx, r) for r in records]
        else:
            items = [
                {
                    "id": r.row.id,
                    "name": r.row.name,
                    "links": self._links(request, "volumes", r.row.id),
                }
                for r in records
            ]
        body: dict[str, Any] = {"volumes": items}
        if more and records:
            body["volumes_links"] = self._next_link(
                request, "volumes/detail" if detail else "volumes", records[-1].row.id
            )
        return JSONResponse(body)

    async def volumes(self, request: Request, ctx: RequestContext) -> Response:
        if request.method == "GET":
            return await self._volume_list(request, ctx, detail=False)
        audit(request, "volume.create", "volume", None)
        req = schemas.volume_create(member(await read_json(request), "volume"))
        volume_id = await asyncio.to_thread(self.service.creation.create, ctx, req)
        audit(request, "volume.create", "volume", volume_id)
        record = await asyncio.to_thread(self.service.volumes.get, ctx, volume_id)
        return JSONResponse({"volume": self._volume_body(request, ctx, record)}, 202)

    async def volumes_detail(self, request: Request, ctx: RequestContext) -> Response:
        return await self._volume_list(request, ctx, detail=True)

    async def volume(self, request: Request, ctx: RequestContext) -> Response:
        volume_id = request.path_params["id"]
        volumes = self.service.volumes
        if request.method == "GET":
            record = await asyncio.to_thread(volumes.get, ctx, volume_id)
            return JSONResponse({"volume": self._volume_body(request, ctx, record)})
        if request.method == "PUT":
            audit(request, "volume.update", "volume", volume_id)
            req = schemas.described(member(await read_json(request), "volume"))
            record = await asyncio.to_thread(volumes.update, ctx, volume_id, req)
            return JSONResponse({"volume": self._volume_body(request, ctx, record)})
        audit(request, "volume.delete", "volume", volume_id)
        cascade, force = _flag(request, "cascade"), _flag(request, "force")
        await asyncio.to_thread(volumes.delete, ctx, volume_id, cascade, force)
        return Response(status_code=202)

    async def volume_action(self, request: Request, ctx: RequestContext) -> Response:
        volume_id = request.path_params["id"]
        data = await read_json(request)
        if len(data) != 1:
            raise BadRequest("Invalid input received: exactly one action per request.")
        action = next(iter(data))
        audit(request, f"volume.action.{action[:32]}", "volume", volume_id)
        volumes = self.service.volumes
        if action == "os-extend":
            new_size = schemas.size("new_size", member(data, action).get("new_size"))
            await asyncio.to_thread(volumes.extend, ctx, volume_id, new_size)
        elif action == "os-set_bootable":
            flag = schemas.flag("bootable", member(data, action).get("bootable"))
            await asyncio.to_thread(volumes.set_bootable, ctx, volume_id, flag)
        elif action == "os-update_readonly_flag":
            flag = schemas.flag("readonly", member(data, action).get("readonly"))
            await asyncio.to_thread(volumes.set_readonly, ctx, volume_id, flag)
        elif action == "os-reset_status":
            reset = schemas.status_reset(member(data, action))
            await asyncio.to_thread(volumes.reset_status, ctx, volume_id, reset)
        elif action == "os-force_delete":
            await asyncio.to_thread(volumes.delete, ctx, volume_id, True, True)
        elif action == "os-volume_upload_image":
            req = schemas.upload_to_image(member(data, action))
            upload = await asyncio.to_thread(volumes.upload_to_image, ctx, volume_id, req)
            return JSONResponse({"os-volume_upload_image": views.upload_view(upload)}, 202)
        else:
            raise BadRequest(f"Invalid input received: unknown action {action[:64]!r}.")
        return Response(status_code=202)

    async def volume_metadata(self, request: Request, ctx: RequestContext) -> Response:
        volume_id = request.path_params["id"]
        volumes = self.service.volumes
        if request.method == "GET":
            meta = await asyncio.to_thread(volumes.metadata, ctx, volume_id)
            return JSONResponse({"metadata": meta})
        audit(request, "volume.metadata.update", "volume", volume_id)
        items = schemas.metadata((await read_json(request)).get("metadata"))
        replace = request.method == "PUT"
        meta = await asyncio.to_thread(volumes.set_metadata, ctx, volume_id, items, replace)
        return JSONResponse({"metadata": meta})

    async def volume_metadata_item(self, request: Request, ctx: RequestContext) -> Response:
        volume_id, key = request.path_params["id"], request.path_params["key"]
        volumes = self.service.volumes
        if request.method == "GET":
            meta = await asyncio.to_thread(volumes.metadata, ctx, volume_id)
            if key not in meta:
                raise NotFound(f"Metadata item was not found: {key[:255]}")
            return JSONResponse({"meta": {key: meta[key]}})
        if request.method == "PUT":
            audit(request, "volume.metadata.update", "volume", volume_id)
            item = schemas.meta_item(await read_json(request), key)
            await asyncio.to_thread(volumes.set_metadata, ctx, volume_id, item)
            return JSONResponse({"meta": item})
        audit(request, "volume.metadata.delete", "volume", volume_id)
        await asyncio.to_thread(volumes.delete_metadata_item, ctx, volume_id, key)
        return Response(status_code=200)

    # -------------------------------------------------------------- snapshots

    def _snapshot_body(self, request: Request, row: m.Snapshot, detail: bool = True) -> Any:
        view = views.snapshot_view(row, detail)
        return {**view, "links": self._links(request, "snapshots", row.id)}

    async def _snapshot_list(self, request: Request, ctx: RequestContext, detail: bool) -> Response:
        query = _list_query(request, snapshots=True)
        rows, more = await asyncio.to_thread(self.service.snapshots.list_visible, ctx, query)
        items = [self._snapshot_body(request, r, detail) for r in rows]
        body: dict[str, Any] = {"snapshots": items}
        if more and rows:
            body["snapshots_links"] = self._next_link(
                request, "snapshots/detail" if detail else "snapshots", rows[-1].id
            )
        return JSONResponse(body)

    async def snapshots(self, request: Request, ctx: RequestContext) -> Response:
        if request.method == "GET":
            return await self._snapshot_list(request, ctx, detail=False)
        audit(request, "volume.snapshot.create", "snapshot", None)
        req = schemas.snapshot_create(member(await read_json(request), "snapshot"))
        row = await asyncio.to_thread(self.service.snapshots.create, ctx, req)
        audit(request, "volume.snapshot.create", "snapshot", row.id)
        return JSONResponse({"snapshot": self._snapshot_body(request, row)}, 202)

    async def snapshots_detail(self, request: Request, ctx: RequestContext) -> Response:
        return await self._snapshot_list(request, ctx, detail=True)

    async def snapshot(self, request: Request, ctx: RequestContext) -> Response:
        snapshot_id = request.path_params["id"]
        snapshots = self.service.snapshots
        if request.method == "GET":
            row = await asyncio.to_thread(snapshots.get, ctx, snapshot_id)
            return JSONResponse({"snapshot": self._snapshot_body(request, row)})
        if request.method == "PUT":
            audit(request, "volume.snapshot.update", "snapshot", snapshot_id)
            req = schemas.described(member(await read_json(request), "snapshot"))
            row = await asyncio.to_thread(snapshots.update, ctx, snapshot_id, req)
            return JSONResponse({"snapshot": self._snapshot_body(request, row)})
        audit(request, "volume.snapshot.delete", "snapshot", snapshot_id)
        await asyncio.to_thread(snapshots.delete, ctx, snapshot_id)
        return Response(status_code=202)

    async def snapshot_action(self, request: Request, ctx: RequestContext) -> Response:
        snapshot_id = request.path_params["id"]
        data = await read_json(request)
        action = next(iter(data), "")
        audit(request, f"volume.snapshot.action.{action[:32]}", "snapshot", snapshot_id)
        snapshots = self.service.snapshots
        if action == "os-reset_status":
            status = schemas.snapshot_status(member(data, action).get("status"))
            await asyncio.to_thread(snapshots.reset_status, ctx, snapshot_id, status)
        elif action == "os-force_delete":
            await asyncio.to_thread(snapshots.delete, ctx, snapshot_id, True)
        else:
            raise BadRequest(f"Invalid input received: unknown action {action[:64]!r}.")
        return Response(status_code=202)

    async def snapshot_metadata(self, request: Request, ctx: RequestContext) -> Response:
        snapshot_id = request.path_params["id"]
        snapshots = self.service.snapshots
        if request.method == "GET":
            meta = await asyncio.to_thread(snapshots.metadata, ctx, snapshot_id)
            return JSONResponse({"metadata": meta})
        audit(request, "volume.snapshot.metadata.update", "snapshot", snapshot_id)
        items = schemas.metadata((await read_json(request)).get("metadata"))
        replace = request.method == "PUT"
        meta = await asyncio.to_thread(snapshots.set_metadata, ctx, snapshot_id, items, replace)
        return JSONResponse({"metadata": meta})

    async def snapshot_metadata_item(self, request: Request, ctx: RequestContext) -> Response:
        snapshot_id, key = request.path_params["id"], request.path_params["key"]
        snapshots = self.service.snapshots
        if request.method == "GET":
            meta = await asyncio.to_thread(snapshots.metadata, ctx, snapshot_id)
            if key not in meta:
                raise NotFound(f"Metadata item was not found: {key[:255]}")
            return JSONResponse({"meta": {key: meta[key]}})
        if request.method == "PUT":
            audit(request, "volume.snapshot.metadata.update", "snapshot", snapshot_id)
            item = schemas.meta_item(await read_json(request), key)
            await asyncio.to_thread(snapshots.set_metadata, ctx, snapshot_id, item)
            return JSONResponse({"meta": item})
        audit(request, "volume.snapshot.metadata.delete", "snapshot", snapshot_id)
        await asyncio.to_thread(snapshots.delete_metadata_item, ctx, snapshot_id, key)
        return Response(status_code=200)

    # -------------------------------------------------------------- types

    async def types(self, request: Request, ctx: RequestContext) -> Response:
        types = self.service.types
        if request.method == "GET":
            rows = await asyncio.to_thread(types.list_visible, ctx)
            return JSONResponse({"volume_types": [views.type_view(t) for t in rows]})
        audit(request, "volume.type.create", "volume_type", None)
        req = schemas.type_create(member(await read_json(request), "volume_type"))
        row = await asyncio.to_thread(types.create, ctx, req)
        audit(request, "volume.type.create", "volume_type", row.id)
        return JSONResponse({"volume_type": views.type_view(row)})

    async def default_type(self, request: Request, ctx: RequestContext) -> Response:
        row = await asyncio.to_thread(self.service.types.get, ctx, "default")
        return JSONResponse({"volume_type": views.type_view(row)})

    async def type(self, request: Request, ctx: RequestContext) -> Response:
        type_id = request.path_params["id"]
        types = self.service.types
        if request.method == "GET":
            row = await asyncio.to_thread(types.get, ctx, type_id)
            return JSONResponse({"volume_type": views.type_view(row)})
        if request.method == "PUT":
            audit(request, "volume.type.update", "volume_type", type_id)
            req = schemas.type_update(member(await read_json(request), "volume_type"))
            row = await asyncio.to_thread(types.update, ctx, type_id, req)
            return JSONResponse({"volume_type": views.type_view(row)})
        audit(request, "volume.type.delete", "volume_type", type_id)
        await asyncio.to_thread(types.delete, ctx, type_id)
        return Response(status_code=202)

    async def extra_specs(self, request: Request, ctx: RequestContext) -> Response:
        type_id = request.path_params["id"]
        types = self.service.types
        if request.method == "GET":
            specs = await asyncio.to_thread(types.extra_specs, ctx, type_id)
            return JSONResponse({"extra_specs": specs})
        audit(request, "volume.type.extra_specs.update", "volume_type", type_id)
        data = await read_json(request)
        items = schemas.metadata(data.get("extra_specs"), "extra_specs")
        specs = await asyncio.to_thread(types.set_extra_specs, ctx, type_id, items)
        return JSONResponse({"extra_specs": specs})

    async def extra_spec(self, request: Request, ctx: RequestContext) -> Response:
        type_id, key = request.path_params["id"], request.path_params["key"]
        types = self.service.types
        if request.method == "GET":
            specs = await asyncio.to_thread(types.extra_specs, ctx, type_id)
            if key not in specs:
                raise NotFound(f"Volume Type {type_id} has no extra specs with key {key[:255]}.")
            return JSONResponse({key: specs[key]})
        if request.method == "PUT":
            audit(request, "volume.type.extra_specs.update", "volume_type", type_id)
            items = schemas.metadata(await read_json(request), "extra_specs")
            specs = await asyncio.to_thread(types.set_extra_specs, ctx, type_id, items, key)
            return JSONResponse(specs)
        audit(request, "volume.type.extra_specs.delete", "volume_type", type_id)
        await asyncio.to_thread(types.delete_extra_spec, ctx, type_id, key)
        return Response(status_code=202)

    # -------------------------------------------------------------- quotas, limits, zones

    async def limits(self, request: Request, ctx: RequestContext) -> Response:
        quota = await asyncio.to_thread(self.service.quotas.usage, ctx)
        absolute = views.absolute_limits_view(quota)
        return JSONResponse({"limits": {"rate": [], "absolute": absolute}})

    async def quota_set(self, request: Request, ctx: RequestContext) -> Response:
        project_id = request.path_params["project"]
        quotas = self.service.quotas
        if request.method == "GET":
            usage = parse_bool("usage", request.query_params.get("usage", "false"))
            quota = await asyncio.to_thread(quotas.show, ctx, project_id, usage)
            return JSONResponse({"quota_set": views.quota_set_view(quota)})
        if request.method == "DELETE":
            audit(request, "volume.quota.delete", "project", project_id)
            await asyncio.to_thread(quotas.reset, ctx, project_id)
            return Response(status_code=200)
        audit(request, "volume.quota.update", "project", project_id)
        body = member(await read_json(request), "quota_set")
        quota = await asyncio.to_thread(quotas.update, ctx, project_id, schemas.quota_update(body))
        return JSONResponse({"quota_set": views.quota_set_view(quota)})

    async def quota_defaults(self, request: Request, ctx: RequestContext) -> Response:
        quota = self.service.quotas.show_defaults(request.path_params["project"])
        return JSONResponse({"quota_set": views.quota_set_view(quota)})

    async def zones(self, request: Request, ctx: RequestContext) -> Response:
        zone = {"zoneName": "nova", "zoneState": {"available": True}}
        return JSONResponse({"availabilityZoneInfo": [zone]})

    async def messages(self, request: Request, ctx: RequestContext) -> Response:
        _require_version(microversion_of(request), (3, 3))
        found = await asyncio.to_thread(self.service.volumes.messages, ctx)
        return JSONResponse({"messages": [views.message_view(msg) for msg in found]})

    async def message(self, request: Request, ctx: RequestContext) -> Response:
        _require_version(microversion_of(request), (3, 3))
        found = await asyncio.to_thread(self.service.volumes.messages, ctx)
        for message in found:
            if message.resource_id == request.path_params["id"]:
                return JSONResponse({"message": views.message_view(message)})
        raise NotFound(f"Message {request.path_params['id'][:64]} could not be found.")

    async def extensions(self, request: Request, ctx: RequestContext) -> Response:
        return JSONResponse({"extensions": []})


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
