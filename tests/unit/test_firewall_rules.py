"""The nft JSON document a Firewall builds: pure, no root, no nft."""

from __future__ import annotations

import json
import re
from typing import Any

import pytest

from souverain.network.firewall import (
    Firewall,
    FirewallError,
    NetworkZone,
    PortFilter,
    Rule,
    bridge_nf_options,
)

FW = Firewall("t1")
ZONES = [NetworkZone("t1b0", 1)]
MAC_A, MAC_B = "02:00:00:00:00:0a", "02:00:00:00:00:0b"


def _rule(
    direction: str = "ingress",
    protocol: str | None = None,
    port_min: int | None = None,
    port_max: int | None = None,
    prefix: str | None = None,
    group: str | None = None,
    ethertype: str = "IPv4",
) -> Rule:
    return Rule(direction, ethertype, protocol, port_min, port_max, prefix, group)


def _port(ifname: str = "t1v0", *rules: Rule, **kwargs: Any) -> PortFilter:
    return PortFilter(ifname, kwargs.pop("mac", MAC_A), kwargs.pop("ips", ("10.0.0.5",)),
                      rules=rules, **kwargs)  # fmt: skip


def _doc(ports: list[PortFilter], groups: dict[str, list[str]] | None = None) -> Any:
    return FW.ruleset(ZONES, ports, groups or {})["nftables"]


def _added(doc: Any, kind: str) -> list[dict[str, Any]]:
    return [c["add"][kind] for c in doc if kind in c.get("add", {})]


def _chains(doc: Any) -> dict[tuple[str, str], dict[str, Any]]:
    return {(c["family"], c["name"]): c for c in _added(doc, "chain")}


def _rules(doc: Any, family: str, chain: str) -> list[list[dict[str, Any]]]:
    return [r["expr"] for r in _added(doc, "rule") if (r["family"], r["chain"]) == (family, chain)]


def test_both_tables_are_replaced_in_one_document_add_delete_add() -> None:
    doc = _doc([_port()])
    assert doc[0] == {"metainfo": {"json_schema_version": 1}}
    head = [(next(iter(c)), c[next(iter(c))]["table"]["family"]) for c in doc[1:7]]
    assert head == [("add", "bridge"), ("delete", "bridge"), ("add", "bridge"),
                    ("add", "inet"), ("delete", "inet"), ("add", "inet")]  # fmt: skip
    assert {t["table"]["name"] for c in doc[1:7] for t in c.values()} == {"souverain-t1"}


def test_base_chains_hook_where_the_design_says() -> None:
    chains = _chains(_doc([_port()]))
    hooks = {k: (c.get("hook"), c.get("prio")) for k, c in chains.items() if "hook" in c}
    assert hooks == {
        ("bridge", "prerouting"): ("prerouting", -300),
        ("bridge", "forward"): ("forward", -200),
        ("inet", "zone"): ("prerouting", -300),
        ("inet", "forward"): ("forward", 0),
    }
    assert all(c["policy"] == "accept" for c in chains.values() if "hook" in c)
    for name in ("spoof-1", "to-1"):
        assert ("bridge", name) in chains
    for name in ("bridged", "egress-1", "ingress-1"):
        assert ("inet", name) in chains


def test_ports_are_dispatched_by_vmap_and_numbered_in_ifname_order() -> None:
    doc = _doc([_port("t1v9", mac=MAC_B, ips=("10.0.0.6",)), _port("t1v1")])
    [[vmap]] = _rules(doc, "bridge", "prerouting")
    assert vmap["vmap"]["data"]["set"] == [
        ["t1v1", {"jump": {"target": "spoof-1"}}],
        ["t1v9", {"jump": {"target": "spoof-2"}}],
    ]
    [[out]] = _rules(doc, "bridge", "forward")
    assert out["vmap"]["key"] == {"meta": {"key": "oifname"}}
    assert _rules(doc, "bridge", "spoof-2")[-1] == [
        {"mangle": {"key": {"meta": {"key": "mark"}}, "value": 2 << 16}}
    ]
    bridged = _rules(doc, "inet", "bridged")
    egress = bridged[2][0]["vmap"]["data"]["set"]
    ingress = bridged[3][0]["vmap"]["data"]["set"]
    assert [k for k, _ in egress] == [1 << 16, 2 << 16]
    assert [k for k, _ in ingress] == [1, 2]
    assert bridged[-1] == [{"accept": None}], "ports without port security pass"


def test_zones_are_set_per_bridge_and_only_our_bridges_enter_the_bridged_chain() -> None:
    zones = [NetworkZone("t1b2", 7), NetworkZone("t1b1", 9)]
    doc = FW.ruleset(zones, [_port()], {})["nftables"]
    zone_rules = _rules(doc, "inet", "zone")
    assert [r[0]["match"]["right"] for r in zone_rules] == ["t1b1", "t1b2"]
    assert [r[1]["mangle"]["value"] for r in zone_rules] == [9, 7]
    [[match, jump]] = _rules(doc, "inet", "forward")
    assert match["match"]["right"] == {"set": ["t1b1", "t1b2"]}
    assert jump == {"jump": {"target": "bridged"}}


