"""Security groups and anti-spoofing for bridged guest ports, enforced with nftables.

Two tables per instance, both named `souverain-<prefix>`, replaced together in one atomic
`nft -j -f -` transaction. The `bridge` table is stateless: it drops what a port may not
send (foreign MAC, foreign IPv4, rogue DHCP server, IPv6, other ethertypes) and marks each
frame with its source port (high 16 bits of the mark) and destination port (low 16 bits).
The `inet` table is stateful: br_netfilter hands bridged IPv4 to the inet hooks with the
bridge as iifname/oifname, so conntrack works there; a conntrack zone per network keeps
tenants with the same CIDR apart, and the marks pick the egress and ingress chains of the
ports. This module builds JSON and runs `nft`; it never builds a command line from input,
and never touches a table, bridge or mark outside this instance's own objects.
"""

from __future__ import annotations

import ipaddress
import json
import re
import subprocess
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

PREFIX_RE = re.compile(r"^[a-z][a-z0-9]{0,15}$")
IFNAME_RE = re.compile(r"^[A-Za-z0-9_.-]{1,15}$")
MAC_RE = re.compile(r"^[0-9a-f]{2}(:[0-9a-f]{2}){5}$")
NFT_TIMEOUT = 30.0
MAX_PORTS = 0xFFFF  # a port's index must fit in 16 bits of the mark

# Neutron protocol names this firewall understands, with their IP protocol numbers.
PROTOCOLS: Mapping[str, int] = {
    "icmp": 1,
    "igmp": 2,
    "ipip": 4,
    "tcp": 6,
    "egp": 8,
    "udp": 17,
    "dccp": 33,
    "rsvp": 46,
    "gre": 47,
    "esp": 50,
    "ah": 51,
    "ospf": 89,
    "pgm": 113,
    "vrrp": 112,
    "sctp": 132,
    "udplite": 136,
}
# Protocols whose port_min/port_max are a destination port range.
_PORT_PROTOCOLS: Mapping[int, str] = {6: "tcp", 17: "udp", 33: "dccp", 132: "sctp", 136: "udplite"}
_ICMP = 1

_FAMILIES = ("bridge", "inet")
_SRC_MASK, _DST_MASK = 0xFFFF0000, 0x0000FFFF
_MARK: dict[str, Any] = {"meta": {"key": "mark"}}
# The source of DHCP discovers and ARP probes, sent before a guest has its address.
_NO_ADDRESS = ipaddress.IPv4Network(0)


def bridge_nf_options() -> dict[str, int]:
    """pyroute2 `link("add", kind="bridge", ...)` keys that make our filtering work.

    The inet table only sees bridged IPv4 when br_netfilter calls the IPv4 hooks for the
    bridge; this per-bridge switch (IFLA_BR_NF_CALL_IPTABLES) does it whatever the
    `net.bridge.bridge-nf-call-iptables` sysctl says. Without it, anti-spoofing still
    works but security group rules are silently not applied.
    """
    return {"br_nf_call_iptables": 1}


class FirewallError(Exception):
    """A firewall input was rejected or nft failed; the message says what to fix."""


@dataclass(frozen=True)
class Rule:
    """One Neutron security group rule."""

    direction: str  # "ingress" | "egress"
    ethertype: str  # "IPv4" | "IPv6"
    protocol: str | None  # None = any; "tcp", "udp", "icmp", ... or "6"
    port_min: int | None
    port_max: int | None
    remote_prefix: str | None  # CIDR
    remote_group: str | None  # group id; its members are in Firewall.apply(groups=...)


