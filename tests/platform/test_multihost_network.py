"""Tenant networks across hosts, with real processes and the real kernel: one `souverain
serve` as the network node (DHCP, routers, floating IPs; no guests of its own) and two
`souverain agent` hosts, each in a network namespace of its own on an underlay bridge, with
real tiny guests under QEMU. Driven by openstacksdk as two customers would.

- project A: a1 and a2 (anti-affinity: one on each host) get their DHCP leases from the node
  over VXLAN and ping each other across hosts;
- project B: b1 on the SAME CIDR, with a2's very address, pings a1's address: nothing answers;
- a floating IP on A's guests answers a ping from outside (the node's public bridge), and a
  security group without ICMP on the host's port stops both pings (the agent's firewall).

Teardown: `souverain host decommission` in each host namespace, then the namespaces and the
underlay go; tests/host_hygiene.py checks nothing of the cloud is left."""

from __future__ import annotations

import base64
import contextlib
import itertools
import secrets
import subprocess
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import openstack
import openstack.connection
import pytest

from tests.host_cleanup import kill_guests
from tests.platform.conftest import ADMIN_PASSWORD, SOUVERAIN, Server, ServerFactory, server_env
from tests.vm.guest_support import TINY_IMAGE, build_tiny_image

pytestmark = pytest.mark.e2e
NODE = "netnode"
CIDR = "10.57.0.0/24"
A1_IP, A2_IP = "10.57.0.11", "10.57.0.12"
B1_IP = A2_IP  # the other project's guest holds a2's very address
BOOT = 180.0


def _run(*argv: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    return subprocess.run(argv, capture_output=True, text=True, timeout=30, check=check)


def _held() -> set[str]:
    out = _run("ip", "-4", "-o", "addr").stdout
    return {w.split("/")[0].rsplit(".", 1)[0] for w in out.split() if w.count(".") == 3}


@dataclass
class Underlay:
    """An underlay bridge in the root namespace holding the node's address, and one
    namespace per host with a veth on it (`<tag>-hvN`, address .1N)."""

    tag: str = field(default_factory=lambda: "mh" + secrets.token_hex(2))
    subnet: str = ""
    namespaces: dict[str, str] = field(default_factory=dict)
    addresses: dict[str, str] = field(default_factory=dict)

    @property
    def bridge(self) -> str:
        return f"{self.tag}ul"

    def build(self, hosts: tuple[str, ...]) -> None:
        held = _held()
        self.subnet = next(f"10.253.{n}" for n in range(10, 250) if f"10.253.{n}" not in held)
        self.addresses[NODE] = f"{self.subnet}.1"
        _run("ip", "link", "add", self.bridge, "type", "bridge")
        _run("ip", "addr", "add", f"{self.addresses[NODE]}/24", "dev", self.bridge)
        _run("ip", "link", "set", self.bridge, "up")
        for n, host in enumerate(hosts, start=1):
            namespace, veth = f"{self.tag}-{host}", f"{self.tag}v{n}"
            _run("ip", "netns", "add", namespace)
            self.namespaces[host] = namespace
            self.addresses[host] = f"{self.subnet}.{10 + n}"
            _run("ip", "link", "add", veth, "type", "veth", "peer", "name", "eth0",
                 "netns", namespace)  # fmt: skip
            _run("ip", "link", "set", veth, "master", self.bridge, "up")
            _run("ip", "-n", namespace, "addr", "add", f"{self.addresses[host]}/24", "dev", "eth0")
            _run("ip", "-n", namespace, "link", "set", "eth0", "up")
            _run("ip", "-n", namespace, "link", "set", "lo", "up")

    def remove(self) -> None:
        for namespace in self.namespaces.values():
            _run("ip", "netns", "del", namespace, check=False)
        _run("ip", "link", "del", self.bridge, check=False)


class HostAgent:
    """`souverain agent` (QEMU driver) run inside its host's namespace."""

    def __init__(self, name: str, root: Path, api: Server, namespace: str, address: str) -> None:
        self.name, self.root, self.namespace = name, root, namespace
        root.mkdir(parents=True, exist_ok=True)
        token = root / "token"
        enrolled = _run(
            SOUVERAIN, "host", "enroll", name, "--data-dir", str(api.data_dir),
            "--token-file", str(token), check=False,
        )  # fmt: skip
        assert enrolled.returncode == 0, enrolled.stderr
        self.env = {
            **server_env(
                SOUVERAIN_AGENT__API_URL=api.base,
                SOUVERAIN_AGENT__NAME=name,
                SOUVERAIN_AGENT__TOKEN_FILE=str(token),
                SOUVERAIN_AGENT__DRIVER="qemu",
                SOUVERAIN_AGENT__ADDRESS=address,
                SOUVERAIN_AGENT__HEARTBEAT_INTERVAL="1",
                # a watch answers only when woken: a plan change must bump the host
                SOUVERAIN_AGENT__WATCH_WAIT="60",
                SOUVERAIN_COMPUTE__ACCELERATOR="tcg",  # the proof holds without KVM
            ),
            "SVTEST_NETNS": namespace,
        }
        self.proc: subprocess.Popen[str] | None = None

    @property
    def data_dir(self) -> Path:
        return self.root / "data"

    def start(self) -> None:
        with (self.root / "agent.log").open("a") as log:  # read when a test fails
            self.proc = subprocess.Popen(
                ["ip", "netns", "exec", self.namespace,
                 SOUVERAIN, "agent", "--data-dir", str(self.data_dir)],
                env=self.env, stdout=subprocess.DEVNULL, stderr=log, text=True,
            )  # fmt: skip

    def console(self, server_id: str) -> str:
        path = self.data_dir / "agent" / "compute" / "instances" / server_id / "console.log"
        return path.read_text(errors="replace") if path.exists() else ""

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=30)
        kill_guests(self.data_dir / "agent")  # its QEMUs, found by their files' paths
        gone = _run(
            "ip", "netns", "exec", self.namespace, SOUVERAIN, "host", "decommission",
            "--data-dir", str(self.data_dir), check=False,
        )  # fmt: skip
        assert gone.returncode == 0, gone.stderr


