"""Routers and floating IPs on the host: one network namespace per router, NAT by nftables.

A router is the namespace `<prefix>r-<router id>` holding one veth end per tenant interface
(`qr-…`, its host end in the tenant network's bridge) and one toward the external network
(`qg-…`, its host end in the public bridge), with the router's own nft table. Tenants with the
same CIDR never meet: each router has its own routing table and conntrack. The bridges belong
to `Dataplane`; this module never creates or deletes one. No HTTP, no database; calls block.
"""

from __future__ import annotations

import ipaddress
import subprocess
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from souverain.network import netlink
from souverain.network.dataplane import (
    ID_RE,
    IP,
    Dataplane,
    DataplaneError,
    _check_mtu,
    _checked_id,
    _checked_mac,
    _delete_link,
    _kind,
    _lookup,
    _netlink,
    _no_host_ipv6,
)
from souverain.network.nftables import NFT, NFT_TIMEOUT
from souverain.network.nftables import nft_output as _nft_output
from souverain.network.nftables import run_nft as _nft
from souverain.network.public_range import refuse_held
from souverain.network.router_metering import (
    MeterLabel,
    check_labels,
    read_counts,
    write_labels,
)
from souverain.network.router_routes import ExtraRoute, checked_routes, set_extra_routes

SYSCTL = "sysctl"
# The router's table lives inside its namespace, so one name serves every router.
METER_TABLE = "souverain-meter"
ROUTER_TABLE = "souverain-router"
# Inside the namespace the names only need to be unique per router: Neutron's.
ROUTER_PORT_HEAD, GATEWAY_PORT_HEAD = "qr-", "qg-"
NS_PORT_ID_CHARS = 11

# One letter after the prefix says what a host link is (dataplane uses b, t, d).
_ROUTER_VETH, _GATEWAY_VETH = "q", "g"
_ESRCH = 3
_IP_FORWARD = Path("/proc/sys/net/ipv4/ip_forward")
# The one conntrack-mark bit this module owns on the host: "routed out of a public network".
PUBLIC_MASQUERADE_MARK = 0x00800000


@dataclass(frozen=True)
class RouterInterface:
    """A router port on a tenant network; `ip` is the tenant's gateway address."""

    network_id: str
    port_id: str
    mac: str
    ip: str
    prefixlen: int
    mtu: int = 1500


@dataclass(frozen=True)
class RouterGateway:
    """The router's port on the external network; `snat` hides the tenant subnets behind it."""

    network_id: str
    port_id: str
    mac: str
    ip: str
    prefixlen: int
    next_hop: str | None
    snat: bool = True
    mtu: int = 1500


@dataclass(frozen=True)
class FloatingIp:
    """A public address of the external network that stands for one fixed address."""

    floating_ip: str
    fixed_ip: str


@dataclass(frozen=True)
class _Port:
    """One veth of a router, validated: what the kernel must show for it."""

    network_id: str
    host_ifname: str
    ns_ifname: str
    mac: str
    mtu: int
    addresses: frozenset[tuple[str, int]]


@dataclass(frozen=True)
class _RouterPlan:
    """A router's desired state, validated in full before anything on the host changes."""

    router_id: str
    ports: tuple[_Port, ...]
    next_hop: str | None
    ruleset: dict[str, Any]
    routes: tuple[ExtraRoute, ...] = ()
    labels: tuple[MeterLabel, ...] = ()