@dataclass(frozen=True)
class PortFilter:
    """A guest port with port security: what it may send, and what its groups let in and out.

    A port with port_security_enabled=False is simply not passed to the firewall. The MACs
    and IPv4 addresses of the port and its allowed pairs are checked as two lists, not bound
    pair by pair: a pair's MAC may send with any of the port's allowed addresses.
    """

    ifname: str  # the bridge port (tap) name
    mac: str
    ips: tuple[str, ...]  # fixed IPs (IPv6 ones are ignored by the rules for now)
    allowed_pairs: tuple[tuple[str, str | None], ...] = ()  # (ip or cidr, mac or None)
    rules: tuple[Rule, ...] = ()  # union of the rules of its groups


@dataclass(frozen=True)
class NetworkZone:
    """A network's bridge and its conntrack zone (1..65535, unique per network on the host)."""

    bridge: str
    zone: int


class Firewall:
    """The nftables ruleset of one instance: tables `bridge` and `inet` `souverain-<prefix>`.

    Several instances may share a host as long as their prefixes and bridges differ; each
    acts only on frames of its own bridges and ports. Every call is idempotent. A port whose
    bridge is not among the zones gets anti-spoofing but no security group rules.

    Frames from ports without port security keep the mark they came with: clearing it would
    need `meta ibrname`, which this kernel lacks (CONFIG_NFT_BRIDGE_META is not set). Taps
    and veths from another namespace start at 0; a stale mark can only get a frame dropped
    by some port's chains, never let through one that would be dropped.
    """

    def __init__(self, prefix: str, nft: str = "nft") -> None:
        if not PREFIX_RE.match(prefix):
            raise FirewallError(f"prefix {prefix!r}: 1 to 16 lowercase letters and digits")
        self.prefix = prefix
        self.table = f"souverain-{prefix}"
        self.nft = nft

    # ---------------------------------------------------------------------- public

    def ruleset(
        self,
        zones: Sequence[NetworkZone],
        ports: Sequence[PortFilter],
        groups: Mapping[str, Sequence[str]],
    ) -> dict[str, Any]:
        """The whole nft JSON document replacing this instance's tables (pure, deterministic).

        Ports are numbered 1.. in ifname order, groups 1.. in id order, so the same inputs in
        any order give the same document. A rule naming a group absent from `groups` matches
        nothing, like a group without members.
        """
        zone_list = _checked_zones(zones)
        port_list = _checked_ports(ports)
        group_ids = sorted(
            {r.remote_group for p in port_list for r in p.rules if r.remote_group is not None}
        )
        group_sets = {gid: f"group-{n}" for n, gid in enumerate(group_ids, start=1)}
        group_members = {gid: _checked_members(gid, groups.get(gid, ())) for gid in group_ids}

        doc = _Document(self.table)
        doc.replace_tables()
        self._bridge_table(doc, port_list)
        self._inet_table(doc, zone_list, port_list, group_sets, group_members)
        return {"nftables": doc.commands}

    def apply(
        self,
        zones: Sequence[NetworkZone],
        ports: Sequence[PortFilter],
        groups: Mapping[str, Sequence[str]],
    ) -> None:
        """Replace both tables in one transaction; established flows keep their conntrack.

        A removed rule stops new connections only; flows it let in carry on.
        """
        self._nft(self.ruleset(zones, ports, groups))

    def delete(self) -> None:
        """Both tables gone (none present is fine)."""
        doc = _Document(self.table)
        for family in _FAMILIES:
            doc.add_table(family)
            doc.delete_table(family)
        self._nft({"nftables": doc.commands})

    def inventory(self) -> list[str]:
        """This instance's tables present now, e.g. ["bridge souverain-x", "inet souverain-x"]."""
        out = self._run(["-j", "list", "tables"], None)
        try:
            items = json.loads(out)["nftables"]
        except (ValueError, KeyError, TypeError) as exc:
            raise FirewallError(f"`nft -j list tables` gave unreadable output: {exc}") from exc
        found = {
            f"{item['table']['family']} {item['table']['name']}"
            for item in items
            if "table" in item
            and item["table"].get("name") == self.table
            and item["table"].get("family") in _FAMILIES
        }
        return sorted(found)

    # ------------------------------------------------------------------ bridge table

    def _bridge_table(self, doc: _Document, ports: list[_Port]) -> None:
        family = "bridge"
        doc.base_chain(family, "prerouting", "prerouting", -300)
        doc.base_chain(family, "forward", "forward", -200)
        if not ports:
            return
        doc.rule(family, "prerouting", _vmap({"meta": {"key": "iifname"}}, _jumps(ports, "spoof")))
        doc.rule(family, "forward", _vmap({"meta": {"key": "oifname"}}, _jumps(ports, "to")))
        for port in ports:
            self._spoof_chain(doc, port)
            doc.chain(family, f"to-{port.index}")
            doc.rule(
                family,
                f"to-{port.index}",
                # Low bits cleared first: a non-guest port's frame may carry an old mark.
                {"mangle": {"key": _MARK, "value": {"|": [{"&": [_MARK, _SRC_MASK]}, port.index]}}},
            )

    def _spoof_chain(self, doc: _Document, port: _Port) -> None:
        family, chain = "bridge", f"spoof-{port.index}"
        doc.chain(family, chain)
        ether_type = {"payload": {"protocol": "ether", "field": "type"}}
        ip_saddr = {"payload": {"protocol": "ip", "field": "saddr"}}
        source_mark = _set_mark(port.index << 16)
        doc.rule(
            family,
            chain,
            _match("!=", {"payload": {"protocol": "ether", "field": "saddr"}}, _set(port.macs)),
            {"drop": None},
        )
        # ARP: only our MACs and addresses; 0.0.0.0 is an address probe (RFC 5227).
        doc.rule(
            family,
            chain,
            _match("==", ether_type, "arp"),
            _match("!=", {"payload": {"protocol": "arp", "field": "saddr ether"}}, _set(port.macs)),
            {"drop": None},
        )
        doc.rule(
            family,
            chain,
            _match("==", ether_type, "arp"),
            _match(
                "!=",
                {"payload": {"protocol": "arp", "field": "saddr ip"}},
                _networks([_NO_ADDRESS, *port.networks]),
            ),
            {"drop": None},
        )
        # No guest may answer DHCP: only the network's dnsmasq does.
        doc.rule(
            family,
            chain,
            _match("==", ether_type, "ip"),
            _match("==", {"payload": {"protocol": "udp", "field": "sport"}}, 67),
            {"drop": None},
        )
        # DHCP discover/request before the guest has an address.
        doc.rule(
            family,
            chain,
            _match("==", ether_type, "ip"),
            _match("==", ip_saddr, str(_NO_ADDRESS.network_address)),
            _match("==", {"payload": {"protocol": "udp", "field": "sport"}}, 68),
            _match("==", {"payload": {"protocol": "udp", "field": "dport"}}, 67),
            source_mark,
            {"accept": None},
        )
        if port.networks:
            doc.rule(
                family,
                chain,
                _match("==", ether_type, "ip"),
                _match("!=", ip_saddr, _networks(port.networks)),
                {"drop": None},
            )
        else:
            doc.rule(family, chain, _match("==", ether_type, "ip"), {"drop": None})
        # The data plane is IPv4-only for now: a guest's IPv6 (RA, ND, DHCPv6 included) is
        # dropped here until the rules and anti-spoofing learn IPv6.
        doc.rule(family, chain, _match("==", ether_type, "ip6"), {"drop": None})
        doc.rule(family, chain, _match("!=", ether_type, _set(["arp", "ip"])), {"drop": None})
        doc.rule(family, chain, source_mark)

    # -------------------------------------------------------------------- inet table

    def _inet_table(
        self,
        doc: _Document,
        zones: list[NetworkZone],
        ports: list[_Port],
        group_sets: Mapping[str, str],
        group_members: Mapping[str, list[str]],
    ) -> None:
        family = "inet"
        # raw priority: the zone must be set before conntrack looks the packet up. Both
        # directions of a bridged flow enter through the same bridge, so prerouting is enough.
        doc.base_chain(family, "zone", "prerouting", -300)
        doc.base_chain(family, "forward", "forward", 0)
        doc.chain(family, "bridged")
        for gid, name in group_sets.items():
            doc.named_set(family, name, group_members[gid])
        for zone in zones:
            doc.rule(
                family,
                "zone",
                _match("==", {"meta": {"key": "iifname"}}, zone.bridge),
                {"mangle": {"key": {"ct": {"key": "zone"}}, "value": zone.zone}},
            )
        if zones:
            doc.rule(
                family,
                "forward",
                _match("==", {"meta": {"key": "iifname"}}, _set([z.bridge for z in zones])),
                {"jump": {"target": "bridged"}},
            )
        ct_state = {"ct": {"key": "state"}}
        doc.rule(family, "bridged", _match("in", ct_state, ["established", "related"]),
                 {"accept": None})  # fmt: skip
        doc.rule(family, "bridged", _match("in", ct_state, "invalid"), {"drop": None})
        if ports:
            doc.rule(family, "bridged", _vmap({"&": [_MARK, _SRC_MASK]}, [
                (p.index << 16, f"egress-{p.index}") for p in ports
            ]))  # fmt: skip
            doc.rule(family, "bridged", _vmap({"&": [_MARK, _DST_MASK]}, [
                (p.index, f"ingress-{p.index}") for p in ports
            ]))  # fmt: skip
        # Between ports without port security (DHCP namespace, router): nothing to enforce.
        doc.rule(family, "bridged", {"accept": None})
        for port in ports:
            self._group_chains(doc, port, group_sets)

    def _group_chains(self, doc: _Document, port: _Port, group_sets: Mapping[str, str]) -> None:
        family = "inet"
        egress, ingress = f"egress-{port.index}", f"ingress-{port.index}"
        doc.chain(family, egress)
        doc.chain(family, ingress)
        # DHCP always works both ways, whatever the groups say (as in Neutron).
        doc.rule(family, egress, *_dhcp(68, 67), {"return": None})
        doc.rule(family, ingress, *_dhcp(67, 68), {"accept": None})
        seen: set[Rule] = set()
        for rule in port.rules:
            if rule in seen or rule.ethertype != "IPv4":
                continue  # IPv6 rules wait for an IPv6 data plane
            seen.add(rule)
            verdict = {"return": None} if rule.direction == "egress" else {"accept": None}
            chain = egress if rule.direction == "egress" else ingress
            doc.rule(family, chain, *_rule_matches(rule, group_sets), verdict)
        doc.rule(family, egress, {"drop": None})
        doc.rule(family, ingress, {"drop": None})

    # -------------------------------------------------------------------------- nft

    def _nft(self, document: dict[str, Any]) -> None:
        self._run(["-j", "-f", "-"], json.dumps(document, separators=(",", ":")))

    def _run(self, args: list[str], stdin: str | None) -> str:
        try:
            proc = subprocess.run(
                [self.nft, *args],
                input=stdin,
                capture_output=True,
                text=True,
                timeout=NFT_TIMEOUT,
                check=False,
            )
        except FileNotFoundError as exc:
            raise FirewallError(f"{self.nft} not found: install nftables") from exc
        except subprocess.TimeoutExpired as exc:
            raise FirewallError(f"{self.nft} did not answer in {NFT_TIMEOUT:.0f}s") from exc
        if proc.returncode != 0:
            message = " ".join(proc.stderr.split())[:500] or f"exit status {proc.returncode}"
            raise FirewallError(f"nft {args[-1]} failed for table {self.table}: {message}")
        return proc.stdout


