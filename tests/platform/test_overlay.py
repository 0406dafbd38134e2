"""The VXLAN overlay on the real kernel: two simulated hosts, one tenant L2 between them.

Each "host" is a network namespace with a veth on an underlay bridge (in a namespace of
its own); in each host, one bridge per network and "guests" (namespaces with a veth into
that bridge). The Overlay runs inside each host namespace, fed with Segments as the plan
would give them. Everything made here carries a random prefix and is gone afterwards.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import shutil
import subprocess
import tempfile
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from souverain.network.dataplane import Dataplane, DhcpHost, SubnetSpec
from souverain.network.overlay import Overlay, OverlayError, Segment

BUSYBOX = shutil.which("busybox") or "busybox"
PING = shutil.which("ping") or "/usr/bin/ping"  # iputils: `-M do` (busybox's has no DF)
UNDERLAY = {"h1": "10.250.7.1", "h2": "10.250.7.2"}
NET_A, NET_B = str(uuid.uuid4()), str(uuid.uuid4())
VNI_A, VNI_B = 4001, 4002
GUEST_MTU = 1450


def _works() -> str | None:
    if os.geteuid() != 0:
        return "needs root (network namespaces, bridges, VXLAN devices)"
    if shutil.which("ip") is None or not os.path.exists(PING) or shutil.which("busybox") is None:
        return "needs ip, busybox and iputils ping (scripts/system-packages.txt)"
    return None


_SKIP = _works()
pytestmark = pytest.mark.skipif(_SKIP is not None, reason=_SKIP or "")


def _run(*argv: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    return subprocess.run(argv, check=check, capture_output=True, text=True, timeout=20)


@dataclass
class Lab:
    """An underlay, two hosts, their bridges and guests; `cleanup` removes every namespace."""

    prefix: str
    namespaces: list[str] = field(default_factory=list)
    overlays: dict[str, Overlay] = field(default_factory=dict)

    def ns(self, name: str) -> str:
        return f"{self.prefix}-{name}"

    def add_ns(self, name: str) -> str:
        namespace = self.ns(name)
        _run("ip", "netns", "add", namespace)
        self.namespaces.append(namespace)
        _run("ip", "-n", namespace, "link", "set", "lo", "up")
        return namespace

    def build_underlay(self) -> None:
        under = self.add_ns("under")
        _run("ip", "-n", under, "link", "add", "ul", "type", "bridge")
        _run("ip", "-n", under, "link", "set", "ul", "up")
        for host, address in UNDERLAY.items():
            namespace = self.add_ns(host)
            _run("ip", "-n", under, "link", "add", f"to{host}", "type", "veth",
                 "peer", "name", "eth0", "netns", namespace)  # fmt: skip
            _run("ip", "-n", under, "link", "set", f"to{host}", "master", "ul", "up")
            _run("ip", "-n", namespace, "addr", "add", f"{address}/24", "dev", "eth0")
            _run("ip", "-n", namespace, "link", "set", "eth0", "up")
            for bridge in ("bra", "brb"):
                _run("ip", "-n", namespace, "link", "add", bridge, "type", "bridge",
                     "forward_delay", "0")  # fmt: skip
                _run("ip", "-n", namespace, "link", "set", bridge, "mtu", str(GUEST_MTU), "up")
            self.overlays[host] = Overlay(self.prefix, address, netns=namespace)

    def guest(self, host: str, bridge: str, ip: str, mac: str) -> str:
        """A guest namespace on `host`'s `bridge`, its eth0 at `ip`/24 with `mac`."""
        name = f"g{host}{bridge}"
        namespace = self.add_ns(name)
        host_ns = self.ns(host)
        _run("ip", "-n", host_ns, "link", "add", name, "mtu", str(GUEST_MTU), "type", "veth",
             "peer", "name", "eth0", "address", mac, "mtu", str(GUEST_MTU),
             "netns", namespace)  # fmt: skip
        _run("ip", "-n", host_ns, "link", "set", name, "master", bridge, "up")
        _run("ip", "-n", namespace, "addr", "add", f"{ip}/24", "dev", "eth0")
        _run("ip", "-n", namespace, "link", "set", "eth0", "up")
        return namespace

    def cleanup(self) -> None:
        for overlay in self.overlays.values():
            # if its namespace is gone already, deleting the namespaces removes the rest
            with contextlib.suppress(OverlayError):
                overlay.remove_all()
        for namespace in reversed(self.namespaces):
            _run("ip", "netns", "del", namespace, check=False)


