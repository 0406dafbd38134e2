"""Routers: gateways on external networks, interfaces on subnets.

The ports a router holds are system ports (`ports.system_port`); its namespace is
`wiring`'s, synced after each change."""

from __future__ import annotations

import ipaddress
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import delete, func, select
from sqlalchemy.orm import Session

from souverain.common.context import RequestContext
from souverain.common.errors import BadRequest
from souverain.common.ids import new_id
from souverain.common.tenancy import may_act_on
from souverain.network import models as m
from souverain.network import related
from souverain.network.core import Part
from souverain.network.errors import (
    InvalidRoutes,
    PolicyNotAuthorized,
    PortInUse,
    PortNotFound,
    RouterExternalGatewayInUseByFloatingIp,
    RouterInterfaceInUseByFloatingIP,
    RouterInterfaceInUseByRoute,
    RouterInterfaceNotFound,
    RouterInterfaceNotFoundForSubnet,
    RouterInUse,
    RouterNotFound,
    SubnetNotFound,
)
from souverain.network.fields import ROUTER_GATEWAY, ROUTER_INTERFACE, owner_named
from souverain.network.schemas import FixedIp, Gateway, InterfaceBody, RouterBody


@dataclass(frozen=True)
class RouterRecord:
    """A router with its gateway port's (subnet id, address) pairs."""

    row: m.Router
    gateway_ips: list[tuple[str, str]]


@dataclass(frozen=True)
class Interface:
    """A router's port on one network, and the subnets it serves there."""

    router: m.Router
    port: m.Port
    subnet_ids: list[str]