class Routing:
    """The routers of one host, sharing the data plane's prefix, lock and bridges.

    Host link names: the veth host end of a router interface `<prefix>q<hex of port id>`, of
    a gateway `<prefix>g<hex of port id>` (exactly 15 characters, like the data plane's); each
    carries the router id as its alias so `delete_router` finds it even without the namespace.
    The public network's NAT is the table `ip souverain-<prefix>-public-<network id>`.
    """

    def __init__(self, dataplane: Dataplane) -> None:
        self.dataplane = dataplane
        self.prefix = dataplane.prefix

    # ------------------------------------------------------------------------- names

    def router_namespace(self, router_id: str) -> str:
        return f"{self.prefix}r-{_checked_id(router_id)}"

    def public_table(self, network_id: str) -> str:
        return f"{self._public_table_head()}{_checked_id(network_id)}"

    def _public_table_head(self) -> str:
        return f"souverain-{self.prefix}-public-"

    def _router_id_of(self, namespace: str) -> str | None:
        head = f"{self.prefix}r-"
        router_id = namespace[len(head) :]
        return router_id if namespace.startswith(head) and ID_RE.match(router_id) else None

    def _ours(self, ifname: str) -> bool:
        return self.dataplane._ours(ifname, _ROUTER_VETH) or self.dataplane._ours(
            ifname, _GATEWAY_VETH
        )

    # ------------------------------------------------------------------ public network

    def ensure_public(self, network_id: str, cidr: str, host_ip: str, mtu: int = 1500) -> str:
        """The external network's bridge, with the host's address on it; returns its name.

        Turns on forwarding on the host (and leaves it on: other networks may need it) and
        masquerades what routers send through the host to anywhere outside `cidr`.
        """
        _check_mtu(mtu)
        network = _checked_network(cidr)
        host = _checked_host_address(f"host address {host_ip}", host_ip, network.prefixlen)
        if host.network != network:
            raise DataplaneError(f"host address {host_ip} is not in {cidr}")
        table = self.public_table(network_id)
        self.check_public(network_id, cidr)
        bridge = self.dataplane.ensure_network(network_id, mtu)
        with self.dataplane._lock():
            with netlink.IPRoute() as ipr:
                index = _lookup(ipr, bridge)
                if index is None:
                    raise DataplaneError(f"bridge {bridge} vanished while being configured")
                _set_addresses(ipr, bridge, index, {(str(host.ip), network.prefixlen)})
            _IP_FORWARD.write_text("1")
            _nft(f"write table {table}", _public_ruleset(table, network, bridge))
        return bridge

    def check_public(self, network_id: str, cidr: str) -> None:
        """DataplaneError if a link other than the network's own bridge holds an address
        in its range: call it before making anything, so that a refused start leaves nothing."""
        with netlink.IPRoute() as ipr:
            refuse_held(ipr, _checked_network(cidr), self.dataplane.bridge_name(network_id))

    def delete_public(self, network_id: str) -> None:
        """The NAT table and the host's address gone; the bridge is dataplane's to delete."""
        table = {"family": "ip", "name": self.public_table(network_id)}
        bridge = self.dataplane.bridge_name(network_id)
        with self.dataplane._lock():
            # add-then-delete: deleting a table that is not there would fail the batch
            _nft(f"delete table {table['name']}", _batch({"table": table}, delete=True))
            with netlink.IPRoute() as ipr:
                index = _lookup(ipr, bridge)
                if index is not None:
                    _set_addresses(ipr, bridge, index, set())

    # ------------------------------------------------------------------------ routers

    def ensure_router(
        self,
        router_id: str,
        gateway: RouterGateway | None,
        interfaces: Sequence[RouterInterface],
        floating_ips: Sequence[FloatingIp],
        routes: Sequence[ExtraRoute] = (),
        labels: Sequence[MeterLabel] = (),
    ) -> None:
        """Make the router's namespace match exactly this state; what is not wanted goes."""
        check_labels(labels)
        plan = self._plan(router_id, gateway, interfaces, floating_ips, routes)
        self._ensure(replace(plan, labels=tuple(labels)))

    def delete_router(self, router_id: str) -> None:
        """The namespace, its veths (both ends) and its NAT table: all gone. Idempotent."""
        _checked_id(router_id)
        with self.dataplane._lock():
            self._remove(router_id)

    def reconcile(
        self,
        routers: Mapping[
            str, tuple[RouterGateway | None, Sequence[RouterInterface], Sequence[FloatingIp]]
        ],
        routes: Mapping[str, Sequence[ExtraRoute]] | None = None,
        labels: Mapping[str, Sequence[MeterLabel]] | None = None,
    ) -> dict[str, list[str]]:
        """Make the host match `routers` (router id -> its gateway, interfaces, floating IPs;
        `routes`: router id -> its extra routes).

        Removes every router namespace and router veth of ours not wanted, then brings each
        wanted router to its state. Returns what it did, for the log.
        """
        extra, meters = routes or {}, labels or {}
        for wanted in meters.values():
            check_labels(wanted)
        plans = [
            replace(self._plan(r, *spec, extra.get(r, ())), labels=tuple(meters.get(r, ())))
            for r, spec in routers.items()
        ]
        wanted_namespaces = {self.router_namespace(p.router_id) for p in plans}
        wanted_links = {port.host_ifname for p in plans for port in p.ports}
        done: dict[str, list[str]] = {
            "removed_namespaces": [],
            "removed_links": [],
            "created_links": [],
            "ensured_routers": [],
        }
        with self.dataplane._lock():
            for namespace in netlink.netns.listnetns():
                router_id = self._router_id_of(namespace)
                if router_id is not None and namespace not in wanted_namespaces:
                    done["removed_links"].extend(self._remove(router_id))
                    done["removed_namespaces"].append(namespace)
            with netlink.IPRoute() as ipr:
                for link in ipr.get_links():
                    ifname = link.get("ifname")
                    if self._ours(ifname) and ifname not in wanted_links and _kind(link) == "veth":
                        _delete_link(ipr, ifname)
                        done["removed_links"].append(ifname)
        for plan in plans:
            done["created_links"].extend(self._ensure(plan))
            done["ensured_routers"].append(plan.router_id)
        return done

    def public_networks(self) -> list[str]:
        """The external networks whose NAT table of ours is on the host now."""
        head = self._public_table_head()
        return [name[len(head) :] for name in self.inventory()["public_tables"]]

    def inventory(self) -> dict[str, list[str]]:
        """Every router object of ours that exists now (what tests check for leaks)."""
        with netlink.IPRoute() as ipr:
            veths = sorted(
                link.get("ifname") for link in ipr.get_links() if self._ours(link.get("ifname"))
            )
        namespaces = sorted(
            n for n in netlink.netns.listnetns() if self._router_id_of(n) is not None
        )
        listed = _nft_output([NFT, "-j", "list", "tables", "ip"])
        tables = sorted(
            item["table"]["name"]
            for item in listed.get("nftables", [])
            if "table" in item and item["table"]["name"].startswith(self._public_table_head())
        )
        return {"namespaces": namespaces, "veths": veths, "public_tables": tables}

    # ---------------------------------------------------------------------- internals

    def _plan(
        self,
        router_id: str,
        gateway: RouterGateway | None,
        interfaces: Sequence[RouterInterface],
        floating_ips: Sequence[FloatingIp],
        routes: Sequence[ExtraRoute] = (),
    ) -> _RouterPlan:
        _checked_id(router_id)
        ports: list[_Port] = []
        subnets: list[ipaddress.IPv4Network] = []
        for interface in interfaces:
            address = _checked_host_address(
                f"router interface {interface.port_id}", interface.ip, interface.prefixlen
            )
            _refuse_overlap(address.network, subnets, f"router interface {interface.port_id}")
            subnets.append(address.network)
            ports.append(self._port(interface, ROUTER_PORT_HEAD, _ROUTER_VETH, {address}))
        gateway_address: ipaddress.IPv4Interface | None = None
        if gateway is not None:
            what = f"router gateway {gateway.port_id}"
            gateway_address = _checked_host_address(what, gateway.ip, gateway.prefixlen)
            _refuse_overlap(gateway_address.network, subnets, what)
            if gateway.next_hop is not None:
                hop = _checked_address(f"next hop {gateway.next_hop}", gateway.next_hop)
                if hop not in gateway_address.network or hop == gateway_address.ip:
                    raise DataplaneError(
                        f"next hop {gateway.next_hop} is not another address of "
                        f"{gateway_address.network}"
                    )
        floating = _checked_floating_ips(floating_ips, subnets, gateway_address)
        if gateway is not None and gateway_address is not None:
            pinned = {ipaddress.IPv4Interface(f"{f}/32") for f, _ in floating}
            ports.append(
                self._port(gateway, GATEWAY_PORT_HEAD, _GATEWAY_VETH, {gateway_address, *pinned})
            )
        if len({p.host_ifname for p in ports}) != len(ports):
            raise DataplaneError(f"router {router_id}: a port is given twice")
        ruleset = _router_ruleset(
            gateway_port=ports[-1].ns_ifname if gateway is not None else None,
            gateway_ip=None if gateway_address is None else str(gateway_address.ip),
            snat_subnets=subnets if gateway is not None and gateway.snat else [],
            floating=floating,
        )
        return _RouterPlan(
            router_id=router_id,
            ports=tuple(ports),
            next_hop=None if gateway is None else gateway.next_hop,
            ruleset=ruleset,
            routes=checked_routes(
                routes,
                [*subnets, *([] if gateway_address is None else [gateway_address.network])],
            ),
        )

    def _port(
        self,
        spec: RouterInterface | RouterGateway,
        head: str,
        letter: str,
        addresses: set[ipaddress.IPv4Interface],
    ) -> _Port:
        _check_mtu(spec.mtu)
        self.dataplane.bridge_name(spec.network_id)  # validates the network id
        return _Port(
            network_id=spec.network_id,
            host_ifname=self.dataplane._ifname(letter, spec.port_id),
            ns_ifname=f"{head}{spec.port_id[:NS_PORT_ID_CHARS]}",
            mac=_checked_mac(spec.mac),
            mtu=spec.mtu,
            addresses=frozenset((str(a.ip), a.network.prefixlen) for a in addresses),
        )

    def _ensure(self, plan: _RouterPlan) -> list[str]:
        """Apply a validated plan; returns the host ends of the veths it had to create."""
        namespace = self.router_namespace(plan.router_id)
        with self.dataplane._lock():
            with netlink.IPRoute() as ipr:
                bridges = {port.network_id: self._bridge_index(ipr, port) for port in plan.ports}
                if namespace not in netlink.netns.listnetns():
                    netlink.netns.create(namespace)
                _namespace_sysctls(namespace)
                with netlink.NetNS(namespace) as ns:
                    loopback = _lookup(ns, "lo")
                    _netlink(
                        f"bring up lo in {namespace}", ns.link, "set", index=loopback, state="up"
                    )
                    _remove_ports(ns, namespace, keep={port.ns_ifname for port in plan.ports})
                    created = [
                        port.host_ifname
                        for port in plan.ports
                        if self._ensure_veth(ipr, ns, namespace, plan.router_id, port, bridges)
                    ]
                    _set_default_route(ns, namespace, plan)
                    set_extra_routes(ns, namespace, plan.routes)
            _nft(f"write the NAT of router {plan.router_id}", plan.ruleset, namespace)
            _ensure_meter(namespace)
            self._write_labels(namespace, plan)
        return created

    def _write_labels(self, namespace: str, plan: _RouterPlan) -> None:
        gateway = next((p.ns_ifname for p in plan.ports if p.ns_ifname.startswith("qg-")), None)
        write_labels(namespace, gateway, plan.labels)

    def metering_counts(self, router_id: str, labels: Sequence[str]) -> dict[str, tuple[int, int]]:
        """Label id -> (packets, bytes) the router counted for it; {} without a router."""
        return read_counts(self.router_namespace(router_id), labels)

    def take_egress(self, router_id: str) -> int:
        """Bytes the router sent out through its gateway since the last call (read and
        zeroed in one nft command, so none is counted twice or lost); 0 without a router."""
        namespace = self.router_namespace(router_id)
        if namespace not in netlink.netns.listnetns():
            return 0
        try:
            out = _nft_output(
                [IP, "netns", "exec", namespace, NFT, "-j", "reset", "counter", "ip", METER_TABLE,
                 "egress"]
            )  # fmt: skip
        except DataplaneError:
            return 0  # no meter yet (a router made before metering): ensure_router adds it
        for item in out.get("nftables", []):
            counter = item.get("counter")
            if isinstance(counter, dict) and counter.get("name") == "egress":
                return int(counter.get("bytes", 0))
        return 0

    def _bridge_index(self, ipr: Any, port: _Port) -> int:
        index = _lookup(ipr, self.dataplane.bridge_name(port.network_id))
        if index is None:
            raise DataplaneError(f"network {port.network_id} has no bridge: ensure_network first")
        return index

    def _ensure_veth(
        self,
        ipr: Any,
        ns: Any,
        namespace: str,
        router_id: str,
        port: _Port,
        bridges: Mapping[str, int],
    ) -> bool:
        index = _lookup(ipr, port.host_ifname)
        peer = _lookup(ns, port.ns_ifname)
        created = False
        if index is None or peer is None:
            created = True
            # half a pair (a crash, a hand-deleted link, a port moved between routers) is
            # useless: start again
            _delete_link(ipr, port.host_ifname)
            if peer is not None:
                _netlink(f"delete {port.ns_ifname} in {namespace}", ns.link, "del", index=peer)
            _netlink(
                f"create veth {port.host_ifname} into {namespace}",
                ipr.link,
                "add",
                ifname=port.host_ifname,
                kind="veth",
                peer={"ifname": port.ns_ifname, "net_ns_fd": namespace},
            )
            index = _lookup(ipr, port.host_ifname)
            peer = _lookup(ns, port.ns_ifname)
            if index is None or peer is None:
                raise DataplaneError(f"veth {port.host_ifname} vanished while being created")
        elif _kind(ipr.get_links(index)[0]) != "veth":
            raise DataplaneError(f"{port.host_ifname} exists and is not a veth: remove it by hand")
        _no_host_ipv6(port.host_ifname)
        _netlink(
            f"plug {port.host_ifname} into the bridge",
            ipr.link,
            "set",
            index=index,
            master=bridges[port.network_id],
            mtu=port.mtu,
            ifalias=_alias(router_id),
            state="up",
        )
        _netlink(
            f"set up {port.ns_ifname} in {namespace}",
            ns.link,
            "set",
            index=peer,
            address=port.mac,
            mtu=port.mtu,
            state="up",
        )
        _set_addresses(ns, f"{port.ns_ifname} in {namespace}", peer, set(port.addresses))
        return created

    def _remove(self, router_id: str) -> list[str]:
        """Remove a router's namespace and every veth of it, both ends; the caller locks."""
        namespace = self.router_namespace(router_id)
        removed: list[str] = []
        if namespace in netlink.netns.listnetns():
            with netlink.NetNS(namespace) as ns:
                # before the namespace goes: a process still inside would keep it, and with
                # it the host ends in the bridges, alive after the unmount
                removed.extend(_remove_ports(ns, namespace, keep=set()))
            netlink.netns.remove(namespace)
        with netlink.IPRoute() as ipr:
            for link in ipr.get_links():
                ifname = link.get("ifname")
                if self._ours(ifname) and link.get("IFLA_IFALIAS") == _alias(router_id):
                    _delete_link(ipr, ifname)
                    removed.append(ifname)
        return removed


