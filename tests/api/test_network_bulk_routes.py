"""Neutron behaviours Tempest's interop tests rely on: bulk creates (all or nothing),
security group port range messages, subnets of the external network, and routers'
extra routes (the `extraroute` extension). Database only: nothing touches the kernel."""

from __future__ import annotations

from typing import Any

import pytest

from . import neutron_callers
from .support import Cloud
from .test_networks import Neutron, neutron_error

me, other = neutron_callers.me, neutron_callers.other  # the shared fixtures


@pytest.fixture
def reader(shared_cloud: Cloud, me: Neutron) -> Neutron:
    someone = shared_cloud.member(role="reader", project_id=me.project_id)
    return Neutron(shared_cloud, someone.token, someone.project_id)


def _ids(caller: Neutron, path: str, key: str) -> set[str]:
    return {item["id"] for item in caller.get(path).json()[key]}


# ---------------------------------------------------------------------- bulk create


def test_bulk_create_of_ports_networks_and_subnets_answers_every_one(me: Neutron) -> None:
    made = me.post("/networks", {"networks": [{"name": "a"}, {"name": "b"}]})
    assert made.status_code == 201, made.text
    nets = made.json()["networks"]
    assert [n["name"] for n in nets] == ["a", "b"]
    subnets = me.post(
        "/subnets",
        {
            "subnets": [
                {"network_id": nets[0]["id"], "cidr": "10.1.0.0/24", "ip_version": 4},
                {"network_id": nets[1]["id"], "cidr": "10.2.0.0/24", "ip_version": 4},
            ]
        },
    )
    assert subnets.status_code == 201, subnets.text
    ports = me.post(
        "/ports", {"ports": [{"network_id": nets[0]["id"]}, {"network_id": nets[1]["id"]}]}
    )
    assert ports.status_code == 201, ports.text
    shown = ports.json()["ports"]
    assert [p["network_id"] for p in shown] == [nets[0]["id"], nets[1]["id"]]
    assert _ids(me, "/ports", "ports") >= {p["id"] for p in shown}


def test_a_failing_bulk_create_leaves_nothing_behind(me: Neutron) -> None:
    net = me.create("network", name="bulk")
    me.create("subnet", network_id=net["id"], cidr="10.3.0.0/24", ip_version=4)
    before = _ids(me, "/ports", "ports")
    failed = me.post("/ports", {"ports": [{"network_id": net["id"]}, {"network_id": "nope"}]})
    neutron_error(failed, 404, "NetworkNotFound")
    assert _ids(me, "/ports", "ports") == before


def test_bulk_create_refuses_an_empty_or_malformed_list(me: Neutron) -> None:
    neutron_error(me.post("/ports", {"ports": []}), 400, "HTTPBadRequest")
    neutron_error(me.post("/ports", {"ports": [1]}), 400, "HTTPBadRequest")
    neutron_error(me.post("/ports", {"ports": "x"}), 400, "HTTPBadRequest")
    too_many = {"networks": [{"name": str(i)} for i in range(101)]}
    neutron_error(me.post("/networks", too_many), 400, "HTTPBadRequest")
    # routers take no bulk body, as in Neutron
    neutron_error(me.post("/routers", {"routers": [{"name": "r"}]}), 400, "HTTPBadRequest")


def test_a_reader_cannot_bulk_create(reader: Neutron) -> None:
    assert reader.post("/networks", {"networks": [{"name": "a"}]}).status_code == 403


# ---------------------------------------------------------------------- security group ports


@pytest.mark.parametrize(
    ("protocol", "low", "high", "message"),
    [
        ("tcp", -16, 80, "Invalid value for port -16"),
        ("tcp", 80, 79, "port_range_min must be <= port_range_max"),
        ("tcp", 80, 65536, "Invalid value for port 65536"),
        ("tcp", None, 6, "port_range_min must be <= port_range_max"),
        ("tcp", -16, 65536, "Invalid value for port -16"),
        ("icmp", 1, 256, "Invalid value for ICMP code (port_range_max) 256"),
        ("icmp", -1, 25, "Invalid value for port -1"),
        ("icmp", None, 6, "ICMP type (port-range-min) is missing"),
        ("icmp", 300, 1, "Invalid value for ICMP type (port_range_min) 300"),
    ],
)
def test_rule_port_ranges_are_refused_with_neutrons_messages(
    me: Neutron, protocol: str, low: Any, high: Any, message: str
) -> None:
    group = me.create("sg", name="g")
    body = {
        "security_group_id": group["id"],
        "direction": "ingress",
        "protocol": protocol,
        "port_range_min": low,
        "port_range_max": high,
    }
    response = me.post("/security-group-rules", {"security_group_rule": body})
    assert response.status_code == 400, response.text
    assert message in response.json()["NeutronError"]["message"]
    rules = me.get("/security-group-rules", params={"security_group_id": group["id"]})
    assert len(rules.json()["security_group_rules"]) == 2  # the two default egress rules


# ---------------------------------------------------------------------- external subnets


def test_subnets_of_the_external_network_are_visible_and_say_so(me: Neutron) -> None:
    aliases = {e["alias"] for e in me.get("/extensions").json()["extensions"]}
    assert "subnet-external-network" in aliases
    public = me.get("/networks", params={"router:external": "True"}).json()["networks"]
    assert public and all(n["router:external"] for n in public)
    subnets = me.get("/subnets", params={"network_id": public[0]["id"]}).json()["subnets"]
    assert subnets and all(s["router:external"] is True for s in subnets)
    net = me.create("network", name="mine")
    mine = me.create("subnet", network_id=net["id"], cidr="10.4.0.0/24", ip_version=4)
    assert mine["router:external"] is False and mine["subnetpool_id"] is None


