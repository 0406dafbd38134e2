"""Networks and their subnets: tenancy, segmentation ids, CIDRs and pools.

Rows only: a network's bridge and dnsmasq are `wiring`'s, and its wire shape is
`views`'."""

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
from souverain.network import ipam, related
from souverain.network import models as m
from souverain.network.core import Part
from souverain.network.errors import (
    NetworkInUse,
    NetworkNotFound,
    NoNetworkAvailable,
    PolicyNotAuthorized,
    SubnetInUse,
    SubnetNotFound,
)
from souverain.network.fields import DHCP_OWNER, owner_named
from souverain.network.ipam import InvalidInput
from souverain.network.schemas import (
    NetworkBody,
    SubnetBody,
    SubnetChanges,
    host_routes,
)
from souverain.network.schemas import subnet as subnet_body
from souverain.network.schemas_pools import PoolAsk

MAX_SEGMENT = 65535  # a conntrack zone is 16 bits; a VXLAN VNI has room for more


def _free_segment(s: Session, low: int = 1, high: int = MAX_SEGMENT) -> int:
    """The lowest segmentation id in low..high no network holds (the unique column settles
    races). With overlay vxlan it is the network's VNI: the operator's range keeps it clear
    of another cloud's segments on the same underlay."""
    used = s.scalars(
        select(m.Network.segmentation_id)
        .where(m.Network.segmentation_id >= low, m.Network.segmentation_id <= high)
        .order_by(m.Network.segmentation_id)
    ).all()
    expected = low
    for value in used:
        if value != expected:
            break
        expected += 1
    if expected > high:
        raise NoNetworkAvailable(
            "Unable to create the network. No tenant network is available for allocation."
        )
    return expected


@dataclass(frozen=True)
class NetworkRecord:
    """A network with its subnets' ids, oldest first."""

    row: m.Network
    subnet_ids: list[str]


@dataclass(frozen=True)
class SubnetRecord:
    """A subnet and whether its network is external (`router:external` of the subnet)."""

    row: m.Subnet
    external: bool