def test_no_zones_means_nothing_enters_the_stateful_chains() -> None:
    doc = FW.ruleset([], [_port()], {})["nftables"]
    assert _rules(doc, "inet", "forward") == []
    assert _rules(doc, "inet", "zone") == []


def test_spoof_chain_allows_only_the_port_and_its_pairs() -> None:
    port = _port(ips=("10.0.0.5", "fd00::5"),
                 allowed_pairs=(("10.0.1.0/24", MAC_B), ("10.0.1.7", None)))  # fmt: skip
    text = json.dumps(_rules(_doc([port]), "bridge", "spoof-1"))
    assert MAC_A in text and MAC_B in text
    assert '{"prefix": {"addr": "10.0.1.0", "len": 24}}' in text
    assert '"10.0.1.7"' not in text, "inside the pair's /24: merged"
    assert "fd00" not in text
    assert '"0.0.0.0"' in text, "ARP probes and DHCP discover"
    assert '"ip6"' in text


def test_a_port_without_ipv4_may_only_ask_for_dhcp() -> None:
    rules = _rules(_doc([_port(ips=())]), "bridge", "spoof-1")
    ether_ip = {"match": {"op": "==", "left": {"payload": {"protocol": "ether", "field": "type"}},
                          "right": "ip"}}  # fmt: skip
    assert [ether_ip, {"drop": None}] in rules


def test_rules_translate_to_matches_in_the_right_chain() -> None:
    rules = (
        _rule("ingress", "tcp", 22, 22, "192.0.2.0/24"),
        _rule("ingress", "udp", 5000, 5100),
        _rule("ingress", "icmp", 8, 0),
        _rule("egress", "6", None, None, "198.51.100.7/32"),
        _rule("egress", None, None, None, "0.0.0.0/0"),
        _rule("ingress", "gre"),
    )
    doc = _doc([_port("t1v0", *rules)])
    ingress = json.dumps(_rules(doc, "inet", "ingress-1"))
    egress = _rules(doc, "inet", "egress-1")
    assert '"field": "dport"}}, "right": 22}' in ingress
    assert '{"range": [5000, 5100]}' in ingress
    assert (
        '"field": "type"}}, "right": 8}' in ingress and '"field": "code"}}, "right": 0}' in ingress
    )
    assert '"right": 47}' in ingress
    assert '"field": "saddr"}}, "right": {"prefix": {"addr": "192.0.2.0", "len": 24}}' in ingress
    assert '"daddr"}}, "right": "198.51.100.7"}' in json.dumps(egress)
    assert egress[-2] == [
        {"match": {"op": "==", "left": {"meta": {"key": "nfproto"}}, "right": "ipv4"}},
        {"return": None},
    ], "0.0.0.0/0 and any protocol: everything"
    assert egress[-1] == [{"drop": None}]
    assert _rules(doc, "inet", "ingress-1")[-1] == [{"drop": None}]


def test_dhcp_is_always_allowed_both_ways() -> None:
    doc = _doc([_port()])

    def udp_ports(expr: list[dict[str, Any]]) -> list[tuple[str, int]]:
        return [(m["match"]["left"]["payload"]["field"], m["match"]["right"])
                for m in expr if "payload" in m.get("match", {}).get("left", {})]  # fmt: skip

    ingress, egress = _rules(doc, "inet", "ingress-1")[0], _rules(doc, "inet", "egress-1")[0]
    assert udp_ports(ingress) == [("sport", 67), ("dport", 68)]
    assert ingress[-1] == {"accept": None}
    assert udp_ports(egress) == [("sport", 68), ("dport", 67)]
    assert egress[-1] == {"return": None}


def test_remote_groups_become_named_sets_of_their_ipv4_members() -> None:
    rules = (_rule("ingress", group="web"), _rule("egress", group="db"), _rule(group="none"))
    doc = _doc([_port("t1v0", *rules)], {"web": ["10.0.0.9", "10.0.0.8", "fd00::9"],
                                        "db": ["10.0.0.20"], "unused": ["10.0.0.1"]})  # fmt: skip
    sets = {s["name"]: s for s in _added(doc, "set")}
    assert sets["group-1"]["elem"] == ["10.0.0.20"]  # db
    assert "elem" not in sets["group-2"], "a group nobody gave members matches nothing"
    assert sets["group-3"]["elem"] == ["10.0.0.8", "10.0.0.9"]  # web
    assert all(s["type"] == "ipv4_addr" and s["family"] == "inet" for s in sets.values())
    assert len(sets) == 3, "only groups that rules name"
    assert '"saddr"}}, "right": "@group-3"}' in json.dumps(_rules(doc, "inet", "ingress-1"))
    assert '"daddr"}}, "right": "@group-1"}' in json.dumps(_rules(doc, "inet", "egress-1"))


