"""Neutron v2.0 wire format: version discovery, extensions, routes, list parameters, error body.

Mounted at `/network`; clients append `/v2.0`. Every route goes through the edge and
names its policy action (`network:port:create`). This module holds no rules: tenancy,
IPAM and quotas live in the service's families; bodies are checked by `schemas` and
answers shaped by `views`. A path may end in `.json`, as Neutron allows (openstacksdk
asks for `/quotas/{id}/details.json`).

Not offered, and so not listed in /v2.0/extensions: agents (`agent`, `dhcp_agent_scheduler`,
`l3_agent_scheduler`). The data plane (bridges, dnsmasq, router namespaces) is driven by
the service itself on each host, reconciled from the rows; there is no agent to list,
schedule or disable, and /v2.0/agents answers 404 like any unknown collection.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, replace
from typing import Any, TypeVar
from urllib.parse import urlencode

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Router
from starlette.types import ASGIApp, Receive, Scope, Send

from souverain.common.context import RequestContext
from souverain.common.errors import ApiError, BadRequest, MethodNotAllowed, NotFound
from souverain.common.jsoncodec import JSONResponse
from souverain.network import schemas, schemas_metering, schemas_pools, views
from souverain.network.api_tags import TagApi
from souverain.network.listing import ListQuery, Page, select_page
from souverain.network.networks import NetworkRecord
from souverain.network.service import NetworkService
from souverain.network.tags import TAGGABLE, check_tags
from souverain.openstack.auth import audit
from souverain.openstack.body import member, read_json
from souverain.openstack.faults import ErrorLayer
from souverain.openstack.links import base_url
from souverain.openstack.query import parse_bool
from souverain.openstack.routing import Edge, EdgeRoute

PREFIX = "/network"
# collections taking `{"<plural>": [...]}` in one POST, as Neutron's core resources do
BULK = frozenset(
    {"networks", "subnets", "ports", "security-groups", "security-group-rules", "subnetpools"}
)
MAX_BULK = 100
LIST_PARAMS = frozenset({"fields", "sort_key", "sort_dir", "limit", "marker", "page_reverse"})
# Neutron's type for errors that carry no specific one
GENERIC_TYPES = {
    "Bad Request": "HTTPBadRequest",
    "Unauthorized": "HTTPUnauthorized",
    "Forbidden": "HTTPForbidden",
    "Not Found": "HTTPNotFound",
    "Method Not Allowed": "HTTPMethodNotAllowed",
    "Conflict": "HTTPConflict",
    "Request Entity Too Large": "HTTPRequestEntityTooLarge",
    "Unsupported Media Type": "HTTPUnsupportedMediaType",
    "Internal Server Error": "HTTPInternalServerError",
}
EXTENSIONS = {
    "security-group": ("security-group", "The security groups extension."),
    "quotas": ("Quota management support", "Expose functions for quotas management per project"),
    "quota_details": ("Quota details management support", "Expose quota usage per project"),
    "external-net": ("Neutron external network", "Adds external network attribute to network."),
    "port-security": ("Port Security", "Provides port security"),
    "allowed-address-pairs": ("Allowed Address Pairs", "Provides allowed address pairs"),
    "standard-attr-description": ("standard-attr-description", "Extension to add descriptions"),
    "standard-attr-revisions": (
        "Resource revision numbers",
        "This extension will display the revision number of neutron resources.",
    ),
    "standard-attr-timestamp": ("Resource timestamps", "Adds created_at and updated_at fields"),
    "project-id": (
        "project_id field enabled",
        "Extension that indicates that project_id field is enabled.",
    ),
    "net-mtu": ("Network MTU", "Provides MTU attribute for a network resource."),
    "binding": ("Port Binding", "Expose port bindings of a virtual port to external application"),
    "pagination": ("Pagination support", "Extension that indicates that pagination is enabled."),
    "sorting": ("Sorting support", "Extension that indicates that sorting is enabled."),
    "router": ("Neutron L3 Router", "Router abstraction for basic L3 forwarding"),
    "ext-gw-mode": ("Neutron L3 Configurable external gateway mode", "Extension of the router"),
    "fip-port-details": ("Floating IP Port Details Extension", "Add port_details to floating IP"),
    "filter-validation": (
        "Filter parameters validation",
        "Provides validation on filter parameters.",
    ),
    "subnet-external-network": (
        "Subnet External Network",
        "Informs if the subnet is associated to an external network.",
    ),
    "extraroute": ("Neutron Extra Route", "Extra routes configuration for L3 router"),
    "subnet_allocation": (
        "Subnet Allocation",
        "Enables allocation of subnets from a subnet pool",
    ),
    "standard-attr-tag": (
        "Tag support for resources with standard attribute",
        "Enables to set tag on resources with standard attribute.",
    ),
    "metering": ("Neutron Metering", "Neutron Metering extension."),
    "metering_source_and_destination_fields": (
        "Neutron Metering with source and destination filtering",
        "Neutron Metering extension that enables the use of source and destination IP prefixes.",
    ),
    "extra_dhcp_opt": (
        "Neutron Extra DHCP options",
        "Extra options configuration for DHCP. For example PXE boot options to DHCP clients "
        "can be specified (e.g. tftp-server, server-ip-address, bootfile-name)",
    ),
    "subnetpool-prefix-ops": (
        "Subnet Pool Prefix Operations",
        "Provides support for adjusting the prefix list of subnet pools",
    ),
    "default-subnetpools": (
        "Default Subnetpools",
        "Provides ability to mark and use a subnetpool as the default.",
    ),
}
# collection path -> (plural body key, singular body key, service verb stem)
COLLECTIONS = {
    "networks": ("networks", "network"),
    "subnets": ("subnets", "subnet"),
    "subnetpools": ("subnetpools", "subnetpool"),
    "ports": ("ports", "port"),
    "security-groups": ("security_groups", "security_group"),
    "security-group-rules": ("security_group_rules", "security_group_rule"),
    "routers": ("routers", "router"),
    "floatingips": ("floatingips", "floatingip"),
    "metering/metering-labels": ("metering_labels", "metering_label"),
    "metering/metering-label-rules": ("metering_label_rules", "metering_label_rule"),
}

Handler = Callable[[Request, RequestContext], Awaitable[Response]]
View = dict[str, Any]
T = TypeVar("T")
log = logging.getLogger("souverain.network")


@dataclass(frozen=True)
class Resource:
    """What one collection's routes call, each answering in Neutron's wire shape."""

    lister: Callable[[RequestContext, ListQuery], Page]
    creator: Callable[[RequestContext, dict[str, Any]], View]
    getter: Callable[[RequestContext, str], View]
    updater: Callable[[RequestContext, str, dict[str, Any]], View] | None  # None: 405
    deleter: Callable[[RequestContext, str], None]


def render_error(_path: str, status: int, title: str, message: str) -> tuple[bytes, str]:
    """Neutron's body: `{"NeutronError": {"type": "NetworkNotFound", "message": ...}}`."""
    kind = GENERIC_TYPES.get(title, title.replace(" ", ""))
    body = {"NeutronError": {"type": kind, "message": message, "detail": ""}}
    return json.dumps(body).encode(), "application/json"


