"""The cloud-wide parts of Cinder's API on the edge: extensions, hosts, pools, and the
manage/unmanage calls this service refuses (501: there is nothing outside it to adopt)."""

from __future__ import annotations

import asyncio
from typing import Any

from starlette.requests import Request
from starlette.responses import Response

from souverain.common.context import RequestContext
from souverain.common.jsoncodec import JSONResponse
from souverain.openstack.body import member, read_json
from souverain.openstack.microversion import microversion_of
from souverain.openstack.routing import Edge, EdgeRoute
from souverain.volume import views
from souverain.volume.admin import (
    BACKEND_NAME,
    DRIVER_VERSION,
    POOL_NAME,
    STORAGE_PROTOCOL,
    VENDOR,
    Admin,
)
from souverain.volume.api_common import Links, flag, require_version
from souverain.volume.rules import MANAGE_REFUSED, NotImplementedFault
from souverain.volume.service import VolumeService

# (name, alias, updated, description) of each Cinder extension this service implements
EXTENSIONS: tuple[tuple[str, str, str, str], ...] = (
    ("AdminActions", "os-admin-actions", "2012-08-25T00:00:00+00:00", "Enable admin actions."),
    ("AvailabilityZones", "os-availability-zone", "2013-06-27T00:00:00+00:00",
     "Describe Availability Zones."),
    ("Capabilities", "capabilities", "2015-08-31T00:00:00+00:00",
     "Capabilities of a volume backend."),
    ("ExtendedSnapshotAttributes", "os-extended-snapshot-attributes",
     "2012-06-19T00:00:00+00:00", "Extended SnapshotAttributes support."),
    ("Hosts", "os-hosts", "2011-06-29T00:00:00+00:00", "Admin-only host administration."),
    ("Qos_specs_manage", "qos-specs", "2013-08-02T00:00:00+00:00", "QoS specs support."),
    ("Quotas", "os-quota-sets", "2011-08-08T00:00:00+00:00", "Quota management support."),
    ("Scheduler_stats", "scheduler-stats", "2014-09-07T00:00:00+00:00",
     "Scheduler stats support."),
    ("TypesExtraSpecs", "os-types-extra-specs", "2011-08-24T00:00:00+00:00",
     "Type extra specs support."),
    ("TypesManage", "os-types-manage", "2011-08-24T00:00:00+00:00", "Types manage support."),
    ("VolumeActions", "os-volume-actions", "2012-05-31T00:00:00+00:00",
     "Enable volume actions."),
    ("VolumeHostAttribute", "os-vol-host-attr", "2011-11-03T00:00:00+00:00",
     "Expose host as an attribute of a volume."),
    ("VolumeImageMetadata", "os-vol-image-meta", "2012-12-07T00:00:00+00:00",
     "Show image metadata associated with the volume."),
    ("VolumeMigStatusAttribute", "os-vol-mig-status-attr", "2013-08-08T00:00:00+00:00",
     "Expose migration_status as an attribute of a volume."),
    ("VolumeTenantAttribute", "os-vol-tenant-attr", "2011-11-03T00:00:00+00:00",
     "Expose the internal project_id as an attribute of a volume."),
    ("VolumeTransfer", "os-volume-transfer", "2013-05-29T00:00:00+00:00",
     "Volume transfer management support."),
    ("VolumeTypeAccess", "os-volume-type-access", "2014-06-26T00:00:00Z",
     "Volume type access support."),
)  # fmt: skip
MANAGEABLE = (3, 8)  # /manageable_volumes and /manageable_snapshots
MANAGE_VOLUMES = {"GET": "volume:manage:list", "POST": "volume:manage:create"}
MANAGE_SNAPSHOTS = MANAGE_VOLUMES


