"""Subnet pools (`subnet_allocation`, `default-subnetpools`): the pools themselves, subnets
carved from them, their bounds and quota, and who may see, use and change a pool."""

from __future__ import annotations

from typing import Any

from . import neutron_callers
from .support import Cloud
from .test_networks import Neutron, neutron_error

admin, me, other = (
    neutron_callers.admin,
    neutron_callers.me,
    neutron_callers.other,
)  # the shared fixtures

POOL_KEYS = {
    "id", "name", "description", "ip_version", "prefixes", "min_prefixlen", "max_prefixlen",
    "default_prefixlen", "default_quota", "address_scope_id", "is_default", "shared",
    "tenant_id", "project_id", "created_at", "updated_at", "revision_number", "tags",
}  # fmt: skip


def pool(caller: Neutron, **fields: Any) -> dict[str, Any]:
    response = caller.post("/subnetpools", {"subnetpool": fields})
    assert response.status_code == 201, response.text
    made: dict[str, Any] = response.json()["subnetpool"]
    return made


def carve(caller: Neutron, network_id: str, **fields: Any) -> Any:
    body = {"network_id": network_id, "ip_version": 4, **fields}
    return caller.post("/subnets", {"subnet": body})


def test_pool_lifecycle_and_shape(me: Neutron) -> None:
    made = pool(me, name="p", prefixes=["10.20.0.0/16", "10.21.0.0/16"])
    assert set(made) == POOL_KEYS
    assert made["prefixes"] == ["10.20.0.0/15"]  # collapsed, as Neutron compacts them
    assert (made["min_prefixlen"], made["max_prefixlen"], made["default_prefixlen"]) == (8, 32, 8)
    assert made["ip_version"] == 4 and made["shared"] is False and made["is_default"] is False
    shown = me.get(f"/subnetpools/{made['id']}").json()["subnetpool"]
    assert shown == made
    assert made["id"] in {p["id"] for p in me.get("/subnetpools").json()["subnetpools"]}
    updated = me.put(f"/subnetpools/{made['id']}", {"subnetpool": {"name": "q"}})
    assert updated.json()["subnetpool"]["name"] == "q"
    assert updated.json()["subnetpool"]["revision_number"] == 2
    assert me.delete(f"/subnetpools/{made['id']}").status_code == 204
    neutron_error(me.get(f"/subnetpools/{made['id']}"), 404, "SubnetPoolNotFound")


def test_pool_input_is_checked(me: Neutron) -> None:
    def bad(body: Any, status: int, kind: str) -> str:
        return neutron_error(me.post("/subnetpools", {"subnetpool": body}), status, kind)

    bad({"name": "x"}, 400, "HTTPBadRequest")
    bad({"prefixes": []}, 400, "InvalidInput")
    bad({"prefixes": ["10.0.0.1/16"]}, 400, "InvalidInput")
    bad({"prefixes": ["nope"]}, 400, "InvalidInput")
    assert "Cannot mix" in bad({"prefixes": ["10.0.0.0/16", "fd00::/48"]}, 400, "HTTPBadRequest")
    message = bad({"prefixes": ["10.0.0.0/16"], "min_prefixlen": 28, "max_prefixlen": 24}, 400,
                  "IllegalSubnetPoolPrefixBounds")  # fmt: skip
    assert message == "Illegal prefix bounds: min_prefixlen=28, max_prefixlen=24."
    bad({"prefixes": ["10.0.0.0/16"], "max_prefixlen": 33}, 400, "IllegalSubnetPoolPrefixBounds")
    bad({"prefixes": ["10.0.0.0/16"], "min_prefixlen": 24, "default_prefixlen": 20}, 400,
        "IllegalSubnetPoolPrefixBounds")  # fmt: skip
    bad({"prefixes": ["10.0.0.0/16"], "address_scope_id": "x"}, 400, "HTTPBadRequest")
    bad({"prefixes": ["10.0.0.0/16"], "ip_version": 4}, 400, "HTTPBadRequest")
    bad({"prefixes": ["10.0.0.0/16"], "shared": True}, 403, "HTTPForbidden")
    bad({"prefixes": ["10.0.0.0/16"], "is_default": True}, 403, "HTTPForbidden")
    bad({"prefixes": ["10.0.0.0/16"], "default_quota": -1}, 400, "InvalidInput")
    assert me.get("/subnetpools").json()["subnetpools"] == []