# ------------------------------------------------------------------------ validation


def _checked_address(what: str, value: str) -> ipaddress.IPv4Address:
    try:
        return ipaddress.IPv4Address(value)
    except ValueError as exc:
        raise DataplaneError(f"{what}: {exc} (IPv4 only for now)") from exc


def _checked_network(cidr: str) -> ipaddress.IPv4Network:
    try:
        network = ipaddress.IPv4Network(cidr)
    except ValueError as exc:
        raise DataplaneError(f"network {cidr!r}: {exc} (IPv4 only for now)") from exc
    if network.prefixlen > 30:
        raise DataplaneError(f"network {cidr} is too small for a router and its hosts")
    return network


def _checked_host_address(what: str, ip: str, prefixlen: int) -> ipaddress.IPv4Interface:
    """`ip/prefixlen` where `ip` is a host address (not network, not broadcast) of a /1../30."""
    address = _checked_address(what, ip)
    if isinstance(prefixlen, bool) or not isinstance(prefixlen, int) or not 1 <= prefixlen <= 30:
        raise DataplaneError(f"{what}: prefix length {prefixlen!r} is outside 1..30")
    interface = ipaddress.IPv4Interface(f"{address}/{prefixlen}")
    network = interface.network
    if address in (network.network_address, network.broadcast_address):
        raise DataplaneError(f"{what}: {ip} is not a host address of {network}")
    return interface