class AdminApi:
    def __init__(self, service: VolumeService, links: Links) -> None:
        self.service = service
        self.admin = Admin(service.shared)
        self.links = links

    def routes(self, edge: Edge) -> list[EdgeRoute]:
        r = edge.route
        return [
            r("/v3/extensions", self.extensions, {"GET": "volume:extension:list"}),
            r("/v3/os-hosts", self.hosts, {"GET": "volume:host:list"}),
            r("/v3/os-hosts/{host}", self.host, {"GET": "volume:host:show"}),
            r("/v3/scheduler-stats/get_pools", self.pools, {"GET": "volume:pool:list"}),
            # the backend's capabilities are its pools' stats: the same admin read
            r("/v3/capabilities/{host}", self.capabilities, {"GET": "volume:pool:list"}),
            r("/v3/os-volume-manage", self.manage_volume, {"POST": "volume:manage:create"}),
            r("/v3/manageable_volumes", self.manageable_volumes, MANAGE_VOLUMES),
            r(
                "/v3/manageable_volumes/detail",
                self.manageable_volumes,
                {"GET": "volume:manage:list"},
            ),
            r("/v3/os-snapshot-manage", self.manage_snapshot, {"POST": "volume:manage:create"}),
            r("/v3/manageable_snapshots", self.manageable_snapshots, MANAGE_SNAPSHOTS),
            r(
                "/v3/manageable_snapshots/detail",
                self.manageable_snapshots,
                {"GET": "volume:manage:list"},
            ),
        ]

    async def extensions(self, request: Request, ctx: RequestContext) -> Response:
        items = [
            {"name": n, "alias": a, "updated": u, "description": d, "links": []}
            for n, a, u, d in EXTENSIONS
        ]
        return JSONResponse({"extensions": items})

    async def hosts(self, request: Request, ctx: RequestContext) -> Response:
        found = await asyncio.to_thread(self.admin.hosts, ctx)
        now = views.time_text(self.service.clock.now())
        items = [
            {
                "host_name": name,
                "service": service,
                "zone": "nova",
                "service-status": "available",
                "service-state": "enabled",
                "last-update": now,
            }
            for name, service in found
        ]
        return JSONResponse({"hosts": items})

    async def host(self, request: Request, ctx: RequestContext) -> Response:
        host = request.path_params["host"]
        usage = await asyncio.to_thread(self.admin.host_usage, ctx, host)
        items = [
            {
                "resource": {
                    "host": host,
                    "project": u.project,
                    "volume_count": str(u.volume_count),
                    "total_volume_gb": str(u.volume_gb),
                    "snapshot_count": str(u.snapshot_count),
                    "total_snapshot_gb": str(u.snapshot_gb),
                }
            }
            for u in usage
        ]
        return JSONResponse({"host": items})

    async def pools(self, request: Request, ctx: RequestContext) -> Response:
        detail = flag(request, "detail")
        found = await asyncio.to_thread(self.admin.pools, ctx)
        items: list[dict[str, Any]] = []
        for pool in found:
            item: dict[str, Any] = {"name": pool.name}
            if detail:
                item["capabilities"] = {
                    "pool_name": pool.name.rsplit("#", 1)[-1],
                    "volume_backend_name": BACKEND_NAME,
                    "vendor_name": VENDOR,
                    "driver_version": DRIVER_VERSION,
                    "storage_protocol": STORAGE_PROTOCOL,
                    "total_capacity_gb": pool.total_gb,
                    "free_capacity_gb": pool.free_gb,
                    "allocated_capacity_gb": pool.allocated_gb,
                    "reserved_percentage": 0,
                    "QoS_support": False,
                    "thin_provisioning_support": True,
                    "thick_provisioning_support": False,
                    "multiattach": False,
                    "timestamp": views.time_text(pool.updated),
                }
            items.append(item)
        return JSONResponse({"pools": items})

    async def capabilities(self, request: Request, ctx: RequestContext) -> Response:
        """What the backend offers volume types (Cinder's get_capabilities), for admins."""
        await asyncio.to_thread(self.admin.backend_of, ctx, request.path_params["host"])
        thin = {
            "title": "Thin provisioning",
            "description": "Volumes are sparse qcow2 files: space is taken as data is written.",
            "type": "boolean",
        }
        return JSONResponse(
            {
                "namespace": "OS::Storage::Capabilities::souverain",
                "vendor_name": VENDOR,
                "volume_backend_name": BACKEND_NAME,
                "pool_name": POOL_NAME,
                "driver_version": DRIVER_VERSION,
                "storage_protocol": STORAGE_PROTOCOL,
                "display_name": "Souverain local qcow2 backend",
                "description": "Volumes and snapshots as qcow2 files on this cloud's disks.",
                "visibility": "public",
                "replication_targets": [],
                "properties": {"thin_provisioning": thin},
            }
        )

    async def manage_volume(self, request: Request, ctx: RequestContext) -> Response:
        member(await read_json(request), "volume")
        raise NotImplementedFault(MANAGE_REFUSED.format(kind="volumes"))

    async def manage_snapshot(self, request: Request, ctx: RequestContext) -> Response:
        member(await read_json(request), "snapshot")
        raise NotImplementedFault(MANAGE_REFUSED.format(kind="snapshots"))

    async def manageable_volumes(self, request: Request, ctx: RequestContext) -> Response:
        return await self._manageable(request, ctx, "volume", "manageable-volumes")

    async def manageable_snapshots(self, request: Request, ctx: RequestContext) -> Response:
        return await self._manageable(request, ctx, "snapshot", "manageable-snapshots")

    async def _manageable(
        self, request: Request, ctx: RequestContext, kind: str, listing: str
    ) -> Response:
        """GET: nothing on the backend is unmanaged, so the list is empty; POST: 501."""
        require_version(microversion_of(request), MANAGEABLE)
        if request.method == "POST":
            member(await read_json(request), kind)
            raise NotImplementedFault(MANAGE_REFUSED.format(kind=f"{kind}s"))
        return JSONResponse({listing: []})