def test_prefixes_only_grow(me: Neutron) -> None:
    made = pool(me, prefixes=["10.30.0.0/16"], min_prefixlen=20)
    path = f"/subnetpools/{made['id']}"
    shrink = me.put(path, {"subnetpool": {"prefixes": ["10.31.0.0/16"]}})
    neutron_error(shrink, 400, "IllegalSubnetPoolPrefixUpdate")
    grown = me.put(path, {"subnetpool": {"prefixes": ["10.30.0.0/16", "10.40.0.0/16"]}})
    assert grown.json()["subnetpool"]["prefixes"] == ["10.30.0.0/16", "10.40.0.0/16"]
    neutron_error(me.put(path, {"subnetpool": {"min_prefixlen": 24}}), 400,
                  "IllegalSubnetPoolPrefixBounds")  # fmt: skip
    neutron_error(me.put(path, {"subnetpool": {"prefixes": ["fd00::/48"]}}), 400,
                  "IllegalSubnetPoolPrefixUpdate")  # fmt: skip


def test_subnets_are_carved_in_order_never_overlap_and_hold_the_pool(me: Neutron) -> None:
    made = pool(me, prefixes=["10.50.0.0/22"], min_prefixlen=23, default_prefixlen=24)
    net = me.create("network", name="pooled")
    first = carve(me, net["id"], subnetpool_id=made["id"])
    assert first.status_code == 201, first.text
    sn = first.json()["subnet"]
    assert sn["cidr"] == "10.50.0.0/24" and sn["subnetpool_id"] == made["id"]
    assert sn["gateway_ip"] == "10.50.0.1"
    other_net = me.create("network", name="pooled2")
    second = carve(me, other_net["id"], subnetpool_id=made["id"], prefixlen=23)
    assert second.json()["subnet"]["cidr"] == "10.50.2.0/23"
    chosen = carve(me, other_net["id"], subnetpool_id=made["id"], cidr="10.50.1.0/24")
    assert chosen.status_code == 201, chosen.text
    full = carve(me, other_net["id"], subnetpool_id=made["id"])
    assert "Insufficient prefix space" in neutron_error(full, 409, "SubnetAllocationError")
    big = carve(me, net["id"], subnetpool_id=made["id"], prefixlen=22)
    assert "minimum allowed prefix is 23" in neutron_error(big, 409, "SubnetAllocationError")
    small = carve(me, net["id"], subnetpool_id=made["id"], prefixlen=33)
    neutron_error(small, 409, "SubnetAllocationError")
    outside = carve(me, net["id"], subnetpool_id=made["id"], cidr="10.60.0.0/24")
    neutron_error(outside, 409, "SubnetAllocationError")
    both = carve(me, net["id"], subnetpool_id=made["id"], cidr="10.50.3.0/24", prefixlen=24)
    neutron_error(both, 400, "HTTPBadRequest")
    v6 = carve(me, net["id"], subnetpool_id=made["id"], ip_version=6)
    neutron_error(v6, 400, "HTTPBadRequest")
    neutron_error(carve(me, net["id"], prefixlen=24, cidr="10.70.0.0/24"), 400, "HTTPBadRequest")

    in_use = me.delete(f"/subnetpools/{made['id']}")
    assert "existing allocations" in neutron_error(in_use, 409, "SubnetPoolInUse")
    for subnet in me.get("/subnets", params={"subnetpool_id": made["id"]}).json()["subnets"]:
        assert me.delete(f"/subnets/{subnet['id']}").status_code == 204
    assert me.delete(f"/subnetpools/{made['id']}").status_code == 204


def test_a_networks_subnets_of_one_version_share_one_pool(me: Neutron) -> None:
    made = pool(me, prefixes=["10.80.0.0/16"], default_prefixlen=24)
    net = me.create("network", name="mixed")
    me.create("subnet", network_id=net["id"], cidr="10.81.0.0/24", ip_version=4)
    refused = carve(me, net["id"], subnetpool_id=made["id"])
    assert "same subnet pool" in neutron_error(refused, 400, "HTTPBadRequest")


def test_default_quota_caps_what_a_project_takes(me: Neutron) -> None:
    made = pool(me, prefixes=["10.90.0.0/16"], default_prefixlen=24, default_quota=256)
    net = me.create("network", name="q")
    assert carve(me, net["id"], subnetpool_id=made["id"]).status_code == 201
    over = carve(me, net["id"], subnetpool_id=made["id"], prefixlen=28)
    assert "quota exceeded" in neutron_error(over, 409, "SubnetAllocationError")


def test_default_pool_serves_use_default_subnetpool(me: Neutron, admin: Neutron) -> None:
    made = pool(admin, prefixes=["10.100.0.0/16"], default_prefixlen=26, shared=True,
                is_default=True)  # fmt: skip
    try:
        twice = admin.post("/subnetpools", {"subnetpool": {"prefixes": ["10.101.0.0/16"],
                                                           "is_default": True}})  # fmt: skip
        neutron_error(twice, 400, "HTTPBadRequest")
        net = me.create("network", name="d")
        got = carve(me, net["id"], use_default_subnetpool=True)
        assert got.status_code == 201, got.text
        assert got.json()["subnet"]["cidr"] == "10.100.0.0/26"
        assert got.json()["subnet"]["subnetpool_id"] == made["id"]
        me.delete(f"/subnets/{got.json()['subnet']['id']}")
    finally:
        assert admin.delete(f"/subnetpools/{made['id']}").status_code == 204
    net = me.create("network", name="e")
    none = carve(me, net["id"], use_default_subnetpool=True)
    assert "No default subnetpool" in neutron_error(none, 400, "HTTPBadRequest")