@pytest.fixture
def underlay() -> Iterator[Underlay]:
    lab = Underlay()
    try:
        lab.build(("hv1", "hv2"))
        yield lab
    finally:
        lab.remove()


@pytest.fixture
def node(make_server: ServerFactory, underlay: Underlay) -> Server:
    build_tiny_image()
    address = underlay.addresses[NODE]
    return make_server(
        SOUVERAIN_SERVER__HOST=address,
        SOUVERAIN_COMPUTE__LOCAL_HOST="false",
        SOUVERAIN_NETWORK__OVERLAY="vxlan",
        SOUVERAIN_NETWORK__NODE_NAME=NODE,
        SOUVERAIN_NETWORK__NODE_ADDRESS=address,
        SOUVERAIN_NETWORK__NODE_INTERVAL="0.5",
        SOUVERAIN_IMAGE__TINY_IMAGE=str(TINY_IMAGE),
    ).start(timeout=60)


@pytest.fixture
def hosts(node: Server, underlay: Underlay, tmp_path: Path) -> Iterator[dict[str, HostAgent]]:
    made = {
        name: HostAgent(
            name, tmp_path / name, node, underlay.namespaces[name], underlay.addresses[name]
        )
        for name in ("hv1", "hv2")
    }
    try:
        for agent in made.values():
            agent.start()
        yield made
    finally:
        for agent in made.values():
            agent.stop()


def _until(check: Callable[[], Any], within: float, what: str) -> Any:
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        result = check()
        if result:
            return result
        time.sleep(0.5)
    raise AssertionError(f"not within {within} s: {what}")


def _connect(api: Server, user: str, password: str, project: str) -> Any:
    return openstack.connect(
        auth_url=api.auth_url,
        username=user,
        password=password,
        project_name=project,
        user_domain_name="Default",
        project_domain_name="Default",
        load_yaml_config=False,
        load_envvars=False,
        compute_api_version="2.90",
    )


def _tenant(admin: Any, api: Server, name: str) -> Any:
    project = admin.identity.create_project(name=name, domain_id="default")
    password = secrets.token_urlsafe(12)
    user = admin.identity.create_user(
        name=name, password=password, default_project_id=project.id, domain_id="default"
    )
    member = admin.identity.find_role("member", ignore_missing=False)
    admin.identity.assign_project_role_to_user(project, user, member)
    return _connect(api, name, password, name)


def _pinger(peer: str, label: str) -> str:
    """User data: print each second whether `peer` answers a ping."""
    script = f"""#!/bin/sh
(
while true; do
  if ping -c 1 -W 1 {peer} >/dev/null 2>&1; then echo "{label} ok"; else echo "{label} fail"; fi
  sleep 1
done
) &
"""
    return base64.b64encode(script.encode()).decode()


def _network(conn: Any, name: str) -> tuple[Any, Any]:
    net = conn.network.create_network(name=name)
    subnet = conn.network.create_subnet(
        network_id=net.id, cidr=CIDR, ip_version=4, name=f"{name}-sub"
    )
    return net, subnet


