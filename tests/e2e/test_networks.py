"""The network service as customers reach it: the openstack CLI and openstacksdk."""

from __future__ import annotations

import openstack.exceptions
import pytest

from .conftest import Cloud, Tenant, unique


@pytest.fixture(scope="module")
def tenant(cloud: Cloud) -> Tenant:
    return cloud.make_tenant("networks")


def test_openstack_cli_network_subnet_port_lifecycle(cloud: Cloud, tenant: Tenant) -> None:
    on = {"cloud": tenant.cloud_name}
    name = unique("cli-net")
    net = cloud.cli_json("network", "create", name, **on)
    assert net["status"] == "ACTIVE" and net["name"] == name, net
    cloud.cli_ok("network", "set", "--description", "blue", name, **on)
    shown = cloud.cli_json("network", "show", name, **on)
    assert shown["description"] == "blue" and shown["id"] == net["id"]
    names = [row["Name"] for row in cloud.cli_json("network", "list", **on)]
    assert name in names and "public" in names

    subnet = cloud.cli_json(
        "subnet", "create", "--network", name, "--subnet-range", "10.0.0.0/24", unique("sn"), **on
    )
    assert subnet["gateway_ip"] == "10.0.0.1" and subnet["cidr"] == "10.0.0.0/24", subnet

    port = cloud.cli_json("port", "create", "--network", name, unique("port"), **on)
    assert port["mac_address"].startswith("fa:16:3e:"), port
    assert port["fixed_ips"][0]["ip_address"] == "10.0.0.2", port
    assert port["status"] == "DOWN"
    listed = cloud.cli_json("port", "list", "--network", name, **on)
    assert [row["ID"] for row in listed] == [port["id"]]

    group = cloud.cli_json("security", "group", "create", unique("sg"), **on)
    rule = cloud.cli_json(
        "security", "group", "rule", "create", "--protocol", "icmp", group["id"], **on
    )
    assert rule["protocol"] == "icmp" and rule["direction"] == "ingress", rule
    err = cloud.cli_fails(
        "security", "group", "rule", "create", "--protocol", "icmp", group["id"], **on
    )
    assert "already exists" in err

    err = cloud.cli_fails("network", "delete", name, **on)
    assert "in use" in err or "ports" in err
    cloud.cli_ok("port", "delete", port["id"], **on)
    cloud.cli_ok("network", "delete", name, **on)
    err = cloud.cli_fails("network", "show", net["id"], **on)
    assert "No Network found" in err or "could not be found" in err


def test_sdk_another_project_gets_not_found(cloud: Cloud, tenant: Tenant) -> None:
    owner = cloud.connect(tenant.user_name, tenant.password, tenant.project_name)
    other_tenant = cloud.make_tenant("net-other")
    other = cloud.connect(other_tenant.user_name, other_tenant.password, other_tenant.project_name)
    net = owner.network.create_network(name=unique("private"))
    with pytest.raises(openstack.exceptions.NotFoundException):
        other.network.get_network(net.id)
    assert net.id not in [n.id for n in other.network.networks()]
    shared = cloud.admin.network.create_network(
        name=unique("shared"), shared=True, project_id=tenant.project_id
    )
    cloud.admin.network.create_subnet(network_id=shared.id, cidr="192.168.50.0/24", ip_version=4)
    port = other.network.create_port(network_id=shared.id)
    assert port.fixed_ips[0]["ip_address"] == "192.168.50.2"
    public = other.network.find_network("public")
    assert public is not None and public.is_router_external


def test_sdk_quotas_and_pagination(cloud: Cloud) -> None:
    quota_tenant = cloud.make_tenant("net-quota")
    conn = cloud.connect(quota_tenant.user_name, quota_tenant.password, quota_tenant.project_name)
    cloud.admin.network.update_quota(quota_tenant.project_id, networks=3)
    quota = conn.network.get_quota(quota_tenant.project_id)
    assert quota.networks == 3
    for i in range(3):
        conn.network.create_network(name=f"n{i}")
    with pytest.raises(openstack.exceptions.ConflictException):
        conn.network.create_network(name="n3")
    details = conn.network.get_quota(quota_tenant.project_id, details=True)
    assert details.networks["used"] == 3
    names = [
        n.name
        for n in conn.network.networks(limit=1, sort_key="name", project_id=quota_tenant.project_id)
    ]
    assert names == ["n0", "n1", "n2"]


def test_openstack_cli_subnet_options_fixed_ips_and_groups(cloud: Cloud, tenant: Tenant) -> None:
    on = {"cloud": tenant.cloud_name}
    net = cloud.cli_json("network", "create", unique("opts"), **on)
    subnet = cloud.cli_json(
        "subnet",
        "create",
        "--network",
        net["id"],
        "--subnet-range",
        "10.5.0.0/24",
        "--allocation-pool",
        "start=10.5.0.100,end=10.5.0.150",
        "--dns-nameserver",
        "192.0.2.53",
        "--gateway",
        "none",
        unique("sn"),
        **on,
    )
    assert subnet["gateway_ip"] is None and subnet["dns_nameservers"] == ["192.0.2.53"], subnet
    port = cloud.cli_json(
        "port",
        "create",
        "--network",
        net["id"],
        "--fixed-ip",
        f"subnet={subnet['id']},ip-address=10.5.0.7",
        unique("p"),
        **on,
    )
    assert port["fixed_ips"] == [{"subnet_id": subnet["id"], "ip_address": "10.5.0.7"}], port
    err = cloud.cli_fails(
        "port",
        "create",
        "--network",
        net["id"],
        "--fixed-ip",
        f"subnet={subnet['id']},ip-address=10.5.0.7",
        unique("p"),
        **on,
    )
    assert "already allocated" in err
    group = cloud.cli_json("security", "group", "create", unique("web"), **on)
    cloud.cli_ok(
        "security",
        "group",
        "rule",
        "create",
        "--protocol",
        "tcp",
        "--dst-port",
        "80:81",
        group["id"],
        **on,
    )
    cloud.cli_ok("port", "set", "--security-group", group["id"], port["id"], **on)
    shown = cloud.cli_json("port", "show", port["id"], **on)
    assert group["id"] in shown["security_group_ids"], shown
    groups = [row["Name"] for row in cloud.cli_json("security", "group", "list", **on)]
    assert "default" in groups and group["name"] in groups
    external = cloud.cli_json("network", "list", "--external", **on)
    assert [row["Name"] for row in external] == ["public"]
    shared = cloud.cli_json("network", "create", "--share", unique("shared"))
    assert shared["shared"] is True