def _refuse_overlap(
    network: ipaddress.IPv4Network, others: Sequence[ipaddress.IPv4Network], what: str
) -> None:
    for other in others:
        if network.overlaps(other):
            raise DataplaneError(f"{what}: {network} overlaps {other} on the same router")


def _checked_floating_ips(
    floating_ips: Sequence[FloatingIp],
    subnets: Sequence[ipaddress.IPv4Network],
    gateway: ipaddress.IPv4Interface | None,
) -> list[tuple[str, str]]:
    """(floating, fixed) pairs: each floating address once, each fixed one behind the router."""
    if floating_ips and gateway is None:
        raise DataplaneError("floating IPs need a router gateway on their external network")
    pairs: list[tuple[str, str]] = []
    seen_floating: set[ipaddress.IPv4Address] = set()
    seen_fixed: set[ipaddress.IPv4Address] = set()
    for item in floating_ips:
        floating = _checked_address(f"floating IP {item.floating_ip}", item.floating_ip)
        fixed = _checked_address(f"fixed IP {item.fixed_ip}", item.fixed_ip)
        if floating in seen_floating or (gateway is not None and floating == gateway.ip):
            raise DataplaneError(f"floating IP {floating} is given twice or is the gateway's")
        if fixed in seen_fixed:
            raise DataplaneError(f"fixed IP {fixed} has two floating IPs")
        if not any(fixed in subnet for subnet in subnets):
            raise DataplaneError(f"fixed IP {fixed} is on no subnet of the router")
        seen_floating.add(floating)
        seen_fixed.add(fixed)
        pairs.append((str(floating), str(fixed)))
    return pairs


