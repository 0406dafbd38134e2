"""Security groups and anti-spoofing on the real kernel, proved with real packets.

Guests are network namespaces whose veth's host end plays the tap in a bridge made with
`bridge_nf_options()`. Every test uses its own random prefix for links, namespaces and
tables, and removes all it made.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from pyroute2 import IPRoute  # type: ignore[import-untyped]

from souverain.network.dataplane import Dataplane, DhcpHost, SubnetSpec
from souverain.network.firewall import (
    Firewall,
    NetworkZone,
    PortFilter,
    Rule,
    bridge_nf_options,
)

BUSYBOX = shutil.which("busybox") or "busybox"

# Listens on a port in a namespace and echoes every line back, one thread per connection.
ECHO_SERVER = """
import socket, sys, threading
def serve(conn):
    with conn, conn.makefile("rwb", buffering=0) as f:
        for line in f:
            f.write(line)
s = socket.socket()
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("0.0.0.0", int(sys.argv[1])))
s.listen(16)
print("ready", flush=True)
while True:
    threading.Thread(target=serve, args=(s.accept()[0],), daemon=True).start()
"""

# Connects (optionally from a fixed source port), then for each stdin line sends it and
# prints the echo, or "timeout"; prints "connected" or "failed" first.
ECHO_CLIENT = """
import socket, sys
s = socket.socket()
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
if int(sys.argv[3]):
    s.bind(("0.0.0.0", int(sys.argv[3])))
s.settimeout(1.5)
try:
    s.connect((sys.argv[1], int(sys.argv[2])))
except OSError as exc:
    print("failed", exc, flush=True)
    sys.exit(0)
print("connected", flush=True)
f = s.makefile("rb", buffering=0)
for line in sys.stdin:
    try:
        s.sendall(line.encode())
        print(f.readline().decode().strip() or "closed", flush=True)
    except OSError:
        print("timeout", flush=True)
