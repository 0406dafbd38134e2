"""Subnet pools, tags, extra routes and extra DHCP options as customers reach them: the
openstack CLI (its own requests and parsing) and openstacksdk."""

from __future__ import annotations

import pytest

from .conftest import Cloud, Tenant, unique


@pytest.fixture(scope="module")
def tenant(cloud: Cloud) -> Tenant:
    return cloud.make_tenant("net-ext")


def test_cli_subnet_pool_and_a_subnet_carved_from_it(cloud: Cloud, tenant: Tenant) -> None:
    on = {"cloud": tenant.cloud_name}
    name = unique("pool")
    pool = cloud.cli_json("subnet", "pool", "create", "--pool-prefix", "10.40.0.0/16",
                          "--default-prefix-length", "24", name, **on)  # fmt: skip
    assert pool["prefixes"] == ["10.40.0.0/16"] and pool["default_prefixlen"] == 24, pool
    net = cloud.cli_json("network", "create", unique("pooled"), **on)
    subnet = cloud.cli_json("subnet", "create", "--network", net["id"], "--subnet-pool", name,
                            unique("sn"), **on)  # fmt: skip
    assert subnet["cidr"] == "10.40.0.0/24" and subnet["subnetpool_id"] == pool["id"], subnet
    err = cloud.cli_fails("subnet", "pool", "delete", name, **on)
    assert "existing allocations" in err
    cloud.cli_ok("subnet", "delete", subnet["id"], **on)
    cloud.cli_ok("subnet", "pool", "delete", name, **on)


def test_cli_tags_and_tag_filters(cloud: Cloud, tenant: Tenant) -> None:
    on = {"cloud": tenant.cloud_name}
    name = unique("tagged")
    cloud.cli_json("network", "create", "--tag", "red", "--tag", "blue", name, **on)
    cloud.cli_ok("network", "set", "--tag", "green", name, **on)
    shown = cloud.cli_json("network", "show", name, **on)
    assert sorted(shown["tags"]) == ["blue", "green", "red"], shown
    listed = cloud.cli_json("network", "list", "--tags", "red,green", **on)
    assert [row["Name"] for row in listed] == [name]
    cloud.cli_ok("network", "unset", "--tag", "red", name, **on)
    assert cloud.cli_json("network", "list", "--tags", "red", **on) == []
    cloud.cli_ok("network", "delete", name, **on)


def test_sdk_extra_routes_and_extra_dhcp_options(cloud: Cloud, tenant: Tenant) -> None:
    conn = cloud.connect(tenant.user_name, tenant.password, tenant.project_name)
    net = conn.network.create_network(name=unique("routed"))
    subnet = conn.network.create_subnet(network_id=net.id, cidr="10.41.0.0/24", ip_version=4)
    router = conn.network.create_router(name=unique("r"))
    conn.network.add_interface_to_router(router, subnet=subnet.id)
    routes = [{"destination": "192.168.9.0/24", "nexthop": "10.41.0.5"}]
    updated = conn.network.update_router(router, routes=routes)
    assert updated.routes == routes
    assert conn.network.get_router(router.id).routes == routes
    conn.network.update_router(router, routes=[])

    opts = [{"opt_name": "bootfile-name", "opt_value": "pxelinux.0"}]
    port = conn.network.create_port(network_id=net.id, extra_dhcp_opts=opts)
    assert port.extra_dhcp_opts == [{**opts[0], "ip_version": 4}]
    assert port.binding_host_id is None, "the binding is the admin's to see"
    admin_view = cloud.admin.network.get_port(port.id)
    assert admin_view.binding_vif_type == "unbound"
    conn.network.delete_port(port)
    conn.network.remove_interface_from_router(router, subnet=subnet.id)
    conn.network.delete_router(router)