def list_query(request: Request) -> ListQuery:
    """Filters (a repeated key means OR), sort keys and directions, and the page."""
    params = request.query_params
    filters: dict[str, list[str]] = {}
    for key, value in params.multi_items():
        if key not in LIST_PARAMS:
            filters.setdefault(key, []).append(value)
    keys, dirs = params.getlist("sort_key"), params.getlist("sort_dir")
    if dirs and len(dirs) != len(keys):
        raise BadRequest("The number of sort_keys and sort_dirs must be same")
    for direction in dirs:
        if direction not in ("asc", "desc"):
            raise BadRequest(
                f"{direction[:32]} is invalid value for sort_dirs, valid values "
                "are 'asc' and 'desc'"
            )
    limit: int | None = None
    if params.get("limit"):
        raw = params["limit"]
        if not raw.isdigit():
            raise BadRequest(f"Limit must be an integer 0 or greater and not '{raw[:32]}'")
        limit = int(raw) or None
    return ListQuery(
        filters=filters,
        sort=tuple(zip(keys, dirs or ["asc"] * len(keys), strict=True)),
        limit=limit,
        marker=params.get("marker") or None,
        page_reverse=parse_bool("page_reverse", params["page_reverse"])
        if "page_reverse" in params
        else False,
    )


def _page(records: Iterable[T], view: Callable[[T], View], query: ListQuery, kind: str) -> Page:
    """Neutron's filters, sort and page, applied to the shown resources (filters name wire
    attributes, `fixed_ips=ip_address=...` included)."""
    return select_page([view(r) for r in records], query, kind)