# ------------------------------------------------------------------------ document


class _Document:
    """The nft JSON commands of one transaction on one table name.

    Chains and sets go before rules: a jump to a chain added later in the batch fails.
    """

    def __init__(self, table: str) -> None:
        self.table = table
        self._tables: list[dict[str, Any]] = [{"metainfo": {"json_schema_version": 1}}]
        self._objects: list[dict[str, Any]] = []
        self._rules: list[dict[str, Any]] = []

    @property
    def commands(self) -> list[dict[str, Any]]:
        return [*self._tables, *self._objects, *self._rules]

    def add_table(self, family: str) -> None:
        self._tables.append({"add": {"table": {"family": family, "name": self.table}}})

    def delete_table(self, family: str) -> None:
        self._tables.append({"delete": {"table": {"family": family, "name": self.table}}})

    def replace_tables(self) -> None:
        # Adding first makes the delete succeed whether or not the table existed.
        for family in _FAMILIES:
            self.add_table(family)
            self.delete_table(family)
            self.add_table(family)

    def base_chain(self, family: str, name: str, hook: str, prio: int) -> None:
        self._add_object(
            "chain",
            family=family,
            name=name,
            type="filter",
            hook=hook,
            prio=prio,
            policy="accept",
        )

    def chain(self, family: str, name: str) -> None:
        self._add_object("chain", family=family, name=name)

    def named_set(self, family: str, name: str, members: list[str]) -> None:
        fields: dict[str, Any] = {"family": family, "name": name, "type": "ipv4_addr"}
        if members:
            fields["elem"] = members
        self._add_object("set", **fields)

    def rule(self, family: str, chain: str, *expr: dict[str, Any]) -> None:
        rule = {"family": family, "table": self.table, "chain": chain, "expr": list(expr)}
        self._rules.append({"add": {"rule": rule}})

    def _add_object(self, kind: str, **fields: Any) -> None:
        self._objects.append({"add": {kind: {**fields, "table": self.table}}})


