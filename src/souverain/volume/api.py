"""Cinder v3 on the edge: routes naming their policy actions, bodies in, views out.

Every route answers both with a project id in the path (`/v3/{project_id}/volumes`,
the classic catalog style) and without (`/v3/volumes`, 3.67 style). A project id
that is not the token's is a 404 unless the caller is an admin: the edge's
`check`. This module holds no rules: tenancy, quotas and the status machine
live in the service's parts.

This module has the versions, volumes, limits, quotas, zones and messages; the other
collections have their own modules: api_snapshots, api_types (types, extra specs,
project access), api_qos, api_transfers and api_admin (extensions, hosts, pools, manage).
What each view shows at each microversion and to whom is the field table in `views`.
"""

from __future__ import annotations

import asyncio
import re
from typing import Any

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
from souverain.openstack.microversion import microversion_of, version_text
from souverain.openstack.query import parse_bool
from souverain.openstack.routing import Edge, EdgeRoute
from souverain.volume import schemas, views
from souverain.volume.api_admin import AdminApi
from souverain.volume.api_backups import BackupApi
from souverain.volume.api_common import (
    MAX_VERSION,
    MIN_VERSION,
    PROJECT_KEY,
    VERSIONS,
    Links,
    check_path_project,
    flag,
    list_query,
    metadata_collection,
    metadata_item,
    render_error,
    require_version,
    viewer,
    with_count,
)
from souverain.volume.api_encryption import EncryptionApi
from souverain.volume.api_qos import QosApi
from souverain.volume.api_snapshots import SnapshotApi
from souverain.volume.api_transfers import TransferApi
from souverain.volume.api_types import TypeApi
from souverain.volume.rules import MANAGE_REFUSED, NotImplementedFault, VolumeRecord
from souverain.volume.service import VolumeService

__all__ = ["build_app", "render_error"]

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
        "os-volume-type-access",
        "os-hosts",
        "scheduler-stats",
        "os-volume-manage",
        "os-snapshot-manage",
        "manageable_volumes",
        "manageable_snapshots",
        "qos-specs",
        "os-volume-transfer",
        "volume-transfers",
        "backups",
        "capabilities",
    }
)


# the steps Nova drives on Cinder; here the compute service drives them in-process
COMPUTE_ACTIONS = (
    "os-attach",
    "os-detach",
    "os-begin_detaching",
    "os-roll_detaching",
    "os-initialize_connection",
    "os-terminate_connection",
    "os-force_detach",
)
SUMMARY_VERSION = (3, 12)  # GET /volumes/summary
IMAGE_METADATA_ACTIONS = (
    "os-show_image_metadata",
    "os-set_image_metadata",
    "os-unset_image_metadata",
)


