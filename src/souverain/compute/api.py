"""Nova v2.1 over HTTP: the routes, the policy action each names, and Nova's faults.

Every route of the API enters through one `Edge`: the microversion is negotiated
(2.1 to 2.100), the caller authenticated and the route's action authorized before
a handler runs; responses and faults carry the version headers and the request id.
The version documents sit outside the microversioned API, as in Nova, on an edge
of their own that adds nothing to them.
The handlers live by resource family (`api_servers`, `api_actions`,
`api_server_parts`, `api_server_groups`, `api_flavors`, `api_host`, `api_services`,
`api_aggregates`, `api_images`); request bodies are checked in
`schemas` and responses shaped in `views`, per microversion where a client can
tell the difference (the flavor embedded in a server from 2.47, `description`
from 2.19, tags from 2.26, the createImage body from 2.45, ...).
"""

from __future__ import annotations

import re

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Router, WebSocketRoute
from starlette.types import ASGIApp, Receive, Scope, Send

from souverain.common import policy
from souverain.common.jsoncodec import JSONResponse
from souverain.common.middleware import state_of
from souverain.compute import views
from souverain.compute.api_actions import ActionHandlers
from souverain.compute.api_aggregates import AggregateHandlers, aggregate_routes
from souverain.compute.api_base import Handlers, versioned
from souverain.compute.api_consoles import ConsoleHandlers
from souverain.compute.api_flavors import FlavorHandlers, KeypairHandlers
from souverain.compute.api_host import HostHandlers
from souverain.compute.api_images import ImageProxyHandlers
from souverain.compute.api_migrations import MigrationHandlers, migration_routes
from souverain.compute.api_serial import ACTION as SERIAL_ACTION
from souverain.compute.api_serial import PATH as SERIAL_PATH
from souverain.compute.api_serial import SerialProxy
from souverain.compute.api_server_groups import ServerGroupHandlers
from souverain.compute.api_server_parts import ServerPartHandlers
from souverain.compute.api_servers import ServerHandlers
from souverain.compute.api_services import ServiceHandlers
from souverain.compute.service import ComputeService
from souverain.openstack.faults import ErrorLayer, render_named_fault
from souverain.openstack.microversion import Microversions
from souverain.openstack.routing import Edge

VERSIONS = Microversions(
    ("compute",),
    views.MIN_VERSION,
    views.MAX_VERSION,
    legacy_header="x-openstack-nova-api-version",
)

render_error = render_named_fault


def request_id_header(request: Request) -> dict[str, str]:
    """Nova puts the request id on faults too; clients read it from either name."""
    return {"X-Compute-Request-Id": state_of(request.scope).get("request_id", "")}


class VersionDocuments(Handlers):
    async def versions(self, request: Request) -> Response:
        base = self.base(request)
        # Nova's list: no media types in it, only in each version's own document
        listed = [views.legacy_version_doc(base), views.version_doc(base)]
        return JSONResponse(
            {"versions": [{k: v for k, v in d.items() if k != "media-types"} for d in listed]}
        )

    async def version(self, request: Request) -> Response:
        return JSONResponse({"version": views.version_doc(self.base(request))})

    async def legacy_version(self, request: Request) -> Response:
        return JSONResponse({"version": views.legacy_version_doc(self.base(request))})


def routes(service: ComputeService, public_url: str = "") -> list[BaseRoute]:
    edge = Edge(service.identity, versions=VERSIONS, headers=request_id_header)
    # Version documents are outside the microversioned API, as in Nova: no version headers.
    documents = Edge(service.identity)
    docs = VersionDocuments(service, public_url)
    version = {"GET": "compute:version:show"}
    return [
        documents.public("/", docs.versions, version),
        documents.public("/v2.1", docs.version, version),
        documents.public("/v2.1/", docs.version, version),
        documents.public("/v2", docs.legacy_version, version),
        documents.public("/v2/", docs.legacy_version, version),
        *flavor_routes(edge, FlavorHandlers(service, public_url)),
        *keypair_routes(edge, KeypairHandlers(service, public_url)),
        *server_routes(edge, ServerHandlers(service, public_url)),
        *action_routes(edge, ActionHandlers(service, public_url)),
        *server_part_routes(edge, ServerPartHandlers(service, public_url)),
        *host_routes(edge, HostHandlers(service, public_url)),
        *server_group_routes(edge, ServerGroupHandlers(service, public_url)),
        *service_routes(edge, ServiceHandlers(service, public_url)),
        *aggregate_routes(edge, AggregateHandlers(service, public_url)),
        *image_routes(edge, ImageProxyHandlers(service, public_url)),
        *console_routes(edge, ConsoleHandlers(service, public_url)),
        *migration_routes(edge, MigrationHandlers(service, public_url)),
    ]


def console_routes(edge: Edge, h: ConsoleHandlers) -> list[BaseRoute]:
    r = edge.route
    return [
        r(
            "/v2.1/servers/{id}/remote-consoles",
            versioned(h.remote_console),
            {"POST": "compute:remote_console:create"},
        ),
        r(
            "/v2.1/os-console-auth-tokens/{token}",
            versioned(h.auth_token),
            {"GET": "compute:console_auth_token:show"},
        ),
    ]