def _match(op: str, left: Any, right: Any) -> dict[str, Any]:
    return {"match": {"op": op, "left": left, "right": right}}


def _set(values: Sequence[Any]) -> Any:
    # nft wants a scalar, not a one-element set, in a few places; a set is fine everywhere.
    return {"set": list(values)}


def _set_mark(value: int) -> dict[str, Any]:
    return {"mangle": {"key": _MARK, "value": value}}


def _vmap(key: Any, targets: Sequence[tuple[Any, str]]) -> dict[str, Any]:
    return {
        "vmap": {"key": key, "data": {"set": [[k, {"jump": {"target": t}}] for k, t in targets]}}
    }


def _jumps(ports: Sequence[_Port], chain: str) -> list[tuple[Any, str]]:
    return [(p.ifname, f"{chain}-{p.index}") for p in ports]


def _dhcp(sport: int, dport: int) -> list[dict[str, Any]]:
    return [
        _match("==", {"meta": {"key": "nfproto"}}, "ipv4"),
        _match("==", {"payload": {"protocol": "udp", "field": "sport"}}, sport),
        _match("==", {"payload": {"protocol": "udp", "field": "dport"}}, dport),
    ]


def _rule_matches(rule: Rule, group_sets: Mapping[str, str]) -> list[dict[str, Any]]:
    """The match expressions of a validated IPv4 rule."""
    peer = "saddr" if rule.direction == "ingress" else "daddr"
    matches = [_match("==", {"meta": {"key": "nfproto"}}, "ipv4")]
    if rule.remote_prefix is not None:
        network = ipaddress.IPv4Network(rule.remote_prefix, strict=False)
        if network.prefixlen:
            matches.append(_match("==", {"payload": {"protocol": "ip", "field": peer}},
                                  _address(network)))  # fmt: skip
    if rule.remote_group is not None:
        matches.append(_match("==", {"payload": {"protocol": "ip", "field": peer}},
                              f"@{group_sets[rule.remote_group]}"))  # fmt: skip
    number = _protocol_number(rule.protocol)
    if number is None:
        return matches
    matches.append(_match("==", {"meta": {"key": "l4proto"}}, number))
    if rule.port_min is None:
        return matches
    if number == _ICMP:
        matches.append(_match("==", {"payload": {"protocol": "icmp", "field": "type"}},
                              rule.port_min))  # fmt: skip
        if rule.port_max is not None:
            matches.append(_match("==", {"payload": {"protocol": "icmp", "field": "code"}},
                                  rule.port_max))  # fmt: skip
        return matches
    low, high = rule.port_min, rule.port_max if rule.port_max is not None else rule.port_min
    dport = {"payload": {"protocol": _PORT_PROTOCOLS[number], "field": "dport"}}
    matches.append(_match("==", dport, low if low == high else {"range": [low, high]}))
    return matches


