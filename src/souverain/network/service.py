"""The network service: one facade over the resource families. No HTTP.

Database only in the families' rules; the host side (`HostNetwork`: bridges, taps,
dnsmasq, routers' namespaces, the firewall) is driven from the rows by `Wiring`,
and is absent when the cloud runs no data plane.

Tenancy is Neutron's: a project sees its own resources, shared networks and
external networks (and their subnets); anything else is reported as not found.
A shared network also takes ports from other projects. Admins see everything.

Every create first takes the project's `network_quotas` row (INSERT .. ON
CONFLICT DO NOTHING, then SELECT .. FOR UPDATE), as the volume service does:
SQLite takes its one writer lock at that first write and PostgreSQL locks the
row, so quota checks cannot be overshot by concurrent requests in any number of
processes. Addresses are guarded by the database itself: the allocations
table's primary key is (subnet_id, ip_address), and a create that loses a race
for an address is retried and picks the next free one.

The families, each in its module: `quotas`, `networks` (and subnets), `subnet_pools`,
`tags`, `metering`, `ports`, `groups` (security groups and rules), `routers`,
`floating_ips`, `wiring` (the data plane) and `servers` (what compute asks). They
return rows or records (a row with what hangs off it); `views` shapes them for the wire
and `schemas` checks the port and router bodies. The API calls the families; the compute
service and the server call the methods below, which answer in the wire shape compute
reads:

- `get_or_create_auto_network(ctx)`: the project's get-me-a-network network
  (`auto_allocated_network`, one subnet from `default_cidr`), made once.
- `create_port_for_server(ctx, network_id=None, port_id=None, fixed_ip=None,
  server_id=..., project_id=...)`: a port for a server (an existing port of the
  server's project, or a new one on the network, the auto network when neither is
  given); returns the port view (`mac_address`, `fixed_ips`, ...).
- `bind_port(port_id, server_id, host)`: the port is plugged; status ACTIVE.
- `ports_of(server_id, project_id)`: the ports compute bound to the server, of
  the server's project only.
- `release_ports_of(server_id, project_id)`: ports made for the server are deleted,
  ports the customer brought are unbound and kept.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from sqlalchemy import select

from souverain.common.clock import Clock
from souverain.common.context import RequestContext
from souverain.common.metering import Meter
from souverain.config import NetworkSettings
from souverain.db.engine import Database
from souverain.identity.service import IdentityService
from souverain.network import ipam, schemas, views
from souverain.network import models as m
from souverain.network.core import Core, Families
from souverain.network.dataplane import Dataplane
from souverain.network.floating_ips import FloatingIps
from souverain.network.host import HostNetwork
from souverain.network.metering import Metering
from souverain.network.networks import Networks
from souverain.network.ports import Ports
from souverain.network.quotas import Quotas
from souverain.network.routers import Routers
from souverain.network.security_groups import SecurityGroups
from souverain.network.servers import Servers
from souverain.network.subnet_pools import SubnetPools
from souverain.network.tags import Tags
from souverain.network.wiring import Wiring

log = logging.getLogger("souverain.network")


class NetworkService:
    def __init__(
        self,
        db: Database,
        identity: IdentityService,
        clock: Clock,
        settings: NetworkSettings,
        host: HostNetwork | None = None,
    ) -> None:
        self.db = db
        self.identity = identity
        self.settings = settings
        self.core = Core(db, identity, clock, settings, host)
        families = Families()
        self.quotas = families.quotas = Quotas(self.core, families)
        self.networks = families.networks = Networks(self.core, families)
        self.ports = families.ports = Ports(self.core, families)
        self.groups = families.groups = SecurityGroups(self.core, families)
        self.routers = families.routers = Routers(self.core, families)
        self.floating_ips = families.floating_ips = FloatingIps(self.core, families)
        self.wiring = families.wiring = Wiring(self.core, families)
        self.servers = families.servers = Servers(self.core, families)
        self.subnet_pools = families.subnet_pools = SubnetPools(self.core, families)
        self.tags = families.tags = Tags(self.core, families)
        self.metering = families.metering = Metering(self.core, families)

    # ------------------------------------------------------------------ seams

    @property
    def meter(self) -> Meter:
        return self.core.meter

    @meter.setter
    def meter(self, meter: Meter) -> None:
        self.core.meter = meter

    @property
    def host(self) -> HostNetwork | None:
        return self.core.host

    @property
    def dataplane(self) -> Dataplane | None:
        """The bridges and taps servers plug into; None when the cloud runs none."""
        return None if self.core.host is None else self.core.host.dataplane

    @property
    def address_listeners(self) -> list[Callable[[str], None]]:
        return self.core.address_listeners

    # ------------------------------------------------------------------ lifecycle

    def set_up(self) -> None:
        """The operator's external network `public` and its subnet, made once."""
        with self.db.session() as s:
            found = s.scalars(
                select(m.Network).where(
                    m.Network.name == "public", m.Network.external, m.Network.project_id == ""
                )
            ).first()
            if found is not None:
                return
            net = self.networks.new_network_row(
                s, "", {"name": "public"}, external=True, shared=False
            )
            s.add(net)
            s.flush()
            cidr = ipam.parse_cidr(self.settings.public_cidr)
            pools = [
                {"start": self.settings.public_pool_start, "end": self.settings.public_pool_end}
            ]
            s.add(
                self.networks.new_subnet_row(
                    s,
                    net,
                    "",
                    schemas.subnet(
                        {
                            "name": "public-subnet",
                            "cidr": str(cidr),
                            "ip_version": cidr.version,
                            "gateway_ip": self.settings.public_gateway,
                            "allocation_pools": pools,
                            "dns_nameservers": list(self.settings.dns_nameservers),
                            "enable_dhcp": False,
                        }
                    ),
                )
            )
            log.info("created the external network 'public' (%s)", cidr)

    def close(self) -> None:
        return None

    def reconcile_dataplane(self) -> None:
        self.wiring.reconcile_dataplane()

    def sample_egress(self) -> None:
        self.wiring.sample_egress()

    # ------------------------------------------------------------------ for the compute service

    def get_network(self, ctx: RequestContext, network_id: str) -> dict[str, Any]:
        return views.network(self.networks.get_network(ctx, network_id))

    def get_port(self, ctx: RequestContext, port_id: str) -> dict[str, Any]:
        return views.port(self.ports.get_port(ctx, port_id))

    def get_subnet(self, ctx: RequestContext, subnet_id: str) -> dict[str, Any]:
        return views.subnet(self.networks.get_subnet(ctx, subnet_id))

    def create_port(
        self, ctx: RequestContext, body: dict[str, Any], delete_with_device: bool = False
    ) -> dict[str, Any]:
        return views.port(
            self.ports.create_port(ctx, schemas.port_create(body), delete_with_device)
        )

    def get_or_create_auto_network(self, ctx: RequestContext) -> dict[str, Any]:
        return views.network(self.servers.get_or_create_auto_network(ctx))

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
    ) -> dict[str, Any]:
        made = self.servers.create_port_for_server(
            ctx,
            network_id,
            port_id,
            fixed_ip,
            server_id=server_id,
            project_id=project_id,
            security_groups=security_groups,
        )
        return views.port(made)

    def bind_port(self, port_id: str, server_id: str, host: str) -> dict[str, Any]:
        return views.port(self.servers.bind_port(port_id, server_id, host))

    def release_port(self, port_id: str) -> None:
        self.servers.release_port(port_id)

    def release_ports_of(self, server_id: str, project_id: str) -> None:
        self.servers.release_ports_of(server_id, project_id)

    def security_groups_of_servers(self, servers: dict[str, str]) -> dict[str, list[str]]:
        return self.servers.security_groups_of_servers(servers)

    def set_server_security_group(
        self, server_id: str, project_id: str, name: str, member: bool
    ) -> None:
        self.servers.set_server_security_group(server_id, project_id, name, member)

    def ports_of(self, server_id: str, project_id: str) -> list[dict[str, Any]]:
        return [views.port(p) for p in self.servers.ports_of(server_id, project_id)]

    def floating_ips_of_ports(self, port_ids: list[str]) -> dict[str, list[str]]:
        return self.servers.floating_ips_of_ports(port_ids)

    def wire_port(self, port_id: str) -> str:
        return self.wiring.wire_port(port_id)

    def unwire_port(self, port_id: str, network_id: str) -> None:
        self.wiring.unwire_port(port_id, network_id)
