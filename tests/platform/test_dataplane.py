"""The network data plane on the real kernel: bridges, taps, a DHCP namespace, dnsmasq.

Guests are simulated by network namespaces with a veth into the bridge, asking for a lease
with busybox udhcpc. Every test uses its own name prefix and removes all it made.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import secrets
import shutil
import signal
import struct
import subprocess
import tempfile
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from souverain.network.dataplane import Dataplane, DataplaneError, DhcpHost, SubnetSpec

BUSYBOX = shutil.which("busybox") or "busybox"
UDHCPC_SCRIPT = """#!/bin/sh
# udhcpc calls this with the lease in the environment; apply it and record it.
case "$1" in
  bound|renew)
    ip addr flush dev "$interface"
    ip addr add "$ip/$subnet" dev "$interface"
    echo "$ip $router $dns $mtu" > "$LEASE_OUT"
    ;;
esac
"""


def _netns_works() -> str | None:
    if os.geteuid() != 0:
        return "needs root (network namespaces, bridges, taps)"
    if (
        shutil.which("ip") is None
        or not Path("/usr/sbin/dnsmasq").exists()
        or shutil.which("busybox") is None
    ):
        return "needs ip, /usr/sbin/dnsmasq and busybox"
    probe = f"svprobe-{secrets.token_hex(4)}"
    try:
        subprocess.run(["ip", "netns", "add", probe], check=True, capture_output=True)
    except subprocess.CalledProcessError as exc:
        return f"`ip netns add` does not work here: {exc.stderr.decode().strip()}"
    subprocess.run(["ip", "netns", "del", probe], check=False, capture_output=True)
    return None


_SKIP = _netns_works()
pytestmark = pytest.mark.skipif(_SKIP is not None, reason=_SKIP or "")

SUBNET = SubnetSpec(
    cidr="10.77.0.0/24", gateway="10.77.0.1", dhcp_ip="10.77.0.2", dns=("10.77.0.53",), mtu=1400
)


def _run(*argv: str, check: bool = True, timeout: float = 15) -> subprocess.CompletedProcess[str]:
    return subprocess.run(argv, check=check, capture_output=True, text=True, timeout=timeout)


@dataclass
class Lab:
    """One data plane with a unique prefix, plus simulated guests; cleaned up in full."""

    dataplane: Dataplane
    run_dir: Path
    clients: list[str] = field(default_factory=list)

    @property
    def prefix(self) -> str:
        return self.dataplane.prefix

    def client(self, network_id: str, mac: str) -> str:
        """A namespace whose eth0 (with `mac`) is plugged into the network's bridge."""
        index = len(self.clients)
        namespace = f"{self.prefix}cli{index}"
        host_end = f"{self.prefix}c{index}"
        _run("ip", "netns", "add", namespace)
        self.clients.append(namespace)
        _run("ip", "link", "add", host_end, "type", "veth", "peer", "name", "eth0",
             "address", mac, "netns", namespace)  # fmt: skip
        bridge = self.dataplane.bridge_name(network_id)
        _run("ip", "link", "set", host_end, "master", bridge, "up")
        _run("ip", "-n", namespace, "link", "set", "eth0", "up")
        _run("ip", "-n", namespace, "link", "set", "lo", "up")
        return namespace

    def lease(self, namespace: str, tries: int = 3) -> list[str] | None:
        """Ask for a lease with udhcpc; the (ip, router, dns, mtu) it was given, or None."""
        script = self.run_dir / "udhcpc.sh"
        if not script.exists():
            script.write_text(UDHCPC_SCRIPT)
            script.chmod(0o755)
        out = self.run_dir / f"{namespace}.lease"
        out.unlink(missing_ok=True)
        proc = subprocess.run(
            [
                "ip",
                "netns",
                "exec",
                namespace,
                BUSYBOX,
                "udhcpc",
                "-i",
                "eth0",
                "-n",
                "-q",
                "-f",
                "-t",
                str(tries),
                "-T",
                "1",
                "-A",
                "1",
                "-s",
                str(script),
                "-O",
                "mtu",
            ],
            env={**os.environ, "LEASE_OUT": str(out)},
            capture_output=True,
            text=True,
            timeout=30,
        )
        if proc.returncode != 0:
            return None
        return out.read_text().split()

    def cleanup(self) -> None:
        for namespace in self.clients:
            _run("ip", "netns", "del", namespace, check=False)
        for index in range(len(self.clients)):
            _run("ip", "link", "del", f"{self.prefix}c{index}", check=False)
        self.dataplane.reconcile({})
        shutil.rmtree(self.run_dir, ignore_errors=True)


