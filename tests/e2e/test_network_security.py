"""Security groups, routers and floating IPs on real guests, driven by the `openstack` CLI.

One cloud of its own (it is restarted mid-test) with its own external network. Tenant A
has a private network behind a router to `public`; its servers are in a group `web`
that opens TCP 8080 and, at first, no ICMP. The guests report on their serial console:

- a1 serves HTTP on 8080 and 9090 (busybox httpd);
- a2 pings a1 until it answers (blocked until the ICMP rule exists), then asks a service
  on the host (through its router: SNAT) which address it saw, then changes its own IP
  and pings again (anti-spoofing: dropped), then takes its own address back and ticks.

Tenant B has the same CIDR on its own network, a server with a2's very address, and no
path to A's guests. The host reaches a1 through its floating IP on 8080 but not on 9090.
After a kill -9 and restart of `souverain serve` the guests still talk. At the end, with
everything deleted, the kernel holds nothing of theirs.
"""

from __future__ import annotations

import hashlib
import http.server
import json
import os
import shutil
import signal
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from souverain.server import _dataplane_prefix
from tests.e2e.conftest import Cloud, CloudFactory, unique
from tests.e2e.test_compute import console, create, wait_console, wait_status
from tests.host_cleanup import kill_guests
from tests.public_net import public_network_env

pytestmark = pytest.mark.skipif(
    os.geteuid() != 0 or shutil.which("nft") is None,
    reason="bridges, taps, namespaces and nftables need root and the nft tool",
)

CIDR = "10.44.0.0/24"
SNAT_PORT = 18080

A1 = """#!/bin/sh
mkdir -p /www
echo "hello from $(hostname)" > /www/index.html
httpd -p 8080 -h /www
httpd -p 9090 -h /www
echo "a1 serving"
"""

A2 = """#!/bin/sh
(
me={me}; peer={peer}
n=0
until ping -c 1 -W 1 $peer >/dev/null 2>&1; do
  n=$((n+1)); echo "ping $peer fail $n"; sleep 1
done
echo "ping $peer ok"
seen=$(printf 'GET / HTTP/1.0\r\n\r\n' | nc -w 10 {host} {port} | tail -n 1)
echo "snat seen=$seen"
ip addr add {spoof}/24 dev eth0
ip addr del $me/24 dev eth0
if ping -c 4 -W 1 $peer >/dev/null 2>&1; then echo "spoofed ping ok"; else echo "spoofed ping dropped"; fi
ip addr add $me/24 dev eth0
ip addr del {spoof}/24 dev eth0
ip route add default via {gateway} 2>/dev/null
until ping -c 1 -W 1 $peer >/dev/null 2>&1; do sleep 1; done
echo "own address ping ok"
while true; do
  if ping -c 1 -W 2 $peer >/dev/null 2>&1; then echo "tick ok"; else echo "tick fail"; fi
  sleep 2
done
) &
"""

B1 = """#!/bin/sh
(
until ping -c 1 -W 1 {dhcp} >/dev/null 2>&1; do sleep 1; done
echo "own network ok"
if ping -c 4 -W 1 {a1} >/dev/null 2>&1; then echo "cross ping ok"; else echo "cross ping dropped"; fi
) &
"""


class _SeenHandler(http.server.BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        body = self.client_address[0].encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *_: Any) -> None:
        return None


@pytest.fixture(scope="module")
def public() -> dict[str, str]:
    return public_network_env()


@pytest.fixture(scope="module")
def net_cloud(
    start_cloud: CloudFactory, tiny_image_file: Path, public: dict[str, str]
) -> Iterator[Cloud]:
    cloud = start_cloud(
        "netsec",
        SOUVERAIN_IMAGE__TINY_IMAGE=str(tiny_image_file),
        SOUVERAIN_COMPUTE__SHUTDOWN_TIMEOUT="20",
        SOUVERAIN_COMPUTE__SYNC_INTERVAL="1",
        SOUVERAIN_NETWORK__EGRESS_SAMPLE_INTERVAL="1",
        **public,
    )
    try:
        yield cloud
    finally:
        kill_guests(cloud.server.data_dir)