def _boot(conn: Any, name: str, port: Any, user_data: str, group: Any = None) -> Any:
    image = conn.image.find_image("tiny", ignore_missing=False)
    flavor = conn.compute.find_flavor("t1.nano", ignore_missing=False)
    return conn.compute.create_server(
        name=name,
        image_id=image.id,
        flavor_id=flavor.id,
        networks=[{"port": port.id}],
        user_data=user_data,
        **({"scheduler_hints": {"group": group.id}} if group is not None else {}),
    )


def _active(conn: Any, server_id: str) -> Any:
    def ready() -> Any:
        server = conn.compute.get_server(server_id)
        assert server.status != "ERROR", server.fault
        return server.status == "ACTIVE" and server

    return _until(ready, BOOT, f"server {server_id} ACTIVE")


def _leases(node: Server) -> str:
    """Every dnsmasq lease the node handed out (its run dir: network/host.py)."""
    from souverain.network.host import host_network

    root = host_network(node.data_dir, make_run_dir=False).dataplane.run_dir
    return "\n".join(p.read_text() for p in root.rglob("leases"))


def _ping(address: str) -> bool:
    return _run("ping", "-n", "-c", "1", "-W", "1", address, check=False).returncode == 0


def _live_migrate_under_ping(admin: Any, server_id: str, target: str, address: str) -> float:
    """Live-migrate the server to `target` while `address` is pinged every 0.2 s; the
    longest time without an answer (seconds)."""
    answers: list[float] = []
    stop = threading.Event()

    def probe() -> None:
        while not stop.is_set():
            if _ping(address):
                answers.append(time.monotonic())
            stop.wait(0.2)

    pinger = threading.Thread(target=probe, daemon=True)
    pinger.start()
    try:
        _until(lambda: len(answers) >= 3, 30, "the floating IP answers before the move")
        admin.compute.live_migrate_server(server_id, host=target, block_migration="auto")

        def moved() -> bool:
            server = admin.compute.get_server(server_id)
            assert server.status != "ERROR", server.fault
            return bool(server.status == "ACTIVE" and server.compute_host == target)

        _until(moved, 180, f"server {server_id} live on {target}")
        settled = len(answers)
        _until(lambda: len(answers) >= settled + 5, 30, "the floating IP answers after")
    finally:
        stop.set()
        pinger.join(timeout=10)
    return max(b - a for a, b in itertools.pairwise(answers))


def _count(text: str, line: str) -> int:
    return sum(1 for x in text.splitlines() if x.strip().endswith(line))