@pytest.fixture
def lab() -> Iterator[Lab]:
    run_dir = Path(tempfile.mkdtemp(prefix="souverain-dp-", dir="/run"))
    prefix = f"x{secrets.token_hex(2)[:3]}"
    lab = Lab(Dataplane(run_dir, prefix=prefix), run_dir)
    try:
        yield lab
    finally:
        lab.cleanup()
        assert _empty(Dataplane(run_dir, prefix=prefix).inventory())


def _empty(inventory: dict[str, list[str]]) -> bool:
    return not any(inventory.values())


def _mac(n: int) -> str:
    return f"02:00:00:77:00:{n:02x}"


@contextlib.contextmanager
def _open_tap_like_qemu(ifname: str) -> Iterator[int]:
    tunsetiff, iff_tap, iff_no_pi, iff_vnet_hdr = 0x400454CA, 0x0002, 0x1000, 0x4000
    fd = os.open("/dev/net/tun", os.O_RDWR)
    try:
        request = struct.pack("16sH", ifname.encode(), iff_tap | iff_no_pi | iff_vnet_hdr)
        fcntl.ioctl(fd, tunsetiff, request)
        yield fd
    finally:
        os.close(fd)


def _dnsmasq_pid(lab: Lab) -> int:
    pids = lab.dataplane.inventory()["dnsmasq"]
    assert len(pids) == 1, pids
    return int(pids[0])


def test_clients_get_exactly_their_registered_address_and_reach_each_other(lab: Lab) -> None:
    network = str(uuid.uuid4())
    bridge = lab.dataplane.ensure_network(network, mtu=1400)
    assert lab.dataplane.ensure_network(network, mtu=1400) == bridge
    hosts = [DhcpHost(_mac(1), "10.77.0.11", "vm-one"), DhcpHost(_mac(2), "10.77.0.12", "vm-two")]
    lab.dataplane.ensure_dhcp(network, SUBNET, hosts)
    one, two, stranger = (lab.client(network, _mac(n)) for n in (1, 2, 9))

    assert lab.lease(one) == ["10.77.0.11", "10.77.0.1", "10.77.0.53", "1400"]
    assert lab.lease(two) == ["10.77.0.12", "10.77.0.1", "10.77.0.53", "1400"]
    assert lab.lease(stranger, tries=2) is None, "an unknown MAC must get no lease"
    _run("ip", "netns", "exec", one, BUSYBOX, "ping", "-c1", "-W1", "10.77.0.12")
    _run("ip", "netns", "exec", two, BUSYBOX, "ping", "-c1", "-W1", "10.77.0.11")


def test_tap_is_persistent_single_queue_owned_by_root_and_in_the_bridge(lab: Lab) -> None:
    network, port = str(uuid.uuid4()), str(uuid.uuid4())
    bridge = lab.dataplane.ensure_network(network)
    tap = lab.dataplane.ensure_tap(network, port, mac="fe:00:00:77:00:01")
    assert lab.dataplane.ensure_tap(network, port) == tap
    assert len(tap) <= 15 and tap.startswith(lab.prefix)
    details = _run("ip", "-d", "link", "show", tap).stdout
    assert f"master {bridge}" in details
    assert "tun type tap pi off" in details and "persist on user root" in details
    assert "multi_queue" not in details
    assert "fe:00:00:77:00:01" in details
    assert ",UP" in details.split(">", 1)[0]
    for host_side in (bridge, tap):
        assert _run("ip", "-o", "addr", "show", "dev", host_side).stdout == "", (
            "the host must have no address (not even IPv6 link-local) on a tenant network"
        )

    # QEMU opens it by name as a single-queue tap with a virtio-net header: that must work
    # and give the port carrier.
    with _open_tap_like_qemu(tap):
        assert "LOWER_UP" in _run("ip", "link", "show", tap).stdout
    lab.dataplane.delete_tap(port)
    lab.dataplane.delete_tap(port)
    assert lab.dataplane.inventory()["taps"] == []


