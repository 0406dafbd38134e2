"""Floating IPs: addresses of an external network pointed at a port's fixed IPv4.

An association needs a router with an interface on the port's subnet and a gateway
on the floating IP's network; the NAT itself is `wiring`'s."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from souverain.common.context import RequestContext
from souverain.common.errors import BadRequest
from souverain.common.ids import new_id
from souverain.common.tenancy import may_act_on
from souverain.network import models as m
from souverain.network import related
from souverain.network.core import Part
from souverain.network.errors import (
    ExternalGatewayForFloatingIPNotFound,
    FloatingIPNotFound,
    FloatingIPPortAlreadyAssociated,
    IpAddressGenerationFailure,
    PolicyNotAuthorized,
    PortNotFound,
)
from souverain.network.fields import FLOATING_OWNER, ROUTER_INTERFACE, owner_named
from souverain.network.schemas import FloatingBody


@dataclass(frozen=True)
class FloatingRecord:
    """A floating IP with the port it points at, if any."""

    row: m.FloatingIp
    port: m.Port | None


class FloatingIps(Part):
    """Floating IPs and their association with ports."""

    def _floating(self, s: Session, ctx: RequestContext, fip_id: Any) -> m.FloatingIp:
        row = s.get(m.FloatingIp, fip_id) if isinstance(fip_id, str) else None
        if row is None or not may_act_on(ctx, row.project_id):
            raise FloatingIPNotFound(f"Floating IP {str(fip_id)[:64]} could not be found")
        return row

    def record(self, s: Session, row: m.FloatingIp) -> FloatingRecord:
        return self.records(s, [row])[0]

    def records(self, s: Session, rows: Sequence[m.FloatingIp]) -> list[FloatingRecord]:
        """Many floating IPs with the ports they point at, in one query."""
        ports = related.ports_by_id(s, [r.port_id for r in rows if r.port_id])
        return [FloatingRecord(r, ports.get(r.port_id or "")) for r in rows]

    def _associate(
        self, s: Session, ctx: RequestContext, row: m.FloatingIp, port_id: Any, fixed: Any
    ) -> None:
        """Point the floating IP at a port's fixed IPv4, through the router that reaches it."""
        if port_id is None:
            row.port_id, row.fixed_ip_address, row.router_id = None, None, None
            return
        port = self.ports.port(s, ctx, port_id)
        if port.project_id != row.project_id:
            raise PortNotFound(f"Port {port.id} could not be found.")
        v4 = [(sid, ip) for sid, ip in self.ports.ips_of(s, port.id) if ":" not in ip]
        if fixed is not None:
            chosen = [(sid, ip) for sid, ip in v4 if ip == fixed]
            if not chosen:
                raise BadRequest(
                    f"Bad floatingip request: Port {port.id} does not have fixed ip "
                    f"{str(fixed)[:64]}."
                )
        elif len(v4) > 1:
            raise BadRequest(
                f"Bad floatingip request: Port {port.id} has multiple fixed IPv4 addresses. "
                "Must provide a specific IPv4 address when assigning a floating IP."
            )
        else:
            chosen = v4
        if not chosen:
            raise BadRequest(
                f"Bad floatingip request: Port {port.id} does not have any IPv4 address: "
                "a floating IP needs one."
            )
        subnet_id, address = chosen[0]
        router_id = s.scalar(
            select(m.Router.id)
            .join(m.Port, m.Port.device_id == m.Router.id)
            .join(m.IpAllocation, m.IpAllocation.port_id == m.Port.id)
            .where(
                m.Port.device_owner == ROUTER_INTERFACE,
                m.IpAllocation.subnet_id == subnet_id,
                m.Router.external_network_id == row.floating_network_id,
                # routers are not shared: on a shared subnet another project's router
                # must not carry this project's floating IP (nor its traffic bill)
                m.Router.project_id == row.project_id,
            )
            .order_by(m.Router.created_at)
        )
        if router_id is None:
            raise ExternalGatewayForFloatingIPNotFound(
                f"External network {row.floating_network_id} is not reachable from subnet "
                f"{subnet_id}. Therefore, cannot associate Port {port.id} with a Floating IP."
            )
        taken = s.scalar(
            select(m.FloatingIp.id).where(
                m.FloatingIp.port_id == port.id,
                m.FloatingIp.fixed_ip_address == address,
                m.FloatingIp.id != row.id,
            )
        )
        if taken:
            raise FloatingIPPortAlreadyAssociated(
                f"Cannot associate floating IP {row.floating_ip_address} ({row.id}) with port "
                f"{port.id} using fixed IP {address}, as that fixed IP already has a floating IP "
                f"on external network {row.floating_network_id}."
            )
        row.port_id, row.fixed_ip_address, row.router_id = port.id, address, router_id

    def create_floating_ip(self, ctx: RequestContext, body: FloatingBody) -> FloatingRecord:
        project_id = owner_named(ctx, body.owner)
        if body.address_given and not ctx.is_admin:
            raise PolicyNotAuthorized(
                "rule:create_floatingip and rule:create_floatingip:floating_ip_address is "
                "disallowed by policy"
            )

        def work(s: Session) -> FloatingRecord:
            self._lock_quota(s, project_id)
            net = self.networks.network(s, ctx, body.network_id)
            if not net.external:
                raise BadRequest(
                    f"Bad floatingip request: Network {net.id} is not a valid external network."
                )
            self.quotas.claim(s, project_id, "floatingip")
            wanted = self.ports.wanted_ips(s, net, body.wanted)
            fip_id = new_id()
            port = self.ports.system_port(s, net, "", FLOATING_OWNER, fip_id, wanted)
            ips = self.ports.ips_of(s, port.id)
            if not ips:
                raise IpAddressGenerationFailure(
                    f"No more IP addresses available on network {net.id}."
                )
            now = self._now()
            row = m.FloatingIp(
                id=fip_id,
                project_id=project_id,
                floating_network_id=net.id,
                floating_ip_address=ips[0][1],
                floating_port_id=port.id,
                description=body.description or "",
                revision_number=1,
                created_at=now,
                updated_at=now,
            )
            s.add(row)
            if body.port_id is not None:
                self._associate(s, ctx, row, body.port_id, body.fixed_ip_address)
            s.flush()
            return self.record(s, row)

        made = self._retrying(work)
        self.meter.gauge(project_id, "floatingip", made.row.id, 1)
        if made.row.router_id:
            self.wiring.sync_router(made.row.router_id)
            self.servers.tell_servers({made.row.port_id})
        return made

    def get_floating_ip(self, ctx: RequestContext, fip_id: str) -> FloatingRecord:
        with self.db.session() as s:
            return self.record(s, self._floating(s, ctx, fip_id))

    def list_floating_ips(self, ctx: RequestContext) -> list[FloatingRecord]:
        with self.db.session() as s:
            return self.records(s, self._owned_rows(s, ctx, m.FloatingIp))

    def update_floating_ip(
        self, ctx: RequestContext, fip_id: str, body: FloatingBody
    ) -> FloatingRecord:
        with self.db.session() as s:
            row = self._floating(s, ctx, fip_id)
            before, before_port = row.router_id, row.port_id
            if body.port_given:
                self._associate(s, ctx, row, body.port_id, body.fixed_ip_address)
            if body.description is not None:
                row.description = body.description
            row.revision_number += 1
            row.updated_at = self._now()
            s.flush()
            shown = self.record(s, row)
        for router_id in {before, shown.row.router_id} - {None}:
            self.wiring.sync_router(str(router_id))
        self.servers.tell_servers({before_port, shown.row.port_id})
        return shown

    def delete_floating_ip(self, ctx: RequestContext, fip_id: str) -> None:
        with self.db.session() as s:
            row = self._floating(s, ctx, fip_id)
            router_id, port_id = row.router_id, row.port_id
            project_id, fip_id = row.project_id, row.id
            port = s.get(m.Port, row.floating_port_id)
            if port is not None:
                self.ports.delete_port_row(s, port)
            s.delete(row)
        self.meter.gauge(project_id, "floatingip", fip_id, 0)
        if router_id:
            self.wiring.sync_router(router_id)
            self.servers.tell_servers({port_id})