@pytest.mark.parametrize("backend", ["sqlite"], indirect=True)  # the data plane is tried here
def test_tenant_networks_span_hosts_over_vxlan(
    node: Server, hosts: dict[str, HostAgent], underlay: Underlay
) -> None:
    admin = _connect(node, "admin", ADMIN_PASSWORD, "admin")
    _until(
        lambda: (
            {h.name for h in admin.compute.hypervisors(details=True) if h.state == "up"}
            >= {"hv1", "hv2"}
        ),
        60,
        "both agents reported",
    )
    tag = uuid.uuid4().hex[:6]
    conn_a, conn_b = _tenant(admin, node, f"a-{tag}"), _tenant(admin, node, f"b-{tag}")

    net_a, sub_a = _network(conn_a, "net-a")
    net_b, _ = _network(conn_b, "net-b")
    default_a = next(conn_a.network.security_groups(name="default"))
    conn_a.network.create_security_group_rule(
        security_group_id=default_a.id, direction="ingress", protocol="icmp"
    )  # the outside pings the floating IP
    a1_port = conn_a.network.create_port(network_id=net_a.id, fixed_ips=[{"ip_address": A1_IP}])
    a2_port = conn_a.network.create_port(network_id=net_a.id, fixed_ips=[{"ip_address": A2_IP}])
    b1_port = conn_b.network.create_port(network_id=net_b.id, fixed_ips=[{"ip_address": B1_IP}])
    # soft: spread at boot, yet a2 may later move to a1's host
    apart = conn_a.compute.create_server_group(name="apart", policy="soft-anti-affinity")

    started = time.monotonic()
    a1 = _boot(conn_a, "a1", a1_port, _pinger(A2_IP, "a1->a2"), apart)
    a2 = _boot(conn_a, "a2", a2_port, _pinger(A1_IP, "a2->a1"), apart)
    b1 = _boot(conn_b, "b1", b1_port, _pinger(A1_IP, "b1->a1"))
    a1, a2, b1 = (_active(c, s.id) for c, s in ((conn_a, a1), (conn_a, a2), (conn_b, b1)))
    on = {s.id: admin.compute.get_server(s.id).compute_host for s in (a1, a2, b1)}
    assert {on[a1.id], on[a2.id]} == {"hv1", "hv2"}  # one network, two hosts
    agent = {s.id: hosts[on[s.id]] for s in (a1, a2, b1)}

    # DHCP from the node over VXLAN: the node's dnsmasq leased each guest its address
    for server, port, ip in ((a1, a1_port, A1_IP), (a2, a2_port, A2_IP), (b1, b1_port, B1_IP)):
        _until(
            lambda s=server, i=ip: f"ip={i}/24 on eth0" in agent[s.id].console(s.id),
            BOOT,
            f"{server.name} configured by DHCP",
        )
        _until(lambda p=port: p.mac_address in _leases(node), 10, f"{server.name}'s lease")

    # one L2 across hosts: a1 and a2 ping each other
    _until(lambda: _count(agent[a1.id].console(a1.id), "a1->a2 ok") >= 2, 60, "a1 pings a2")
    _until(lambda: _count(agent[a2.id].console(a2.id), "a2->a1 ok") >= 2, 30, "a2 pings a1")

    # project B, same CIDR, a2's address: a1's address is not there for it
    _until(lambda: _count(agent[b1.id].console(b1.id), "b1->a1 fail") >= 5, 60, "b1 tried")
    assert _count(agent[b1.id].console(b1.id), "b1->a1 ok") == 0

    # a floating IP of A's router: the outside (the node's public bridge) pings a2
    public = conn_a.network.find_network("public", ignore_missing=False)
    router = conn_a.network.create_router(
        name="edge", external_gateway_info={"network_id": public.id}
    )
    conn_a.network.add_interface_to_router(router, subnet_id=sub_a.id)
    fip = conn_a.network.create_ip(floating_network_id=public.id, port_id=a2_port.id)
    _until(lambda: _ping(fip.floating_ip_address), 60, f"floating IP {fip.floating_ip_address}")

    # live migration: a2 moves to a1's host, its network follows, its floating IP answers
    source, target = on[a2.id], on[a1.id]
    longest = _live_migrate_under_ping(admin, a2.id, target, fip.floating_ip_address)
    print(f"live migration: the floating IP longest without an answer: {longest:.1f} s")
    assert longest < 10.0, f"the floating IP did not answer for {longest:.1f} s"
    _until(lambda: not hosts[source].console(a2.id), 30, "the source removed its copy")
    agent[a2.id] = hosts[target]
    before = len(agent[a1.id].console(a1.id))
    _until(
        lambda: _count(agent[a1.id].console(a1.id)[before:], "a1->a2 ok") >= 2,
        30,
        "a1 still pings a2, now beside it",
    )

    # a group without ICMP ingress on a2's port: its host's firewall stops both pings
    quiet = conn_a.network.create_security_group(name="no-icmp")
    conn_a.network.update_port(a2_port, security_groups=[quiet.id])
    before = len(agent[a1.id].console(a1.id))
    _until(
        lambda: _count(agent[a1.id].console(a1.id)[before:], "a1->a2 fail") >= 3,
        30,
        "a1 no longer reaches a2",
    )
    assert not any(_ping(fip.floating_ip_address) for _ in range(3))
    assert time.monotonic() - started < 360, "the proof took longer than its budget"

    for conn, server in ((conn_a, a1), (conn_a, a2), (conn_b, b1)):
        conn.compute.delete_server(server.id)
    for server in (a1, a2, b1):
        _until(lambda s=server: admin.compute.find_server(s.id) is None, 60, "servers deleted")
    with contextlib.suppress(Exception):
        conn_a.network.delete_ip(fip)


def test_decommission_removes_the_clouds_vxlan_devices(tmp_path: Path) -> None:
    from souverain.network.host import host_network
    from souverain.network.overlay import Overlay, Segment

    host = host_network(tmp_path / "data")
    network_id = str(uuid.uuid4())
    try:
        bridge = host.dataplane.ensure_network(network_id, 1450)
        overlay = Overlay(host.dataplane.prefix, "10.254.77.1")
        vni = 100000 + secrets.randbelow(1 << 23)
        overlay.reconcile([Segment(network_id, vni, bridge, frozenset({"10.254.77.2"}))])
        (device,) = overlay.inventory()["vxlans"]
        done = host.decommission()
        assert done["removed_vxlans"] == [device]
        assert overlay.inventory()["vxlans"] == []
        names = [
            line.split(": ")[1].split("@")[0]
            for line in _run("ip", "-o", "link").stdout.splitlines()
        ]
        assert not [n for n in names if n.startswith(host.dataplane.prefix)]
    finally:
        host.decommission()