class Networks(Part):
    """Networks and subnets."""

    def _visible(self, ctx: RequestContext, net: m.Network) -> bool:
        return may_act_on(ctx, net.project_id) or net.shared or net.external

    def network(self, s: Session, ctx: RequestContext, network_id: Any) -> m.Network:
        row = s.get(m.Network, network_id) if isinstance(network_id, str) else None
        if row is None or not self._visible(ctx, row):
            raise NetworkNotFound(f"Network {str(network_id)[:64]} could not be found.")
        return row

    def _owned_network(self, s: Session, ctx: RequestContext, network_id: Any) -> m.Network:
        row = self.network(s, ctx, network_id)
        if not may_act_on(ctx, row.project_id):
            raise PolicyNotAuthorized("The request is disallowed by policy for this network.")
        return row

    def record(self, s: Session, row: m.Network) -> NetworkRecord:
        return self.records(s, [row])[0]

    def records(self, s: Session, rows: Sequence[m.Network]) -> list[NetworkRecord]:
        """Many networks with their subnets' ids, in one query."""
        subnets = related.subnet_ids_by_network(s, [r.id for r in rows])
        return [NetworkRecord(r, subnets.get(r.id, [])) for r in rows]

    def _network_fields(
        self, ctx: RequestContext, body: NetworkBody, row: m.Network | None
    ) -> dict[str, Any]:
        """The columns the body sets; sharing and externality change only for an admin."""
        out: dict[str, Any] = dict(body.plain)
        for name, attr, value in (
            ("shared", "shared", body.shared),
            ("router:external", "external", body.external),
        ):
            if value is None:
                continue
            current = getattr(row, attr) if row is not None else False
            if value != current and not ctx.is_admin:
                raise PolicyNotAuthorized(
                    f"(rule:create_network and rule:create_network:{name}) is disallowed by policy"
                )
            out[attr] = value
        if body.mtu_given:
            largest = self.settings.tenant_mtu
            if body.mtu is None or not 68 <= body.mtu <= largest:
                raise InvalidInput(
                    f"Invalid input for operation: Requested MTU is too big, maximum is {largest}."
                )
            out["mtu"] = body.mtu
        return out

    def new_network_row(
        self,
        s: Session,
        project_id: str,
        body: dict[str, Any],
        external: bool = False,
        shared: bool = False,
    ) -> m.Network:
        now = self._now()
        settings = self.settings
        # the external network is the host's own link, not a segment: the plain MTU
        mtu = settings.mtu if body.get("external", external) else settings.tenant_mtu
        return m.Network(
            id=new_id(),
            segmentation_id=_free_segment(s, settings.segment_min, settings.segment_max),
            project_id=project_id,
            name=body.get("name", ""),
            description=body.get("description", ""),
            admin_state_up=body.get("admin_state_up", True),
            shared=body.get("shared", shared),
            external=body.get("external", external),
            mtu=body.get("mtu", mtu),
            port_security_enabled=body.get("port_security_enabled", True),
            revision_number=1,
            created_at=now,
            updated_at=now,
        )

    def create_network(self, ctx: RequestContext, body: NetworkBody) -> NetworkRecord:
        fields = self._network_fields(ctx, body, None)
        project_id = owner_named(ctx, body.owner)

        def work(s: Session) -> NetworkRecord:
            self._lock_quota(s, project_id)
            self.quotas.claim(s, project_id, "network")
            row = self.new_network_row(s, project_id, fields)
            s.add(row)
            s.flush()
            return self.record(s, row)

        return self._retrying(work)

    def get_network(self, ctx: RequestContext, network_id: str) -> NetworkRecord:
        with self.db.session() as s:
            return self.record(s, self.network(s, ctx, network_id))

    def list_networks(self, ctx: RequestContext) -> list[NetworkRecord]:
        """The caller's networks, shared ones and external ones; the API filters and pages."""
        with self.db.session() as s:
            stmt = select(m.Network)
            if not ctx.is_admin:
                stmt = stmt.where(
                    (m.Network.project_id == (ctx.project_id or ""))
                    | m.Network.shared
                    | m.Network.external
                )
            return self.records(s, s.scalars(stmt).all())

    def update_network(
        self, ctx: RequestContext, network_id: str, body: NetworkBody
    ) -> NetworkRecord:
        with self.db.session() as s:
            row = self._owned_network(s, ctx, network_id)
            fields = self._network_fields(ctx, body, row)
            if body.owner_given:
                raise BadRequest("Cannot update read-only attribute project_id")
            if fields.get("shared") is False and row.shared:
                others = s.scalar(
                    select(func.count())
                    .select_from(m.Port)
                    .where(m.Port.network_id == row.id, m.Port.project_id != row.project_id)
                )
                if others:
                    raise InvalidInput(
                        "Unable to reconfigure sharing settings for network "
                        f"{row.id}. Multiple tenants are using it."
                    )
            for key, value in fields.items():
                setattr(row, key, value)
            row.revision_number += 1
            row.updated_at = self._now()
            s.flush()
            return self.record(s, row)

    def delete_network(self, ctx: RequestContext, network_id: str) -> None:
        with self.db.session() as s:
            row = self._owned_network(s, ctx, network_id)
            in_use = s.scalar(
                select(func.count())
                .select_from(m.Port)
                .where(m.Port.network_id == row.id, m.Port.device_owner != DHCP_OWNER)
            )
            if in_use:
                raise NetworkInUse(
                    f"Unable to complete operation on network {row.id}. There are one or more "
                    "ports still in use on the network."
                )
            for dhcp in s.scalars(
                select(m.Port).where(m.Port.network_id == row.id, m.Port.device_owner == DHCP_OWNER)
            ).all():
                self.ports.delete_port_row(s, dhcp)  # the network's own DHCP port goes with it
            s.execute(delete(m.Subnet).where(m.Subnet.network_id == row.id))
            s.delete(row)
        if self.dataplane is not None:  # its bridge, DHCP namespace and dnsmasq too
            self.dataplane.delete_network(network_id)

    def subnet(self, s: Session, ctx: RequestContext, subnet_id: Any) -> m.Subnet:
        row = s.get(m.Subnet, subnet_id) if isinstance(subnet_id, str) else None
        if row is not None and not may_act_on(ctx, row.project_id):
            net = s.get(m.Network, row.network_id)
            if net is None or not (net.shared or net.external):
                row = None
        if row is None:
            raise SubnetNotFound(f"Subnet {str(subnet_id)[:64]} could not be found.")
        return row

    def new_subnet_row(
        self, s: Session, net: m.Network, project_id: str, body: SubnetBody
    ) -> m.Subnet:
        """A subnet of the network; its CIDR must overlap none the network has."""
        for other in s.scalars(select(m.Subnet).where(m.Subnet.network_id == net.id)).all():
            if ipaddress.ip_network(other.cidr).overlaps(body.cidr):
                raise InvalidInput(
                    f"Invalid input for operation: Requested subnet with cidr: {body.cidr} for "
                    f"network: {net.id} overlaps with another subnet."
                )
        now = self._now()
        return m.Subnet(
            id=new_id(),
            network_id=net.id,
            project_id=project_id,
            name=body.name,
            description=body.description,
            ip_version=body.ip_version,
            cidr=str(body.cidr),
            gateway_ip=body.gateway_ip,
            allocation_pools=body.allocation_pools,
            dns_nameservers=body.dns_nameservers,
            host_routes=body.host_routes,
            enable_dhcp=body.enable_dhcp,
            revision_number=1,
            created_at=now,
            updated_at=now,
            ipv6_ra_mode=body.ipv6_ra_mode,
            ipv6_address_mode=body.ipv6_address_mode,
        )

    def create_subnet(self, ctx: RequestContext, body: SubnetBody | PoolAsk) -> SubnetRecord:
        """A subnet of the caller's network, its CIDR given or carved from a subnet pool."""
        if isinstance(body, PoolAsk):
            owner, network_id = (
                body.rest.get("project_id", body.rest.get("tenant_id")),
                body.rest["network_id"],
            )
        else:
            owner, network_id = body.owner, body.network_id
        project_id = owner_named(ctx, owner)
        with self.db.session() as s:
            self._lock_quota(s, project_id)
            net = self._owned_network(s, ctx, network_id)
            self.quotas.claim(s, project_id, "subnet")
            pool_id = None
            if isinstance(body, PoolAsk):
                pool, cidr = self.subnet_pools.carve(s, ctx, body, project_id)
                body, pool_id = subnet_body({**body.rest, "cidr": str(cidr)}), pool.id
            self._same_pool(s, net, body.ip_version, pool_id)
            row = self.new_subnet_row(s, net, project_id, body)
            row.subnetpool_id = pool_id
            s.add(row)
            s.flush()
            return SubnetRecord(row, net.external)

    def _same_pool(self, s: Session, net: m.Network, version: int, pool_id: str | None) -> None:
        """Neutron's rule: a network's subnets of one IP version share one pool (or none)."""
        pools = set(
            s.scalars(
                select(m.Subnet.subnetpool_id).where(
                    m.Subnet.network_id == net.id, m.Subnet.ip_version == version
                )
            ).all()
        )
        if pools and pools != {pool_id}:
            raise BadRequest(
                "Subnets hosted on the same network must be allocated from the same subnet pool."
            )

    def subnet_records(self, s: Session, rows: Sequence[m.Subnet]) -> list[SubnetRecord]:
        external = set(
            s.scalars(
                select(m.Network.id).where(
                    m.Network.id.in_({r.network_id for r in rows}), m.Network.external
                )
            ).all()
        )
        return [SubnetRecord(r, r.network_id in external) for r in rows]

    def get_subnet(self, ctx: RequestContext, subnet_id: str) -> SubnetRecord:
        with self.db.session() as s:
            return self.subnet_records(s, [self.subnet(s, ctx, subnet_id)])[0]

    def list_subnets(self, ctx: RequestContext) -> list[SubnetRecord]:
        """The caller's subnets and those of shared and external networks."""
        with self.db.session() as s:
            stmt = select(m.Subnet)
            if not ctx.is_admin:
                visible = select(m.Network.id).where(m.Network.shared | m.Network.external)
                stmt = stmt.where(
                    (m.Subnet.project_id == (ctx.project_id or ""))
                    | m.Subnet.network_id.in_(visible)
                )
            return self.subnet_records(s, s.scalars(stmt).all())

    def update_subnet(
        self, ctx: RequestContext, subnet_id: str, body: SubnetChanges
    ) -> SubnetRecord:
        with self.db.session() as s:
            row = self.subnet(s, ctx, subnet_id)
            if not may_act_on(ctx, row.project_id):
                raise PolicyNotAuthorized("rule:update_subnet is disallowed by policy")
            cidr = ipaddress.ip_network(row.cidr)
            for name, value in body.texts:
                setattr(row, name, value)
            if body.gateway_given:
                row.gateway_ip = ipam.check_gateway(cidr, body.gateway_ip)
            if body.pools_given:
                pools = ipam.check_pools(cidr, body.allocation_pools, row.gateway_ip)
                row.allocation_pools = [p.view(row.ip_version) for p in pools]
            elif row.gateway_ip and ipam.in_pools(
                int(ipaddress.ip_address(row.gateway_ip)), ipam.pools_of(row.allocation_pools)
            ):
                raise ipam.GatewayConflict(
                    f"Gateway ip {row.gateway_ip} conflicts with allocation pool."
                )
            if body.dns_nameservers is not None:
                row.dns_nameservers = body.dns_nameservers
            if body.routes_given:
                row.host_routes = host_routes(body.host_routes or [], row.ip_version)
            if body.enable_dhcp is not None:
                row.enable_dhcp = body.enable_dhcp
            row.revision_number += 1
            row.updated_at = self._now()
            return self.subnet_records(s, [row])[0]

    def delete_subnet(self, ctx: RequestContext, subnet_id: str) -> None:
        with self.db.session() as s:
            row = self.subnet(s, ctx, subnet_id)
            if not may_act_on(ctx, row.project_id):
                raise PolicyNotAuthorized("rule:delete_subnet is disallowed by policy")
            used = s.scalar(
                select(func.count())
                .select_from(m.IpAllocation)
                .join(m.Port, m.Port.id == m.IpAllocation.port_id)
                .where(m.IpAllocation.subnet_id == row.id, m.Port.device_owner != DHCP_OWNER)
            )
            if used:
                raise SubnetInUse(
                    f"Unable to complete operation on subnet {row.id}: One or more ports have an "
                    "IP allocation from this subnet."
                )
            # the DHCP port the cloud made for this subnet goes with it, as in Neutron
            for dhcp in s.scalars(
                select(m.Port)
                .join(m.IpAllocation, m.IpAllocation.port_id == m.Port.id)
                .where(m.IpAllocation.subnet_id == row.id, m.Port.device_owner == DHCP_OWNER)
            ).all():
                self.ports.delete_port_row(s, dhcp)
            network_id = row.network_id
            s.delete(row)
        if self.dataplane is not None:  # dnsmasq moves to another DHCP subnet, or goes
            self.ports.wiring.refresh_dhcp(network_id)
