"""Routers and floating IPs (Neutron v2.0) in-process: shapes, interfaces, gateways,
association rules, tenancy, quotas and hostile input. Database only: no kernel here (the
data plane is proved in tests/platform/test_routing.py and tests/e2e)."""

from __future__ import annotations

import ipaddress
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest

from . import neutron_callers
from .support import Cloud
from .test_networks import Neutron, neutron_error

admin, other = neutron_callers.admin, neutron_callers.other  # the shared fixtures


@pytest.fixture
def me(shared_cloud: Cloud) -> Neutron:
    member = shared_cloud.member()
    return Neutron(shared_cloud, member.token, member.project_id)


def public_id(caller: Neutron) -> str:
    nets = caller.get("/networks", params={"name": "public"}).json()["networks"]
    return str(nets[0]["id"])


def public_cidr(caller: Neutron) -> ipaddress.IPv4Network:
    net = caller.get(f"/networks/{public_id(caller)}").json()["network"]
    subnet = caller.get(f"/subnets/{net['subnets'][0]}").json()["subnet"]
    return ipaddress.IPv4Network(subnet["cidr"])


def routed(caller: Neutron, cidr: str = "10.0.0.0/24") -> tuple[str, str, str]:
    """A network and subnet behind a router with a gateway to public: (net, subnet, router)."""
    net, subnet = caller.network_with_subnet(cidr)
    router = caller.create(
        "router", name="r", external_gateway_info={"network_id": public_id(caller)}
    )
    added = caller.put(f"/routers/{router['id']}/add_router_interface", {"subnet_id": subnet})
    assert added.status_code == 200, added.text
    return net, subnet, router["id"]


# ---------------------------------------------------------------------- routers


def test_router_with_gateway_takes_a_public_address(me: Neutron) -> None:
    router = me.create("router", name="edge", external_gateway_info={"network_id": public_id(me)})
    info = router["external_gateway_info"]
    assert info["network_id"] == public_id(me) and info["enable_snat"] is True
    (fixed,) = info["external_fixed_ips"]
    assert ipaddress.ip_address(fixed["ip_address"]) in public_cidr(me)
    assert router["status"] == "ACTIVE" and router["project_id"] == me.project_id
    assert router["routes"] == [] and router["distributed"] is False
    assert me.get(f"/routers/{router['id']}").json()["router"] == router
    quota = me.get(f"/quotas/{me.project_id}/details").json()["quota"]
    assert quota["router"]["used"] == 1
    # clearing the gateway gives the address back
    cleared = me.put(f"/routers/{router['id']}", {"router": {"external_gateway_info": {}}})
    assert cleared.status_code == 200 and cleared.json()["router"]["external_gateway_info"] is None
    assert me.delete(f"/routers/{router['id']}").status_code == 204
    neutron_error(me.get(f"/routers/{router['id']}"), 404, "RouterNotFound")


def test_interface_by_subnet_takes_the_gateway_ip_and_pins_the_network(me: Neutron) -> None:
    net, subnet, router = routed(me, "10.20.0.0/24")
    ports = me.get("/ports", params={"device_id": router}).json()["ports"]
    (port,) = [p for p in ports if p["device_owner"] == "network:router_interface"]
    assert port["fixed_ips"] == [{"subnet_id": subnet, "ip_address": "10.20.0.1"}]
    assert port["network_id"] == net and port["status"] == "ACTIVE"
    neutron_error(me.delete(f"/ports/{port['id']}"), 409, "PortInUse")
    neutron_error(me.delete(f"/networks/{net}"), 409, "NetworkInUse")
    neutron_error(me.delete(f"/routers/{router}"), 409, "RouterInUse")
    again = me.put(f"/routers/{router}/add_router_interface", {"subnet_id": subnet})
    assert "already has a port" in neutron_error(again, 400, "HTTPBadRequest")
    removed = me.put(f"/routers/{router}/remove_router_interface", {"subnet_id": subnet})
    assert removed.status_code == 200 and removed.json()["port_id"] == port["id"]
    neutron_error(me.get(f"/ports/{port['id']}"), 404, "PortNotFound")
    neutron_error(
        me.put(f"/routers/{router}/remove_router_interface", {"subnet_id": subnet}),
        404,
        "RouterInterfaceNotFoundForSubnet",
    )
    assert me.delete(f"/routers/{router}").status_code == 204
    assert me.delete(f"/networks/{net}").status_code == 204