# ---------------------------------------------------------------------- extra routes


def _router_with_interfaces(caller: Neutron, cidrs: list[str]) -> tuple[str, list[str]]:
    router = caller.create("router", name="r")
    subnets = []
    for cidr in cidrs:
        net = caller.create("network", name=cidr)
        sn = caller.create("subnet", network_id=net["id"], cidr=cidr, ip_version=4)
        put = caller.put(f"/routers/{router['id']}/add_router_interface", {"subnet_id": sn["id"]})
        assert put.status_code == 200, put.text
        subnets.append(sn["id"])
    return router["id"], subnets


def test_extra_routes_are_set_shown_and_cleared(me: Neutron, reader: Neutron) -> None:
    router_id, _ = _router_with_interfaces(me, ["10.5.0.0/24", "10.6.0.0/24"])
    routes = [
        {"destination": "192.168.10.0/24", "nexthop": "10.5.0.2"},
        {"destination": "192.168.20.0/24", "nexthop": "10.6.0.2"},
    ]
    updated = me.put(f"/routers/{router_id}", {"router": {"routes": routes}})
    assert updated.status_code == 200, updated.text
    assert updated.json()["router"]["routes"] == routes
    assert reader.get(f"/routers/{router_id}").json()["router"]["routes"] == routes
    cleared = me.put(f"/routers/{router_id}", {"router": {"routes": None}})
    assert cleared.json()["router"]["routes"] == []


def test_an_extra_route_needs_a_connected_next_hop_that_is_not_the_router(me: Neutron) -> None:
    router_id, _ = _router_with_interfaces(me, ["10.7.0.0/24"])

    def refused(route: dict[str, str], kind: str = "InvalidRoutes") -> str:
        response = me.put(f"/routers/{router_id}", {"router": {"routes": [route]}})
        return neutron_error(response, 400, kind)

    away = refused({"destination": "192.168.0.0/24", "nexthop": "10.9.0.2"})
    assert "the nexthop is not connected with router" in away
    own = refused({"destination": "192.168.0.0/24", "nexthop": "10.7.0.1"})
    assert "the nexthop is used by router" in own
    refused({"destination": "192.168.0.1/24", "nexthop": "10.7.0.2"}, "InvalidInput")
    refused({"destination": "nope", "nexthop": "10.7.0.2"}, "InvalidInput")
    refused({"destination": "192.168.0.0/24", "nexthop": "fe80::1"}, "InvalidInput")
    many = [{"destination": f"192.168.{i}.0/24", "nexthop": "10.7.0.2"} for i in range(31)]
    neutron_error(
        me.put(f"/routers/{router_id}", {"router": {"routes": many}}), 400, "RoutesExhausted"
    )
    twice = [{"destination": "192.168.0.0/24", "nexthop": "10.7.0.2"}] * 2
    neutron_error(
        me.put(f"/routers/{router_id}", {"router": {"routes": twice}}), 400, "InvalidInput"
    )
    assert me.get(f"/routers/{router_id}").json()["router"]["routes"] == []
    neutron_error(me.post("/routers", {"router": {"routes": []}}), 400, "HTTPBadRequest")


def test_an_interface_a_route_goes_through_cannot_be_removed(me: Neutron) -> None:
    router_id, (subnet_id,) = _router_with_interfaces(me, ["10.8.0.0/24"])
    route = {"destination": "192.168.1.0/24", "nexthop": "10.8.0.9"}
    assert me.put(f"/routers/{router_id}", {"router": {"routes": [route]}}).status_code == 200
    removed = me.put(f"/routers/{router_id}/remove_router_interface", {"subnet_id": subnet_id})
    assert "required by one or more routes" in neutron_error(
        removed, 409, "RouterInterfaceInUseByRoute"
    )
    me.put(f"/routers/{router_id}", {"router": {"routes": []}})
    removed = me.put(f"/routers/{router_id}/remove_router_interface", {"subnet_id": subnet_id})
    assert removed.status_code == 200, removed.text


def test_another_project_and_a_reader_cannot_set_routes(
    me: Neutron, other: Neutron, reader: Neutron
) -> None:
    router_id, _ = _router_with_interfaces(me, ["10.10.0.0/24"])
    route = {"router": {"routes": [{"destination": "192.168.1.0/24", "nexthop": "10.10.0.9"}]}}
    neutron_error(other.put(f"/routers/{router_id}", route), 404, "RouterNotFound")
    assert reader.put(f"/routers/{router_id}", route).status_code == 403
    assert me.get(f"/routers/{router_id}").json()["router"]["routes"] == []


# ---------------------------------------------------------------------- discovery


def test_extensions_list_what_is_offered_and_agents_are_absent(me: Neutron) -> None:
    aliases = {e["alias"] for e in me.get("/extensions").json()["extensions"]}
    offered = {"extraroute", "subnet_allocation", "default-subnetpools", "standard-attr-tag",
               "extra_dhcp_opt", "metering", "subnet-external-network"}  # fmt: skip
    assert offered <= aliases
    assert not {"agent", "dhcp_agent_scheduler", "l3_agent_scheduler"} & aliases
    neutron_error(me.get("/agents"), 404, "HTTPNotFound")
    resources = {r["collection"] for r in me.get("").json()["resources"]}
    assert {"subnetpools", "metering_labels", "metering_label_rules"} <= resources