def _networks(networks: Sequence[ipaddress.IPv4Network]) -> Any:
    # Overlapping intervals make nft fail, so merge them first.
    return _set([_address(n) for n in ipaddress.collapse_addresses(networks)])


def _address(network: ipaddress.IPv4Network) -> Any:
    if network.prefixlen == 32:
        return str(network.network_address)
    return {"prefix": {"addr": str(network.network_address), "len": network.prefixlen}}


# ---------------------------------------------------------------------- validation


@dataclass(frozen=True)
class _Port:
    """A validated port with its index (1..65535) in this ruleset."""

    index: int
    ifname: str
    macs: tuple[str, ...]
    networks: tuple[ipaddress.IPv4Network, ...]  # its IPv4 addresses and allowed prefixes
    rules: tuple[Rule, ...]


def _checked_ifname(value: str, what: str) -> str:
    if not isinstance(value, str) or not IFNAME_RE.match(value):
        raise FirewallError(f"{what} {value!r}: 1 to 15 of A-Z a-z 0-9 _ . -")
    return value


def _checked_mac(value: str, what: str) -> str:
    mac = value.lower() if isinstance(value, str) else ""
    if not MAC_RE.match(mac) or int(mac[:2], 16) & 1:
        raise FirewallError(f"{what}: invalid unicast MAC address {value!r}")
    return mac


