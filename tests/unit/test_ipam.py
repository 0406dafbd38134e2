"""IPAM as pure logic: subnet shapes, pool checks and the next free address."""

from __future__ import annotations

import ipaddress

import pytest

from souverain.common.errors import BadRequest
from souverain.network import ipam


def test_default_gateway_is_the_first_host_and_pools_are_the_rest() -> None:
    net = ipam.parse_cidr("10.0.0.0/24", 4)
    gateway = ipam.default_gateway(net)
    assert gateway == "10.0.0.1"
    pools = [p.view(4) for p in ipam.default_pools(net, gateway)]
    assert pools == [{"start": "10.0.0.2", "end": "10.0.0.254"}]


def test_without_gateway_the_pool_is_every_usable_address() -> None:
    net = ipam.parse_cidr("10.0.0.0/29", 4)
    assert [p.view(4) for p in ipam.default_pools(net, None)] == [
        {"start": "10.0.0.1", "end": "10.0.0.6"}
    ]


def test_ipv6_subnet_keeps_all_but_the_anycast_address() -> None:
    net = ipam.parse_cidr("fd00::/64", 6)
    assert ipam.default_gateway(net) == "fd00::1"
    assert ipam.default_pools(net, "fd00::1")[0].view(6)["start"] == "fd00::2"


@pytest.mark.parametrize(
    "cidr",
    ["10.0.0.1/24", "10.0.0.0/33", "not-a-cidr", "10.0.0.0", "10.0.0.0/31", "", "x" * 5000, 42],
)
def test_bad_cidrs_are_refused(cidr: object) -> None:
    with pytest.raises(BadRequest):
        ipam.parse_cidr(cidr, 4)


def test_cidr_of_the_other_ip_version_is_refused() -> None:
    with pytest.raises(BadRequest):
        ipam.parse_cidr("fd00::/64", 4)


def test_pools_outside_the_cidr_or_overlapping_are_refused() -> None:
    net = ipam.parse_cidr("10.0.0.0/24", 4)
    with pytest.raises(ipam.InvalidAllocationPool):
        ipam.check_pools(net, [{"start": "10.0.0.10", "end": "10.0.1.5"}], "10.0.0.1")
    with pytest.raises(ipam.InvalidAllocationPool):
        ipam.check_pools(
            net,
            [
                {"start": "10.0.0.10", "end": "10.0.0.20"},
                {"start": "10.0.0.20", "end": "10.0.0.30"},
            ],
            "10.0.0.1",
        )
    with pytest.raises(ipam.InvalidAllocationPool):
        ipam.check_pools(net, [{"start": "10.0.0.0", "end": "10.0.0.5"}], None)
    with pytest.raises(BadRequest):
        ipam.check_pools(net, [{"start": "10.0.0.9", "end": "10.0.0.5"}], None)
    with pytest.raises(ipam.GatewayConflict):
        ipam.check_pools(net, [{"start": "10.0.0.1", "end": "10.0.0.5"}], "10.0.0.1")


def test_gateway_must_be_a_host_of_the_subnet() -> None:
    net = ipam.parse_cidr("10.0.0.0/24", 4)
    assert ipam.check_gateway(net, None) is None
    assert ipam.check_gateway(net, "10.0.0.254") == "10.0.0.254"
    for bad in ("10.0.1.1", "10.0.0.0", "10.0.0.255", "fd00::1", "nope"):
        with pytest.raises(BadRequest):
            ipam.check_gateway(net, bad)


def test_next_free_is_the_lowest_address_not_taken() -> None:
    pools = ipam.pools_of(
        [{"start": "10.0.0.20", "end": "10.0.0.22"}, {"start": "10.0.0.10", "end": "10.0.0.11"}]
    )
    assert ipam.next_free(pools, [], 4) == "10.0.0.10"
    assert ipam.next_free(pools, ["10.0.0.10"], 4) == "10.0.0.11"
    assert ipam.next_free(pools, ["10.0.0.10", "10.0.0.11", "10.0.0.20"], 4) == "10.0.0.21"
    taken = ["10.0.0.10", "10.0.0.11", "10.0.0.20", "10.0.0.21", "10.0.0.22"]
    assert ipam.next_free(pools, taken, 4) is None


def test_next_free_on_a_huge_ipv6_pool_is_cheap() -> None:
    net = ipam.parse_cidr("fd00::/64", 6)
    pools = ipam.default_pools(net, "fd00::1")
    taken = [str(ipaddress.IPv6Address(int(net.network_address) + i)) for i in range(2, 1002)]
    assert ipam.next_free(pools, taken, 6) == str(
        ipaddress.IPv6Address(int(net.network_address) + 1002)
    )


def test_requested_address_outside_the_pools_is_allowed_but_never_gateway_or_broadcast() -> None:
    net = ipam.parse_cidr("10.0.0.0/24", 4)
    assert ipam.check_fixed_address(net, "10.0.0.254", "10.0.0.1") == "10.0.0.254"
    for bad in ("10.0.0.1", "10.0.0.0", "10.0.0.255", "10.0.1.4", "1" * 5000):
        with pytest.raises(BadRequest):
            ipam.check_fixed_address(net, bad, "10.0.0.1")