def test_interface_by_port_and_its_refusals(me: Neutron) -> None:
    router = me.create("router", name="r")["id"]
    net, subnet = me.network_with_subnet("10.30.0.0/24")
    port = me.create("port", network_id=net)
    added = me.put(f"/routers/{router}/add_router_interface", {"port_id": port["id"]})
    assert added.status_code == 200 and added.json()["subnet_ids"] == [subnet]
    shown = me.get(f"/ports/{port['id']}").json()["port"]
    assert shown["device_owner"] == "network:router_interface" and shown["device_id"] == router
    assert shown["security_groups"] == [] and shown["port_security_enabled"] is False
    # a second subnet with an overlapping CIDR on the same router is refused
    _, overlapping = me.network_with_subnet("10.30.0.0/25")
    clash = me.put(f"/routers/{router}/add_router_interface", {"subnet_id": overlapping})
    assert "overlaps" in neutron_error(clash, 400, "HTTPBadRequest")
    # a subnet without gateway cannot be an interface
    _, bare = me.network_with_subnet("10.31.0.0/24", gateway_ip=None)
    no_gw = me.put(f"/routers/{router}/add_router_interface", {"subnet_id": bare})
    assert "gateway IP" in neutron_error(no_gw, 400, "HTTPBadRequest")
    both = me.put(
        f"/routers/{router}/add_router_interface", {"subnet_id": subnet, "port_id": port["id"]}
    )
    neutron_error(both, 400, "HTTPBadRequest")
    neutron_error(me.put(f"/routers/{router}/add_router_interface", {}), 400, "HTTPBadRequest")
    removed = me.put(f"/routers/{router}/remove_router_interface", {"port_id": port["id"]})
    assert removed.status_code == 200


def test_router_input_is_checked(me: Neutron, admin: Neutron) -> None:
    def bad(body: Any, status: int, kind: str) -> str:
        return neutron_error(me.post("/routers", {"router": body}), status, kind)

    bad({"nope": 1}, 400, "HTTPBadRequest")
    bad({"name": "x" * 300}, 400, "InvalidInput")
    bad({"external_gateway_info": {"network_id": "missing"}}, 404, "NetworkNotFound")
    bad({"external_gateway_info": "public"}, 400, "InvalidInput")
    bad({"distributed": True}, 400, "HTTPBadRequest")
    net = me.create("network", name="inner")["id"]
    assert "not an external network" in bad(
        {"external_gateway_info": {"network_id": net}}, 400, "HTTPBadRequest"
    )
    # SNAT off is the operator's call, as in Neutron's default policy
    bad(
        {"external_gateway_info": {"network_id": public_id(me), "enable_snat": False}},
        403,
        "HTTPForbidden",
    )
    made = admin.create(
        "router", external_gateway_info={"network_id": public_id(me), "enable_snat": False}
    )
    assert made["external_gateway_info"]["enable_snat"] is False
    # the external subnet itself cannot be an interface
    ext_subnet = me.get(f"/networks/{public_id(me)}").json()["network"]["subnets"][0]
    mine = me.create("router")["id"]
    refused = me.put(f"/routers/{mine}/add_router_interface", {"subnet_id": ext_subnet})
    neutron_error(refused, 404, "SubnetNotFound")
    assert admin.delete(f"/routers/{made['id']}").status_code == 204
    # nothing was left behind by the refusals
    assert len(me.get("/routers").json()["routers"]) == 1


# ---------------------------------------------------------------------- floating IPs


def test_floating_ip_lifecycle(me: Neutron) -> None:
    net, _, router = routed(me, "10.40.0.0/24")
    server_port = me.create("port", network_id=net)
    fip = me.create("fip", floating_network_id=public_id(me), description="web")
    assert fip["status"] == "DOWN" and fip["port_id"] is None and fip["router_id"] is None
    assert ipaddress.ip_address(fip["floating_ip_address"]) in public_cidr(me)
    moved = me.put(f"/floatingips/{fip['id']}", {"floatingip": {"port_id": server_port["id"]}})
    assert moved.status_code == 200, moved.text
    view = moved.json()["floatingip"]
    assert view["status"] == "ACTIVE" and view["router_id"] == router
    assert view["fixed_ip_address"] == server_port["fixed_ips"][0]["ip_address"]
    assert view["port_details"]["network_id"] == net
    listed = me.get("/floatingips", params={"port_id": server_port["id"]}).json()["floatingips"]
    assert [f["id"] for f in listed] == [fip["id"]]
    # one floating IP per fixed address
    second = me.create("fip", floating_network_id=public_id(me))
    clash = me.put(f"/floatingips/{second['id']}", {"floatingip": {"port_id": server_port["id"]}})
    neutron_error(clash, 409, "FloatingIPPortAlreadyAssociated")
    # the router's interface and gateway are needed while the floating IP is in use
    ifaces = me.put(f"/routers/{router}/remove_router_interface", {"port_id": None})
    neutron_error(ifaces, 400, "HTTPBadRequest")
    subnet = server_port["fixed_ips"][0]["subnet_id"]
    neutron_error(
        me.put(f"/routers/{router}/remove_router_interface", {"subnet_id": subnet}),
        409,
        "RouterInterfaceInUseByFloatingIP",
    )
    neutron_error(
        me.put(f"/routers/{router}", {"router": {"external_gateway_info": None}}),
        409,
        "RouterExternalGatewayInUseByFloatingIp",
    )
    # disassociate, then deleting the port of an associated floating IP lets it go too
    off = me.put(f"/floatingips/{fip['id']}", {"floatingip": {"port_id": None}})
    assert off.json()["floatingip"]["status"] == "DOWN"
    again = me.put(f"/floatingips/{second['id']}", {"floatingip": {"port_id": server_port["id"]}})
    assert again.status_code == 200, again.text
    assert me.delete(f"/ports/{server_port['id']}").status_code == 204
    let_go = me.get(f"/floatingips/{second['id']}").json()["floatingip"]
    assert let_go["port_id"] is None and let_go["router_id"] is None
    for item in (fip, second):
        assert me.delete(f"/floatingips/{item['id']}").status_code == 204
    neutron_error(me.get(f"/floatingips/{fip['id']}"), 404, "FloatingIPNotFound")
    # the public addresses went back: no floating IP port is left on public
    admin_view = me.get("/floatingips").json()["floatingips"]
    assert admin_view == []