def _checked_zones(zones: Sequence[NetworkZone]) -> list[NetworkZone]:
    bridges: set[str] = set()
    numbers: set[int] = set()
    for zone in zones:
        _checked_ifname(zone.bridge, "bridge")
        if isinstance(zone.zone, bool) or not isinstance(zone.zone, int):
            raise FirewallError(f"bridge {zone.bridge}: zone {zone.zone!r} is not an integer")
        if not 1 <= zone.zone <= 0xFFFF:
            raise FirewallError(f"bridge {zone.bridge}: zone {zone.zone} is outside 1..65535")
        if zone.bridge in bridges or zone.zone in numbers:
            raise FirewallError(f"bridge {zone.bridge} or zone {zone.zone} given twice")
        bridges.add(zone.bridge)
        numbers.add(zone.zone)
    return sorted(zones, key=lambda z: z.bridge)


def _checked_ports(ports: Sequence[PortFilter]) -> list[_Port]:
    if len(ports) > MAX_PORTS:
        raise FirewallError(f"{len(ports)} ports: at most {MAX_PORTS} per firewall")
    checked: list[_Port] = []
    names: set[str] = set()
    for index, port in enumerate(sorted(ports, key=lambda p: str(p.ifname)), start=1):
        ifname = _checked_ifname(port.ifname, "port")
        if ifname in names:
            raise FirewallError(f"port {ifname} given twice")
        names.add(ifname)
        macs = [_checked_mac(port.mac, f"port {ifname}")]
        networks: list[ipaddress.IPv4Network] = []
        for ip in port.ips:
            address = _checked_network(ip, f"port {ifname}", host=True)
            if address.version == 4:
                networks.append(ipaddress.IPv4Network(address))
        for ip, mac in port.allowed_pairs:
            pair = _checked_network(ip, f"port {ifname} allowed pair", host=False)
            if mac is not None:
                macs.append(_checked_mac(mac, f"port {ifname} allowed pair {ip}"))
            if pair.version == 4:
                networks.append(ipaddress.IPv4Network(pair))
        rules = tuple(_checked_rule(rule, ifname) for rule in port.rules)
        checked.append(
            _Port(
                index=index,
                ifname=ifname,
                macs=tuple(sorted(set(macs))),
                networks=tuple(ipaddress.collapse_addresses(networks)),
                rules=rules,
            )
        )
    return checked