def _kernel(data_dir: Path) -> dict[str, str]:
    """What the host holds now; the firewall and NAT tables only of this cloud's prefix."""

    def out(*argv: str) -> str:
        return subprocess.run(argv, capture_output=True, text=True, check=False).stdout

    digest = hashlib.sha256(str(data_dir.resolve()).encode()).hexdigest()
    prefix = _dataplane_prefix(digest)
    cmdlines = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                cmdlines.append((entry / "cmdline").read_bytes().replace(b"\0", b" ").decode())
            except OSError:
                continue
    return {
        "links": out("ip", "-o", "link"),
        "netns": out("ip", "netns", "list"),
        "nft": "\n".join(
            json.dumps(item)
            for item in json.loads(out("nft", "-j", "list", "ruleset"))["nftables"]
            if next(iter(item.values()))
            .get("table", next(iter(item.values())).get("name", ""))
            .startswith(f"souverain-{prefix}")
        ),
        "procs": "\n".join(c for c in cmdlines if "dnsmasq" in c),
    }


def _fip_get(address: str, port: int, timeout: float = 3.0) -> str | None:
    try:
        return httpx.get(f"http://{address}:{port}/", timeout=timeout).text.strip()
    except httpx.HTTPError:
        return None


def _wait_fip(address: str, port: int, timeout: float = 60.0) -> str:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        answer = _fip_get(address, port)
        if answer:
            return answer
        time.sleep(1)
    pytest.fail(f"{address}:{port} never answered")