def _ping(namespace: str, ip: str, size: int = 56, tries: int = 3) -> bool:
    for _ in range(tries):
        argv = ["ip", "netns", "exec", namespace, PING, "-n", "-c1", "-W1", "-M", "do"]
        if _run(*argv, "-s", str(size), ip, check=False).returncode == 0:
            return True
    return False


def _neighbour_mac(namespace: str, ip: str) -> str:
    out = _run("ip", "-n", namespace, "neigh", "show", ip).stdout.split()
    return out[out.index("lladdr") + 1] if "lladdr" in out else ""


@pytest.fixture
def lab() -> Iterator[Lab]:
    lab = Lab(prefix=f"y{secrets.token_hex(2)[:3]}")
    try:
        lab.build_underlay()
        yield lab
    finally:
        lab.cleanup()
        left = _run("ip", "netns", "list").stdout
        assert lab.prefix not in left
        assert lab.prefix not in _run("ip", "-o", "link").stdout


MACS = {
    ("h1", "bra"): "02:00:00:aa:01:01",
    ("h2", "bra"): "02:00:00:aa:02:01",
    ("h1", "brb"): "02:00:00:bb:01:01",
    ("h2", "brb"): "02:00:00:bb:02:01",
}


def _segments(host: str, with_remote: bool = True) -> list[Segment]:
    """The plan for `host`: both networks, the other host as their remote."""
    other = "h2" if host == "h1" else "h1"
    remote = UNDERLAY[other]
    out = []
    for network_id, vni, bridge in ((NET_A, VNI_A, "bra"), (NET_B, VNI_B, "brb")):
        out.append(
            Segment(
                network_id=network_id,
                vni=vni,
                bridge=bridge,
                remotes=frozenset({remote}) if with_remote else frozenset(),
                macs={MACS[(other, bridge)]: remote} if with_remote else {},
            )
        )
    return out


def _wire(lab: Lab) -> dict[str, str]:
    guests = {}
    for (host, bridge), mac in MACS.items():
        ip = "192.168.50.1" if host == "h1" else "192.168.50.2"  # the same in both networks
        guests[f"{host}{bridge}"] = lab.guest(host, bridge, ip, mac)
    return guests


def test_guests_on_two_hosts_share_a_segment_and_only_theirs(lab: Lab) -> None:
    guests = _wire(lab)
    assert not _ping(guests["h1bra"], "192.168.50.2", tries=1)  # no overlay yet: no path
    for host, overlay in lab.overlays.items():
        done = overlay.reconcile(_segments(host))
        assert len(done["created_links"]) == 2 and len(done["added_fdb"]) == 4
    assert _ping(guests["h1bra"], "192.168.50.2")
    assert _ping(guests["h1brb"], "192.168.50.2")
    # same CIDR, same addresses: each guest reached its own network's peer, by MAC
    assert _neighbour_mac(guests["h1bra"], "192.168.50.2") == MACS[("h2", "bra")]
    assert _neighbour_mac(guests["h1brb"], "192.168.50.2") == MACS[("h2", "brb")]
    assert _neighbour_mac(guests["h2bra"], "192.168.50.1") == MACS[("h1", "bra")]


def test_segment_carries_1450_byte_frames_and_no_more(lab: Lab) -> None:
    guests = _wire(lab)
    for host, overlay in lab.overlays.items():
        overlay.reconcile(_segments(host))
    assert _ping(guests["h1bra"], "192.168.50.2", size=GUEST_MTU - 28)  # 1450 bytes, DF
    assert not _ping(guests["h1bra"], "192.168.50.2", size=1500 - 28, tries=1)


def test_reconcile_twice_changes_nothing(lab: Lab) -> None:
    _wire(lab)
    overlay = lab.overlays["h1"]
    overlay.reconcile(_segments("h1"))
    before = overlay.inventory()
    again = overlay.reconcile(_segments("h1"))
    assert not any(again.values()), again
    assert overlay.inventory() == before
    assert len(before["vxlans"]) == 2
    remote = UNDERLAY["h2"]
    assert f"{overlay.device_name(NET_A)} 00:00:00:00:00:00 {remote}" in before["fdb"]
    assert f"{overlay.device_name(NET_A)} {MACS[('h2', 'bra')]} {remote}" in before["fdb"]


