"""Ports: fixed IP allocation, MACs, security groups and address pairs on a port.

An address is held by a row of `ip_allocations`, whose primary key settles races;
the data plane is told after the rows change, never before."""

from __future__ import annotations

import ipaddress
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import delete, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from souverain.common.context import RequestContext
from souverain.common.errors import Conflict
from souverain.common.ids import new_id
from souverain.common.tenancy import may_act_on
from souverain.network import binding, ipam, related
from souverain.network import models as m
from souverain.network.core import Part, Retry
from souverain.network.dhcp_options import merged
from souverain.network.errors import (
    IpAddressAlreadyAllocated,
    IpAddressGenerationFailure,
    MacAddressInUse,
    PolicyNotAuthorized,
    PortInUse,
    PortNotFound,
    SecurityGroupNotFound,
)
from souverain.network.fields import SERVICE_OWNERS, new_mac, owner_named
from souverain.network.ipam import InvalidInput
from souverain.network.listing import ListQuery
from souverain.network.schemas import FixedIp, PortBody


@dataclass(frozen=True)
class PortRecord:
    """A port with what hangs off it: its (subnet id, address) pairs and its groups' ids."""

    row: m.Port
    ips: list[tuple[str, str]]
    groups: list[str]


class Ports(Part):
    """Ports and the addresses they hold."""

    def port(self, s: Session, ctx: RequestContext, port_id: Any) -> m.Port:
        row = s.get(m.Port, port_id) if isinstance(port_id, str) else None
        if row is None or not may_act_on(ctx, row.project_id):
            raise PortNotFound(f"Port {str(port_id)[:64]} could not be found.")
        return row

    def record(self, s: Session, row: m.Port) -> PortRecord:
        return self.records(s, [row])[0]

    def records(self, s: Session, rows: Sequence[m.Port]) -> list[PortRecord]:
        """Many ports with their addresses and groups: one query each, not per port."""
        ids = [r.id for r in rows]
        ips, groups = related.ips_by_port(s, ids), related.groups_by_port(s, ids)
        return [PortRecord(r, ips.get(r.id, []), groups.get(r.id, [])) for r in rows]

    def wanted_ips(
        self, s: Session, net: m.Network, fixed: list[FixedIp] | None
    ) -> list[tuple[m.Subnet, str | None]]:
        """(subnet, requested address or None) for each requested fixed IP, checked against
        the network's subnets; none requested: the first subnet of each IP version."""
        subnets = s.scalars(
            select(m.Subnet).where(m.Subnet.network_id == net.id).order_by(m.Subnet.created_at)
        ).all()
        if fixed is None:
            out: list[tuple[m.Subnet, str | None]] = []
            for version in (4, 6):
                first = next((sn for sn in subnets if sn.ip_version == version), None)
                if first is not None:
                    out.append((first, None))
            return out
        return [self._wanted_ip(net, subnets, item) for item in fixed]

    @staticmethod
    def _wanted_ip(
        net: m.Network, subnets: Sequence[m.Subnet], item: FixedIp
    ) -> tuple[m.Subnet, str | None]:
        subnet = None
        if item.subnet_id is not None:
            subnet = next((sn for sn in subnets if sn.id == item.subnet_id), None)
            if subnet is None:
                raise InvalidInput(
                    f"Invalid input for operation: Failed to create port on network "
                    f"{net.id}, because fixed_ips included invalid subnet "
                    f"{item.subnet_id[:64]}."
                )
        if item.ip_address is None:
            assert subnet is not None  # the schema wants one of the two
            return subnet, None
        ip = ipaddress.ip_address(item.ip_address)
        if subnet is None:
            subnet = next((sn for sn in subnets if ip in ipaddress.ip_network(sn.cidr)), None)
            if subnet is None:
                raise InvalidInput(
                    f"Invalid input for operation: IP address {ip} is not a valid IP "
                    f"for any of the subnets on the specified network."
                )
        address = ipam.check_fixed_address(
            ipaddress.ip_network(subnet.cidr), str(ip), subnet.gateway_ip
        )
        return subnet, address

    def _allocate(
        self, s: Session, port: m.Port, wanted: list[tuple[m.Subnet, str | None]]
    ) -> None:
        for subnet, address in wanted:
            taken = s.scalars(
                select(m.IpAllocation.ip_address).where(m.IpAllocation.subnet_id == subnet.id)
            ).all()
            if address is not None:
                if address in taken:
                    raise IpAddressAlreadyAllocated(
                        f"IP address {address} already allocated in subnet {subnet.id}"
                    )
                chosen = address
            else:
                free = ipam.next_free(
                    ipam.pools_of(subnet.allocation_pools), taken, subnet.ip_version
                )
                if free is None:
                    raise IpAddressGenerationFailure(
                        f"No more IP addresses available on network {port.network_id}."
                    )
                chosen = free
            s.add(
                m.IpAllocation(
                    subnet_id=subnet.id,
                    ip_address=chosen,
                    port_id=port.id,
                    network_id=port.network_id,
                )
            )
            try:
                s.flush()
            except IntegrityError:
                raise Retry() from None

    def _groups(
        self, s: Session, ctx: RequestContext, project_id: str, value: list[Any] | None
    ) -> list[str]:
        if value is None:
            return [self.groups.default_group_id(s, project_id)] if project_id else []
        out = []
        for group_id in value:
            group = s.get(m.SecurityGroup, group_id) if isinstance(group_id, str) else None
            if group is not None and not (ctx.is_admin or group.project_id == project_id):
                group = None
            if group is None and isinstance(group_id, str):
                # the CLI may name a group instead of giving its id
                group = s.scalars(
                    select(m.SecurityGroup).where(
                        m.SecurityGroup.project_id == project_id,
                        m.SecurityGroup.name == group_id,
                    )
                ).first()
            if group is None:
                raise SecurityGroupNotFound(f"Security group {str(group_id)[:64]} does not exist")
            if group.id not in out:
                out.append(group.id)
        return out

    def _port_security(
        self, s: Session, ctx: RequestContext, row: m.Port, body: PortBody, creating: bool
    ) -> None:
        if body.port_security_enabled is not None:
            row.port_security_enabled = body.port_security_enabled
        if body.allowed_address_pairs is not None:
            row.allowed_address_pairs = body.allowed_address_pairs
        if not row.port_security_enabled:
            if body.groups_given and body.security_groups:
                raise Conflict(
                    "Port has security group associated. Cannot disable port security or ip "
                    "address until security group is removed"
                )
            if row.allowed_address_pairs:
                raise Conflict(
                    "Port Security must be enabled in order to have allowed address pairs on a "
                    "port."
                )
            s.execute(delete(m.PortSecurityGroup).where(m.PortSecurityGroup.port_id == row.id))
            return
        if body.groups_given or creating:
            groups = self._groups(s, ctx, row.project_id, body.security_groups)
            s.execute(delete(m.PortSecurityGroup).where(m.PortSecurityGroup.port_id == row.id))
            for group_id in groups:
                s.add(m.PortSecurityGroup(port_id=row.id, security_group_id=group_id))

    def _plain_port_fields(self, row: m.Port, body: PortBody) -> None:
        for name, value in body.texts:
            setattr(row, name, value)
        if body.admin_state_up is not None:
            row.admin_state_up = body.admin_state_up
        if body.extra_dhcp_opts is not None:
            row.extra_dhcp_opts = merged(row.extra_dhcp_opts or [], body.extra_dhcp_opts)

    def create_port(
        self,
        ctx: RequestContext,
        body: PortBody,
        delete_with_device: bool = False,
        *,
        by_service: bool = False,
    ) -> PortRecord:
        """A new port; `by_service`: compute makes it for a server and names itself owner."""
        if not by_service:
            binding.check_create(ctx, body)
        project_id = owner_named(ctx, body.owner)
        mac = body.mac_address
        if project_id:
            self.groups.ensure_default_group(project_id)

        def work(s: Session) -> PortRecord:
            self._lock_quota(s, project_id)
            net = self.networks.network(s, ctx, body.network_id)
            if not (may_act_on(ctx, net.project_id) or net.shared):
                raise PolicyNotAuthorized(
                    "(rule:create_port and rule:create_port:network) is disallowed by policy"
                )
            self.quotas.claim(s, project_id, "port")
            wanted = self.wanted_ips(s, net, body.fixed_ips)
            if mac is not None:
                clash = s.scalar(
                    select(m.Port.id).where(m.Port.network_id == net.id, m.Port.mac_address == mac)
                )
                if clash:
                    raise MacAddressInUse(
                        f"Unable to complete operation for network {net.id}. The mac address "
                        f"{mac} is in use."
                    )
            now = self._now()
            row = m.Port(
                id=new_id(),
                network_id=net.id,
                project_id=project_id,
                mac_address=mac or new_mac(),
                status="DOWN",
                port_security_enabled=net.port_security_enabled,
                allowed_address_pairs=[],
                extra_dhcp_opts=[],
                delete_with_device=delete_with_device,
                revision_number=1,
                created_at=now,
                updated_at=now,
            )
            self._plain_port_fields(row, body)
            s.add(row)
            try:
                s.flush()
            except IntegrityError:
                raise Retry() from None
            self._port_security(s, ctx, row, body, creating=True)
            self._allocate(s, row, wanted)
            s.flush()
            return self.record(s, row)

        return self._retrying(work)

    def get_port(self, ctx: RequestContext, port_id: str) -> PortRecord:
        with self.db.session() as s:
            return self.record(s, self.port(s, ctx, port_id))

    def list_ports(self, ctx: RequestContext, query: ListQuery) -> list[PortRecord]:
        """The caller's ports; `query` narrows by network or device in SQL, the API pages."""
        with self.db.session() as s:
            stmt = select(m.Port)
            if not ctx.is_admin:
                stmt = stmt.where(m.Port.project_id == (ctx.project_id or ""))
            for key in ("network_id", "device_id"):
                if len(query.filters.get(key, [])) == 1:
                    stmt = stmt.where(getattr(m.Port, key) == query.filters[key][0])
            return self.records(s, s.scalars(stmt).all())

    def update_port(self, ctx: RequestContext, port_id: str, body: PortBody) -> PortRecord:

        def work(s: Session) -> PortRecord:
            row = self.port(s, ctx, port_id)
            binding.check_update(ctx, row, body)
            self._plain_port_fields(row, body)
            self._port_security(s, ctx, row, body, creating=False)
            if body.fixed_ips is not None:
                net = s.get(m.Network, row.network_id)
                assert net is not None
                wanted = self.wanted_ips(s, net, body.fixed_ips)
                current = s.scalars(
                    select(m.IpAllocation).where(m.IpAllocation.port_id == row.id)
                ).all()
                keep = {(a.subnet_id, a.ip_address) for a in current}
                fresh = [(sn, ip) for sn, ip in wanted if (sn.id, ip) not in keep]
                wanted_keys = {(sn.id, ip) for sn, ip in wanted}
                for a in current:
                    if (a.subnet_id, a.ip_address) not in wanted_keys:
                        s.delete(a)
                s.flush()
                self._allocate(s, row, fresh)
            row.revision_number += 1
            row.updated_at = self._now()
            s.flush()
            return self.record(s, row)

        shown = self._retrying(work)
        if shown.row.status == "ACTIVE":  # its groups, addresses or pairs may have changed
            self.wiring.sync_firewall()
            dhcp_changed = body.fixed_ips is not None or body.extra_dhcp_opts is not None
            if dhcp_changed and self.dataplane is not None:
                self.wiring.refresh_dhcp(shown.row.network_id)
        return shown

    def delete_port(self, ctx: RequestContext, port_id: str) -> None:
        with self.db.session() as s:
            row = self.port(s, ctx, port_id)
            if row.device_owner in SERVICE_OWNERS:
                raise PortInUse(
                    f"Port {row.id} cannot be deleted directly via the port API: has device "
                    f"owner {row.device_owner}."
                )
            network_id, wired = row.network_id, row.status == "ACTIVE" and bool(row.host)
            routers = self.delete_port_row(s, row)
        for router_id in routers:
            self.wiring.sync_router(router_id)
        if wired:
            self.wiring.unwire_port(port_id, network_id)

    def delete_port_row(self, s: Session, row: m.Port) -> set[str]:
        """Delete a port; floating IPs pointing at it are let go. Returns their routers."""
        routers: set[str] = set()
        for fip in s.scalars(select(m.FloatingIp).where(m.FloatingIp.port_id == row.id)).all():
            if fip.router_id:
                routers.add(fip.router_id)
            fip.port_id, fip.fixed_ip_address, fip.router_id = None, None, None
        s.execute(delete(m.IpAllocation).where(m.IpAllocation.port_id == row.id))
        s.execute(delete(m.PortSecurityGroup).where(m.PortSecurityGroup.port_id == row.id))
        s.delete(row)
        return routers

    def ips_of(self, s: Session, port_id: str) -> list[tuple[str, str]]:
        return sorted(
            (str(sid), str(ip))
            for sid, ip in s.execute(
                select(m.IpAllocation.subnet_id, m.IpAllocation.ip_address).where(
                    m.IpAllocation.port_id == port_id
                )
            ).all()
        )

    def system_port(
        self,
        s: Session,
        net: m.Network,
        project_id: str,
        owner: str,
        device_id: str,
        wanted: list[tuple[m.Subnet, str | None]],
    ) -> m.Port:
        """A port the network service itself holds (router, gateway, floating IP): no groups."""
        now = self._now()
        row = m.Port(
            id=new_id(),
            network_id=net.id,
            project_id=project_id,
            mac_address=new_mac(),
            status="ACTIVE",
            device_owner=owner,
            device_id=device_id,
            port_security_enabled=False,
            allowed_address_pairs=[],
            revision_number=1,
            created_at=now,
            updated_at=now,
        )
        s.add(row)
        try:
            s.flush()
        except IntegrityError:
            raise Retry() from None
        self._allocate(s, row, [(sn, ip) for sn, ip in wanted if sn.ip_version == 4] or wanted)
        return row