def test_new_host_gets_a_lease_after_sighup_without_restarting_dnsmasq(lab: Lab) -> None:
    network = str(uuid.uuid4())
    lab.dataplane.ensure_network(network)
    hosts = [DhcpHost(_mac(1), "10.77.0.11", "vm-one")]
    lab.dataplane.ensure_dhcp(network, SUBNET, hosts)
    pid = _dnsmasq_pid(lab)
    newcomer = lab.client(network, _mac(3))
    assert lab.lease(newcomer, tries=2) is None

    lab.dataplane.ensure_dhcp(network, SUBNET, [*hosts, DhcpHost(_mac(3), "10.77.0.13", "vm-3")])
    lease = lab.lease(newcomer)
    assert lease is not None and lease[0] == "10.77.0.13"
    assert _dnsmasq_pid(lab) == pid, "a change of hosts must not restart dnsmasq"


def test_an_address_given_to_a_new_port_is_leased_to_it_not_kept_for_the_old_one(
    lab: Lab,
) -> None:
    # a server is deleted, the next one gets its address (IPAM reuses it) with a new MAC:
    # dnsmasq would offer it to nobody while the old MAC's lease lasts
    network = str(uuid.uuid4())
    lab.dataplane.ensure_network(network)
    lab.dataplane.ensure_dhcp(network, SUBNET, [DhcpHost(_mac(1), "10.77.0.11", "vm-old")])
    old = lab.client(network, _mac(1))
    assert lab.lease(old) is not None
    leases = lab.run_dir / f"{lab.prefix}dhcp" / network / "leases"
    assert _mac(1) in leases.read_text(), "the lease is on file"

    lab.dataplane.ensure_dhcp(network, SUBNET, [DhcpHost(_mac(2), "10.77.0.11", "vm-new")])
    new = lab.client(network, _mac(2))
    lease = lab.lease(new, tries=2)
    assert lease is not None and lease[0] == "10.77.0.11"
    assert _mac(1) not in leases.read_text()


def test_ensure_dhcp_is_idempotent_and_restarts_dnsmasq_when_the_subnet_changes(lab: Lab) -> None:
    network = str(uuid.uuid4())
    lab.dataplane.ensure_network(network)
    lab.dataplane.ensure_dhcp(network, SUBNET, [DhcpHost(_mac(1), "10.77.0.11", "vm-one")])
    pid = _dnsmasq_pid(lab)
    lab.dataplane.ensure_dhcp(network, SUBNET, [DhcpHost(_mac(1), "10.77.0.11", "vm-one")])
    assert _dnsmasq_pid(lab) == pid

    moved = SubnetSpec(cidr="10.79.0.0/24", gateway=None, dhcp_ip="10.79.0.2")
    lab.dataplane.ensure_dhcp(network, moved, [DhcpHost(_mac(1), "10.79.0.11", "vm-one")])
    assert _dnsmasq_pid(lab) != pid
    namespace = lab.dataplane.dhcp_namespace(network)
    addresses = _run("ip", "-n", namespace, "-4", "-o", "addr", "show", "dev", "dhcp0").stdout
    assert "10.79.0.2/24" in addresses and "10.77.0.2" not in addresses
    # no gateway and no DNS: dnsmasq must offer neither itself nor anything else
    assert lab.lease(lab.client(network, _mac(1))) == ["10.79.0.11", "1500"]


def test_ensure_dhcp_restarts_a_killed_dnsmasq(lab: Lab) -> None:
    network = str(uuid.uuid4())
    lab.dataplane.ensure_network(network)
    hosts = [DhcpHost(_mac(1), "10.77.0.11", "vm-one")]
    lab.dataplane.ensure_dhcp(network, SUBNET, hosts)
    pid = _dnsmasq_pid(lab)
    os.kill(pid, signal.SIGKILL)
    deadline = time.monotonic() + 5
    while lab.dataplane.inventory()["dnsmasq"] and time.monotonic() < deadline:
        time.sleep(0.05)
    assert lab.dataplane.inventory()["dnsmasq"] == []

    lab.dataplane.ensure_dhcp(network, SUBNET, hosts)
    assert _dnsmasq_pid(lab) != pid

    # a lost pidfile: the orphan is found by its command line, and only one dnsmasq remains
    orphan = _dnsmasq_pid(lab)
    next(lab.run_dir.glob("*/*/dnsmasq.pid")).unlink()
    lab.dataplane.ensure_dhcp(network, SUBNET, hosts)
    assert _dnsmasq_pid(lab) != orphan
    client = lab.client(network, _mac(1))
    lease = lab.lease(client)
    assert lease is not None and lease[0] == "10.77.0.11"


