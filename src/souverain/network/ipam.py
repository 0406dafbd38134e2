"""IP address management as pure logic: subnet shapes, pools, and the next free address.

No database and no locks here: the service stores allocations in a table whose
primary key is (subnet_id, ip_address), so two requests that pick the same
address cannot both commit; the loser retries and `next_free` skips the winner.
"""

from __future__ import annotations

import ipaddress
import itertools
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from souverain.common.errors import BadRequest

IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network
IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address


class InvalidInput(BadRequest):
    title = "InvalidInput"


@dataclass(frozen=True)
class Pool:
    """An inclusive range of addresses, as integers."""

    first: int
    last: int

    def view(self, version: int) -> dict[str, str]:
        return {
            "start": str(_address(self.first, version)),
            "end": str(_address(self.last, version)),
        }


def _address(value: int, version: int) -> IPAddress:
    return ipaddress.IPv4Address(value) if version == 4 else ipaddress.IPv6Address(value)


def parse_cidr(raw: Any, ip_version: int | None = None) -> IPNetwork:
    """A subnet's CIDR, strict (no host bits), of the stated IP version, at least two addresses."""
    if not isinstance(raw, str) or len(raw) > 64:
        raise InvalidInput("Invalid input for cidr. Reason: a CIDR string is expected.")
    try:
        network = ipaddress.ip_network(raw, strict=True)
    except ValueError:
        raise InvalidInput(
            f"Invalid input for cidr. Reason: '{raw}' is not a valid IP subnet."
        ) from None
    if "/" not in raw:
        raise InvalidInput(f"Invalid input for cidr. Reason: '{raw}' has no prefix length.")
    if ip_version is not None and network.version != ip_version:
        raise InvalidInput(
            f"Invalid input for operation: Cidr {raw} does not match ip_version {ip_version}."
        )
    if network.num_addresses < (4 if network.version == 4 else 2):
        raise InvalidInput(f"Invalid input for cidr. Reason: '{raw}' is too small a subnet.")
    return network


def parse_address(raw: Any, field: str, version: int | None = None) -> IPAddress:
    if not isinstance(raw, str) or len(raw) > 64:
        raise InvalidInput(f"Invalid input for {field}. Reason: an IP address is expected.")
    try:
        address = ipaddress.ip_address(raw)
    except ValueError:
        raise InvalidInput(
            f"Invalid input for {field}. Reason: '{raw}' is not a valid IP address."
        ) from None
    if version is not None and address.version != version:
        raise InvalidInput(f"Invalid input for {field}. Reason: '{raw}' is not IPv{version}.")
    return address


def usable_range(network: IPNetwork) -> Pool:
    """Every address a host may hold: IPv4 loses the network and broadcast addresses,
    IPv6 the subnet-router anycast address (the first)."""
    first = int(network.network_address) + 1
    last = int(network.broadcast_address) - (1 if network.version == 4 else 0)
    return Pool(first, last)


def default_gateway(network: IPNetwork) -> str:
    return str(_address(usable_range(network).first, network.version))


def default_pools(network: IPNetwork, gateway: str | None) -> list[Pool]:
    """The whole usable range, minus the gateway if it falls inside it."""
    usable = usable_range(network)
    if gateway is None:
        return [usable]
    gw = int(ipaddress.ip_address(gateway))
    pools = [Pool(usable.first, gw - 1), Pool(gw + 1, usable.last)]
    return [p for p in pools if p.first <= p.last]


def check_gateway(network: IPNetwork, raw: Any) -> str | None:
    if raw is None:
        return None
    address = parse_address(raw, "gateway_ip", network.version)
    if address not in network:
        raise InvalidInput(
            f"Invalid input for operation: Gateway ip {raw} conflicts with allocation pool "
            f"or is outside the subnet {network}."
        )
    usable = usable_range(network)
    if not usable.first <= int(address) <= usable.last:
        raise InvalidInput(
            f"Invalid input for operation: Gateway ip {raw} is the network or broadcast address."
        )
    return str(address)


