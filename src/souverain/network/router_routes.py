"""A router's extra routes in its namespace: checked against the router's own networks,
then written as static routes of the main table, and only those.

The routes are the router's `routes` attribute (Neutron's extraroute): a destination CIDR
reached through a next hop on one of the router's networks. They carry a protocol number
of their own, so the routes the kernel adds for each interface's subnet and the gateway's
default route are never touched. No database, no HTTP; calls block.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Sequence
from typing import Any

from souverain.network.dataplane import DataplaneError, _netlink

# Our own routing protocol number (unassigned in iproute2's rt_protos): the routes the
# kernel adds per subnet and the default route toward the gateway (pyroute2's `static`)
# are never ours to remove.
RTPROT_EXTRA = 0xC5
MAIN_TABLE = 254
AF_INET = 2
DEFAULT_DESTINATION = "0.0.0.0"  # noqa: S104 (a route, not a listening socket)
ExtraRoute = tuple[str, str]  # (destination CIDR, next hop)


def checked_routes(
    routes: Sequence[ExtraRoute], connected: Sequence[ipaddress.IPv4Network]
) -> tuple[ExtraRoute, ...]:
    """IPv4 routes whose next hop lies on a connected network, else a `DataplaneError`."""
    out: list[ExtraRoute] = []
    for destination, nexthop in routes:
        try:
            net = ipaddress.IPv4Network(destination, strict=True)
            hop = ipaddress.IPv4Address(nexthop)
        except ValueError as exc:
            raise DataplaneError(f"extra route {destination} via {nexthop}: {exc}") from None
        if not any(hop in c for c in connected):
            raise DataplaneError(
                f"extra route {destination}: next hop {nexthop} is on none of the router's networks"
            )
        out.append((str(net), str(hop)))
    if len(set(out)) != len(out):
        raise DataplaneError("an extra route is given twice")
    return tuple(out)


def set_extra_routes(ns: Any, namespace: str, wanted: Sequence[ExtraRoute]) -> None:
    """The namespace's static routes become exactly `wanted`: stale ones go, missing
    ones come, changed next hops are replaced."""
    present = {}
    for route in ns.get_routes(family=AF_INET, table=MAIN_TABLE):
        if route.get("proto") != RTPROT_EXTRA:
            continue
        dst = route.get_attr("RTA_DST") or DEFAULT_DESTINATION
        present[f"{dst}/{route['dst_len']}"] = route.get_attr("RTA_GATEWAY")
    keep = {destination for destination, _ in wanted}
    for destination in present:
        if destination not in keep:
            _netlink(
                f"remove the route to {destination} in {namespace}",
                ns.route,
                "del",
                dst=destination,
                table=MAIN_TABLE,
                proto=RTPROT_EXTRA,
            )
    for destination, nexthop in wanted:
        if present.get(destination) == nexthop:
            continue
        _netlink(
            f"route {destination} via {nexthop} in {namespace}",
            ns.route,
            "replace",
            dst=destination,
            gateway=nexthop,
            table=MAIN_TABLE,
            proto=RTPROT_EXTRA,
        )
