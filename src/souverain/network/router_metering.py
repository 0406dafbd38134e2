"""Metering labels in a router's namespace: one nftables table counting, per label, the
traffic its rules select through the router's gateway. `routing` calls it with each
router's plan; calls block.

The table is never replaced whole, so a change of labels keeps the counts of the labels
that stay: the transaction flushes the rules, drops the chains and counters of labels
gone, and adds what is wanted (adding what exists changes nothing). Within a label's
chain, excluded rules come first and return; the first counting rule that matches
counts the packet once and returns.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from souverain.network.dataplane import IP, DataplaneError, _checked_id
from souverain.network.nftables import NFT, nft_output, run_nft

METERING_TABLE = "souverain-metering"
_TABLE = {"family": "ip", "name": METERING_TABLE}


@dataclass(frozen=True)
class MeterRule:
    """`ingress`: into the router from the external network; `egress`: out to it. A remote
    prefix is the far end (source of ingress, destination of egress)."""

    direction: str
    excluded: bool = False
    remote: str | None = None
    source: str | None = None
    destination: str | None = None


@dataclass(frozen=True)
class MeterLabel:
    label_id: str
    rules: tuple[MeterRule, ...] = ()


def counter_name(label_id: str) -> str:
    return "label-" + _checked_id(label_id).replace("-", "")


def _prefix(value: str) -> dict[str, Any]:
    try:
        net = ipaddress.IPv4Network(value, strict=False)
    except ValueError as exc:
        raise DataplaneError(f"metering prefix {value!r}: {exc}") from None
    return {"prefix": {"addr": str(net.network_address), "len": net.prefixlen}}


def _match(key: str, right: Any) -> dict[str, Any]:
    left = (
        {"meta": {"key": key}}
        if key.endswith("ifname")
        else {"payload": {"protocol": "ip", "field": key}}
    )
    return {"match": {"op": "==", "left": left, "right": right}}


def _rule_expr(rule: MeterRule, gateway_port: str) -> list[dict[str, Any]]:
    if rule.direction not in ("ingress", "egress"):
        raise DataplaneError(f"metering direction {rule.direction!r} is not ingress or egress")
    ingress = rule.direction == "ingress"
    expr = [_match("iifname" if ingress else "oifname", gateway_port)]
    if rule.remote is not None:
        expr.append(_match("saddr" if ingress else "daddr", _prefix(rule.remote)))
    if rule.source is not None:
        expr.append(_match("saddr", _prefix(rule.source)))
    if rule.destination is not None:
        expr.append(_match("daddr", _prefix(rule.destination)))
    return expr


def _add(kind: str, **fields: Any) -> dict[str, Any]:
    return {"add": {kind: {"family": "ip", "table": METERING_TABLE, **fields}}}


def metering_ruleset(
    gateway_port: str | None, labels: Sequence[MeterLabel], present: set[str]
) -> dict[str, Any]:
    """The transaction making the table count exactly `labels` (no gateway: count nothing);
    `present`: the label chains the table holds now, each named like its counter."""
    wanted = [counter_name(label.label_id) for label in labels]
    commands: list[dict[str, Any]] = [{"add": {"table": _TABLE}}, {"flush": {"table": _TABLE}}]
    for gone in sorted(present - set(wanted)):
        commands.append(
            {"delete": {"chain": {"family": "ip", "table": METERING_TABLE, "name": gone}}}
        )
        commands.append(
            {"delete": {"counter": {"family": "ip", "table": METERING_TABLE, "name": gone}}}
        )
    commands.append(_add("chain", name="forward", type="filter", hook="forward", prio=-10,
                         policy="accept"))  # fmt: skip
    for label, name in zip(labels, wanted, strict=True):
        commands.append(_add("counter", name=name))
        commands.append(_add("chain", name=name))
        if gateway_port is None:
            continue
        ordered = sorted(label.rules, key=lambda r: not r.excluded)
        for rule in ordered:
            verdict = [{"return": None}] if rule.excluded else [{"counter": name}, {"return": None}]
            commands.append(_add("rule", chain=name, expr=_rule_expr(rule, gateway_port) + verdict))
        commands.append(_add("rule", chain="forward", expr=[{"jump": {"target": name}}]))
    return {"nftables": commands}


def label_chains(listed: dict[str, Any]) -> set[str]:
    """The label chains of a `nft -j list table` answer."""
    return {
        item["chain"]["name"]
        for item in listed.get("nftables", [])
        if "chain" in item and item["chain"]["name"].startswith("label-")
    }


def label_counts(listed: dict[str, Any], labels: Sequence[str]) -> dict[str, tuple[int, int]]:
    """Label id -> (packets, bytes) from a `nft -j list counters` answer."""
    by_name = {counter_name(label_id): label_id for label_id in labels}
    out: dict[str, tuple[int, int]] = {}
    for item in listed.get("nftables", []):
        counter = item.get("counter")
        if isinstance(counter, dict) and counter.get("name") in by_name:
            out[by_name[counter["name"]]] = (
                int(counter.get("packets", 0)),
                int(counter.get("bytes", 0)),
            )
    return out


def check_labels(labels: Sequence[MeterLabel]) -> None:
    """Refuse labels the table could not take, before anything on the host changes."""
    metering_ruleset("qg-check", labels, set())


def write_labels(namespace: str, gateway_port: str | None, labels: Sequence[MeterLabel]) -> None:
    listing = [IP, "netns", "exec", namespace, NFT, "-j", "list", "table", "ip", METERING_TABLE]
    try:
        present = label_chains(nft_output(listing))
    except DataplaneError:
        present = set()  # no table yet
    run_nft("write the metering labels", metering_ruleset(gateway_port, labels, present), namespace)


def read_counts(namespace: str, labels: Sequence[str]) -> dict[str, tuple[int, int]]:
    argv = [IP, "netns", "exec", namespace, NFT, "-j", "list", "counters", "table", "ip",
            METERING_TABLE]  # fmt: skip
    try:
        return label_counts(nft_output(argv), labels)
    except DataplaneError:
        return {}  # no router, or no table yet