def test_removing_the_remote_stops_traffic_and_its_entries(lab: Lab) -> None:
    guests = _wire(lab)
    for host, overlay in lab.overlays.items():
        overlay.reconcile(_segments(host))
    assert _ping(guests["h1bra"], "192.168.50.2")
    done = lab.overlays["h1"].reconcile(_segments("h1", with_remote=False))
    assert len(done["removed_fdb"]) == 4 and not done["removed_links"]
    assert lab.overlays["h1"].inventory()["fdb"] == []
    assert not _ping(guests["h1bra"], "192.168.50.2", tries=2)
    lab.overlays["h1"].reconcile(_segments("h1"))  # back in the plan: back on the wire
    assert _ping(guests["h1bra"], "192.168.50.2")


def test_a_network_leaving_the_plan_loses_its_device_and_only_it(lab: Lab) -> None:
    guests = _wire(lab)
    for host, overlay in lab.overlays.items():
        overlay.reconcile(_segments(host))
    only_a = [s for s in _segments("h1") if s.network_id == NET_A]
    done = lab.overlays["h1"].reconcile(only_a)
    assert done["removed_links"] == [lab.overlays["h1"].device_name(NET_B)]
    assert _ping(guests["h1bra"], "192.168.50.2")
    assert not _ping(guests["h1brb"], "192.168.50.2", tries=2)


def test_a_changed_vni_replaces_the_device(lab: Lab) -> None:
    overlay = lab.overlays["h1"]
    overlay.reconcile(_segments("h1"))
    moved = [Segment(NET_A, 4100, "bra", frozenset({UNDERLAY["h2"]}))]
    done = overlay.reconcile(moved)
    name = overlay.device_name(NET_A)
    assert name in done["removed_links"] and done["created_links"] == [name]
    details = _run("ip", "-n", lab.ns("h1"), "-d", "link", "show", name).stdout
    assert "vxlan id 4100" in details and "dstport 4789" in details and "nolearning" in details
    assert f"local {UNDERLAY['h1']}" in details and "master bra" in details


def test_foreign_links_are_left_alone_and_missing_bridges_reported(lab: Lab) -> None:
    host_ns = lab.ns("h1")
    _run("ip", "-n", host_ns, "link", "add", "othervx", "type", "vxlan", "id", "9",
         "dstport", "4789", "nolearning")  # fmt: skip
    overlay = lab.overlays["h1"]
    done = overlay.reconcile([Segment(NET_A, VNI_A, "nosuchbr", frozenset())])
    assert done["missing_bridges"] == ["nosuchbr"] and not done["created_links"]
    assert overlay.remove_all() == []
    assert "othervx" in _run("ip", "-n", host_ns, "-o", "link").stdout


@pytest.mark.parametrize(
    ("segment", "message"),
    [
        (Segment(NET_A, 0, "bra"), "VNI"),
        (Segment(NET_A, 1 << 24, "bra"), "VNI"),
        (Segment(NET_A, 5, "bra", frozenset({"not-an-ip"})), "IPv4"),
        (Segment(NET_A, 5, "bra", frozenset({UNDERLAY["h1"]})), "its own remote"),
        (Segment(NET_A, 5, "bra", frozenset(), {"01:00:5e:00:00:01": "10.9.9.9"}), "unicast"),
        (Segment(NET_A, 5, "bra", frozenset(), {"02:00:00:00:00:01": "10.9.9.9"}), "remote"),
        (Segment(NET_A, 5, "br a;"), "interface name"),
        (Segment("not-a-uuid", 5, "bra"), "UUID"),
    ],
)
def test_bad_segments_are_refused_before_any_change(
    lab: Lab, segment: Segment, message: str
) -> None:
    overlay = lab.overlays["h1"]
    with pytest.raises(OverlayError, match=message):
        overlay.reconcile([segment])
    assert overlay.inventory() == {"vxlans": [], "fdb": []}