def test_groups_routers_floating_ips_and_anti_spoofing(
    net_cloud: Cloud, public: dict[str, str], tiny_image_file: Path
) -> None:
    cloud = net_cloud
    host_ip = public["SOUVERAIN_NETWORK__PUBLIC_GATEWAY"]
    a, b = cloud.make_tenant("neta"), cloud.make_tenant("netb")
    conn_a = cloud.connect(a.user_name, a.password, a.project_name)
    conn_b = cloud.connect(b.user_name, b.password, b.project_name)
    cli = a.cloud_name

    # --- tenant A's topology, as a customer types it
    net = cloud.cli_json("network", "create", unique("neta"), cloud=cli)
    subnet = cloud.cli_json(
        "subnet", "create", "--network", net["id"], "--subnet-range", CIDR, unique("sub"),
        cloud=cli,
    )  # fmt: skip
    router = cloud.cli_json("router", "create", unique("edge"), cloud=cli)
    cloud.cli_ok("router", "set", "--external-gateway", "public", router["id"], cloud=cli)
    cloud.cli_ok("router", "add", "subnet", router["id"], subnet["id"], cloud=cli)
    shown = cloud.cli_json("router", "show", router["id"], cloud=cli)
    gateway_info = shown["external_gateway_info"]
    if isinstance(gateway_info, str):  # older clients print it as JSON text
        gateway_info = json.loads(gateway_info)
    router_ip = gateway_info["external_fixed_ips"][0]["ip_address"]
    group = cloud.cli_json("security", "group", "create", unique("web"), cloud=cli)
    cloud.cli_ok(
        "security", "group", "rule", "create", "--protocol", "tcp", "--dst-port", "8080",
        "--ingress", group["id"], cloud=cli,
    )  # fmt: skip

    # a1 at .50: on B's network (same CIDR) nothing holds that address, B's DHCP port is .2
    port_a1 = conn_a.network.create_port(
        network_id=net["id"],
        security_group_ids=[group["id"]],
        fixed_ips=[{"subnet_id": subnet["id"], "ip_address": "10.44.0.50"}],
    )
    port_a2 = conn_a.network.create_port(network_id=net["id"], security_group_ids=[group["id"]])
    ip_a1 = port_a1.fixed_ips[0]["ip_address"]
    ip_a2 = port_a2.fixed_ips[0]["ip_address"]
    a1 = create(conn_a, unique("a1"), A1, networks=[{"port": port_a1.id}])
    a2_script = A2.format(
        me=ip_a2, peer=ip_a1, host=host_ip, port=SNAT_PORT, spoof="10.44.0.99", gateway="10.44.0.1"
    )
    a2 = create(conn_a, unique("a2"), a2_script, networks=[{"port": port_a2.id}])

    # --- tenant B: same CIDR, a server holding a2's very address, no router
    net_b = conn_b.network.create_network(name=unique("netb"))
    conn_b.network.create_subnet(network_id=net_b.id, cidr=CIDR, ip_version=4)
    b1 = create(
        conn_b, unique("b1"), B1.format(dhcp="10.44.0.2", a1=ip_a1),
        networks=[{"uuid": net_b.id, "fixed_ip": ip_a2}],
    )  # fmt: skip

    seen_server = http.server.ThreadingHTTPServer((host_ip, SNAT_PORT), _SeenHandler)
    threading.Thread(target=seen_server.serve_forever, daemon=True).start()
    try:
        for server, conn in ((a1, conn_a), (a2, conn_a), (b1, conn_b)):
            wait_status(conn, server.id, "ACTIVE")
        wait_console(conn_a, a1.id, "a1 serving")
        assert f"ip={ip_a1}/24 on eth0" in console(conn_a, a1.id)

        # the group has no ICMP rule: a2's pings keep failing while a1 is up
        failures = console(conn_a, a2.id).count(f"ping {ip_a1} fail")
        wait_console(conn_a, a2.id, f"ping {ip_a1} fail", count=failures + 3, timeout=60)
        assert f"ping {ip_a1} ok" not in console(conn_a, a2.id)

        # the host reaches a1 through a floating IP, on the port the group opens only
        fip = cloud.cli_json("floating", "ip", "create", "public", cloud=cli)
        address = fip["floating_ip_address"]
        cloud.cli_ok("server", "add", "floating", "ip", a1.id, address, cloud=cli)
        assert _wait_fip(address, 8080) == f"hello from {a1.name}"
        assert _fip_get(address, 9090) is None, "9090 is not opened by the group"
        addresses = conn_a.compute.get_server(a1.id).addresses[net["name"]]
        assert {(x["addr"], x["OS-EXT-IPS:type"]) for x in addresses} == {
            (ip_a1, "fixed"),
            (address, "floating"),
        }

        # adding the ICMP rule lets the ping through, nothing restarted
        cloud.cli_ok(
            "security", "group", "rule", "create", "--protocol", "icmp", "--ingress",
            group["id"], cloud=cli,
        )  # fmt: skip
        out = wait_console(conn_a, a2.id, "own address ping ok", timeout=90)
        assert f"ping {ip_a1} ok" in out
        # through the router, the host saw the router's address, not the guest's
        seen = [line for line in out.splitlines() if "snat seen=" in line]
        assert seen == [f"snat seen={router_ip}"], seen
        # a guest that takes another address cannot talk
        assert "spoofed ping dropped" in out and "spoofed ping ok" not in out

        # tenant B, same CIDR and same address as a2, reaches its own network but not A
        out_b = wait_console(conn_b, b1.id, "cross ping", timeout=90)
        assert "own network ok" in out_b and "cross ping dropped" in out_b

        # kill -9 and restart: the guests keep talking, the floating IP still answers
        ticks = wait_console(conn_a, a2.id, "tick ok").count("tick ok")
        assert cloud.server.proc is not None
        cloud.server.proc.send_signal(signal.SIGKILL)
        cloud.server.proc.wait()
        assert _fip_get(address, 8080) == f"hello from {a1.name}", "the data plane needs no API"
        again = Cloud.start(
            cloud.workdir,
            SOUVERAIN_IMAGE__TINY_IMAGE=str(tiny_image_file),
            SOUVERAIN_COMPUTE__SYNC_INTERVAL="1",
            SOUVERAIN_NETWORK__EGRESS_SAMPLE_INTERVAL="1",
            **public,
        )
        conn_a = again.connect(a.user_name, a.password, a.project_name)
        again.add_cloud(cli, a.user_name, a.password, a.project_name)
        wait_status(conn_a, a2.id, "ACTIVE")
        wait_console(conn_a, a2.id, "tick ok", count=ticks + 3, timeout=60)
        assert _wait_fip(address, 8080) == f"hello from {a1.name}"
        assert _fip_get(address, 9090) is None

        # what left through the router is metered: the operator puts tenant A's project in
        # an account, whose consumption shows the router's egress and the floating IP
        admin = again.admin_token()
        account = again.api(
            "POST",
            "/billing/v1/accounts",
            token=admin,
            json={"account": {"name": "Tenant A SAS", "country": "FR"}},
        ).json()["account"]
        attached = again.api(
            "POST",
            f"/billing/v1/accounts/{account['id']}/projects",
            token=admin,
            json={"project": {"project_id": a.project_id}},
        )
        assert attached.status_code == 201, attached.text
        deadline = time.monotonic() + 30
        usage: dict[str, Any] = {}
        while time.monotonic() < deadline:
            usage = again.api(
                "GET", f"/billing/v1/accounts/{account['id']}/consumption", token=admin
            ).json()["consumption"]
            if any(i["resource_id"] == router["id"] for i in usage["items"]):
                break
            time.sleep(1)
        metered = {(i["resource_type"], i["resource_id"]) for i in usage["items"]}
        assert ("egress.gb", router["id"]) in metered, usage
        assert ("router", router["id"]) in metered and ("floatingip", fip["id"]) in metered
        assert ("instance", a1.id) in metered

        # remove the floating IP: the host no longer gets in
        again.cli_ok("server", "remove", "floating", "ip", a1.id, address, cloud=cli)
        assert _fip_get(address, 8080) is None
    finally:
        seen_server.shutdown()
        seen_server.server_close()

    # --- delete everything: nothing of it is left in the kernel
    conn_b = again.connect(b.user_name, b.password, b.project_name)
    taps = [port_a1.id, port_a2.id, *[p.id for p in conn_b.network.ports(device_id=b1.id)]]
    for server, conn in ((a1, conn_a), (a2, conn_a), (b1, conn_b)):
        conn.compute.delete_server(server)
    for server, conn in ((a1, conn_a), (a2, conn_a), (b1, conn_b)):
        conn.compute.wait_for_delete(server, wait=90)
    again.cli_ok("floating", "ip", "delete", address, cloud=cli)
    again.cli_ok("router", "remove", "subnet", router["id"], subnet["id"], cloud=cli)
    again.cli_ok("router", "delete", router["id"], cloud=cli)
    for port in (port_a1, port_a2):
        conn_a.network.delete_port(port)
    again.cli_ok("security", "group", "delete", group["id"], cloud=cli)
    again.cli_ok("network", "delete", net["id"], cloud=cli)
    conn_b.network.delete_network(net_b)
    kernel = _kernel(again.server.data_dir)
    assert '"table": "souverain-' in kernel["nft"], "the cloud's own tables are looked at"
    for network_id in (net["id"], net_b.id):
        hex_id = network_id.replace("-", "")
        assert hex_id[:10] not in kernel["links"], f"a link of {network_id} is left"
        assert network_id not in kernel["netns"], f"a namespace of {network_id} is left"
        assert hex_id not in kernel["procs"].replace("-", ""), f"dnsmasq of {network_id} is left"
    assert router["id"] not in kernel["netns"], "the router's namespace is left"
    for port_id in taps:
        assert port_id.replace("-", "")[:10] not in kernel["links"], f"port {port_id} is left"
    for value in (ip_a1, ip_a2, address, port_a1.mac_address, port_a2.mac_address):
        assert value not in kernel["nft"], f"{value} is still in a firewall or NAT rule"
    again.stop_and_check()