def test_floating_ip_needs_a_router_to_the_port(me: Neutron) -> None:
    net, _ = me.network_with_subnet("10.50.0.0/24")
    port = me.create("port", network_id=net)
    fip = me.create("fip", floating_network_id=public_id(me))
    refused = me.put(f"/floatingips/{fip['id']}", {"floatingip": {"port_id": port["id"]}})
    assert "not reachable" in neutron_error(refused, 404, "ExternalGatewayForFloatingIPNotFound")
    wrong_ip = me.put(
        f"/floatingips/{fip['id']}",
        {"floatingip": {"port_id": port["id"], "fixed_ip_address": "10.99.0.9"}},
    )
    neutron_error(wrong_ip, 400, "HTTPBadRequest")
    assert me.get(f"/floatingips/{fip['id']}").json()["floatingip"]["port_id"] is None


def test_floating_ip_input_is_checked(me: Neutron, admin: Neutron) -> None:
    def bad(body: Any, status: int, kind: str) -> str:
        return neutron_error(me.post("/floatingips", {"floatingip": body}), status, kind)

    bad({}, 400, "HTTPBadRequest")
    bad({"floating_network_id": "missing"}, 404, "NetworkNotFound")
    inner = me.create("network", name="inner")["id"]
    assert "not a valid external" in bad({"floating_network_id": inner}, 400, "HTTPBadRequest")
    bad(
        {"floating_network_id": public_id(me), "floating_ip_address": "1.2.3.4"},
        403,
        "HTTPForbidden",
    )
    bad({"floating_network_id": public_id(me), "bogus": 1}, 400, "HTTPBadRequest")
    # an admin picks an address, and no one can take it twice
    cidr = public_cidr(me)
    chosen = str(cidr.network_address + 200)
    made = admin.create("fip", floating_network_id=public_id(me), floating_ip_address=chosen)
    assert made["floating_ip_address"] == chosen
    twice = admin.post(
        "/floatingips",
        {"floatingip": {"floating_network_id": public_id(me), "floating_ip_address": chosen}},
    )
    neutron_error(twice, 409, "IpAddressAlreadyAllocated")
    assert admin.delete(f"/floatingips/{made['id']}").status_code == 204
    assert me.get("/floatingips").json()["floatingips"] == []


def test_floating_ip_quota_and_concurrent_allocation(me: Neutron, admin: Neutron) -> None:
    put = admin.put(f"/quotas/{me.project_id}", {"quota": {"floatingip": 4}})
    assert put.status_code == 200
    body = {"floatingip": {"floating_network_id": public_id(me)}}
    with ThreadPoolExecutor(8) as pool:
        answers = list(pool.map(lambda _: me.post("/floatingips", body), range(10)))
    made = [a.json()["floatingip"] for a in answers if a.status_code == 201]
    refused = [a for a in answers if a.status_code != 201]
    assert len(made) == 4
    assert all(neutron_error(a, 409, "OverQuota") for a in refused)
    addresses = [f["floating_ip_address"] for f in made]
    assert len(set(addresses)) == 4
    for fip in made:
        assert me.delete(f"/floatingips/{fip['id']}").status_code == 204


# ---------------------------------------------------------------------- tenancy