"""


def _platform_works() -> str | None:
    if os.geteuid() != 0:
        return "needs root (network namespaces, bridges, nftables)"
    if shutil.which("nft") is None or shutil.which("ip") is None or shutil.which("busybox") is None:
        return "needs nft, ip and busybox"
    if not Path("/proc/sys/net/bridge").exists():
        return "needs br_netfilter (/proc/sys/net/bridge is missing)"
    proc = subprocess.run(["nft", "-j", "list", "tables"], capture_output=True, text=True)
    if proc.returncode != 0:
        return f"`nft list tables` does not work here: {proc.stderr.strip()}"
    probe = f"svprobe-{secrets.token_hex(4)}"
    try:
        subprocess.run(["ip", "netns", "add", probe], check=True, capture_output=True)
    except subprocess.CalledProcessError as exc:
        return f"`ip netns add` does not work here: {exc.stderr.decode().strip()}"
    subprocess.run(["ip", "netns", "del", probe], check=False, capture_output=True)
    return None


_SKIP = _platform_works()
pytestmark = pytest.mark.skipif(_SKIP is not None, reason=_SKIP or "")

ALLOW_ALL_EGRESS = Rule("egress", "IPv4", None, None, None, None, None)
ICMP_IN = Rule("ingress", "IPv4", "icmp", None, None, None, None)


def _run(*argv: str, check: bool = True, timeout: float = 15) -> subprocess.CompletedProcess[str]:
    return subprocess.run(argv, check=check, capture_output=True, text=True, timeout=timeout)


@dataclass
class Guest:
    namespace: str
    tap: str  # the host end of its veth, in the bridge
    mac: str
    ip: str

    def port(self, *rules: Rule, pairs: tuple[tuple[str, str | None], ...] = ()) -> PortFilter:
        return PortFilter(self.tap, self.mac, (self.ip,), pairs, (ALLOW_ALL_EGRESS, *rules))

    def pings(self, ip: str) -> bool:
        """One echo answered within a second: the way to prove something is blocked."""
        argv = ["ip", "netns", "exec", self.namespace, BUSYBOX, "ping", "-c1", "-W1", ip]
        return _run(*argv, check=False).returncode == 0

    def reaches(self, ip: str) -> bool:
        """An echo answered within three tries: the way to prove something gets through."""
        return any(self.pings(ip) for _ in range(3))

    def sh(self, *argv: str) -> None:
        _run("ip", "netns", "exec", self.namespace, *argv)


@dataclass
class Lab:
    """Bridges, guests, echo processes and firewalls with one random prefix; all removed."""

    prefix: str = field(default_factory=lambda: f"f{secrets.token_hex(2)[:3]}")
    bridges: list[str] = field(default_factory=list)
    guests: list[Guest] = field(default_factory=list)
    procs: list[subprocess.Popen[str]] = field(default_factory=list)
    firewalls: list[Firewall] = field(default_factory=list)

    def firewall(self, suffix: str = "") -> Firewall:
        fw = Firewall(f"{self.prefix}{suffix}")
        self.firewalls.append(fw)
        return fw

    def bridge(self) -> str:
        name = f"{self.prefix}b{len(self.bridges)}"
        with IPRoute() as ipr:
            ipr.link("add", ifname=name, kind="bridge", br_forward_delay=0, br_stp_state=0,
                     **bridge_nf_options())  # fmt: skip
            self.bridges.append(name)
            ipr.link("set", index=ipr.link_lookup(ifname=name)[0], state="up")
        assert Path(f"/sys/class/net/{name}/bridge/nf_call_iptables").read_text().strip() == "1"
        return name

    def guest(self, bridge: str, ip: str) -> Guest:
        n = len(self.guests)
        guest = Guest(
            f"{self.prefix}ns{n}", f"{self.prefix}v{n}", f"02:00:00:5e:00:{n + 1:02x}", ip
        )
        _run("ip", "netns", "add", guest.namespace)
        self.guests.append(guest)
        _run("ip", "link", "add", guest.tap, "type", "veth", "peer", "name", "eth0",
             "address", guest.mac, "netns", guest.namespace)  # fmt: skip
        _run("ip", "link", "set", guest.tap, "master", bridge, "up")
        guest.sh("ip", "link", "set", "lo", "up")
        guest.sh("ip", "addr", "add", f"{ip}/24", "dev", "eth0")
        guest.sh("ip", "link", "set", "eth0", "up")
        return guest

    def echo_server(self, guest: Guest, port: int) -> None:
        proc = subprocess.Popen(
            ["ip", "netns", "exec", guest.namespace, sys.executable, "-c", ECHO_SERVER, str(port)],
            stdout=subprocess.PIPE, text=True,
        )  # fmt: skip
        self.procs.append(proc)
        assert proc.stdout is not None and proc.stdout.readline().strip() == "ready"

    def connect(self, guest: Guest, ip: str, port: int, sport: int = 0) -> Connection:
        proc = subprocess.Popen(
            ["ip", "netns", "exec", guest.namespace, sys.executable, "-c", ECHO_CLIENT,
             ip, str(port), str(sport)],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
        )  # fmt: skip
        self.procs.append(proc)
        assert proc.stdout is not None
        return Connection(proc, proc.stdout.readline().startswith("connected"))

    def cleanup(self) -> None:
        for proc in self.procs:
            proc.kill()
            proc.wait()
        for fw in self.firewalls:
            fw.delete()
        for guest in self.guests:
            _run("ip", "netns", "del", guest.namespace, check=False)
            _run("ip", "link", "del", guest.tap, check=False)
        for bridge in self.bridges:
            _run("ip", "link", "del", bridge, check=False)


@dataclass
class Connection:
    proc: subprocess.Popen[str]
    connected: bool

    def echo(self, text: str) -> str:
        assert self.proc.stdin is not None and self.proc.stdout is not None
        self.proc.stdin.write(text + "\n")
        self.proc.stdin.flush()
        return self.proc.stdout.readline().strip()


@pytest.fixture
def lab() -> Iterator[Lab]:
    lab = Lab()
    try:
        yield lab
    finally:
        lab.cleanup()
        leftovers = [t for t in _nft_tables() if t.endswith(f"souverain-{lab.prefix}")]
        assert not leftovers, leftovers


def _nft_tables() -> list[str]:
    items = json.loads(_run("nft", "-j", "list", "tables").stdout)["nftables"]
    return [f"{i['table']['family']} {i['table']['name']}" for i in items if "table" in i]


def _two_guests(lab: Lab) -> tuple[str, Guest, Guest]:
    bridge = lab.bridge()
    return bridge, lab.guest(bridge, "10.91.0.11"), lab.guest(bridge, "10.91.0.12")


def test_an_ingress_icmp_rule_added_later_lets_ping_in_without_restarting_anything(
    lab: Lab,
) -> None:
    bridge, a, b = _two_guests(lab)
    fw = lab.firewall()
    zones = [NetworkZone(bridge, 1)]
    assert a.reaches(b.ip), "before any firewall the guests reach each other"

    fw.apply(zones, [a.port(), b.port()], {})
    assert not a.pings(b.ip), "B has no ingress ICMP rule"

    fw.apply(zones, [a.port(), b.port(ICMP_IN)], {})
    assert a.reaches(b.ip)
    assert not b.pings(a.ip), "A still lets no ICMP in"


def test_replies_flow_back_to_the_opener_and_the_other_way_is_closed(lab: Lab) -> None:
    bridge, a, b = _two_guests(lab)
    fw = lab.firewall()
    tcp_8080 = Rule("ingress", "IPv4", "tcp", 8080, 8080, None, None)
    zones = [NetworkZone(bridge, 2)]
    fw.apply(zones, [a.port(), b.port(tcp_8080)], {})
    lab.echo_server(b, 8080)
    lab.echo_server(a, 9090)

    established = lab.connect(a, b.ip, 8080)
    assert established.connected and established.echo("hello") == "hello"
    assert not lab.connect(b, a.ip, 9090).connected, "A lets no TCP in"

    # The rule goes: the open connection carries on, a new one is refused.
    fw.apply(zones, [a.port(), b.port()], {})
    assert established.echo("still here") == "still here"
    assert not lab.connect(a, b.ip, 8080).connected


def test_a_remote_group_rule_lets_in_only_the_group_members(lab: Lab) -> None:
    bridge, a, b = _two_guests(lab)
    c = lab.guest(bridge, "10.91.0.13")
    fw = lab.firewall()
    from_web = Rule("ingress", "IPv4", "icmp", 8, None, None, "web")
    fw.apply([NetworkZone(bridge, 3)], [a.port(), b.port(from_web), c.port()],
             {"web": [a.ip, "10.91.0.99", "fd00::1"]})  # fmt: skip
    assert a.reaches(b.ip)
    assert not c.pings(b.ip), "C is not in the group"

    fw.apply([NetworkZone(bridge, 3)], [a.port(), b.port(from_web), c.port()],
             {"web": [c.ip]})  # fmt: skip
    assert c.reaches(b.ip)
    assert not a.pings(b.ip), "A left the group"


def test_a_guest_with_another_ip_or_mac_reaches_nobody_unless_it_is_an_allowed_pair(
    lab: Lab,
) -> None:
    bridge, a, b = _two_guests(lab)
    fw = lab.firewall()
    zones = [NetworkZone(bridge, 4)]
    fw.apply(zones, [a.port(), b.port(ICMP_IN)], {})
    assert a.reaches(b.ip)

    # Static neighbours both ways, so only the IP check (not ARP) can stop the ping.
    spoofed_ip, spoofed_mac = "10.91.0.99", "02:00:00:5e:00:99"
    a.sh("ip", "addr", "flush", "dev", "eth0")
    a.sh("ip", "addr", "add", f"{spoofed_ip}/24", "dev", "eth0")
    a.sh("ip", "neigh", "replace", b.ip, "lladdr", b.mac, "dev", "eth0")
    b.sh("ip", "neigh", "replace", spoofed_ip, "lladdr", a.mac, "dev", "eth0")
    assert not a.pings(b.ip), "a foreign source IP must be dropped"
    fw.apply(zones, [a.port(pairs=((f"{spoofed_ip}/32", None),)), b.port(ICMP_IN)], {})
    assert a.reaches(b.ip), "an allowed address pair may be used"

    a.sh("ip", "addr", "flush", "dev", "eth0")
    a.sh("ip", "addr", "add", f"{a.ip}/24", "dev", "eth0")
    a.sh("ip", "link", "set", "eth0", "address", spoofed_mac)  # flushes A's neighbours
    a.sh("ip", "neigh", "replace", b.ip, "lladdr", b.mac, "dev", "eth0")
    b.sh("ip", "neigh", "replace", a.ip, "lladdr", spoofed_mac, "dev", "eth0")
    fw.apply(zones, [a.port(), b.port(ICMP_IN)], {})
    assert not a.pings(b.ip), "a foreign source MAC must be dropped"
    fw.apply(zones, [a.port(pairs=((a.ip, spoofed_mac),)), b.port(ICMP_IN)], {})
    assert a.reaches(b.ip), "an allowed pair's MAC may be used"


def test_two_networks_with_the_same_addresses_keep_their_flows_apart(lab: Lab) -> None:
    fw = lab.firewall()
    first, second = lab.bridge(), lab.bridge()
    a1, b1 = lab.guest(first, "10.91.0.11"), lab.guest(first, "10.91.0.12")
    a2, b2 = lab.guest(second, "10.91.0.11"), lab.guest(second, "10.91.0.12")
    tcp_8080 = Rule("ingress", "IPv4", "tcp", 8080, 8080, None, None)
    zones = [NetworkZone(first, 1), NetworkZone(second, 2)]
    fw.apply(zones, [a1.port(), b1.port(tcp_8080), a2.port(), b2.port(tcp_8080, ICMP_IN)], {})
    lab.echo_server(b1, 8080)
    lab.echo_server(b2, 8080)

    # The very same 5-tuple on both networks at once: one conntrack entry per zone.
    one, two = lab.connect(a1, b1.ip, 8080, 40000), lab.connect(a2, b2.ip, 8080, 40000)
    assert one.connected and two.connected
    assert one.echo("one") == "one" and two.echo("two") == "two"
    assert a2.reaches(b2.ip) and not a1.pings(b1.ip), "each network has its own rules"
    zones_seen = {
        line.split("zone=")[1].split()[0]
        for line in Path("/proc/net/nf_conntrack").read_text().splitlines()
        if "dport=8080" in line and "sport=40000" in line and "src=10.91.0.11" in line
    }
    assert zones_seen == {"1", "2"}, zones_seen


def test_another_instance_applying_its_ruleset_leaves_our_traffic_alone(lab: Lab) -> None:
    bridge, a, b = _two_guests(lab)
    ours = lab.firewall()
    ours.apply([NetworkZone(bridge, 6)], [a.port(), b.port(ICMP_IN)], {})
    theirs = lab.firewall("z")
    other_bridge = lab.bridge()
    c, d = lab.guest(other_bridge, "10.91.0.11"), lab.guest(other_bridge, "10.91.0.12")
    theirs.apply([NetworkZone(other_bridge, 7)], [c.port(), d.port()], {})

    assert a.reaches(b.ip), "their ruleset must not touch our bridge"
    assert not c.pings(d.ip), "their ruleset works on their own bridge"
    theirs.delete()
    assert ours.inventory() == [f"bridge {ours.table}", f"inet {ours.table}"]
    assert a.reaches(b.ip)
    assert c.reaches(d.ip)


def test_delete_leaves_no_table_and_can_be_repeated(lab: Lab) -> None:
    bridge, a, b = _two_guests(lab)
    fw = lab.firewall()
    fw.delete()
    fw.apply([NetworkZone(bridge, 8)], [a.port(), b.port()], {})
    fw.apply([NetworkZone(bridge, 8)], [a.port(), b.port()], {})
    assert fw.inventory() == [f"bridge {fw.table}", f"inet {fw.table}"]
    fw.delete()
    fw.delete()
    assert fw.inventory() == []
    assert not [t for t in _nft_tables() if t.endswith(fw.table)]
    assert a.reaches(b.ip), "no table, no filtering"


@pytest.mark.skipif(not Path("/usr/sbin/dnsmasq").exists(), reason="needs /usr/sbin/dnsmasq")
def test_a_guest_whose_groups_allow_nothing_still_gets_its_dhcp_lease(lab: Lab) -> None:
    run_dir = Path(tempfile.mkdtemp(prefix="souverain-fw-", dir="/run"))
    dataplane = Dataplane(run_dir, prefix=lab.prefix)
    network = str(uuid.uuid4())
    try:
        bridge = dataplane.ensure_network(network)
        _run("ip", "link", "set", "dev", bridge, "type", "bridge", "nf_call_iptables", "1")
        subnet = SubnetSpec(cidr="10.91.0.0/24", gateway=None, dhcp_ip="10.91.0.2")
        guest = lab.guest(bridge, "10.91.0.11")
        guest.sh("ip", "addr", "flush", "dev", "eth0")
        dataplane.ensure_dhcp(network, subnet, [DhcpHost(guest.mac, guest.ip, "vm")])
        fw = lab.firewall()
        fw.apply([NetworkZone(bridge, 10)], [PortFilter(guest.tap, guest.mac, (guest.ip,))], {})
        udhcpc = ["ip", "netns", "exec", guest.namespace, BUSYBOX, "udhcpc", "-i", "eth0",
                  "-n", "-q", "-f", "-t", "3", "-T", "1", "-A", "1", "-s", "/bin/true"]  # fmt: skip
        assert _run(*udhcpc, check=False, timeout=30).returncode == 0
        guest.sh("ip", "addr", "add", f"{guest.ip}/24", "dev", "eth0")
        assert not guest.pings(subnet.dhcp_ip), "no egress rule: only DHCP gets out"
    finally:
        for guest in lab.guests:  # out of the bridge before the data plane removes it
            _run("ip", "netns", "del", guest.namespace, check=False)
        dataplane.reconcile({})
        shutil.rmtree(run_dir, ignore_errors=True)


def test_a_thousand_rules_apply_in_one_transaction(lab: Lab) -> None:
    bridge, a, b = _two_guests(lab)
    fw = lab.firewall()
    rules = [Rule("ingress", "IPv4", "tcp", 1000 + n, 1000 + n, f"10.{n % 200}.0.0/16", None)
             for n in range(999)]  # fmt: skip
    ports = [a.port(), b.port(ICMP_IN, *rules)]
    started = time.perf_counter()
    fw.apply([NetworkZone(bridge, 9)], ports, {})
    elapsed = time.perf_counter() - started
    print(f"apply with {sum(len(p.rules) for p in ports)} rules: {elapsed * 1000:.0f} ms")
    listing = _run("nft", "list", "table", "inet", fw.table).stdout
    assert listing.count("tcp dport") == 999
    assert a.reaches(b.ip)
