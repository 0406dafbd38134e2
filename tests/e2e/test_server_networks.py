"""Servers on private networks: DHCP gives each guest its port's address; they reach each
other; `networks: auto` gives a project its own network and router (get-me-a-network); ports
are plugged into and out of a running guest.

Security groups, routers and floating IPs are proved in test_network_security.py.
"""

from __future__ import annotations

import os
import socket
import subprocess
import threading
import time
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


def test_auto_is_get_me_a_network_with_a_way_out(
    compute_cloud: Cloud, tenant: Tenant, conn: openstack.connection.Connection
) -> None:
    """`networks: auto` gives the project a private network, subnet and router to public
    (made once); the guest gets an address by DHCP and reaches the outside through SNAT."""
    public = compute_cloud.admin.network.find_network("public", ignore_missing=False)
    gateway = compute_cloud.admin.network.get_subnet(public.subnet_ids[0]).gateway_ip
    listener = socket.create_server((gateway, 0))
    listener.settimeout(120)
    seen: list[str] = []

    def accept() -> None:
        try:
            peer, address = listener.accept()
        except OSError:
            return
        seen.append(address[0])
        peer.close()

    waiter = threading.Thread(target=accept, daemon=True)
    waiter.start()
    port = listener.getsockname()[1]
    script = (
        "#!/bin/sh\n"
        "( for i in $(seq 1 60); do\n"
        f"    if echo hi | nc -w 3 {gateway} {port} >/dev/null 2>&1; then echo reach=out; exit; fi\n"
        "    sleep 1\n"
        "  done; echo reach=none ) &\n"
    )
    try:
        first = create(conn, unique("auto"), script, networks="auto")
        second = create(conn, unique("auto"), networks="auto")
        for server in (first, second):
            wait_status(conn, server.id, "ACTIVE")
        output = wait_console(conn, first.id, "reach=")
        assert "reach=out" in output
        waiter.join(10)
    finally:
        listener.close()
    (network,) = list(conn.network.networks(name="auto_allocated_network"))
    (router,) = list(conn.network.routers(name="auto_allocated_router"))
    assert router.external_gateway_info["network_id"] == public.id
    router_ip = router.external_gateway_info["external_fixed_ips"][0]["ip_address"]
    assert seen == [router_ip], "the host saw the router's address (SNAT)"
    for server in (first, second):
        (port_row,) = list(conn.network.ports(device_id=server.id))
        assert port_row.network_id == network.id
        address = port_row.fixed_ips[0]["ip_address"]
        wait_console(conn, server.id, f"souverain-guest: ip={address}/24 on eth0")
        shown = conn.compute.get_server(server.id).addresses["auto_allocated_network"]
        assert [x["addr"] for x in shown] == [address]
    for server in (first, second):
        conn.compute.delete_server(server)
    for server in (first, second):
        conn.compute.wait_for_delete(server, wait=60)


HOTPLUG = """#!/bin/sh
( while [ ! -e /sys/class/net/eth1 ]; do sleep 1; done
  echo "eth1 arrived"
  ip link set eth1 up
  udhcpc -i eth1 -t 10 -T 1 -A 1 -n -q -s /etc/souverain/udhcpc.script >/dev/null 2>&1
  echo "eth1 $(ip -o -4 addr show eth1 | awk '{print $4}')"
  while [ -e /sys/class/net/eth1 ]; do sleep 1; done
  echo "eth1 gone" ) &
"""


def test_cli_adds_and_removes_a_port_on_a_running_server(
    compute_cloud: Cloud, tenant: Tenant, conn: openstack.connection.Connection
) -> None:
    cli = tenant.cloud_name
    first = conn.network.create_network(name=unique("first"))
    conn.network.create_subnet(network_id=first.id, cidr="10.61.0.0/24", ip_version=4)
    second = conn.network.create_network(name=unique("second"))
    conn.network.create_subnet(network_id=second.id, cidr="10.62.0.0/24", ip_version=4)
    server = create(conn, unique("hot"), HOTPLUG, networks=[{"uuid": first.id}])
    wait_status(conn, server.id, "ACTIVE")
    wait_console(conn, server.id, "souverain-guest: ready")
    extra = conn.network.create_port(network_id=second.id, name="extra")
    address = extra.fixed_ips[0]["ip_address"]
    compute_cloud.cli_ok("server", "add", "port", server.id, extra.id, cloud=cli)
    wait_console(conn, server.id, f"eth1 {address}/24")
    bound = conn.network.get_port(extra.id)
    assert bound.device_id == server.id and bound.status == "ACTIVE"
    listed = compute_cloud.cli_json("port", "list", "--server", server.id, cloud=cli)
    assert {p["ID"] for p in listed} == {
        extra.id,
        *[p.id for p in conn.network.ports(device_id=server.id)],
    }
    shown = conn.compute.get_server(server.id).addresses
    assert [x["addr"] for x in shown[second.name]] == [address]
    # another project cannot see the interfaces or detach them
    other = compute_cloud.make_tenant("hot-other")
    token = compute_cloud.token_for(other)
    path = f"/compute/v2.1/servers/{server.id}/os-interface"
    assert compute_cloud.api("GET", path, token=token).status_code == 404
    assert compute_cloud.api("DELETE", f"{path}/{extra.id}", token=token).status_code == 404
    compute_cloud.cli_ok("server", "remove", "port", server.id, extra.id, cloud=cli)
    wait_console(conn, server.id, "eth1 gone")
    deadline = time.monotonic() + 30
    while conn.network.get_port(extra.id).device_id and time.monotonic() < deadline:
        time.sleep(0.5)
    kept = conn.network.get_port(extra.id)  # the customer's port stays, unbound
    assert kept.device_id == "" and kept.status == "DOWN"
    assert extra.id.replace("-", "")[:10] not in _links(), "its tap is gone"
    assert second.name not in conn.compute.get_server(server.id).addresses
    conn.compute.delete_server(server)
    conn.compute.wait_for_delete(server, wait=60)
    conn.network.delete_port(extra)
    for net in (first, second):
        conn.network.delete_network(net)
