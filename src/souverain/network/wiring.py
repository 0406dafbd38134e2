"""The data plane driven from the rows: bridges, taps, DHCP, routers' namespaces and
the firewall. Does nothing when the cloud runs no data plane."""

from __future__ import annotations

import ipaddress
import logging
import socket
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from souverain.common.context import RequestContext
from souverain.common.errors import Conflict
from souverain.common.metering import gib
from souverain.network import models as m
from souverain.network.core import Part
from souverain.network.dataplane import Dataplane, DhcpHost, SubnetSpec
from souverain.network.errors import PortNotFound
from souverain.network.fields import DHCP_OWNER, ROUTER_INTERFACE
from souverain.network.firewall import NetworkZone
from souverain.network.host_plan import firewall_input, port_filter
from souverain.network.router_metering import MeterLabel, MeterRule
from souverain.network.routing import FloatingIp as FloatingNat
from souverain.network.routing import RouterGateway, RouterInterface
from souverain.network.schemas import FixedIp, PortBody

log = logging.getLogger("souverain.network")


class Wiring(Part):
    """Makes the host's network match the rows."""

    def _plane(self) -> Dataplane:
        if self.dataplane is None:
            raise Conflict("This cloud runs no network data plane: servers take networks none.")
        return self.dataplane

    def wire_port(self, port_id: str) -> str:
        """Plug a bound port into its network: bridge, tap, and its DHCP host entry."""
        plane = self._plane()
        with self.db.session() as s:
            port = s.get(m.Port, port_id)
            if port is None:
                raise PortNotFound(f"Port {port_id[:64]} could not be found.")
            network = s.get(m.Network, port.network_id)
            assert network is not None
            network_id, mtu, mac = network.id, network.mtu, port.mac_address
        plane.ensure_network(network_id, mtu)
        # the tap's own MAC must differ from the guest's, or the bridge keeps the guest's
        # frames for the host (it takes its ports' MACs as local): fe:... as libvirt does
        tap = str(plane.ensure_tap(network_id, port_id, "fe" + mac[2:]))
        self.sync_firewall()  # before the guest runs: filtered from its first frame
        self.refresh_dhcp(network_id)
        return tap

    def reconcile_dataplane(self) -> None:
        """At start: the kernel holds exactly the bridges, taps, dnsmasq, routers and rules
        the rows describe; anything else of ours goes. Guests' traffic is not interrupted:
        what exists and is wanted is left in place (the firewall is replaced atomically)."""
        if self.dataplane is None:
            return
        with self.db.session() as s:
            rows = s.execute(
                select(m.Port.network_id, m.Port.id).where(
                    m.Port.device_owner.like("compute:%"),
                    m.Port.status == "ACTIVE",
                    *self._own_ports(),
                )
            ).all()
            routed = s.scalars(
                select(m.Port.network_id).where(m.Port.device_owner == ROUTER_INTERFACE)
            ).all()
            served = self._served_elsewhere(s)
            router_ids = s.scalars(select(m.Router.id).where(m.Router.admin_state_up)).all()
            mtus = dict(s.execute(select(m.Network.id, m.Network.mtu)).all())
        public = self._public_networks()
        if self.routing is not None:  # a range another link holds refuses the start at once
            for network_id, cidr, _host_ip, _mtu in public:
                self.routing.check_public(network_id, cidr)
        wanted: dict[str, list[str]] = {}
        for network_id, port_id in rows:
            wanted.setdefault(network_id, []).append(port_id)
        for network_id in [*routed, *served, *(p[0] for p in public)]:
            wanted.setdefault(network_id, [])
        changed = self.dataplane.reconcile(wanted)
        for network_id in wanted:
            self.dataplane.ensure_network(network_id, mtus.get(network_id, self.settings.mtu))
        if self.routing is not None:
            for network_id, cidr, host_ip, mtu in public:
                self.routing.ensure_public(network_id, cidr, host_ip, mtu)
            states, routes, labels = {}, {}, {}
            with self.db.session() as s:
                for router_id in router_ids:
                    row = s.get(m.Router, router_id)
                    if row is not None:
                        states[router_id] = self._router_state(s, row)[:3]
                        routes[router_id] = _ipv4_routes(row.routes or [])
                        labels[router_id] = self._meter_labels(s, row.project_id)
            changed.update(self.routing.reconcile(states, routes, labels))
        self.sync_firewall()
        if any(changed.values()):
            log.info("network data plane reconciled: %s", changed)
        for network_id, ports in wanted.items():
            if not ports:
                continue
            try:
                self.refresh_dhcp(network_id)
            except Exception:
                log.exception("DHCP of network %s could not be restored", network_id)

    def _own_ports(self) -> list[Any]:
        """The filter on ports this host wires: all of them, or with the overlay only those
        bound to this node (the agents' hosts wire theirs)."""
        node = self.node_host()
        return [] if node is None else [m.Port.host == node]

    def _served_elsewhere(self, s: Session) -> list[str]:
        """With the overlay: the tenant networks with guests on other hosts, whose DHCP
        (and the bridge it hangs on) this node keeps (the node's loop refreshes them)."""
        if self.node_host() is None:
            return []
        return list(
            s.scalars(
                select(m.Port.network_id)
                .join(m.Network, m.Network.id == m.Port.network_id)
                .where(
                    m.Port.device_owner.like("compute:%"),
                    m.Port.status == "ACTIVE",
                    m.Port.host != "",
                    m.Network.external.is_(False),
                )
                .distinct()
            ).all()
        )

    def _meter_labels(self, s: Session, project_id: str) -> list[MeterLabel]:
        """The metering labels counting the project's routers, as the namespace takes them."""
        return [
            MeterLabel(
                label.label_id,
                tuple(
                    MeterRule(
                        direction=r.direction,
                        excluded=r.excluded,
                        remote=r.remote_ip_prefix,
                        source=r.source_ip_prefix,
                        destination=r.destination_ip_prefix,
                    )
                    for r in label.rules
                ),
            )
            for label in self.metering.labels_of(s, project_id)
        ]

    def _router_state(
        self, s: Session, row: m.Router
    ) -> tuple[RouterGateway | None, list[RouterInterface], list[FloatingNat], dict[str, int]]:
        """What the router's namespace must hold, and the bridges (network -> MTU) it needs."""
        bridges: dict[str, int] = {}
        gateway = None
        if row.gateway_port_id and row.external_network_id:
            port = s.get(m.Port, row.gateway_port_id)
            net = s.get(m.Network, row.external_network_id)
            v4 = (
                []
                if port is None
                else [x for x in self.ports.ips_of(s, port.id) if ":" not in x[1]]
            )
            subnet = s.get(m.Subnet, v4[0][0]) if v4 else None
            if port is not None and net is not None and subnet is not None:
                gateway = RouterGateway(
                    network_id=net.id,
                    port_id=port.id,
                    mac=port.mac_address,
                    ip=v4[0][1],
                    prefixlen=ipaddress.ip_network(subnet.cidr).prefixlen,
                    next_hop=subnet.gateway_ip,
                    snat=row.enable_snat,
                    mtu=net.mtu,
                )
                bridges[net.id] = net.mtu
        interfaces = []
        for port in s.scalars(
            select(m.Port)
            .where(m.Port.device_id == row.id, m.Port.device_owner == ROUTER_INTERFACE)
            .order_by(m.Port.created_at, m.Port.id)
        ).all():
            net = s.get(m.Network, port.network_id)
            v4 = [x for x in self.ports.ips_of(s, port.id) if ":" not in x[1]]
            subnet = s.get(m.Subnet, v4[0][0]) if v4 else None
            if net is None or subnet is None:
                continue
            interfaces.append(
                RouterInterface(
                    network_id=net.id,
                    port_id=port.id,
                    mac=port.mac_address,
                    ip=v4[0][1],
                    prefixlen=ipaddress.ip_network(subnet.cidr).prefixlen,
                    mtu=net.mtu,
                )
            )
            bridges[net.id] = net.mtu
        floating = []
        if gateway is not None:
            for fip in s.scalars(
                select(m.FloatingIp)
                .where(m.FloatingIp.router_id == row.id, m.FloatingIp.port_id.is_not(None))
                .order_by(m.FloatingIp.created_at)
            ).all():
                if fip.fixed_ip_address:
                    floating.append(FloatingNat(fip.floating_ip_address, fip.fixed_ip_address))
        return gateway, interfaces, floating, bridges

    def sync_router(self, router_id: str) -> None:
        """The router's namespace matches its rows (interfaces, gateway, floating IPs)."""
        host = self.host
        if host is None:
            return
        with self.core.routing_lock:
            with self.db.session() as s:
                row = s.get(m.Router, router_id)
                state = None
                state_routes: list[dict[str, str]] = []
                labels: list[MeterLabel] = []
                if row is not None and row.admin_state_up:
                    state = self._router_state(s, row)
                    state_routes = list(row.routes or [])
                    labels = self._meter_labels(s, row.project_id)
            if state is None:
                self.meter_egress(router_id)  # the last bytes, before the counter goes
                host.routing.delete_router(router_id)
                return
            gateway, interfaces, floating, bridges = state
            for network_id, mtu in bridges.items():
                host.dataplane.ensure_network(network_id, mtu)
            host.routing.ensure_router(
                router_id, gateway, interfaces, floating, _ipv4_routes(state_routes), labels
            )

    def meter_egress(self, router_id: str, project_id: str | None = None) -> None:
        sent = self.routing.take_egress(router_id) if self.routing is not None else 0
        if not sent:
            return
        if project_id is None:
            with self.db.session() as s:
                row = s.get(m.Router, router_id)
                project_id = row.project_id if row is not None else None
        if project_id is None:  # already deleted: the owner is in its last meter events
            log.warning("router %s sent %d bytes with no owner left to bill", router_id, sent)
            return
        self.meter.counter(project_id, "egress.gb", router_id, gib(sent))

    def sample_egress(self) -> None:
        """Bill what each router sent out of the cloud since the last sample (guest
        traffic leaving through its gateway, SNAT and floating IPs alike)."""
        if self.routing is None:
            return
        with self.db.session() as s:
            routers = s.execute(
                select(m.Router.id, m.Router.project_id).where(
                    m.Router.external_network_id.is_not(None)
                )
            ).all()
        for router_id, project_id in routers:
            try:
                self.meter_egress(router_id, project_id)
            except Exception:
                log.exception("egress of router %s could not be read", router_id)

    def _public_networks(self) -> list[tuple[str, str, str, int]]:
        """(network id, CIDR, the host's address, MTU) of each operator external network."""
        with self.db.session() as s:
            rows = s.execute(
                select(m.Network.id, m.Network.mtu, m.Subnet.cidr, m.Subnet.gateway_ip)
                .join(m.Subnet, m.Subnet.network_id == m.Network.id)
                .where(m.Network.external, m.Subnet.ip_version == 4)
                .order_by(m.Subnet.created_at)
            ).all()
        out: dict[str, tuple[str, str, str, int]] = {}
        for network_id, mtu, cidr, gateway in rows:
            if gateway and network_id not in out:
                out[network_id] = (network_id, cidr, gateway, mtu)
        return list(out.values())

    def node_host(self) -> str | None:
        """With the VXLAN overlay, this process is the network node: the host name its own
        ports (DHCP, routers, and guests it runs itself) are bound to; None without."""
        if self.settings.overlay != "vxlan":
            return None
        return self.settings.node_name or socket.gethostname()

    def sync_firewall(self) -> None:
        """The security groups and anti-spoofing of every port wired here (every bound port
        on one host; with the overlay, those bound to this node), as one nft transaction."""
        host = self.host
        if host is None:
            return
        plane = host.dataplane
        with self.core.firewall_lock:
            with self.db.session() as s:
                wanted = firewall_input(s, self.node_host())
            zones = [NetworkZone(plane.bridge_name(n), zone) for n, zone in wanted.zones]
            filters = [port_filter(f, plane.tap_name) for f in wanted.ports]
            host.firewall.apply(zones, filters, wanted.groups)

    def unwire_port(self, port_id: str, network_id: str) -> None:
        if self.dataplane is None:
            return
        self.dataplane.delete_tap(port_id)
        self.sync_firewall()
        self.refresh_dhcp(network_id)

    def refresh_dhcp(self, network_id: str) -> None:
        """dnsmasq for the network's first IPv4 DHCP subnet answers exactly its bound ports."""
        plane = self._plane()
        with self.db.session() as s:
            network = s.get(m.Network, network_id)
            subnet = s.scalar(
                select(m.Subnet)
                .where(
                    m.Subnet.network_id == network_id,
                    m.Subnet.ip_version == 4,
                    m.Subnet.enable_dhcp.is_(True),
                )
                .order_by(m.Subnet.created_at)
            )
            if network is None or subnet is None:
                plane.delete_dhcp(network_id)
                return
            project_id, subnet_id = network.project_id, subnet.id
            cidr, gateway, dns = subnet.cidr, subnet.gateway_ip, tuple(subnet.dns_nameservers)
            mtu = network.mtu
            dhcp_ip = s.scalar(
                select(m.IpAllocation.ip_address)
                .join(m.Port, m.Port.id == m.IpAllocation.port_id)
                .where(m.IpAllocation.subnet_id == subnet_id, m.Port.device_owner == DHCP_OWNER)
            )
        if dhcp_ip is None:
            system = RequestContext(
                user_id="souverain",
                user_domain_id="default",
                roles=frozenset({"admin"}),
                project_id=project_id or None,
            )
            dhcp = PortBody(
                network_id=network_id,
                owner=project_id,
                fixed_ips=[FixedIp(subnet_id, None)],
                texts=(("device_owner", DHCP_OWNER), ("device_id", f"dhcp-{network_id}")),
                port_security_enabled=False,
            )
            port = self.ports.create_port(system, dhcp)
            dhcp_ip = port.ips[0][1]
        with self.db.session() as s:
            rows = s.execute(
                select(m.Port.mac_address, m.IpAllocation.ip_address, m.Port.extra_dhcp_opts)
                .join(m.IpAllocation, m.IpAllocation.port_id == m.Port.id)
                .where(
                    m.IpAllocation.subnet_id == subnet_id,
                    m.Port.device_owner.like("compute:%"),
                    m.Port.status == "ACTIVE",
                )
            ).all()
        hosts = [
            DhcpHost(
                mac=mac,
                ip=ip,
                hostname="host-" + ip.replace(".", "-"),
                options=tuple(
                    (o["opt_name"], o["opt_value"]) for o in opts or [] if o["ip_version"] == 4
                ),
            )
            for mac, ip, opts in rows
        ]
        plane.ensure_dhcp(
            network_id,
            SubnetSpec(cidr=cidr, gateway=gateway, dhcp_ip=str(dhcp_ip), dns=dns, mtu=mtu),
            hosts,
        )


def _ipv4_routes(routes: list[dict[str, str]]) -> list[tuple[str, str]]:
    """The extra routes the namespace carries: IPv4 only, as its interfaces."""
    return [(r["destination"], r["nexthop"]) for r in routes if ":" not in r["nexthop"]]