def check_pools(network: IPNetwork, raw: Any, gateway: str | None) -> list[Pool]:
    """Client pools: well formed, inside the usable range, not overlapping, gateway outside."""
    if not isinstance(raw, list) or len(raw) > 64:
        raise InvalidInput("Invalid input for allocation_pools. Reason: a list is expected.")
    pools: list[Pool] = []
    for item in raw:
        if not isinstance(item, dict) or set(item) != {"start", "end"}:
            raise InvalidInput(
                "Invalid input for allocation_pools. Reason: each pool is {start, end}."
            )
        start = parse_address(item["start"], "allocation_pools", network.version)
        end = parse_address(item["end"], "allocation_pools", network.version)
        pool = Pool(int(start), int(end))
        usable = usable_range(network)
        if pool.first > pool.last:
            raise InvalidInput(
                f"Invalid input for operation: Allocation pool {start}-{end} is not valid: "
                "start after end."
            )
        if pool.first < usable.first or pool.last > usable.last:
            raise InvalidAllocationPool(
                f"The allocation pool {start}-{end} spans beyond the subnet cidr {network}."
            )
        pools.append(pool)
    ordered = sorted(pools, key=lambda p: p.first)
    for before, after in itertools.pairwise(ordered):
        if after.first <= before.last:
            raise InvalidAllocationPool(
                f"Found overlapping allocation pools: {before.view(network.version)} and "
                f"{after.view(network.version)} for subnet {network}."
            )
    if gateway is not None and in_pools(int(ipaddress.ip_address(gateway)), ordered):
        raise GatewayConflict(
            f"Gateway ip {gateway} conflicts with allocation pool "
            f"{_pool_of(int(ipaddress.ip_address(gateway)), ordered, network.version)}."
        )
    return ordered


class InvalidAllocationPool(BadRequest):
    title = "InvalidAllocationPool"


class GatewayConflict(BadRequest):
    title = "GatewayConflictWithAllocationPools"


def _pool_of(value: int, pools: Iterable[Pool], version: int) -> str:
    for pool in pools:
        if pool.first <= value <= pool.last:
            view = pool.view(version)
            return f"{view['start']}-{view['end']}"
    return ""


def in_pools(value: int, pools: Iterable[Pool]) -> bool:
    return any(p.first <= value <= p.last for p in pools)


def pools_of(views: list[dict[str, str]]) -> list[Pool]:
    return sorted(
        (
            Pool(int(ipaddress.ip_address(v["start"])), int(ipaddress.ip_address(v["end"])))
            for v in views
        ),
        key=lambda p: p.first,
    )


def next_free(pools: list[Pool], taken: Iterable[str], version: int) -> str | None:
    """The lowest address of the pools not in `taken`; None when the pools are exhausted.

    Walks past taken addresses only, so the cost is bounded by the allocations,
    not by the pool size (an IPv6 /64 is fine).
    """
    used = {int(ipaddress.ip_address(a)) for a in taken}
    for pool in pools:
        candidate = pool.first
        while candidate <= pool.last and candidate in used:
            candidate += 1
        if candidate <= pool.last:
            return str(_address(candidate, version))
    return None


def check_fixed_address(network: IPNetwork, raw: Any, gateway: str | None) -> str:
    """A requested address: inside the CIDR, not network/broadcast, not the gateway.
    Outside the pools is allowed, as in Neutron."""
    address = parse_address(raw, "ip_address", network.version)
    usable = usable_range(network)
    if address not in network or not usable.first <= int(address) <= usable.last:
        raise InvalidIpForSubnet(f"IP address {raw} is not a valid IP for the specified subnet.")
    if gateway is not None and str(address) == gateway:
        raise InvalidIpForSubnet(
            f"IP address {raw} is the gateway of the subnet and cannot be assigned to a port."
        )
    return str(address)


class InvalidIpForSubnet(BadRequest):
    title = "InvalidIpForSubnet"