class VolumeApi:
    def __init__(self, service: VolumeService, public_url: str = "") -> None:
        self.service = service
        self.links = Links(public_url)
        self.snapshot_api = SnapshotApi(service, self.links)
        self.type_api = TypeApi(service)
        self.encryption_api = EncryptionApi(service.encryption_types)
        self.admin_api = AdminApi(service, self.links)
        self.qos_api = QosApi(service, self.links)
        self.transfer_api = TransferApi(service, self.links)
        self.backup_api = BackupApi(service, self.links)

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
            *self.snapshot_api.routes(edge),
            *self.type_api.routes(edge),
            *self.encryption_api.routes(edge),
            *self.admin_api.routes(edge),
            *self.qos_api.routes(edge),
            *self.transfer_api.routes(edge),
            *self.backup_api.routes(edge),
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
            r("/v3/volumes/summary", self.volume_summary, {"GET": "volume:volume:list"}),
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

    # -------------------------------------------------------------- versions

    def _version_doc(self, request: Request) -> dict[str, Any]:
        return {
            "id": "v3.0",
            "status": "CURRENT",
            "version": version_text(MAX_VERSION),
            "min_version": version_text(MIN_VERSION),
            "updated": "2022-08-31T00:00:00Z",
            "links": [{"rel": "self", "href": f"{self.links.base(request)}/v3/"}],
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
        # Cinder answers /v3/ with the same list as /, but 200 (its versions controller's index)
        return JSONResponse({"versions": [self._version_doc(request)]})

    # -------------------------------------------------------------- volumes

    def _volume_body(
        self, request: Request, ctx: RequestContext, record: VolumeRecord, read: bool = True
    ) -> dict[str, Any]:
        view = views.volume_view(record, viewer(request, ctx), read)
        return {**view, "links": self.links.of(request, "volumes", record.row.id)}

    async def _volume_list(self, request: Request, ctx: RequestContext, detail: bool) -> Response:
        query = list_query(request)
        page = await asyncio.to_thread(self.service.volumes.list_visible, ctx, query)
        records = page.items
        if detail:
            items = [self._volume_body(request, ctx, r) for r in records]
        else:
            items = [
                {
                    "id": r.row.id,
                    "name": r.row.name,
                    "links": self.links.of(request, "volumes", r.row.id),
                }
                for r in records
            ]
        body: dict[str, Any] = {"volumes": items}
        if records and (page.more or len(records) == query.limit):  # a full page links on
            body["volumes_links"] = self.links.next(
                request, "volumes/detail" if detail else "volumes", records[-1].row.id
            )
        if with_count(request):
            body["count"] = page.total
        return JSONResponse(body)

    async def volumes(self, request: Request, ctx: RequestContext) -> Response:
        if request.method == "GET":
            return await self._volume_list(request, ctx, detail=False)
        audit(request, "volume.create", "volume", None)
        req = schemas.volume_create(member(await read_json(request), "volume"))
        volume_id = await asyncio.to_thread(self.service.creation.create, ctx, req)
        audit(request, "volume.create", "volume", volume_id)
        record = await asyncio.to_thread(self.service.volumes.get, ctx, volume_id)
        return JSONResponse({"volume": self._volume_body(request, ctx, record, read=False)}, 202)

    async def volumes_detail(self, request: Request, ctx: RequestContext) -> Response:
        return await self._volume_list(request, ctx, detail=True)

    async def volume_summary(self, request: Request, ctx: RequestContext) -> Response:
        """3.12: how many volumes and GiB the caller's scope holds (every project's for an
        admin asking all_tenants), narrowed by the listing's filters."""
        require_version(microversion_of(request), SUMMARY_VERSION)
        query = list_query(request)
        summary = await asyncio.to_thread(self.service.volumes.summary, ctx, query)
        return JSONResponse(views.volume_summary_view(summary, viewer(request, ctx)))

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
            return JSONResponse({"volume": self._volume_body(request, ctx, record, read=False)})
        audit(request, "volume.delete", "volume", volume_id)
        cascade, force = flag(request, "cascade"), flag(request, "force")
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
        body = member(data, action) if data[action] is not None else {}
        if action == "os-extend":
            new_size = schemas.size("new_size", body.get("new_size"))
            await asyncio.to_thread(volumes.extend, ctx, volume_id, new_size)
        elif action == "os-set_bootable":
            bootable = schemas.flag("bootable", body.get("bootable"))
            await asyncio.to_thread(volumes.set_bootable, ctx, volume_id, bootable)
            return Response(status_code=200)
        elif action == "os-update_readonly_flag":
            readonly = schemas.flag("readonly", body.get("readonly"))
            await asyncio.to_thread(volumes.set_readonly, ctx, volume_id, readonly)
        elif action == "os-reset_status":
            reset = schemas.status_reset(body)
            await asyncio.to_thread(volumes.reset_status, ctx, volume_id, reset)
        elif action == "os-force_delete":
            await asyncio.to_thread(volumes.delete, ctx, volume_id, True, True)
        elif action == "os-volume_upload_image":
            req = schemas.upload_to_image(body)
            upload = await asyncio.to_thread(volumes.upload_to_image, ctx, volume_id, req)
            return JSONResponse({"os-volume_upload_image": views.upload_view(upload)}, 202)
        elif action == "os-retype":
            new_type = body.get("new_type")
            if not isinstance(new_type, str) or not new_type:
                raise BadRequest("Invalid input for field/attribute new_type: a type is required.")
            await asyncio.to_thread(self.service.types.retype, ctx, volume_id, new_type)
        elif action in ("os-reserve", "os-unreserve"):
            attachments = self.service.attachments
            change = (
                attachments.user_reserve if action == "os-reserve" else attachments.user_unreserve
            )
            await asyncio.to_thread(change, ctx, volume_id)
        elif action in COMPUTE_ACTIONS:
            await asyncio.to_thread(volumes.get, ctx, volume_id)
            raise BadRequest(
                f"Invalid input received: {action} is the compute service's step; attach and "
                "detach volumes through the compute API (server volume attachments)."
            )
        elif action in IMAGE_METADATA_ACTIONS:
            return await self._image_metadata(ctx, volume_id, action, body)
        elif action == "os-unmanage":
            await asyncio.to_thread(volumes.get, ctx, volume_id)
            raise NotImplementedFault(MANAGE_REFUSED.format(kind="volumes"))
        else:
            raise BadRequest(f"Invalid input received: unknown action {action[:64]!r}.")
        return Response(status_code=202)

    async def _image_metadata(
        self, ctx: RequestContext, volume_id: str, action: str, body: dict[str, Any]
    ) -> Response:
        """os-show_image_metadata, os-set_image_metadata (merged), os-unset_image_metadata."""
        volumes = self.service.volumes
        if action == "os-show_image_metadata":
            meta = await asyncio.to_thread(volumes.image_metadata, ctx, volume_id)
            return JSONResponse({"metadata": meta})
        if action == "os-set_image_metadata":
            items = schemas.metadata(body.get("metadata"))
            meta = await asyncio.to_thread(volumes.set_image_metadata, ctx, volume_id, items)
            return JSONResponse({"metadata": meta})
        key = body.get("key")
        if not isinstance(key, str) or not key:
            raise BadRequest("Invalid input for field/attribute key: a metadata key is required.")
        await asyncio.to_thread(volumes.unset_image_metadata, ctx, volume_id, key)
        return Response(status_code=200)

    async def volume_metadata(self, request: Request, ctx: RequestContext) -> Response:
        return await metadata_collection(request, ctx, self.service.volumes, "volume")

    async def volume_metadata_item(self, request: Request, ctx: RequestContext) -> Response:
        return await metadata_item(request, ctx, self.service.volumes, "volume")

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
        require_version(microversion_of(request), (3, 3))
        found = await asyncio.to_thread(self.service.volumes.messages, ctx)
        return JSONResponse({"messages": [views.message_view(msg) for msg in found]})

    async def message(self, request: Request, ctx: RequestContext) -> Response:
        require_version(microversion_of(request), (3, 3))
        found = await asyncio.to_thread(self.service.volumes.messages, ctx)
        for message in found:
            if message.resource_id == request.path_params["id"]:
                return JSONResponse({"message": views.message_view(message)})
        raise NotFound(f"Message {request.path_params['id'][:64]} could not be found.")


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
    # no redirect of `/v3/volumes/` to `/v3/volumes`: Cinder answers a path with an empty id 404
    router = Router(routes=api.routes(), redirect_slashes=False)
    return ErrorLayer(_StripProject(router), render_error)