def _checked_network(
    value: str, what: str, host: bool
) -> ipaddress.IPv4Network | ipaddress.IPv6Network:
    try:
        network = ipaddress.ip_network(value, strict=False)
    except (ValueError, TypeError) as exc:
        raise FirewallError(f"{what}: invalid address {value!r}") from exc
    if host and network.num_addresses != 1:
        raise FirewallError(f"{what}: {value!r} is a network, not an address")
    return network


def _checked_members(group: str, members: Sequence[str]) -> list[str]:
    addresses: set[ipaddress.IPv4Address] = set()
    for member in members:
        try:
            address = ipaddress.ip_address(member)
        except (ValueError, TypeError) as exc:
            raise FirewallError(f"group {group}: invalid member address {member!r}") from exc
        if address.version == 4:
            addresses.add(ipaddress.IPv4Address(address))
    return [str(a) for a in sorted(addresses)]


def _protocol_number(protocol: str | None) -> int | None:
    if protocol is None or protocol == "any":
        return None
    if protocol in PROTOCOLS:
        return PROTOCOLS[protocol]
    if isinstance(protocol, str) and protocol.isdigit() and int(protocol) <= 255:
        return int(protocol)
    raise FirewallError(
        f"protocol {protocol!r}: a number 0..255 or one of {', '.join(sorted(PROTOCOLS))}"
    )


def _checked_rule(rule: Rule, ifname: str) -> Rule:
    what = f"port {ifname} rule {rule.direction} {rule.protocol}"
    if rule.direction not in ("ingress", "egress"):
        raise FirewallError(f"port {ifname}: direction {rule.direction!r} is not ingress/egress")
    if rule.ethertype not in ("IPv4", "IPv6"):
        raise FirewallError(f"port {ifname}: ethertype {rule.ethertype!r} is not IPv4/IPv6")
    number = _protocol_number(rule.protocol)
    for value in (rule.port_min, rule.port_max):
        if value is not None and (
            isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= 0xFFFF
        ):
            raise FirewallError(f"{what}: port {value!r} is outside 0..65535")
    if rule.port_min is None and rule.port_max is not None:
        raise FirewallError(f"{what}: port_max {rule.port_max} without port_min")
    if rule.port_min is not None:
        if number == _ICMP:
            for name, value in (("type", rule.port_min), ("code", rule.port_max)):
                if value is not None and value > 255:
                    raise FirewallError(f"{what}: ICMP {name} {value} is outside 0..255")
        elif number in _PORT_PROTOCOLS:
            if rule.port_max is not None and rule.port_max < rule.port_min:
                raise FirewallError(f"{what}: port range {rule.port_min}-{rule.port_max}")
        else:
            raise FirewallError(f"{what}: ports only go with tcp, udp, sctp, dccp, udplite, icmp")
    if rule.remote_prefix is not None:
        network = _checked_network(rule.remote_prefix, what, host=False)
        if network.version != int(rule.ethertype[-1]):
            raise FirewallError(
                f"{what}: remote prefix {rule.remote_prefix} is not {rule.ethertype}"
            )
    if rule.remote_group is not None and (
        not isinstance(rule.remote_group, str) or not rule.remote_group
    ):
        raise FirewallError(f"{what}: invalid remote group {rule.remote_group!r}")
    return rule