class Routers(Part):
    """Routers, their gateway and their interfaces."""

    def _router(self, s: Session, ctx: RequestContext, router_id: Any) -> m.Router:
        row = s.get(m.Router, router_id) if isinstance(router_id, str) else None
        if row is None or not may_act_on(ctx, row.project_id):
            raise RouterNotFound(f"Router {str(router_id)[:64]} could not be found")
        return row

    def record(self, s: Session, row: m.Router) -> RouterRecord:
        return self.records(s, [row])[0]

    def records(self, s: Session, rows: Sequence[m.Router]) -> list[RouterRecord]:
        """Many routers with their gateway addresses, in one query."""
        ips = related.ips_by_port(s, [r.gateway_port_id for r in rows if r.gateway_port_id])
        return [RouterRecord(r, ips.get(r.gateway_port_id or "", [])) for r in rows]

    def _gateway_wanted(
        self, s: Session, ctx: RequestContext, gateway: Gateway | None
    ) -> tuple[m.Network, bool, list[FixedIp] | None] | None:
        if gateway is None:
            return None
        net = self.networks.network(s, ctx, gateway.network_id)
        if not net.external:
            raise BadRequest(f"Bad router request: Network {net.id} is not an external network.")
        if not gateway.enable_snat and not ctx.is_admin:
            raise PolicyNotAuthorized(
                "rule:create_router:external_gateway_info:enable_snat is disallowed by policy"
            )
        if gateway.fixed_ips is not None and not ctx.is_admin:
            raise PolicyNotAuthorized(
                "rule:create_router:external_gateway_info:external_fixed_ips is disallowed by "
                "policy"
            )
        return net, gateway.enable_snat, gateway.fixed_ips

    def _set_gateway(
        self,
        s: Session,
        row: m.Router,
        wanted: tuple[m.Network, bool, list[FixedIp] | None] | None,
    ) -> None:
        moving = wanted is None or wanted[0].id != row.external_network_id
        if row.external_network_id and moving:
            held = s.scalar(
                select(func.count())
                .select_from(m.FloatingIp)
                .where(m.FloatingIp.router_id == row.id)
            )
            if held:
                raise RouterExternalGatewayInUseByFloatingIp(
                    f"Gateway cannot be updated for router {row.id}, since a gateway to external "
                    f"network {row.external_network_id} is required by one or more floating IPs."
                )
            if row.gateway_port_id:
                old = s.get(m.Port, row.gateway_port_id)
                if old is not None:
                    self.ports.delete_port_row(s, old)
            row.external_network_id, row.gateway_port_id = None, None
        if wanted is None:
            return
        net, snat, fixed = wanted
        row.enable_snat = snat
        if moving:
            port = self.ports.system_port(
                s, net, "", ROUTER_GATEWAY, row.id, self.ports.wanted_ips(s, net, fixed)
            )
            row.external_network_id, row.gateway_port_id = net.id, port.id

    def _router_plain(self, row: m.Router, body: RouterBody) -> None:
        if body.name is not None:
            row.name = body.name
        if body.description is not None:
            row.description = body.description
        if body.admin_state_up is not None:
            row.admin_state_up = body.admin_state_up

    def create_router(self, ctx: RequestContext, body: RouterBody) -> RouterRecord:
        project_id = owner_named(ctx, body.owner)

        def work(s: Session) -> RouterRecord:
            self._lock_quota(s, project_id)
            self.quotas.claim(s, project_id, "router")
            now = self._now()
            row = m.Router(
                id=new_id(),
                project_id=project_id,
                enable_snat=True,
                admin_state_up=True,
                routes=[],
                revision_number=1,
                created_at=now,
                updated_at=now,
            )
            self._router_plain(row, body)
            s.add(row)
            s.flush()
            self._set_gateway(s, row, self._gateway_wanted(s, ctx, body.gateway))
            s.flush()
            return self.record(s, row)

        shown = self._retrying(work)
        self.meter.gauge(project_id, "router", shown.row.id, 1)
        self.wiring.sync_router(shown.row.id)
        return shown

    def get_router(self, ctx: RequestContext, router_id: str) -> RouterRecord:
        with self.db.session() as s:
            return self.record(s, self._router(s, ctx, router_id))

    def list_routers(self, ctx: RequestContext) -> list[RouterRecord]:
        """The caller's routers (all of them for an admin); the API filters and pages."""
        with self.db.session() as s:
            return self.records(s, self._owned_rows(s, ctx, m.Router))

    def update_router(self, ctx: RequestContext, router_id: str, body: RouterBody) -> RouterRecord:

        def work(s: Session) -> RouterRecord:
            row = self._router(s, ctx, router_id)
            self._router_plain(row, body)
            if body.gateway_given:
                self._set_gateway(s, row, self._gateway_wanted(s, ctx, body.gateway))
                s.flush()
            if body.routes is not None:
                self._check_routes(s, row, body.routes)
                row.routes = body.routes
            elif body.gateway_given:
                self._check_routes(s, row, row.routes)
            row.revision_number += 1
            row.updated_at = self._now()
            s.flush()
            return self.record(s, row)

        shown = self._retrying(work)
        self.wiring.sync_router(router_id)
        return shown

    def delete_router(self, ctx: RequestContext, router_id: str) -> None:
        with self.db.session() as s:
            row = self._router(s, ctx, router_id)
            interfaces = s.scalar(
                select(func.count())
                .select_from(m.Port)
                .where(m.Port.device_id == row.id, m.Port.device_owner == ROUTER_INTERFACE)
            )
            if interfaces:
                raise RouterInUse(f"Router {row.id} still has ports")
            self._set_gateway(s, row, None)
            project_id, router_id = row.project_id, row.id
            s.delete(row)
        self.meter.gauge(project_id, "router", router_id, 0)
        if self.routing is not None:
            self.wiring.meter_egress(router_id, project_id)
        self.wiring.sync_router(router_id)

    def _connected(self, s: Session, row: m.Router) -> list[tuple[str, str, str]]:
        """(subnet id, CIDR, the router's address) of every port the router holds."""
        return [
            (sid, cidr, ip)
            for sid, cidr, ip in s.execute(
                select(m.Subnet.id, m.Subnet.cidr, m.IpAllocation.ip_address)
                .join(m.IpAllocation, m.IpAllocation.subnet_id == m.Subnet.id)
                .join(m.Port, m.Port.id == m.IpAllocation.port_id)
                .where(m.Port.device_id == row.id)
            ).all()
        ]

    def _check_routes(self, s: Session, row: m.Router, routes: list[dict[str, str]]) -> None:
        """Neutron's rule: each next hop is on a subnet the router is connected to, and is
        not one of the router's own addresses."""
        connected = self._connected(s, row)
        own = {ip for _, _, ip in connected}
        for route in routes:
            hop = ipaddress.ip_address(route["nexthop"])
            reason = None
            if not any(hop in ipaddress.ip_network(cidr) for _, cidr, _ in connected):
                reason = "the nexthop is not connected with router"
            elif route["nexthop"] in own:
                reason = "the nexthop is used by router"
            if reason is not None:
                raise InvalidRoutes(f"Invalid format for routes: {routes}, {reason}")

    def _refuse_if_routed(self, row: m.Router, subnet: m.Subnet) -> None:
        cidr = ipaddress.ip_network(subnet.cidr)
        if any(ipaddress.ip_address(r["nexthop"]) in cidr for r in row.routes):
            raise RouterInterfaceInUseByRoute(
                f"Router interface for subnet {subnet.id} on router {row.id} cannot be "
                "deleted, as it is required by one or more routes."
            )

    def _check_overlap(self, s: Session, row: m.Router, subnet: m.Subnet) -> None:
        attached = s.execute(
            select(m.Subnet.id, m.Subnet.cidr)
            .join(m.IpAllocation, m.IpAllocation.subnet_id == m.Subnet.id)
            .join(m.Port, m.Port.id == m.IpAllocation.port_id)
            .where(m.Port.device_id == row.id, m.Port.device_owner == ROUTER_INTERFACE)
        ).all()
        mine = ipaddress.ip_network(subnet.cidr)
        for other_id, cidr in attached:
            if other_id == subnet.id:
                raise BadRequest(
                    f"Bad router request: Router already has a port on subnet {subnet.id}."
                )
            if mine.overlaps(ipaddress.ip_network(cidr)):
                raise BadRequest(
                    f"Bad router request: Cidr {subnet.cidr} of subnet {subnet.id} overlaps with "
                    f"cidr {cidr} of subnet {other_id}."
                )

    def add_router_interface(
        self, ctx: RequestContext, router_id: str, body: InterfaceBody
    ) -> Interface:
        subnet_id, port_id = body.subnet_id, body.port_id

        def work(s: Session) -> Interface:
            row = self._router(s, ctx, router_id)
            self._lock_quota(s, row.project_id)
            if port_id is not None:
                port = self.ports.port(s, ctx, port_id)
                if not (ctx.is_admin or port.project_id == row.project_id):
                    # an interface is the router's: a port of another project is not offered
                    raise PortNotFound(f"Port {port.id} could not be found.")
                if port.device_id or port.device_owner:
                    raise PortInUse(
                        f"Unable to complete operation on port {port.id} for network "
                        f"{port.network_id}. Port already has an attached device {port.device_id}."
                    )
                ips = self.ports.ips_of(s, port.id)
                if not ips:
                    raise BadRequest(
                        "Bad router request: Router port must have at least one fixed IP."
                    )
                for sid, _ in ips:
                    sn = s.get(m.Subnet, sid)
                    assert sn is not None
                    self._check_overlap(s, row, sn)
                port.device_id, port.device_owner, port.status = row.id, ROUTER_INTERFACE, "ACTIVE"
                port.port_security_enabled = False
                port.allowed_address_pairs = []
                s.execute(delete(m.PortSecurityGroup).where(m.PortSecurityGroup.port_id == port.id))
                port.updated_at = self._now()
                s.flush()
                return Interface(row, port, [sid for sid, _ in ips])
            subnet = self.networks.subnet(s, ctx, subnet_id)
            if not (ctx.is_admin or subnet.project_id == row.project_id):
                raise SubnetNotFound(f"Subnet {subnet.id} could not be found.")
            net = s.get(m.Network, subnet.network_id)
            assert net is not None
            if net.external:
                raise BadRequest(
                    f"Bad router request: Router interface on external network {net.id} is not "
                    "allowed: set it as the router's gateway."
                )
            if not subnet.gateway_ip:
                raise BadRequest(
                    "Bad router request: Subnet for router interface must have a gateway IP."
                )
            self._check_overlap(s, row, subnet)
            self.quotas.claim(s, row.project_id, "port")
            port = self.ports.system_port(
                s, net, row.project_id, ROUTER_INTERFACE, row.id, [(subnet, subnet.gateway_ip)]
            )
            return Interface(row, port, [subnet.id])

        info = self._retrying(work)
        self.wiring.sync_router(router_id)
        return info

    def remove_router_interface(
        self, ctx: RequestContext, router_id: str, body: InterfaceBody
    ) -> Interface:
        subnet_id, port_id = body.subnet_id, body.port_id
        with self.db.session() as s:
            row = self._router(s, ctx, router_id)
            ports = s.scalars(
                select(m.Port).where(
                    m.Port.device_id == row.id, m.Port.device_owner == ROUTER_INTERFACE
                )
            ).all()
            found = None
            for port in ports:
                ips = self.ports.ips_of(s, port.id)
                if port.id == port_id or any(sid == subnet_id for sid, _ in ips):
                    found = (port, ips)
                    break
            if found is None:
                if port_id is not None:
                    raise RouterInterfaceNotFound(
                        f"Router {row.id} does not have an interface with id {str(port_id)[:64]}"
                    )
                raise RouterInterfaceNotFoundForSubnet(
                    f"Router {row.id} has no interface on subnet {str(subnet_id)[:64]}"
                )
            port, ips = found
            subnets = [sid for sid, _ in ips]
            for sid in subnets:
                routed = s.get(m.Subnet, sid)
                if routed is not None:
                    self._refuse_if_routed(row, routed)
            for fip_fixed in s.scalars(
                select(m.FloatingIp.fixed_ip_address).where(m.FloatingIp.router_id == row.id)
            ).all():
                for sid in subnets:
                    sn = s.get(m.Subnet, sid)
                    if (
                        sn is not None
                        and fip_fixed
                        and ipaddress.ip_address(fip_fixed) in ipaddress.ip_network(sn.cidr)
                    ):
                        raise RouterInterfaceInUseByFloatingIP(
                            f"Router interface for subnet {sid} on router {row.id} cannot be "
                            "deleted, as it is required by one or more floating IPs."
                        )
            info = Interface(row, port, subnets)
            self.ports.delete_port_row(s, port)
        self.wiring.sync_router(router_id)
        return info