def test_the_same_vni_twice_is_refused(lab: Lab) -> None:
    twice = [Segment(NET_A, 7, "bra"), Segment(NET_B, 7, "brb")]
    with pytest.raises(OverlayError, match="given twice"):
        lab.overlays["h1"].reconcile(twice)


# ------------------------------------------- DHCP across the overlay, from the host's netns

LEASE_SCRIPT = """#!/bin/sh
case "$1" in
  bound|renew) echo "$ip $mtu" > "$LEASE_OUT" ;;
esac
"""


@pytest.fixture
def root_host(lab: Lab) -> Iterator[tuple[Dataplane, Overlay, str]]:
    """This machine's own namespace as a second host: the product's Dataplane and an Overlay
    with netns None, its underlay address on a veth into the lab's underlay."""
    address = f"10.251.{secrets.randbelow(250) + 1}.2"
    link = f"{lab.prefix}u"
    run_dir = Path(tempfile.mkdtemp(prefix="souverain-vx-", dir="/run"))
    dataplane = Dataplane(run_dir, prefix=lab.prefix)
    overlay = Overlay(lab.prefix, address)
    try:
        _run("ip", "link", "add", link, "type", "veth", "peer", "name", "toroot",
             "netns", lab.ns("under"))  # fmt: skip
        _run("ip", "-n", lab.ns("under"), "link", "set", "toroot", "master", "ul", "up")
        _run("ip", "addr", "add", f"{address}/24", "dev", link)
        _run("ip", "link", "set", link, "up")
        h1 = address.rsplit(".", 1)[0] + ".1"
        _run("ip", "-n", lab.ns("h1"), "addr", "add", f"{h1}/24", "dev", "eth0")
        lab.overlays["h1"] = Overlay(lab.prefix, h1, netns=lab.ns("h1"))
        yield dataplane, overlay, h1
    finally:
        overlay.remove_all()
        dataplane.reconcile({})
        _run("ip", "link", "del", link, check=False)
        shutil.rmtree(run_dir, ignore_errors=True)
        assert not any(overlay.inventory().values())
        assert not any(Dataplane(run_dir, prefix=lab.prefix).inventory().values())


def test_a_guest_gets_its_lease_and_mtu_from_dnsmasq_on_another_host(
    lab: Lab, root_host: tuple[Dataplane, Overlay, str]
) -> None:
    dataplane, overlay, h1 = root_host
    bridge = dataplane.ensure_network(NET_A, mtu=GUEST_MTU)
    mac = MACS[("h1", "bra")]
    subnet = SubnetSpec(cidr="10.88.0.0/24", gateway=None, dhcp_ip="10.88.0.2", mtu=GUEST_MTU)
    dataplane.ensure_dhcp(NET_A, subnet, [DhcpHost(mac, "10.88.0.11", "vm-far")])
    guest = lab.guest("h1", "bra", "10.88.0.250", mac)  # replaced by the lease's address
    _run("ip", "-n", guest, "addr", "flush", "dev", "eth0")
    assert _lease(guest) is None  # no overlay yet: no DHCP server in reach
    overlay.reconcile([Segment(NET_A, VNI_A, bridge, frozenset({h1}), {mac: h1})])
    root_address = overlay.local
    lab.overlays["h1"].reconcile([Segment(NET_A, VNI_A, "bra", frozenset({root_address}))])
    assert _lease(guest) == ["10.88.0.11", str(GUEST_MTU)]


def _lease(namespace: str) -> list[str] | None:
    """udhcpc in `namespace`: the (ip, mtu) it was offered, or None."""
    with tempfile.TemporaryDirectory(dir="/run") as scratch:
        script, out = Path(scratch) / "lease.sh", Path(scratch) / "lease"
        script.write_text(LEASE_SCRIPT)
        script.chmod(0o755)
        proc = subprocess.run(
            ["ip", "netns", "exec", namespace, BUSYBOX, "udhcpc", "-i", "eth0", "-n", "-q",
             "-f", "-t", "3", "-T", "1", "-A", "1", "-s", str(script), "-O", "mtu"],
            env={**os.environ, "LEASE_OUT": str(out)},
            capture_output=True,
            text=True,
            timeout=30,
        )  # fmt: skip
        return out.read_text().split() if proc.returncode == 0 else None