def test_another_project_cannot_see_or_touch_routers_and_floating_ips(
    me: Neutron, other: Neutron
) -> None:
    net, subnet, router = routed(me, "10.60.0.0/24")
    port = me.create("port", network_id=net)
    fip = me.create("fip", floating_network_id=public_id(me), port_id=port["id"])
    assert fip["status"] == "ACTIVE"
    assert other.get("/routers").json()["routers"] == []
    assert other.get("/floatingips").json()["floatingips"] == []
    neutron_error(other.get(f"/routers/{router}"), 404, "RouterNotFound")
    neutron_error(other.put(f"/routers/{router}", {"router": {"name": "x"}}), 404, "RouterNotFound")
    neutron_error(other.delete(f"/routers/{router}"), 404, "RouterNotFound")
    neutron_error(
        other.put(f"/routers/{router}/remove_router_interface", {"subnet_id": subnet}),
        404,
        "RouterNotFound",
    )
    neutron_error(other.get(f"/floatingips/{fip['id']}"), 404, "FloatingIPNotFound")
    neutron_error(
        other.put(f"/floatingips/{fip['id']}", {"floatingip": {"port_id": None}}),
        404,
        "FloatingIPNotFound",
    )
    neutron_error(other.delete(f"/floatingips/{fip['id']}"), 404, "FloatingIPNotFound")
    # its own router cannot take my subnet, its own floating IP cannot take my port
    theirs = other.create("router")["id"]
    neutron_error(
        other.put(f"/routers/{theirs}/add_router_interface", {"subnet_id": subnet}),
        404,
        "SubnetNotFound",
    )
    neutron_error(
        other.put(f"/routers/{theirs}/add_router_interface", {"port_id": port["id"]}),
        404,
        "PortNotFound",
    )
    their_fip = other.create("fip", floating_network_id=public_id(other))
    neutron_error(
        other.put(f"/floatingips/{their_fip['id']}", {"floatingip": {"port_id": port["id"]}}),
        404,
        "PortNotFound",
    )
    assert me.get(f"/floatingips/{fip['id']}").json()["floatingip"]["port_id"] == port["id"]


def test_a_router_takes_no_port_of_another_project(
    me: Neutron, other: Neutron, admin: Neutron
) -> None:
    router = me.create("router", name="r")
    theirs, _ = other.network_with_subnet("10.9.0.0/24")
    port = other.create("port", network_id=theirs)
    by_port = {"port_id": port["id"]}
    refused = me.put(f"/routers/{router['id']}/add_router_interface", by_port)
    neutron_error(refused, 404, "PortNotFound")
    refused = other.put(f"/routers/{router['id']}/add_router_interface", by_port)
    neutron_error(refused, 404, "RouterNotFound")
    forged = {"network_id": theirs, "device_id": router["id"]}
    for owner in ("network:router_interface", "network:router_gateway"):
        made = other.post("/ports", {"port": {**forged, "device_owner": owner}})
        neutron_error(made, 403, "HTTPForbidden")
    assert other.get(f"/ports/{port['id']}").json()["port"]["device_id"] == ""
    ports = me.get("/ports", params={"device_id": router["id"]}).json()["ports"]
    assert ports == []
    admin_view = admin.get("/ports", params={"device_id": router["id"]}).json()["ports"]
    assert admin_view == []


def test_a_floating_ip_cannot_go_through_another_projects_router(
    me: Neutron, other: Neutron, admin: Neutron
) -> None:
    """A router on a shared subnet carries its own project's floating IPs only."""
    shared = admin.create("network", name="shared", shared=True, project_id=me.project_id)
    subnet = me.create("subnet", network_id=shared["id"], cidr="10.6.0.0/24", ip_version=4)
    router = me.create("router", name="r", external_gateway_info={"network_id": public_id(me)})
    added = me.put(f"/routers/{router['id']}/add_router_interface", {"subnet_id": subnet["id"]})
    assert added.status_code == 200, added.text
    port = other.create("port", network_id=shared["id"])
    body = {"floating_network_id": public_id(other), "port_id": port["id"]}
    refused = other.post("/floatingips", {"floatingip": body})
    neutron_error(refused, 404, "ExternalGatewayForFloatingIPNotFound")
    fip = other.create("fip", floating_network_id=public_id(other))
    refused = other.put(f"/floatingips/{fip['id']}", {"floatingip": {"port_id": port["id"]}})
    neutron_error(refused, 404, "ExternalGatewayForFloatingIPNotFound")
    assert other.get(f"/floatingips/{fip['id']}").json()["floatingip"]["router_id"] is None
    mine = me.create("port", network_id=shared["id"])
    made = me.create("fip", floating_network_id=public_id(me), port_id=mine["id"])
    assert made["router_id"] == router["id"]
