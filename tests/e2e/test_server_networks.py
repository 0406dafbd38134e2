"""Servers on a private network: DHCP gives each guest its port's address; they reach each other.

The first slice of issue 6: L2 and DHCP on the host's data plane (a bridge per
network, a tap per port, dnsmasq with static leases in a namespace). Security
groups, routers and floating IPs come next.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import openstack.connection
import pytest

from tests.e2e.conftest import Cloud, Tenant, unique
from tests.e2e.test_compute import create, wait_console, wait_status

pytestmark = pytest.mark.skipif(
    os.geteuid() != 0, reason="bridges, taps and network namespaces need root"
)


def _links() -> str:
    return subprocess.run(["ip", "-o", "link"], capture_output=True, text=True, check=True).stdout


def _namespaces() -> str:
    done = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True, check=True)
    return done.stdout


def _cmdlines() -> list[str]:
    out = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                out.append((entry / "cmdline").read_bytes().replace(b"\0", b" ").decode())
            except OSError:
                continue
    return out


PINGER = """#!/bin/sh
( for i in $(seq 1 60); do
    if ping -c 1 -W 1 {peer} >/dev/null 2>&1; then echo "ping {peer} ok"; exit 0; fi
    sleep 1
  done; echo "ping {peer} failed" ) &
"""


@pytest.fixture(scope="module")
def tenant(compute_cloud: Cloud) -> Tenant:
    return compute_cloud.make_tenant("netguests")


@pytest.fixture(scope="module")
def conn(compute_cloud: Cloud, tenant: Tenant) -> openstack.connection.Connection:
    return compute_cloud.connect(tenant.user_name, tenant.password, tenant.project_name)


def test_two_guests_get_their_ports_addresses_and_reach_each_other(
    compute_cloud: Cloud, tenant: Tenant, conn: openstack.connection.Connection
) -> None:
    cli = tenant.cloud_name
    net = compute_cloud.cli_json("network", "create", unique("private"), cloud=cli)
    compute_cloud.cli_json(
        "subnet", "create", "--network", net["id"], "--subnet-range", "10.20.0.0/24",
        unique("sub"), cloud=cli,
    )  # fmt: skip
    port_a = conn.network.create_port(network_id=net["id"], name="a")
    port_b = conn.network.create_port(network_id=net["id"], name="b")
    ip_a = port_a.fixed_ips[0]["ip_address"]
    ip_b = port_b.fixed_ips[0]["ip_address"]
    a = create(conn, unique("a"), PINGER.format(peer=ip_b), networks=[{"port": port_a.id}])
    b = create(conn, unique("b"), PINGER.format(peer=ip_a), networks=[{"port": port_b.id}])
    for server in (a, b):
        wait_status(conn, server.id, "ACTIVE")
    out_a = wait_console(conn, a.id, f"ping {ip_b} ")
    out_b = wait_console(conn, b.id, f"ping {ip_a} ")
    assert f"souverain-guest: ip={ip_a}/24 on eth0" in out_a
    assert f"souverain-guest: ip={ip_b}/24 on eth0" in out_b
    assert f"ping {ip_b} ok" in out_a
    assert f"ping {ip_a} ok" in out_b
    shown = conn.compute.get_server(a.id)
    assert [x["addr"] for x in shown.addresses[net["name"]]] == [ip_a]
    assert conn.network.get_port(port_a.id).status == "ACTIVE"

    # a server on a network by its id gets a new port, released with the server
    c = create(conn, unique("c"), networks=[{"uuid": net["id"]}])
    wait_status(conn, c.id, "ACTIVE")
    (port_c,) = list(conn.network.ports(device_id=c.id))
    ip_c = port_c.fixed_ips[0]["ip_address"]
    wait_console(conn, c.id, f"souverain-guest: ip={ip_c}/24 on eth0")

    for server in (a, b, c):
        conn.compute.delete_server(server)
    for server in (a, b, c):
        conn.compute.wait_for_delete(server, wait=60)
    assert list(conn.network.ports(device_id=c.id)) == []
    kept = conn.network.get_port(port_a.id)  # the customer's own port stays, unbound
    assert kept.device_id == "" and kept.status == "DOWN"
    hex_id = net["id"].replace("-", "")
    assert hex_id[:10] in _links() and net["id"] in _namespaces()
    for port in (port_a, port_b):
        conn.network.delete_port(port)
    compute_cloud.cli_ok("network", "delete", net["id"], cloud=cli)
    # nothing of the network is left in the kernel: no bridge, tap, namespace or dnsmasq
    assert hex_id[:10] not in _links()
    assert net["id"] not in _namespaces()
    assert not [c for c in _cmdlines() if "dnsmasq" in c and hex_id in c.replace("-", "")]
    other = compute_cloud.make_tenant("netguests-other")
    theirs = compute_cloud.connect(other.user_name, other.password, other.project_name)
    refused = compute_cloud.api(
        "POST",
        "/compute/v2.1/servers",
        token=compute_cloud.token_for(other),
        json={
            "server": {
                "name": "x",
                "imageRef": conn.image.find_image("tiny").id,
                "flavorRef": "1",
                "networks": [{"uuid": net["id"]}],
            }
        },
    )
    assert refused.status_code == 400, refused.text
    assert list(theirs.compute.servers()) == []