def _alias(router_id: str) -> str:
    return f"router {router_id}"


# ---------------------------------------------------------------------------- kernel


def _set_addresses(ipr: Any, where: str, index: int, wanted: set[tuple[str, int]]) -> None:
    """Exactly these IPv4 addresses (ip, prefixlen) on the link, no others."""
    present = {(a.get("IFA_ADDRESS"), a["prefixlen"]) for a in ipr.get_addr(index=index, family=2)}
    for ip, prefixlen in present - wanted:
        _netlink(
            f"remove {ip}/{prefixlen} from {where}",
            ipr.addr,
            "del",
            index=index,
            address=ip,
            prefixlen=prefixlen,
        )
    for ip, prefixlen in wanted - present:
        _netlink(
            f"add {ip}/{prefixlen} to {where}",
            ipr.addr,
            "add",
            index=index,
            address=ip,
            prefixlen=prefixlen,
        )


def _remove_ports(ns: Any, namespace: str, keep: set[str]) -> list[str]:
    """Delete the router's qr-/qg- links not in `keep`; each veth's host end goes with it."""
    removed = []
    for link in ns.get_links():
        ifname = link.get("ifname")
        if ifname.startswith((ROUTER_PORT_HEAD, GATEWAY_PORT_HEAD)) and ifname not in keep:
            _netlink(f"delete {ifname} in {namespace}", ns.link, "del", index=link["index"])
            removed.append(f"{namespace}/{ifname}")
    return removed