def test_another_project_neither_sees_nor_uses_a_private_pool(
    me: Neutron, other: Neutron, shared_cloud: Cloud
) -> None:
    made = pool(me, prefixes=["10.110.0.0/16"], default_prefixlen=24)
    path = f"/subnetpools/{made['id']}"
    neutron_error(other.get(path), 404, "SubnetPoolNotFound")
    assert made["id"] not in {p["id"] for p in other.get("/subnetpools").json()["subnetpools"]}
    neutron_error(other.put(path, {"subnetpool": {"name": "x"}}), 404, "SubnetPoolNotFound")
    neutron_error(other.delete(path), 404, "SubnetPoolNotFound")
    net = other.create("network", name="theirs")
    neutron_error(carve(other, net["id"], subnetpool_id=made["id"]), 404, "SubnetPoolNotFound")
    reader = shared_cloud.member(role="reader", project_id=me.project_id)
    as_reader = Neutron(shared_cloud, reader.token, reader.project_id)
    assert as_reader.get(path).status_code == 200
    assert (
        as_reader.post("/subnetpools", {"subnetpool": {"prefixes": ["10.0.0.0/8"]}}).status_code
        == 403
    )
    assert as_reader.put(path, {"subnetpool": {"name": "x"}}).status_code == 403
    assert as_reader.delete(path).status_code == 403
    assert me.get(path).json()["subnetpool"]["name"] == ""


def test_a_shared_pool_is_used_but_not_changed_by_others(other: Neutron, admin: Neutron) -> None:
    made = pool(admin, prefixes=["10.120.0.0/16"], default_prefixlen=24, shared=True)
    path = f"/subnetpools/{made['id']}"
    try:
        assert other.get(path).status_code == 200
        net = other.create("network", name="on-shared")
        got = carve(other, net["id"], subnetpool_id=made["id"])
        assert got.status_code == 201, got.text
        neutron_error(other.put(path, {"subnetpool": {"name": "x"}}), 403, "HTTPForbidden")
        neutron_error(other.delete(path), 403, "HTTPForbidden")
        other.delete(f"/subnets/{got.json()['subnet']['id']}")
    finally:
        assert admin.delete(path).status_code == 204


def test_prefixes_are_added_and_removed_unless_in_use(me: Neutron, other: Neutron) -> None:
    made = pool(me, prefixes=["10.130.0.0/24"], default_prefixlen=26)
    base = f"/subnetpools/{made['id']}"
    added = me.put(f"{base}/add_prefixes", {"prefixes": ["10.130.1.0/24", "10.140.0.0/24"]})
    assert added.status_code == 200, added.text
    assert added.json() == {"prefixes": ["10.130.0.0/23", "10.140.0.0/24"]}
    shown = me.get(base).json()["subnetpool"]
    assert shown["prefixes"] == ["10.130.0.0/23", "10.140.0.0/24"]
    assert shown["revision_number"] == 2
    net = me.create("network", name="in-use")
    sn = carve(me, net["id"], subnetpool_id=made["id"]).json()["subnet"]
    assert sn["cidr"] == "10.130.0.0/26"
    in_use = me.put(f"{base}/remove_prefixes", {"prefixes": ["10.130.0.0/24"]})
    assert "is allocated" in neutron_error(in_use, 400, "IllegalSubnetPoolPrefixUpdate")
    removed = me.put(f"{base}/remove_prefixes", {"prefixes": ["10.140.0.0/24", "10.130.1.0/24"]})
    assert removed.json() == {"prefixes": ["10.130.0.0/24"]}
    neutron_error(me.put(f"{base}/add_prefixes", {"prefixes": ["fd00::/64"]}), 400,
                  "IllegalSubnetPoolPrefixUpdate")  # fmt: skip
    neutron_error(me.put(f"{base}/add_prefixes", {"prefixes": "x"}), 400, "InvalidInput")
    me.delete(f"/subnets/{sn['id']}")
    last = me.put(f"{base}/remove_prefixes", {"prefixes": ["10.130.0.0/24"]})
    assert "at least one prefix" in neutron_error(last, 400, "IllegalSubnetPoolPrefixUpdate")
    neutron_error(other.put(f"{base}/add_prefixes", {"prefixes": ["10.150.0.0/24"]}), 404,
                  "SubnetPoolNotFound")  # fmt: skip
    assert me.get(base).json()["subnetpool"]["prefixes"] == ["10.130.0.0/24"]
