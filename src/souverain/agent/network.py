"""The agent host's data plane, made from the `network` part of its assignment: a bridge
per tenant network it has a guest on, a tap per guest port, the VXLAN segments to the other
hosts (and the network node, where DHCP and routers are), the security groups' nftables.

No dnsmasq and no router here: those stay on the network node, reached over VXLAN. Taps
exist and are filtered before QEMU starts (the driver applies this first, every watch
answer); what no assignment wants any more (a removed guest's taps, a network without
guests here) goes. Kernel objects carry the prefix of the agent's data dir
(network/host.py `host_network`), so `souverain host decommission` with the same data dir
removes them. No database, no HTTP.
"""

from __future__ import annotations

import ipaddress
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from souverain.network.dataplane import DataplaneError
from souverain.network.firewall import FirewallError, NetworkZone, PortFilter
from souverain.network.host import HostNetwork
from souverain.network.host_plan import port_filter
from souverain.network.overlay import Overlay, Segment

log = logging.getLogger("souverain.agent")


class NetworkFailure(Exception):
    """The host's data plane could not be made as the plan says; guests with ports wait."""


def tap_mac(mac: str) -> str:
    """The tap's own MAC differs from the guest's (fe:...), or the bridge keeps the guest's
    frames for the host, as the all-in-one's wiring does."""
    return "fe" + mac[2:]


def guest_ports(servers: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """The ports of the guests that should exist here (not those being removed)."""
    ports: list[dict[str, Any]] = []
    for server in servers:
        if server.get("desired") == "absent":
            continue
        found = server.get("ports")
        if isinstance(found, list):
            ports += [p for p in found if isinstance(p, dict)]
    return ports


@dataclass(frozen=True)
class _Wanted:
    """A plan checked whole, as the kernel objects take it."""

    mtus: dict[str, int]
    taps: dict[str, list[tuple[str, str]]]  # network id -> (port id, tap MAC)
    segments: list[Segment]
    zones: list[NetworkZone]
    filters: list[PortFilter]
    groups: dict[str, list[str]]


class AgentNetwork:
    """This host's bridges, taps, VXLAN devices and firewall, as one plan says."""

    def __init__(self, host: HostNetwork, local_address: str | None) -> None:
        self.host = host
        self.overlay: Overlay | None = None
        if local_address and ipaddress.ip_address(local_address).is_loopback:
            # a one-machine cloud of agents: nothing to tunnel to, guests keep their taps
            log.warning(
                "agent.address %s is loopback: no VXLAN segment to other hosts", local_address
            )
        elif local_address:
            self.overlay = Overlay(host.dataplane.prefix, local_address)

    def tap_name(self, port_id: str) -> str:
        return self.host.dataplane.tap_name(port_id)

    def apply(self, plan: Mapping[str, Any], servers: Sequence[Mapping[str, Any]]) -> None:
        """Make the host match: taps and bridges, then segments, then the firewall. The
        whole plan is checked first: a plan that does not hold changes nothing here."""
        wanted = self.check(plan, servers)
        try:
            self._make(wanted)
        except (DataplaneError, FirewallError) as exc:
            raise NetworkFailure(f"the host's network could not be set up: {exc}") from exc

    def check(self, plan: Mapping[str, Any], servers: Sequence[Mapping[str, Any]]) -> _Wanted:
        """The plan as the kernel objects take it, checked whole (touches nothing)."""
        try:
            return self._parse(plan, guest_ports(servers))
        except (DataplaneError, FirewallError, KeyError, TypeError, ValueError) as exc:
            raise NetworkFailure(f"the host's network plan does not hold: {exc}") from exc

    def _parse(self, plan: Mapping[str, Any], ports: list[dict[str, Any]]) -> _Wanted:
        plane = self.host.dataplane
        raw = list(plan.get("segments") or [])
        segments = _segments(raw, plane.bridge_name)
        mtus = {s.network_id: _mtu(r["mtu"]) for s, r in zip(segments, raw, strict=True)}
        taps: dict[str, list[tuple[str, str]]] = {network_id: [] for network_id in mtus}
        for port in ports:
            network_id, port_id = str(port["network_id"]), str(port["id"])
            plane.tap_name(port_id)  # an id that names no tap is refused here
            taps.setdefault(network_id, []).append((port_id, tap_mac(str(port["mac"]))))
            mtus[network_id] = _mtu(port["mtu"])
        for network_id in mtus:
            plane.bridge_name(network_id)  # an id that names no bridge is refused here
        zones = [
            NetworkZone(plane.bridge_name(str(z["network_id"])), int(z["zone"]))
            for z in plan.get("zones") or []
        ]
        filters = [port_filter(f, plane.tap_name) for f in plan.get("filters") or []]
        groups = {str(g): [str(ip) for ip in ips] for g, ips in (plan.get("groups") or {}).items()}
        self.host.firewall.ruleset(zones, filters, groups)  # pure: refuses what nft would
        if self.overlay is not None:
            self.overlay.check(segments)
        elif segments:
            log.warning("no agent.address: this host carries no VXLAN segment to other hosts")
            segments = []
        return _Wanted(mtus, taps, segments, zones, filters, groups)

    def _make(self, wanted: _Wanted) -> None:
        plane = self.host.dataplane
        changed = plane.reconcile({n: [p for p, _ in ports] for n, ports in wanted.taps.items()})
        for network_id, mtu in wanted.mtus.items():
            plane.ensure_network(network_id, mtu)
        for network_id, ports in wanted.taps.items():
            for port_id, mac in ports:
                plane.ensure_tap(network_id, port_id, mac)
        if self.overlay is not None:
            overlay = self.overlay.reconcile(wanted.segments)
            changed.update({f"overlay_{k}": v for k, v in overlay.items()})
        self.host.firewall.apply(wanted.zones, wanted.filters, wanted.groups)
        if any(changed.values()):
            log.info("host network reconciled: %s", changed)

    def remove_all(self) -> None:
        """Nothing of this host's data plane left (taps, bridges, segments, firewall)."""
        if self.overlay is not None:
            self.overlay.remove_all()
        self.host.dataplane.reconcile({})
        self.host.firewall.delete()


def _loopback(address: str) -> bool:
    try:
        return ipaddress.ip_address(address).is_loopback
    except ValueError:
        return False  # the Overlay refuses it with its own message


def _mtu(value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 576 <= value <= 9000:
        raise ValueError(f"MTU {value!r} is not an integer in 576..9000")
    return value


def _segments(segments: list[Mapping[str, Any]], bridge_name: Any) -> list[Segment]:
    return [
        Segment(
            network_id=str(s["network_id"]),
            vni=int(s["vni"]),
            bridge=bridge_name(str(s["network_id"])),
            remotes=frozenset(str(r) for r in s.get("remotes") or []),
            macs={str(mac): str(dst) for mac, dst in (s.get("macs") or {}).items()},
        )
        for s in segments
    ]