def test_delete_network_leaves_nothing_behind(lab: Lab) -> None:
    network = str(uuid.uuid4())
    lab.dataplane.ensure_network(network)
    lab.dataplane.ensure_tap(network, str(uuid.uuid4()))
    lab.dataplane.ensure_dhcp(network, SUBNET, [DhcpHost(_mac(1), "10.77.0.11", "vm-one")])
    made = lab.dataplane.inventory()
    assert all(made[key] for key in ("bridges", "taps", "veths", "namespaces", "dnsmasq", "files"))

    lab.dataplane.delete_network(network)
    assert _empty(lab.dataplane.inventory())
    lab.dataplane.delete_network(network)  # idempotent
    assert _empty(lab.dataplane.inventory())


def test_reconcile_removes_what_a_crashed_control_plane_left(lab: Lab) -> None:
    kept, dropped = str(uuid.uuid4()), str(uuid.uuid4())
    kept_port, dropped_port = str(uuid.uuid4()), str(uuid.uuid4())
    crashed = Dataplane(lab.run_dir, prefix=lab.prefix)
    for network, port in ((kept, kept_port), (dropped, dropped_port)):
        crashed.ensure_network(network)
        crashed.ensure_tap(network, port)
        crashed.ensure_dhcp(network, SUBNET, [DhcpHost(_mac(1), "10.77.0.11", "vm-one")])
    del crashed

    restarted = Dataplane(lab.run_dir, prefix=lab.prefix)
    done = restarted.reconcile({kept: [kept_port]})
    after = restarted.inventory()
    assert after["bridges"] == [restarted.bridge_name(kept)]
    assert after["taps"] == [restarted.tap_name(kept_port)]
    assert after["namespaces"] == [restarted.dhcp_namespace(kept)]
    assert len(after["dnsmasq"]) == 1
    assert restarted.bridge_name(dropped) in done["removed_links"]
    assert restarted.dhcp_namespace(dropped) in done["removed_namespaces"]

    # a bridge the database wants but the host lost is created again
    _run("ip", "link", "del", restarted.bridge_name(kept))
    done = restarted.reconcile({kept: [kept_port]})
    assert done["created_bridges"] == [restarted.bridge_name(kept)]

    restarted.reconcile({})
    assert _empty(restarted.inventory())


def test_reconcile_never_touches_links_without_the_prefix(lab: Lab) -> None:
    foreign = f"zz{secrets.token_hex(3)}"
    _run("ip", "link", "add", foreign, "type", "bridge")
    try:
        lab.dataplane.reconcile({})
        assert _run("ip", "link", "show", foreign, check=False).returncode == 0
    finally:
        _run("ip", "link", "del", foreign, check=False)


def test_bad_input_is_refused_with_a_reason(lab: Lab) -> None:
    network = str(uuid.uuid4())
    with pytest.raises(DataplaneError, match="no bridge"):
        lab.dataplane.ensure_tap(network, str(uuid.uuid4()))
    lab.dataplane.ensure_network(network)
    with pytest.raises(DataplaneError, match="not in"):
        lab.dataplane.ensure_dhcp(network, SUBNET, [DhcpHost(_mac(1), "10.78.0.5", "vm")])
    with pytest.raises(DataplaneError, match="host name"):
        lab.dataplane.ensure_dhcp(network, SUBNET, [DhcpHost(_mac(1), "10.77.0.5", "a b")])
    with pytest.raises(DataplaneError, match="MAC"):
        lab.dataplane.ensure_dhcp(network, SUBNET, [DhcpHost("zz", "10.77.0.5", "vm")])
    with pytest.raises(DataplaneError, match="UUID"):
        lab.dataplane.ensure_network("not-a-uuid")
    with pytest.raises(DataplaneError, match="prefix"):
        Dataplane(lab.run_dir, prefix="toolong")