def _set_default_route(ns: Any, namespace: str, plan: _RouterPlan) -> None:
    if plan.next_hop is not None:
        gateway_port = plan.ports[-1].ns_ifname
        _netlink(
            f"route {namespace} via {plan.next_hop}",
            ns.route,
            "replace",
            dst="0.0.0.0/0",
            gateway=plan.next_hop,
            oif=_lookup(ns, gateway_port),
        )
        return
    try:
        ns.route("del", dst="0.0.0.0/0")
    except netlink.NetlinkError as exc:
        if exc.code != _ESRCH:  # no default route: nothing to remove
            raise DataplaneError(f"cannot remove the default route of {namespace}") from exc


def _namespace_sysctls(namespace: str) -> None:
    """Forwarding on; no IPv6 (IPv4 only for now: no link-local, no answer to a tenant's RA)."""
    settings = [
        "net.ipv4.ip_forward=1",
        "net.ipv6.conf.all.disable_ipv6=1",
        "net.ipv6.conf.default.disable_ipv6=1",
    ]
    proc = subprocess.run(
        [IP, "netns", "exec", namespace, SYSCTL, "-q", "-w", *settings],
        capture_output=True,
        text=True,
        timeout=NFT_TIMEOUT,
        check=False,
    )
    if proc.returncode != 0:
        raise DataplaneError(f"cannot set forwarding in {namespace}: {proc.stderr.strip()}")


# -------------------------------------------------------------------------- nftables


def _ensure_meter(namespace: str) -> None:
    """The router's egress counter: what leaves by its gateway (SNAT and floating IPs
    alike). A table of its own, made once and never replaced, so rewriting the NAT keeps
    the count."""
    try:
        _nft_output([IP, "netns", "exec", namespace, NFT, "-j", "list", "table", "ip", METER_TABLE])
        return
    except DataplaneError:
        pass
    table = {"family": "ip", "name": METER_TABLE}
    payload = {
        "nftables": [
            {"add": {"table": table}},
            {"add": {"counter": {"family": "ip", "table": METER_TABLE, "name": "egress"}}},
            _base_chain(table, "forward", "filter", "forward", 0),
            _rule(table, "forward", _match(_OIFNAME, "qg-*"), {"counter": "egress"}),
        ]
    }
    _nft("add the egress meter", payload, namespace)


def _batch(table: dict[str, Any], delete: bool = False) -> dict[str, Any]:
    """add+delete(+add) of a table: replaces it whole (or removes it) whether or not it was
    there, in one transaction, so no packet ever sees half a ruleset."""
    commands: list[dict[str, Any]] = [{"add": table}, {"delete": table}]
    if not delete:
        commands.append({"add": table})
    return {"nftables": commands}