def websocket_routes(service: ComputeService) -> list[BaseRoute]:
    """Outside the edge: a console token, not a Keystone token, opens the serial console;
    its action is public in the policy table, or the app is not built."""
    if policy.RULES.get(SERIAL_ACTION) is not policy.Rule.PUBLIC:
        raise ValueError(f"websocket {SERIAL_PATH}: {SERIAL_ACTION!r} is not public in the table")
    return [WebSocketRoute(SERIAL_PATH, SerialProxy(service.consoles, service.driver).serve)]


def image_routes(edge: Edge, h: ImageProxyHandlers) -> list[BaseRoute]:
    r, i = edge.route, "/v2.1/images"
    return [
        r(i, versioned(h.images), {"GET": "compute:image:list"}),
        r(f"{i}/detail", versioned(h.images_detail), {"GET": "compute:image:list"}),
        r(
            f"{i}/{{id}}",
            versioned(h.image),
            {"GET": "compute:image:show", "DELETE": "compute:image:delete"},
        ),
    ]


def flavor_routes(edge: Edge, h: FlavorHandlers) -> list[BaseRoute]:
    r, f, spec = edge.route, "/v2.1/flavors", "compute:flavor_extra_spec"
    return [
        r(f, versioned(h.flavors), {"GET": "compute:flavor:list", "POST": "compute:flavor:create"}),
        r(f"{f}/detail", versioned(h.flavors_detail), {"GET": "compute:flavor:list"}),
        r(
            f"{f}/{{id}}",
            versioned(h.flavor),
            {
                "GET": "compute:flavor:show",
                "PUT": "compute:flavor:update",
                "DELETE": "compute:flavor:delete",
            },
        ),
        r(
            f"{f}/{{id}}/os-extra_specs",
            versioned(h.extra_specs),
            {"GET": f"{spec}:list", "POST": f"{spec}:create"},
        ),
        r(
            f"{f}/{{id}}/os-extra_specs/{{key}}",
            versioned(h.extra_spec),
            {"GET": f"{spec}:show", "PUT": f"{spec}:update", "DELETE": f"{spec}:delete"},
        ),
        r(
            f"{f}/{{id}}/os-flavor-access",
            versioned(h.flavor_access),
            {"GET": "compute:flavor_access:list"},
        ),
        r(f"{f}/{{id}}/action", versioned(h.flavor_action), {"POST": "compute:flavor:action"}),
    ]


def keypair_routes(edge: Edge, h: KeypairHandlers) -> list[BaseRoute]:
    r = edge.route
    return [
        r(
            "/v2.1/os-keypairs",
            versioned(h.keypairs),
            {"GET": "compute:keypair:list", "POST": "compute:keypair:create"},
        ),
        r(
            "/v2.1/os-keypairs/{name}",
            versioned(h.keypair),
            {"GET": "compute:keypair:show", "DELETE": "compute:keypair:delete"},
        ),
    ]


def server_routes(edge: Edge, h: ServerHandlers) -> list[BaseRoute]:
    r, s = edge.route, "/v2.1/servers"
    return [
        r(s, versioned(h.servers), {"GET": "compute:server:list", "POST": "compute:server:create"}),
        r(f"{s}/detail", versioned(h.servers_detail), {"GET": "compute:server:list"}),
        r(
            f"{s}/{{id}}",
            versioned(h.server),
            {
                "GET": "compute:server:show",
                "PUT": "compute:server:update",
                "DELETE": "compute:server:delete",
            },
        ),
        r(f"{s}/{{id}}/ips", versioned(h.ips), {"GET": "compute:server_ip:list"}),
    ]


def action_routes(edge: Edge, h: ActionHandlers) -> list[BaseRoute]:
    r, s = edge.route, "/v2.1/servers/{id}"
    return [
        r(f"{s}/action", versioned(h.server_action), {"POST": "compute:server:action"}),
        r(
            f"{s}/os-instance-actions",
            versioned(h.actions),
            {"GET": "compute:instance_action:list"},
        ),
        r(
            f"{s}/os-instance-actions/{{req}}",
            versioned(h.action),
            {"GET": "compute:instance_action:show"},
        ),
    ]