def _fields(request: Request, view: dict[str, Any]) -> dict[str, Any]:
    wanted = [f for f in request.query_params.getlist("fields") if f]
    if not wanted:
        return view
    return {k: v for k, v in view.items() if k in wanted}


def _members(data: dict[str, Any], plural: str, single: str) -> list[dict[str, Any]]:
    """The objects of a bulk body `{"ports": [{...}, ...]}`, each checked like a single one."""
    items = data[plural]
    if not isinstance(items, list) or not items:
        raise BadRequest("Resources required")
    if len(items) > MAX_BULK:
        raise BadRequest(f"At most {MAX_BULK} {plural} may be created in one request.")
    return [member({single: item}, single) for item in items]


def _create_many(
    resource: Resource, ctx: RequestContext, bodies: list[dict[str, Any]]
) -> list[View]:
    """All or nothing, as Neutron's bulk create: when one fails, those made before it are
    deleted again and the failure is the answer."""
    made: list[View] = []
    try:
        for body in bodies:
            made.append(resource.creator(ctx, body))
    except Exception:
        for view in reversed(made):
            try:
                resource.deleter(ctx, view["id"])
            except ApiError:
                log.warning("bulk create: could not undo %s", view["id"])
        raise
    return made


class NetworkApi:
    def __init__(self, service: NetworkService, public_url: str = "") -> None:
        self.service = service
        self.public_url = public_url

    def base(self, request: Request) -> str:
        return base_url(request, self.public_url, PREFIX)

    def routes(self) -> list[EdgeRoute]:
        edge = Edge(self.service.identity)
        routes = [
            edge.public("/", self.versions, {"GET": "network:version:show"}),
            edge.route("/v2.0", self.resources, {"GET": "network:resource:list"}),
            edge.route("/v2.0/", self.resources, {"GET": "network:resource:list"}),
            edge.route("/v2.0/extensions", self.extensions, {"GET": "network:extension:list"}),
            edge.route(
                "/v2.0/extensions/{alias}", self.extension, {"GET": "network:extension:show"}
            ),
            edge.route("/v2.0/quotas", self.quotas, {"GET": "network:quota:list"}),
            edge.route(
                "/v2.0/quotas/{project}",
                self.quota,
                {
                    "GET": "network:quota:show",
                    "PUT": "network:quota:update",
                    "DELETE": "network:quota:delete",
                },
            ),
            edge.route(
                "/v2.0/quotas/{project}/default",
                self.quota_default,
                {"GET": "network:quota:show_default"},
            ),
            edge.route(
                "/v2.0/quotas/{project}/details",
                self.quota_details,
                {"GET": "network:quota:show_details"},
            ),
        ]
        for path, (_, single) in COLLECTIONS.items():
            name = f"network:{single}"
            routes.append(
                edge.route(
                    f"/v2.0/{path}",
                    self.collection(path),
                    {"GET": f"{name}:list", "POST": f"{name}:create"},
                )
            )
            routes.append(
                edge.route(
                    f"/v2.0/{path}/{{id}}",
                    self.item(path),
                    {"GET": f"{name}:show", "PUT": f"{name}:update", "DELETE": f"{name}:delete"},
                )
            )
        routes.extend(TagApi(self.service).routes(edge))
        for action in ("add_prefixes", "remove_prefixes"):
            routes.append(
                edge.route(
                    f"/v2.0/subnetpools/{{id}}/{action}",
                    self.pool_prefixes,
                    {"PUT": f"network:subnetpool:{action}"},
                )
            )
        for action in ("add_router_interface", "remove_router_interface"):
            routes.append(
                edge.route(
                    f"/v2.0/routers/{{id}}/{action}",
                    self.router_action,
                    {"PUT": f"network:router:{action}"},
                )
            )
        return routes

    async def pool_prefixes(self, request: Request, ctx: RequestContext) -> Response:
        """`add_prefixes` / `remove_prefixes` of a subnet pool (subnetpool-prefix-ops)."""
        pool_id = request.path_params["id"]
        action = request.url.path.rsplit("/", 1)[-1]
        audit(request, f"network.subnetpool.{action}", "subnetpool", pool_id)
        data = await read_json(request)
        prefixes = schemas_pools.prefixes(data.get("prefixes") if isinstance(data, dict) else None)
        pools = self.service.subnet_pools
        change = pools.add_prefixes if action == "add_prefixes" else pools.remove_prefixes
        kept = await asyncio.to_thread(change, ctx, pool_id, prefixes)
        return JSONResponse({"prefixes": kept})

    async def router_action(self, request: Request, ctx: RequestContext) -> Response:
        router_id = request.path_params["id"]
        action = request.url.path.rsplit("/", 1)[-1]
        audit(request, f"network.router.{action}", "router", router_id)
        data = await read_json(request)
        handler = (
            self.service.routers.add_router_interface
            if action == "add_router_interface"
            else self.service.routers.remove_router_interface
        )
        info = await asyncio.to_thread(handler, ctx, router_id, schemas.router_interface(data))
        return JSONResponse(views.router_interface(info))

    # -------------------------------------------------------------- discovery

    async def versions(self, request: Request) -> Response:
        version = {
            "id": "v2.0",
            "status": "CURRENT",
            "links": [{"rel": "self", "href": f"{self.base(request)}/v2.0/"}],
        }
        return JSONResponse({"versions": [version]})

    async def resources(self, request: Request, ctx: RequestContext) -> Response:
        v2 = f"{self.base(request)}/v2.0"
        items = [
            {"name": single, "collection": plural, "links": [{"rel": "self", "href": f"{v2}/{p}"}]}
            for p, (plural, single) in COLLECTIONS.items()
        ]
        return JSONResponse({"resources": items})

    def _extension(self, alias: str) -> dict[str, Any]:
        name, description = EXTENSIONS[alias]
        return {
            "alias": alias,
            "name": name,
            "description": description,
            "updated": "2024-01-01T00:00:00-00:00",
            "links": [],
        }

    async def extensions(self, request: Request, ctx: RequestContext) -> Response:
        return JSONResponse({"extensions": [self._extension(a) for a in EXTENSIONS]})

    async def extension(self, request: Request, ctx: RequestContext) -> Response:
        alias = request.path_params["alias"]
        if alias not in EXTENSIONS:
            raise NotFound(f"Extension with alias {alias[:64]} does not exist")
        return JSONResponse({"extension": self._extension(alias)})

    # -------------------------------------------------------------- the collections

    def _links(self, request: Request, path: str, plural: str, page: Page) -> dict[str, Any]:
        query = list_query(request)
        if query.limit is None:
            return {}
        links = []
        base = [
            (k, v)
            for k, v in request.query_params.multi_items()
            if k not in ("marker", "page_reverse")
        ]
        href = f"{self.base(request)}/v2.0/{path}"
        forward_more = page.has_more if not query.page_reverse else query.marker is not None
        backward_more = page.has_more if query.page_reverse else query.marker is not None
        if page.items and forward_more:
            links.append(
                {
                    "rel": "next",
                    "href": f"{href}?{urlencode([*base, ('marker', page.items[-1]['id'])])}",
                }
            )
        if page.items and backward_more:
            params = [*base, ("marker", page.items[0]["id"]), ("page_reverse", "True")]
            links.append({"rel": "previous", "href": f"{href}?{urlencode(params)}"})
        return {f"{plural}_links": links} if links else {}

    def _resources(self) -> dict[str, Resource]:
        """Each collection's calls, parsing bodies with `schemas` and answering with `views`."""
        return {
            **self._network_resources(),
            **self._security_resources(),
            **self._routing_resources(),
            **self._metering_resources(),
        }

    def _network_view(self, ctx: RequestContext) -> Callable[[NetworkRecord], View]:
        """The network's shape for this caller: provider attributes for an admin only."""
        overlay = self.service.settings.overlay
        return lambda record: views.network(record, ctx.is_admin, overlay)

    def _network_resources(self) -> dict[str, Resource]:
        s = self.service
        return {
            "networks": Resource(
                lambda ctx, q: _page(
                    s.networks.list_networks(ctx), self._network_view(ctx), q, "Network"
                ),
                lambda ctx, body: self._network_view(ctx)(
                    s.networks.create_network(ctx, schemas.network(body))
                ),
                lambda ctx, id_: self._network_view(ctx)(s.networks.get_network(ctx, id_)),
                lambda ctx, id_, body: self._network_view(ctx)(
                    s.networks.update_network(ctx, id_, schemas.network(body))
                ),
                s.networks.delete_network,
            ),
            "subnets": Resource(
                lambda ctx, q: _page(s.networks.list_subnets(ctx), views.subnet, q, "Subnet"),
                lambda ctx, body: views.subnet(
                    s.networks.create_subnet(ctx, schemas.subnet_create(body))
                ),
                lambda ctx, id_: views.subnet(s.networks.get_subnet(ctx, id_)),
                lambda ctx, id_, body: views.subnet(
                    s.networks.update_subnet(ctx, id_, schemas.subnet_update(body))
                ),
                s.networks.delete_subnet,
            ),
            "subnetpools": Resource(
                lambda ctx, q: _page(
                    s.subnet_pools.list_pools(ctx), views.subnet_pool, q, "Subnet pool"
                ),
                lambda ctx, body: views.subnet_pool(
                    s.subnet_pools.create_pool(ctx, schemas_pools.pool_create(body))
                ),
                lambda ctx, id_: views.subnet_pool(s.subnet_pools.get_pool(ctx, id_)),
                lambda ctx, id_, body: views.subnet_pool(
                    s.subnet_pools.update_pool(ctx, id_, schemas_pools.pool_update(body))
                ),
                s.subnet_pools.delete_pool,
            ),
            "ports": Resource(
                lambda ctx, q: _page(
                    s.ports.list_ports(ctx, q),
                    lambda r: views.port(r, ctx.is_admin),
                    q,
                    "Port",
                ),
                lambda ctx, body: views.port(
                    s.ports.create_port(ctx, schemas.port_create(body)), ctx.is_admin
                ),
                lambda ctx, id_: views.port(s.ports.get_port(ctx, id_), ctx.is_admin),
                lambda ctx, id_, body: views.port(
                    s.ports.update_port(ctx, id_, schemas.port_update(body)), ctx.is_admin
                ),
                s.ports.delete_port,
            ),
        }

    def _security_resources(self) -> dict[str, Resource]:
        s = self.service
        return {
            "security-groups": Resource(
                lambda ctx, q: _page(
                    s.groups.list_security_groups(ctx), views.security_group, q, "Security group"
                ),
                lambda ctx, body: views.security_group(
                    s.groups.create_security_group(ctx, schemas.group_create(body))
                ),
                lambda ctx, id_: views.security_group(s.groups.get_security_group(ctx, id_)),
                lambda ctx, id_, body: views.security_group(
                    s.groups.update_security_group(ctx, id_, schemas.group_update(body))
                ),
                s.groups.delete_security_group,
            ),
            "security-group-rules": Resource(
                lambda ctx, q: _page(
                    s.groups.list_security_group_rules(ctx),
                    views.security_group_rule,
                    q,
                    "Security group rule",
                ),
                lambda ctx, body: views.security_group_rule(
                    s.groups.create_security_group_rule(ctx, schemas.rule_create(body))
                ),
                lambda ctx, id_: views.security_group_rule(
                    s.groups.get_security_group_rule(ctx, id_)
                ),
                None,
                s.groups.delete_security_group_rule,
            ),
        }

    def _metering_resources(self) -> dict[str, Resource]:
        s = self.service.metering
        return {
            "metering/metering-labels": Resource(
                lambda ctx, q: _page(s.list_labels(ctx), views.metering_label, q, "Metering label"),
                lambda ctx, body: views.metering_label(
                    s.create_label(ctx, schemas_metering.label_create(body))
                ),
                lambda ctx, id_: views.metering_label(s.get_label(ctx, id_)),
                None,
                s.delete_label,
            ),
            "metering/metering-label-rules": Resource(
                lambda ctx, q: _page(
                    s.list_rules(ctx), views.metering_label_rule, q, "Metering label rule"
                ),
                lambda ctx, body: views.metering_label_rule(
                    s.create_rule(ctx, schemas_metering.rule_create(body))
                ),
                lambda ctx, id_: views.metering_label_rule(s.get_rule(ctx, id_)),
                None,
                s.delete_rule,
            ),
        }

    def _routing_resources(self) -> dict[str, Resource]:
        s = self.service
        return {
            "routers": Resource(
                lambda ctx, q: _page(s.routers.list_routers(ctx), views.router, q, "Router"),
                lambda ctx, body: views.router(
                    s.routers.create_router(ctx, schemas.router_create(body))
                ),
                lambda ctx, id_: views.router(s.routers.get_router(ctx, id_)),
                lambda ctx, id_, body: views.router(
                    s.routers.update_router(ctx, id_, schemas.router_update(body))
                ),
                s.routers.delete_router,
            ),
            "floatingips": Resource(
                lambda ctx, q: _page(
                    s.floating_ips.list_floating_ips(ctx), views.floating_ip, q, "Floating IP"
                ),
                lambda ctx, body: views.floating_ip(
                    s.floating_ips.create_floating_ip(ctx, schemas.floating_create(body))
                ),
                lambda ctx, id_: views.floating_ip(s.floating_ips.get_floating_ip(ctx, id_)),
                lambda ctx, id_, body: views.floating_ip(
                    s.floating_ips.update_floating_ip(ctx, id_, schemas.floating_update(body))
                ),
                s.floating_ips.delete_floating_ip,
            ),
        }

    def _tagging(self, path: str, resource: Resource) -> Resource:
        """The resource, whose create also sets the `tags` a body gives (checked first)."""
        if path not in TAGGABLE:
            return resource
        tags = self.service.tags

        def create(ctx: RequestContext, body: dict[str, Any]) -> View:
            wanted = check_tags(body.pop("tags")) if "tags" in body else []
            view = resource.creator(ctx, body)
            if not wanted:
                return view
            try:
                tags.replace(ctx, path, view["id"], wanted)
            except ApiError:
                resource.deleter(ctx, view["id"])
                raise
            return resource.getter(ctx, view["id"])

        return replace(resource, creator=create)

    def collection(self, path: str) -> Handler:
        plural, single = COLLECTIONS[path]
        resource = self._resources()[path]

        async def handle(request: Request, ctx: RequestContext) -> Response:
            if request.method == "GET":
                page = await asyncio.to_thread(resource.lister, ctx, list_query(request))
                body: dict[str, Any] = {plural: [_fields(request, v) for v in page.items]}
                body.update(self._links(request, path, plural, page))
                return JSONResponse(body)
            audit(request, f"network.{single}.create", single, None)
            data = await read_json(request)
            if path in BULK and isinstance(data, dict) and plural in data and single not in data:
                views_made = await asyncio.to_thread(
                    _create_many, self._tagging(path, resource), ctx, _members(data, plural, single)
                )
                for view in views_made:
                    audit(request, f"network.{single}.create", single, view["id"])
                return JSONResponse({plural: views_made}, 201)
            creator = self._tagging(path, resource).creator
            view = await asyncio.to_thread(creator, ctx, member(data, single))
            audit(request, f"network.{single}.create", single, view["id"])
            return JSONResponse({single: view}, 201)

        return handle

    def item(self, path: str) -> Handler:
        plural, single = COLLECTIONS[path]
        resource = self._resources()[path]

        async def handle(request: Request, ctx: RequestContext) -> Response:
            item_id = request.path_params["id"]
            if request.method == "GET":
                view = await asyncio.to_thread(resource.getter, ctx, item_id)
                return JSONResponse({single: _fields(request, view)})
            if request.method == "PUT":
                audit(request, f"network.{single}.update", single, item_id)
                if resource.updater is None:
                    raise MethodNotAllowed(
                        f"{plural.replace('_', ' ').capitalize()} cannot be updated."
                    )
                data = member(await read_json(request), single)
                view = await asyncio.to_thread(resource.updater, ctx, item_id, data)
                return JSONResponse({single: view})
            audit(request, f"network.{single}.delete", single, item_id)
            await asyncio.to_thread(resource.deleter, ctx, item_id)
            return Response(status_code=204)

        return handle

    # -------------------------------------------------------------- quotas

    async def quotas(self, request: Request, ctx: RequestContext) -> Response:
        rows = await asyncio.to_thread(self.service.quotas.list_quotas, ctx)
        return JSONResponse({"quotas": rows})

    async def quota(self, request: Request, ctx: RequestContext) -> Response:
        project_id = request.path_params["project"]
        if request.method == "GET":
            limits = await asyncio.to_thread(self.service.quotas.quota_of, ctx, project_id)
            return JSONResponse({"quota": limits})
        if request.method == "PUT":
            audit(request, "network.quota.update", "project", project_id)
            changes = member(await read_json(request), "quota")
            changes = {k: v for k, v in changes.items() if k not in ("force", "check_limit")}
            limits = await asyncio.to_thread(
                self.service.quotas.update_quota, ctx, project_id, changes
            )
            return JSONResponse({"quota": limits})
        audit(request, "network.quota.delete", "project", project_id)
        await asyncio.to_thread(self.service.quotas.reset_quota, ctx, project_id)
        return Response(status_code=204)

    async def quota_default(self, request: Request, ctx: RequestContext) -> Response:
        limits = self.service.quotas.default_limits()
        return JSONResponse({"quota": limits})

    async def quota_details(self, request: Request, ctx: RequestContext) -> Response:
        project_id = request.path_params["project"]
        details = await asyncio.to_thread(self.service.quotas.quota_details, ctx, project_id)
        return JSONResponse({"quota": details})


class _StripJson:
    """`/v2.0/networks.json` is `/v2.0/networks`, as Neutron's routes allow."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["path"].endswith(".json"):
            scope = dict(scope)
            scope["path"] = scope["path"][: -len(".json")]
        await self.app(scope, receive, send)


def build_app(service: NetworkService, public_url: str = "") -> ASGIApp:
    api = NetworkApi(service, public_url)
    return ErrorLayer(_StripJson(Router(routes=api.routes())), render_error)