def _nat_chain(table: dict[str, Any], name: str, hook: str, priority: int) -> dict[str, Any]:
    return _base_chain(table, name, "nat", hook, priority)


def _base_chain(
    table: dict[str, Any], name: str, kind: str, hook: str, priority: int
) -> dict[str, Any]:
    return {
        "add": {
            "chain": {
                "family": table["family"],
                "table": table["name"],
                "name": name,
                "type": kind,
                "hook": hook,
                "prio": priority,
                "policy": "accept",
            }
        }
    }


def _rule(table: dict[str, Any], chain: str, *expr: dict[str, Any]) -> dict[str, Any]:
    where = {"family": table["family"], "table": table["name"], "chain": chain}
    return {"add": {"rule": {**where, "expr": list(expr)}}}


def _match(left: dict[str, Any], right: Any, op: str = "==") -> dict[str, Any]:
    return {"match": {"op": op, "left": left, "right": right}}


def _ip(field: str) -> dict[str, Any]:
    return {"payload": {"protocol": "ip", "field": field}}


_OIFNAME = {"meta": {"key": "oifname"}}


def _prefix(network: ipaddress.IPv4Network) -> dict[str, Any]:
    return {"prefix": {"addr": str(network.network_address), "len": network.prefixlen}}


def _router_ruleset(
    gateway_port: str | None,
    gateway_ip: str | None,
    snat_subnets: Sequence[ipaddress.IPv4Network],
    floating: Sequence[tuple[str, str]],
) -> dict[str, Any]:
    table = {"family": "ip", "name": ROUTER_TABLE}
    payload = _batch({"table": table})
    commands: list[dict[str, Any]] = payload["nftables"]
    commands.append(_nat_chain(table, "prerouting", "prerouting", -100))
    commands.append(_nat_chain(table, "postrouting", "postrouting", 100))
    for floating_ip, fixed_ip in floating:
        commands.append(
            _rule(
                table, "prerouting", _match(_ip("daddr"), floating_ip), {"dnat": {"addr": fixed_ip}}
            )
        )
    if gateway_port is None or gateway_ip is None:
        return payload
    # a floating IP's own source first: the router-wide SNAT below must not win for it
    for floating_ip, fixed_ip in floating:
        commands.append(
            _rule(
                table,
                "postrouting",
                _match(_ip("saddr"), fixed_ip),
                _match(_OIFNAME, gateway_port),
                {"snat": {"addr": floating_ip}},
            )
        )
    for subnet in snat_subnets:
        commands.append(
            _rule(
                table,
                "postrouting",
                _match(_OIFNAME, gateway_port),
                _match(_ip("saddr"), _prefix(subnet)),
                {"snat": {"addr": gateway_ip}},
            )
        )
    return payload


def _public_ruleset(table_name: str, network: ipaddress.IPv4Network, bridge: str) -> dict[str, Any]:
    """Masquerade what the host routes from the public bridge to any other interface.

    The decision is taken in the forward hook, where the input interface is known, and
    carried to postrouting in one bit of the connection's mark: with br_netfilter loaded,
    frames merely bridged (a floating IP's DNATed packets crossing a tenant bridge, routers
    talking across the public bridge) also pass the IP hooks, with the bridge as output
    interface, and an address match alone would masquerade them too. The conntrack mark,
    not the packet mark: the security groups (firewall.py) own the packet mark of bridged
    frames, and NAT is decided on a connection's first packet anyway.
    """
    table = {"family": "ip", "name": table_name}
    mark = {"ct": {"key": "mark"}}
    payload = _batch({"table": table})
    payload["nftables"].extend(
        [
            _base_chain(table, "forward", "filter", "forward", 0),
            _nat_chain(table, "postrouting", "postrouting", 100),
            _rule(
                table,
                "forward",
                _match({"meta": {"key": "iifname"}}, bridge),
                _match(_OIFNAME, bridge, op="!="),
                _match(_ip("saddr"), _prefix(network)),
                {"mangle": {"key": mark, "value": {"|": [mark, PUBLIC_MASQUERADE_MARK]}}},
            ),
            _rule(
                table,
                "postrouting",
                _match({"&": [mark, PUBLIC_MASQUERADE_MARK]}, PUBLIC_MASQUERADE_MARK),
                {"masquerade": None},
            ),
        ]
    )
    return payload
