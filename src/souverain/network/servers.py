"""What the compute service asks of the network: ports for its servers, and
the project's get-me-a-network network."""

from __future__ import annotations

import logging
from typing import Any

from sqlalchemy import Select, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from souverain.common.context import RequestContext
from souverain.common.errors import BadRequest
from souverain.network import binding, ipam, schemas
from souverain.network import models as m
from souverain.network.core import Part
from souverain.network.errors import OverQuota, PortInUse, PortNotFound, SecurityGroupNotFound
from souverain.network.fields import AUTO_NETWORK, AUTO_ROUTER, COMPUTE_OWNER
from souverain.network.networks import NetworkRecord
from souverain.network.ports import PortRecord
from souverain.network.schemas import Gateway, InterfaceBody, RouterBody

log = logging.getLogger("souverain.network")


class Servers(Part):
    """Ports made, bound and released for servers."""

    def get_or_create_auto_network(self, ctx: RequestContext) -> NetworkRecord:
        """The project's get-me-a-network network with its subnet, made on first call."""
        project_id = ctx.project_id or ""
        with self.db.session() as s:
            row = s.scalars(
                select(m.Network).where(m.Network.auto_for_project == project_id)
            ).first()
            if row is not None:
                return self.networks.record(s, row)
        try:
            with self.db.session() as s:
                self._lock_quota(s, project_id)
                row = self.networks.new_network_row(s, project_id, {"name": AUTO_NETWORK})
                row.auto_for_project = project_id
                s.add(row)
                s.flush()
                cidr = ipam.parse_cidr(self.settings.default_cidr)
                subnet = self.networks.new_subnet_row(
                    s,
                    row,
                    project_id,
                    schemas.subnet(
                        {
                            "name": AUTO_NETWORK + "-subnet",
                            "cidr": str(cidr),
                            "ip_version": cidr.version,
                            "dns_nameservers": list(self.settings.dns_nameservers),
                        }
                    ),
                )
                s.add(subnet)
                s.flush()
                made = self.networks.record(s, row)
        except IntegrityError:
            return self.get_or_create_auto_network(ctx)
        self._auto_router(ctx, made.subnet_ids[0])
        return made

    def _auto_router(self, ctx: RequestContext, subnet_id: str) -> None:
        """Get-me-a-network's router: the new subnet reaches `public` (SNAT), as Neutron's
        auto-allocated topology does. Without a router quota left the network stays private."""
        with self.db.session() as s:
            public = s.scalar(
                select(m.Network.id)
                .where(m.Network.external, m.Network.project_id == "")
                .order_by(m.Network.created_at)
            )
        if public is None:
            return
        try:
            body = RouterBody(
                name=AUTO_ROUTER, gateway_given=True, gateway=Gateway(public, True, None)
            )
            router = self.routers.create_router(ctx, body)
        except OverQuota:
            log.warning(
                "project %s has no router quota left: its auto network is private", ctx.project_id
            )
            return
        self.routers.add_router_interface(ctx, router.row.id, InterfaceBody(subnet_id, None))

    def create_port_for_server(
        self,
        ctx: RequestContext,
        network_id: str | None = None,
        port_id: str | None = None,
        fixed_ip: str | None = None,
        *,
        server_id: str,
        project_id: str | None = None,
        security_groups: list[str] | None = None,
    ) -> PortRecord:
        """A port of the server's project (`project_id`, else the caller's) for the server:
        one brought by id, or a new one; another project's port is never plugged, even by
        an admin, since compute plugs only its server's project's ports."""
        if project_id is None:
            project_id = ctx.project_id or ""
        if port_id is not None:
            return self._bring_port(ctx, port_id, server_id, project_id)
        if network_id is None:
            network_id = self.get_or_create_auto_network(ctx).row.id
        body: dict[str, Any] = {
            "network_id": network_id,
            "device_id": server_id,
            "device_owner": COMPUTE_OWNER,
            "project_id": project_id,
        }
        if fixed_ip is not None:
            body["fixed_ips"] = [{"ip_address": fixed_ip}]
        if security_groups is not None:
            body["security_groups"] = security_groups
        return self.ports.create_port(
            ctx, schemas.port_create(body), delete_with_device=True, by_service=True
        )

    def _bring_port(
        self, ctx: RequestContext, port_id: str, server_id: str, project_id: str
    ) -> PortRecord:
        with self.db.session() as s:
            row = self.ports.port(s, ctx, port_id)
            if row.project_id != project_id:
                raise BadRequest(f"Port {row.id} not usable for instance {server_id}.")
            taken = row.device_id or binding.is_service_owner(row.device_owner)
            if taken and row.device_id != server_id:
                raise PortInUse(
                    f"Unable to complete operation on port {row.id} for network "
                    f"{row.network_id}. Port already has an attached device {row.device_id}."
                )
            row.device_id, row.device_owner = server_id, COMPUTE_OWNER
            row.updated_at = self._now()
            s.flush()
            return self.ports.record(s, row)

    def bind_port(self, port_id: str, server_id: str, host: str) -> PortRecord:
        with self.db.session() as s:
            row = s.get(m.Port, port_id)
            if row is None:
                raise PortNotFound(f"Port {port_id[:64]} could not be found.")
            row.device_id, row.host, row.status = server_id, host, "ACTIVE"
            row.updated_at = self._now()
            s.flush()
            return self.ports.record(s, row)

    def release_port(self, port_id: str) -> None:
        """One port leaves its server: deleted if made for it, else unbound; unplugged."""
        with self.db.session() as s:
            row = s.get(m.Port, port_id)
            if row is None:
                return
            network_id = row.network_id
            if row.delete_with_device:
                routers = self.ports.delete_port_row(s, row)
            else:
                routers = set()
                row.device_id, row.device_owner, row.host, row.status = "", "", "", "DOWN"
                row.updated_at = self._now()
        for router_id in routers:
            self.wiring.sync_router(router_id)
        self.wiring.unwire_port(port_id, network_id)

    def tell_servers(self, port_ids: set[str | None]) -> None:
        with self.db.session() as s:
            devices = s.scalars(
                select(m.Port.device_id).where(
                    m.Port.id.in_([p for p in port_ids if p]), m.Port.device_owner.like("compute:%")
                )
            ).all()
        for device_id in set(devices):
            for listener in self.core.address_listeners:
                try:
                    listener(device_id)
                except Exception:
                    log.exception("server %s could not refresh its addresses", device_id)

    def release_ports_of(self, server_id: str, project_id: str) -> None:
        routers: set[str] = set()
        with self.db.session() as s:
            for row in s.scalars(self._server_ports(server_id, project_id)).all():
                if row.delete_with_device:
                    routers |= self.ports.delete_port_row(s, row)
                else:
                    row.device_id, row.device_owner, row.host, row.status = "", "", "", "DOWN"
                    row.updated_at = self._now()
        for router_id in routers:
            self.wiring.sync_router(router_id)

    @staticmethod
    def _server_ports(server_id: str, project_id: str) -> Select[m.Port]:
        """A server's ports: compute's binding, in the server's project. A port of another
        project naming the server as its device is not one of them, whoever wrote it."""
        return select(m.Port).where(
            m.Port.device_id == server_id,
            m.Port.project_id == project_id,
            m.Port.device_owner.like("compute:%"),
        )

    def ports_of(self, server_id: str, project_id: str) -> list[PortRecord]:
        """The ports plugged into a server of `project_id`, oldest first (the guest's eth0,
        eth1, ...)."""
        with self.db.session() as s:
            stmt = self._server_ports(server_id, project_id).order_by(m.Port.created_at, m.Port.id)
            return self.ports.records(s, s.scalars(stmt).all())

    def floating_ips_of_ports(self, port_ids: list[str]) -> dict[str, list[str]]:
        """Port id -> the floating addresses pointing at it (for a server's addresses)."""
        if not port_ids:
            return {}
        with self.db.session() as s:
            rows = s.execute(
                select(m.FloatingIp.port_id, m.FloatingIp.floating_ip_address)
                .where(m.FloatingIp.port_id.in_(port_ids))
                .order_by(m.FloatingIp.created_at)
            ).all()
        out: dict[str, list[str]] = {}
        for port_id, address in rows:
            out.setdefault(str(port_id), []).append(str(address))
        return out

    # ------------------------------------------------------------------ security groups

    def security_groups_of_servers(self, servers: dict[str, str]) -> dict[str, list[str]]:
        """Server id -> the names of the security groups its ports are in (each once, in
        name order), for servers given as {server id: its project}; one query."""
        if not servers:
            return {}
        with self.db.session() as s:
            rows = s.execute(
                select(m.Port.device_id, m.Port.project_id, m.SecurityGroup.name)
                .join(m.PortSecurityGroup, m.PortSecurityGroup.port_id == m.Port.id)
                .join(m.SecurityGroup, m.SecurityGroup.id == m.PortSecurityGroup.security_group_id)
                .where(
                    m.Port.device_id.in_(list(servers)),
                    m.Port.device_owner.like("compute:%"),
                )
            ).all()
        out: dict[str, set[str]] = {}
        for device_id, project_id, name in rows:
            if servers.get(device_id) == project_id:  # another project's port is not its
                out.setdefault(str(device_id), set()).add(str(name))
        return {server_id: sorted(names) for server_id, names in out.items()}

    def _project_group(self, s: Session, project_id: str, name: str) -> m.SecurityGroup:
        """The project's group by name (or id); 404 naming it otherwise."""
        group = s.get(m.SecurityGroup, name)
        if group is None or group.project_id != project_id:
            group = s.scalars(
                select(m.SecurityGroup).where(
                    m.SecurityGroup.project_id == project_id, m.SecurityGroup.name == name
                )
            ).first()
        if group is None:
            raise SecurityGroupNotFound(f"Security group {name[:255]} not found.")
        return group

    def set_server_security_group(
        self, server_id: str, project_id: str, name: str, member: bool
    ) -> None:
        """Put every port of the server in the project's group `name` (or take them out of
        it); 400 when the server has no port, or is not in the group it leaves."""
        with self.db.session() as s:
            group = self._project_group(s, project_id, name)
            ports = s.scalars(self._server_ports(server_id, project_id)).all()
            if not ports:
                raise BadRequest(f"Server {server_id} has no port to take a security group.")
            links = {
                link.port_id: link
                for link in s.scalars(
                    select(m.PortSecurityGroup).where(
                        m.PortSecurityGroup.security_group_id == group.id,
                        m.PortSecurityGroup.port_id.in_([p.id for p in ports]),
                    )
                )
            }
            if not member and not links:
                raise BadRequest(f"Security group {name[:255]} not associated with the instance.")
            for port in ports:
                if member and port.id not in links:
                    s.add(m.PortSecurityGroup(port_id=port.id, security_group_id=group.id))
                elif not member and port.id in links:
                    s.delete(links[port.id])
                port.updated_at = self._now()
                port.revision_number += 1
        if self.dataplane is not None:
            self.wiring.sync_firewall()