def test_ipv6_rules_generate_nothing_for_now() -> None:
    with_v6 = _doc([_port("t1v0", _rule("ingress", "tcp", 22, 22, "2001:db8::/32",
                                        ethertype="IPv6"))])  # fmt: skip
    assert with_v6 == _doc([_port()])


def test_the_document_does_not_depend_on_input_order_or_duplicates() -> None:
    r1, r2 = _rule("ingress", "tcp", 80, 80), _rule("ingress", "tcp", 443, 443)
    a = _port("t1v0", r1, r2)
    b = _port("t1v1", r2, mac=MAC_B, ips=("10.0.0.6",))
    groups = {"g": ["10.0.0.2", "10.0.0.1"]}
    assert _doc([a, b], groups) == _doc([b, a], {"g": ["10.0.0.1", "10.0.0.2"]})
    assert _doc([_port("t1v0", r1, r2, r1)]) == _doc([_port("t1v0", r1, r2)])


@pytest.mark.parametrize(
    ("zones", "port", "bad"),
    [
        ([NetworkZone("bad name", 1)], _port(), "bad name"),
        ([NetworkZone("t1b0", 0)], _port(), "zone 0"),
        ([NetworkZone("t1b0", 65536)], _port(), "65536"),
        (ZONES, _port("a" * 16), "a" * 16),
        (ZONES, _port("t1v0;reboot"), "t1v0;reboot"),
        (ZONES, _port(mac="02:00:00:00:00"), "02:00:00:00:00"),
        (ZONES, _port(mac="01:00:5e:00:00:01"), "01:00:5e:00:00:01"),
        (ZONES, _port(ips=("10.0.0.300",)), "10.0.0.300"),
        (ZONES, _port(ips=("10.0.0.0/24",)), "10.0.0.0/24"),
        (ZONES, _port(allowed_pairs=(("10.0.0.0/33", None),)), "10.0.0.0/33"),
        (ZONES, _port(allowed_pairs=(("10.0.0.9", "nope"),)), "nope"),
        (ZONES, _port("t1v0", _rule("sideways")), "sideways"),
        (ZONES, _port("t1v0", _rule(ethertype="IPX")), "IPX"),
        (ZONES, _port("t1v0", _rule(protocol="quic")), "quic"),
        (ZONES, _port("t1v0", _rule(protocol="256")), "256"),
        (ZONES, _port("t1v0", _rule(protocol="tcp", port_min=70000)), "70000"),
        (ZONES, _port("t1v0", _rule(protocol="tcp", port_min=-1)), "-1"),
        (ZONES, _port("t1v0", _rule(protocol="tcp", port_min=90, port_max=80)), "90-80"),
        (ZONES, _port("t1v0", _rule(protocol="icmp", port_min=300)), "300"),
        (ZONES, _port("t1v0", _rule(protocol="gre", port_min=1)), "gre"),
        (ZONES, _port("t1v0", _rule(port_min=1)), "None"),
        (ZONES, _port("t1v0", _rule(prefix="2001:db8::/32")), "2001:db8::/32"),
        (ZONES, _port("t1v0", _rule(prefix="10.0.0.0/8x")), "10.0.0.0/8x"),
    ],
)
def test_invalid_input_is_refused_naming_the_bad_value(
    zones: list[NetworkZone], port: PortFilter, bad: str
) -> None:
    with pytest.raises(FirewallError, match=re.escape(bad)):
        FW.ruleset(zones, [port], {})


def test_duplicates_and_bad_group_members_are_refused() -> None:
    with pytest.raises(FirewallError, match="t1v0 given twice"):
        FW.ruleset(ZONES, [_port(), _port()], {})
    with pytest.raises(FirewallError, match="zone 1 given twice"):
        FW.ruleset([NetworkZone("t1b0", 1), NetworkZone("t1b1", 1)], [], {})
    with pytest.raises(FirewallError, match=re.escape("'10.0.0.x'")):
        FW.ruleset(ZONES, [_port("t1v0", _rule(group="g"))], {"g": ["10.0.0.x"]})


@pytest.mark.parametrize("prefix", ["", "X", "1a", "a" * 17, "a-b"])
def test_bad_prefix_is_refused(prefix: str) -> None:
    with pytest.raises(FirewallError, match="prefix"):
        Firewall(prefix)


def test_a_missing_nft_binary_is_a_firewall_error() -> None:
    with pytest.raises(FirewallError, match="not found: install nftables"):
        Firewall("t1", nft="/nonexistent/nft").apply(ZONES, [_port()], {})


def test_bridges_must_call_the_ip_hooks() -> None:
    assert bridge_nf_options() == {"br_nf_call_iptables": 1}