def server_part_routes(edge: Edge, h: ServerPartHandlers) -> list[BaseRoute]:
    r, s = edge.route, "/v2.1/servers/{id}"
    meta, tag = "compute:server_metadata", "compute:server_tag"
    iface, attach = "compute:interface", "compute:volume_attachment"
    return [
        r(
            f"{s}/metadata",
            versioned(h.metadata),
            {"GET": f"{meta}:list", "POST": f"{meta}:create", "PUT": f"{meta}:update_all"},
        ),
        r(
            f"{s}/metadata/{{key}}",
            versioned(h.metadata_item),
            {"GET": f"{meta}:show", "PUT": f"{meta}:update", "DELETE": f"{meta}:delete"},
        ),
        r(
            f"{s}/tags",
            versioned(h.tags),
            {"GET": f"{tag}:list", "PUT": f"{tag}:update_all", "DELETE": f"{tag}:delete_all"},
        ),
        r(
            f"{s}/tags/{{tag}}",
            versioned(h.tag),
            {"GET": f"{tag}:show", "PUT": f"{tag}:create", "DELETE": f"{tag}:delete"},
        ),
        r(
            f"{s}/os-interface",
            versioned(h.interfaces),
            {"GET": f"{iface}:list", "POST": f"{iface}:create"},
        ),
        r(
            f"{s}/os-interface/{{port}}",
            versioned(h.interface),
            {"GET": f"{iface}:show", "DELETE": f"{iface}:delete"},
        ),
        r(f"{s}/diagnostics", versioned(h.diagnostics), {"GET": "compute:server:diagnostics"}),
        r(
            f"{s}/os-volume_attachments",
            versioned(h.volume_attachments),
            {"GET": f"{attach}:list", "POST": f"{attach}:create"},
        ),
        r(
            f"{s}/os-volume_attachments/{{volume}}",
            versioned(h.volume_attachment),
            {"GET": f"{attach}:show", "PUT": f"{attach}:update", "DELETE": f"{attach}:delete"},
        ),
    ]


def server_group_routes(edge: Edge, h: ServerGroupHandlers) -> list[BaseRoute]:
    r, g = edge.route, "/v2.1/os-server-groups"
    return [
        r(
            g,
            versioned(h.groups),
            {"GET": "compute:server_group:list", "POST": "compute:server_group:create"},
        ),
        r(
            f"{g}/{{id}}",
            versioned(h.group),
            {"GET": "compute:server_group:show", "DELETE": "compute:server_group:delete"},
        ),
    ]


def service_routes(edge: Edge, h: ServiceHandlers) -> list[BaseRoute]:
    r = edge.route
    return [
        r("/v2.1/os-services", versioned(h.services), {"GET": "compute:service:list"}),
        r("/v2.1/os-services/{id}", versioned(h.update), {"PUT": "compute:service:update"}),
    ]


def host_routes(edge: Edge, h: HostHandlers) -> list[BaseRoute]:
    r, zone, quota = edge.route, "/v2.1/os-availability-zone", "/v2.1/os-quota-sets/{project}"
    hyper = "/v2.1/os-hypervisors"
    return [
        r(zone, versioned(h.zones), {"GET": "compute:availability_zone:list"}),
        r(f"{zone}/detail", versioned(h.zones_detail), {"GET": "compute:availability_zone:detail"}),
        r("/v2.1/limits", versioned(h.limits), {"GET": "compute:limits:show"}),
        r(
            quota,
            versioned(h.quota_set),
            {
                "GET": "compute:quota:show",
                "PUT": "compute:quota:update",
                "DELETE": "compute:quota:delete",
            },
        ),
        r(f"{quota}/defaults", versioned(h.quota_defaults), {"GET": "compute:quota:defaults"}),
        r(f"{quota}/detail", versioned(h.quota_detail), {"GET": "compute:quota:detail"}),
        r(hyper, versioned(h.hypervisors), {"GET": "compute:hypervisor:list"}),
        r(f"{hyper}/detail", versioned(h.hypervisors_detail), {"GET": "compute:hypervisor:detail"}),
        r(
            f"{hyper}/statistics",
            versioned(h.hypervisor_stats),
            {"GET": "compute:hypervisor:statistics"},
        ),
        r(f"{hyper}/{{id}}", versioned(h.hypervisor), {"GET": "compute:hypervisor:show"}),
        r(
            f"{hyper}/{{id}}/uptime",
            versioned(h.hypervisor_uptime),
            {"GET": "compute:hypervisor:uptime"},
        ),
        r(
            f"{hyper}/{{id}}/servers",
            versioned(h.hypervisor_match),
            {"GET": "compute:hypervisor:servers"},
        ),
        r(
            f"{hyper}/{{id}}/search",
            versioned(h.hypervisor_match),
            {"GET": "compute:hypervisor:search"},
        ),
        r("/v2.1/extensions", versioned(h.extensions), {"GET": "compute:extension:list"}),
    ]


class _StripProject:
    """`/v2.1/{project_id}/servers` (the old catalog style) is the same as `/v2.1/servers`."""

    PROJECT = re.compile(r"^/v2\.1/[0-9a-f]{32}(?=/|$)")

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            root = scope.get("root_path", "")
            path = scope["path"][len(root) :] if scope["path"].startswith(root) else scope["path"]
            match = self.PROJECT.match(path)
            if match:
                scope = dict(scope)
                scope["path"] = root + "/v2.1" + path[match.end() :]
        await self.app(scope, receive, send)


def build_app(service: ComputeService, public_url: str = "") -> ASGIApp:
    served = [*routes(service, public_url), *websocket_routes(service)]
    return ErrorLayer(_StripProject(Router(routes=served)), render_error)
