"""What one host's data plane must hold, read from the network rows: its guests' ports, its
VXLAN segments and its firewall input, as plain data a host agent can take over HTTP.

Node authorization lives here: a host's plan carries only the ports bound to it
(`Port.host`), the rules of their security groups, the member IPs of the groups those rules
name as remote, and the MACs of the other ports of its own networks with their hosts'
underlay addresses (the segments). Nothing of a network it has no port on. Reads only: no
kernel, no writes.
"""

from __future__ import annotations

import hashlib
import ipaddress
import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from sqlalchemy import func, or_, select
from sqlalchemy.orm import Session

from souverain.db.engine import Database
from souverain.network import models as m
from souverain.network.firewall import PortFilter, Rule
from souverain.network.overlay_plan import HostAddresses, plan_segments


@dataclass(frozen=True)
class FirewallInput:
    """What Firewall.apply needs, by ids (the host names its own bridges and taps)."""

    zones: list[tuple[str, int]]  # (network id, conntrack zone = segmentation id)
    ports: list[dict[str, Any]]  # port_id, network_id, mac, ips, allowed_pairs, rules
    groups: dict[str, list[str]]  # remote group id -> its members' IPs


def _on_host(host: str, incoming: frozenset[str]) -> Any:
    """Ports bound to `host`, or of servers moving to it (`incoming`): a live migration's
    destination needs their taps and filters before the guest arrives, as Neutron's
    second (inactive) port binding gives it."""
    if not incoming:
        return m.Port.host == host
    return or_(m.Port.host == host, m.Port.device_id.in_(sorted(incoming)))


def _bound_ports(
    s: Session, host: str | None, incoming: frozenset[str] = frozenset()
) -> list[m.Port]:
    """Guests' ports that are plugged (on `host`, or on any host when None)."""
    query = select(m.Port).where(
        m.Port.device_owner.like("compute:%"), m.Port.status == "ACTIVE", m.Port.host != ""
    )
    if host is not None:
        query = query.where(_on_host(host, incoming))
    return list(s.scalars(query.order_by(m.Port.created_at, m.Port.id)).all())


def _ips(s: Session, port_ids: list[str]) -> dict[str, list[str]]:
    ips: dict[str, list[str]] = {}
    for port_id, ip in s.execute(
        select(m.IpAllocation.port_id, m.IpAllocation.ip_address)
        .where(m.IpAllocation.port_id.in_(port_ids))
        .order_by(m.IpAllocation.ip_address)
    ).all():
        ips.setdefault(port_id, []).append(ip)
    return ips


def _memberships(s: Session, port_ids: list[str]) -> dict[str, list[str]]:
    groups: dict[str, list[str]] = {}
    for port_id, group_id in s.execute(
        select(m.PortSecurityGroup.port_id, m.PortSecurityGroup.security_group_id)
        .where(m.PortSecurityGroup.port_id.in_(port_ids))
        .order_by(m.PortSecurityGroup.security_group_id)
    ).all():
        groups.setdefault(port_id, []).append(group_id)
    return groups


def _rules(s: Session, group_ids: set[str]) -> dict[str, list[dict[str, Any]]]:
    """Group id -> its rules as plain data, oldest first."""
    rules: dict[str, list[dict[str, Any]]] = {}
    for r in s.scalars(
        select(m.SecurityGroupRule)
        .where(m.SecurityGroupRule.security_group_id.in_(group_ids))
        .order_by(m.SecurityGroupRule.created_at, m.SecurityGroupRule.id)
    ).all():
        rules.setdefault(r.security_group_id, []).append(
            {
                "direction": r.direction,
                "ethertype": r.ethertype,
                "protocol": r.protocol,
                "port_min": r.port_range_min,
                "port_max": r.port_range_max,
                "remote_prefix": r.remote_ip_prefix,
                "remote_group": r.remote_group_id,
            }
        )
    return rules


def _members(s: Session, group_ids: set[str]) -> dict[str, list[str]]:
    """The IPs of every plugged port (on any host) of each group: what a remote-group
    rule matches."""
    if not group_ids:
        return {}
    members: dict[str, list[str]] = {g: [] for g in sorted(group_ids)}
    for group_id, ip in s.execute(
        select(m.PortSecurityGroup.security_group_id, m.IpAllocation.ip_address)
        .join(m.Port, m.Port.id == m.PortSecurityGroup.port_id)
        .join(m.IpAllocation, m.IpAllocation.port_id == m.Port.id)
        .where(
            m.PortSecurityGroup.security_group_id.in_(group_ids),
            m.Port.device_owner.like("compute:%"),
            m.Port.status == "ACTIVE",
            m.Port.host != "",
        )
        .order_by(m.IpAllocation.ip_address)
    ).all():
        members[group_id].append(ip)
    return members


def _zones(s: Session, network_ids: set[str] | None) -> list[tuple[str, int]]:
    # tenant networks only: the external network's bridge carries the host's own traffic
    query = select(m.Network.id, m.Network.segmentation_id).where(
        m.Network.external.is_(False), m.Network.segmentation_id.is_not(None)
    )
    if network_ids is not None:
        query = query.where(m.Network.id.in_(network_ids))
    return [(n, int(z)) for n, z in s.execute(query.order_by(m.Network.id)).all() if z is not None]


def firewall_input(
    s: Session, host: str | None, incoming: frozenset[str] = frozenset()
) -> FirewallInput:
    """The security groups and anti-spoofing of the ports plugged on `host` (every host's
    when None, as the all-in-one has them): zones of their networks only when a host is
    named (every tenant network's otherwise)."""
    ports = _bound_ports(s, host, incoming)
    port_ids = [p.id for p in ports]
    ips = _ips(s, port_ids)
    memberships = _memberships(s, port_ids)
    rules = _rules(s, {g for groups in memberships.values() for g in groups})
    filters: list[dict[str, Any]] = []
    for port in ports:
        if not port.port_security_enabled:
            continue
        port_rules = [r for g in memberships.get(port.id, []) for r in rules.get(g, [])]
        filters.append(
            {
                "port_id": port.id,
                "network_id": port.network_id,
                "mac": port.mac_address,
                "ips": ips.get(port.id, []),
                "allowed_pairs": [
                    [str(p["ip_address"]), p.get("mac_address")] for p in port.allowed_address_pairs
                ],
                "rules": port_rules,
            }
        )
    remote = {
        str(r["remote_group"]) for f in filters for r in f["rules"] if r["remote_group"] is not None
    }
    networks = None if host is None else {p.network_id for p in ports}
    return FirewallInput(_zones(s, networks), filters, _members(s, remote))


def _server_ports(
    s: Session, host: str, incoming: frozenset[str]
) -> dict[str, list[dict[str, Any]]]:
    """Server id -> the taps its guest needs on `host`, in NIC order (eth0 first)."""
    rows = s.execute(
        select(m.Port.device_id, m.Port.id, m.Port.network_id, m.Port.mac_address, m.Network.mtu)
        .join(m.Network, m.Network.id == m.Port.network_id)
        .where(
            _on_host(host, incoming),
            m.Port.device_owner.like("compute:%"),
            m.Port.status == "ACTIVE",
        )
        .order_by(m.Port.created_at, m.Port.id)
    ).all()
    out: dict[str, list[dict[str, Any]]] = {}
    for server_id, port_id, network_id, mac, mtu in rows:
        out.setdefault(server_id, []).append(
            {"id": port_id, "network_id": network_id, "mac": mac, "mtu": int(mtu)}
        )
    return out


def _segments(
    s: Session, host: str, addresses: Mapping[str, str], incoming: frozenset[str]
) -> list[dict[str, Any]]:
    mtus = dict(s.execute(select(m.Network.id, m.Network.mtu)).all())
    return [
        {
            "network_id": seg.network_id,
            "vni": seg.vni,
            "mtu": int(mtus.get(seg.network_id, 1500)),
            "remotes": sorted(seg.remotes),
            "macs": dict(sorted(seg.macs.items())),
        }
        for seg in plan_segments(s, host, addresses, lambda network_id: network_id, incoming)
    ]


def host_plan(
    s: Session, host: str, addresses: Mapping[str, str], incoming: frozenset[str] = frozenset()
) -> dict[str, Any]:
    """Everything `host`'s agent needs for its data plane, and nothing of other hosts'
    ports beyond their MACs on its own networks and its rules' remote-group member IPs.
    `incoming`: the servers moving to `host`, whose ports it plans as its own already."""
    firewall = firewall_input(s, host, incoming)
    plan = {
        "servers": _server_ports(s, host, incoming),
        "segments": _segments(s, host, addresses, incoming),
        "zones": [{"network_id": n, "zone": z} for n, z in firewall.zones],
        "filters": firewall.ports,
        "groups": firewall.groups,
    }
    plan["digest"] = plan_digest(plan)
    return plan


def plan_digest(plan: Mapping[str, Any]) -> str:
    """A short fingerprint of a plan: equal plans, equal digests."""
    body = {k: v for k, v in plan.items() if k != "digest"}
    raw = json.dumps(body, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(raw.encode()).hexdigest()[:16]


def network_fingerprint(s: Session) -> tuple[Any, ...]:
    """A cheap reading that changes whenever a port, an address, a group membership or a
    rule does (one statement per table, aggregates only): the network node's loop
    recomputes host plans only when it moved."""
    return (
        *s.execute(
            select(
                func.count(m.Port.id), func.max(m.Port.updated_at), func.sum(m.Port.revision_number)
            )
        ).one(),
        s.scalar(select(func.count()).select_from(m.IpAllocation)),
        s.scalar(select(func.count()).select_from(m.PortSecurityGroup)),
        *s.execute(
            select(func.count(m.SecurityGroupRule.id), func.max(m.SecurityGroupRule.created_at))
        ).one(),
    )


def port_filter(port: Mapping[str, Any], tap_name: Callable[[str], str]) -> PortFilter:
    """One entry of `FirewallInput.ports` as the firewall takes it, on this host's tap."""
    return PortFilter(
        ifname=tap_name(str(port["port_id"])),
        mac=str(port["mac"]),
        ips=tuple(str(ip) for ip in port["ips"]),
        allowed_pairs=tuple(
            (str(ip), None if mac is None else str(mac)) for ip, mac in port["allowed_pairs"]
        ),
        rules=tuple(Rule(**rule) for rule in port["rules"]),
    )


class HostPlans:
    """host_plan over the cloud's database, with the underlay addresses the composition
    root reads (network reads no compute table): what the internal API hands each agent."""

    def __init__(self, db: Database, addresses: HostAddresses) -> None:
        self.db = db
        self.addresses = addresses

    def plan(self, host: str, incoming: frozenset[str] = frozenset()) -> dict[str, Any]:
        addresses = self.addresses()
        with self.db.session() as s:
            return host_plan(s, host, addresses, incoming)


def tunnel_endpoints(addresses: Mapping[str, str]) -> dict[str, str]:
    """The hosts whose address can end a VXLAN tunnel (unicast IPv4); others are left out
    of every plan (and logged by plan_segments as hosts without a usable address)."""
    usable = {}
    for host, value in addresses.items():
        try:
            address = ipaddress.IPv4Address(value)
        except ValueError:
            continue
        if not (address.is_unspecified or address.is_multicast or address.is_loopback):
            usable[host] = str(address)
    return usable
