"""The VXLAN overlay of one host: a VXLAN device per tenant network, in the network's bridge.

A network spanning hosts is one VXLAN segment (VNI = its segmentation id). Remote tunnel
endpoints and the MACs behind them are programmed from the database, as Neutron's
l2population does: no multicast group, no learning. Broadcasts (DHCP, ARP) reach every
remote by head-end replication (one all-zeros FDB entry per remote host); a known MAC goes
straight to its host. Desired state is data (`Segment`s, from overlay_plan); `reconcile`
makes the kernel match it and removes only what carries this cloud's prefix. No database,
no HTTP; calls block (netlink): from async code, run them in a thread.
"""

from __future__ import annotations

import contextlib
import ipaddress
import os
import re
import threading
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

from souverain.network import netlink
from souverain.network.dataplane import IFNAME_MAX, MAC_RE, PREFIX_RE, DataplaneError

VXLAN_PORT = 4789  # IANA's port, Linux's and Open vSwitch's default in Neutron
VXLAN_OVERHEAD = 50  # outer Ethernet 14 + IPv4 20 + UDP 8 + VXLAN 8 (Neutron's figure)
MAX_VNI = (1 << 24) - 1
FLOOD_MAC = "00:00:00:00:00:00"  # the VXLAN FDB entry every unknown/broadcast frame uses
_LETTER = "v"  # `<prefix>v<hex of the network id>`: beside dataplane's b, t, d
_IFNAME_RE = re.compile(r"^[A-Za-z0-9_.-]{1,15}$")
_ENODEV, _ENOENT = 19, 2
_ADDR_GEN_MODE_NONE = 1


class OverlayError(DataplaneError):
    """The overlay cannot be made as asked; the message says what to change."""


@dataclass(frozen=True)
class Segment:
    """One network as this host must carry it: its VNI, its bridge here, who else has it.

    `remotes` are the underlay addresses of the other hosts with a port on the network;
    `macs` maps each remote port's MAC to its host's underlay address.
    """

    network_id: str
    vni: int
    bridge: str
    remotes: frozenset[str] = frozenset()
    macs: Mapping[str, str] = field(default_factory=dict, hash=False)

    def fdb(self) -> frozenset[tuple[str, str]]:
        """The (MAC, remote) entries the segment's VXLAN device must hold, and only these."""
        flood = {(FLOOD_MAC, remote) for remote in self.remotes}
        return frozenset(flood | {(mac.lower(), dst) for mac, dst in self.macs.items()})


class Overlay:
    """The VXLAN devices of one host (or of the network namespace `netns`, in tests).

    Device names: `<prefix>v<hex>`, 15 characters, hex from the network id, like the
    dataplane's bridges; use the same prefix as the host's Dataplane.
    """

    def __init__(self, prefix: str, local_address: str, netns: str | None = None) -> None:
        if not PREFIX_RE.match(prefix):
            raise OverlayError(f"prefix {prefix!r}: 1 to 4 lowercase letters and digits")
        self.prefix = prefix
        self.local = _checked_ipv4(local_address, "local underlay address")
        self.netns = netns
        self._hex_len = IFNAME_MAX - len(prefix) - 1
        self._lock = threading.Lock()

    def device_name(self, network_id: str) -> str:
        digits = network_id.replace("-", "").lower()
        if len(digits) < self._hex_len or not re.fullmatch(r"[0-9a-f]+", digits):
            raise OverlayError(
                f"network id {network_id[:64]!r} must be a UUID (at least {self._hex_len} hex "
                "digits)"
            )
        return f"{self.prefix}{_LETTER}{digits[: self._hex_len]}"

    def _ours(self, ifname: Any) -> bool:
        return _is_ours(self.prefix, ifname)

    @contextlib.contextmanager
    def _ipr(self) -> Iterator[Any]:
        if self.netns is None:
            with self._lock, netlink.IPRoute() as ipr:
                yield ipr
        else:  # flags=0: never create the namespace, it is the host's to have
            with self._lock, netlink.NetNS(self.netns, flags=0) as ipr:
                yield ipr

    # --------------------------------------------------------------------- reconcile

    def reconcile(self, segments: Iterable[Segment]) -> dict[str, list[str]]:
        """Make the host carry exactly `segments`; returns what it changed, for the log.

        A segment whose bridge does not exist yet is reported (`missing_bridges`) and left
        as it is: the dataplane makes bridges, the next reconcile plugs the device in.
        Nothing is written when the kernel already matches.
        """
        wanted = self._checked(segments)
        done: dict[str, list[str]] = {
            "removed_links": [],
            "created_links": [],
            "plugged_links": [],
            "added_fdb": [],
            "removed_fdb": [],
            "missing_bridges": [],
        }
        with self._ipr() as ipr:
            # one dump of links and one of the FDB, whatever the number of segments: a
            # reconcile that changes nothing reads twice and writes nothing
            links = {link.get("ifname"): link for link in ipr.get_links()}
            for name, link in list(links.items()):
                if self._ours(name) and not self._fits(link, wanted.get(name)):
                    _delete_link(ipr, name)
                    del links[name]
                    done["removed_links"].append(name)
            plugged = {}
            for name, segment in sorted(wanted.items()):
                bridge = links.get(segment.bridge)
                if bridge is None:
                    done["missing_bridges"].append(segment.bridge)
                    continue
                link = links.get(name)
                index = self._ensure_device(ipr, name, segment, bridge, link, done)
                plugged[index] = (name, segment)
            fdb = _fdb(ipr)
            for index, (name, segment) in plugged.items():
                _sync_fdb(ipr, index, name, fdb.get(index, set()), segment.fdb(), done)
        return done

    def check(self, segments: Iterable[Segment]) -> None:
        """Refuse (OverlayError) what reconcile would refuse, touching nothing."""
        self._checked(segments)

    def _checked(self, segments: Iterable[Segment]) -> dict[str, Segment]:
        wanted: dict[str, Segment] = {}
        vnis: set[int] = set()
        for segment in segments:
            _check_segment(segment, self.local)
            name = self.device_name(segment.network_id)
            if name in wanted or segment.vni in vnis:
                raise OverlayError(
                    f"network {segment.network_id} or VNI {segment.vni} is given twice: "
                    "each network is one segment with a VNI of its own"
                )
            wanted[name] = segment
            vnis.add(segment.vni)
        return wanted

    def _fits(self, link: Any, segment: Segment | None) -> bool:
        """The existing device is this segment's: kind, VNI, local address, port, learning."""
        if segment is None or link.get(("IFLA_LINKINFO", "IFLA_INFO_KIND")) != "vxlan":
            return False
        data = link.get(("IFLA_LINKINFO", "IFLA_INFO_DATA"))
        if data is None:
            return False
        return (
            data.get("IFLA_VXLAN_ID") == segment.vni
            and data.get("IFLA_VXLAN_LOCAL") == self.local
            and data.get("IFLA_VXLAN_PORT") == VXLAN_PORT
            and not data.get("IFLA_VXLAN_LEARNING")
        )

    def _ensure_device(
        self,
        ipr: Any,
        name: str,
        segment: Segment,
        bridge: Any,
        link: Any,
        done: dict[str, list[str]],
    ) -> int:
        """The segment's device exists, in its bridge, at the bridge's MTU, up: its index."""
        if link is None:
            link = self._create_device(ipr, name, segment)
            done["created_links"].append(name)
        index, bridge_index = int(link["index"]), int(bridge["index"])
        mtu = bridge.get("IFLA_MTU")
        up = bool(link["flags"] & 1)
        if link.get("IFLA_MASTER") != bridge_index or link.get("IFLA_MTU") != mtu or not up:
            _call(
                f"plug {name} into {segment.bridge}",
                ipr.link,
                "set",
                index=index,
                master=bridge_index,
                mtu=mtu,
                state="up",
            )
            done["plugged_links"].append(name)
        return index

    def _create_device(self, ipr: Any, name: str, segment: Segment) -> Any:
        _call(
            f"create VXLAN device {name} (VNI {segment.vni})",
            ipr.link,
            "add",
            ifname=name,
            kind="vxlan",
            vxlan_id=segment.vni,
            vxlan_local=self.local,
            vxlan_port=VXLAN_PORT,
            vxlan_learning=0,  # remotes come from the database, never from traffic
        )
        index = _lookup(ipr, name)
        if index is None:
            raise OverlayError(f"{name} vanished as it was made: is another agent racing?")
        # no IPv6 link-local on a tenant's L2: set before the device is ever up
        with contextlib.suppress(OverlayError):
            _call(f"disable IPv6 on {name}", ipr.link, "set", index=index, **_NO_IPV6)
        return ipr.get_links(index)[0]

    # ------------------------------------------------------------------ inspection

    def inventory(self) -> dict[str, list[str]]:
        """Every VXLAN device of ours and its FDB entries ("device mac dst"), sorted."""
        found: dict[str, list[str]] = {"vxlans": [], "fdb": []}
        with self._ipr() as ipr:
            fdb = _fdb(ipr)
            for link in ipr.get_links():
                name = link.get("ifname")
                if self._ours(name):
                    found["vxlans"].append(name)
                    entries = fdb.get(link["index"], set())
                    found["fdb"] += [f"{name} {mac} {dst}" for mac, dst in entries]
        found["vxlans"].sort()
        found["fdb"].sort()
        return found

    def remove_all(self) -> list[str]:
        """Every VXLAN device of ours gone (their FDB entries go with them); their names."""
        with self._ipr() as ipr:
            return _remove_ours(ipr, self._ours)


def remove_overlay(prefix: str) -> list[str]:
    """Every VXLAN device of the cloud `prefix` on this host gone (what `host decommission`
    does; no local address needed to find them)."""
    if not PREFIX_RE.match(prefix):
        raise OverlayError(f"prefix {prefix!r}: 1 to 4 lowercase letters and digits")
    with netlink.IPRoute() as ipr:
        return _remove_ours(ipr, lambda ifname: _is_ours(prefix, ifname))


def _is_ours(prefix: str, ifname: Any) -> bool:
    """`<prefix>v<hex>`, 15 characters: a VXLAN device of the cloud `prefix`."""
    head = f"{prefix}{_LETTER}"
    return (
        isinstance(ifname, str)
        and len(ifname) == IFNAME_MAX
        and ifname.startswith(head)
        and re.fullmatch(r"[0-9a-f]+", ifname[len(head) :]) is not None
    )


def _remove_ours(ipr: Any, ours: Any) -> list[str]:
    removed = []
    for link in ipr.get_links():
        name = link.get("ifname")
        if ours(name) and link.get(("IFLA_LINKINFO", "IFLA_INFO_KIND")) == "vxlan":
            _delete_link(ipr, name)
            removed.append(name)
    return sorted(removed)


_NO_IPV6: dict[str, Any] = {
    "IFLA_AF_SPEC": {
        "attrs": [("AF_INET6", {"attrs": [("IFLA_INET6_ADDR_GEN_MODE", _ADDR_GEN_MODE_NONE)]})]
    }
}


# ------------------------------------------------------------------------ validation


def tenant_mtu(underlay_mtu: int) -> int:
    """The largest MTU a guest may use on a VXLAN segment over an IPv4 underlay."""
    return underlay_mtu - VXLAN_OVERHEAD


def _checked_ipv4(value: str, what: str) -> str:
    try:
        address = ipaddress.IPv4Address(value)
    except ValueError:
        raise OverlayError(f"{what} {value!r} is not an IPv4 address") from None
    if address.is_unspecified or address.is_multicast or address.is_loopback:
        raise OverlayError(f"{what} {value} cannot be a tunnel endpoint")
    return str(address)


def _check_segment(segment: Segment, local: str) -> None:
    where = f"network {segment.network_id[:64]}"
    if isinstance(segment.vni, bool) or not 1 <= segment.vni <= MAX_VNI:
        raise OverlayError(f"{where}: VNI {segment.vni!r} is outside 1..{MAX_VNI}")
    if not _IFNAME_RE.match(segment.bridge):
        raise OverlayError(f"{where}: {segment.bridge!r} is not an interface name")
    remotes = {_checked_ipv4(r, f"{where}: remote") for r in segment.remotes}
    if local in remotes:
        raise OverlayError(f"{where}: this host ({local}) cannot be its own remote")
    for mac, dst in segment.macs.items():
        if not MAC_RE.match(mac.lower()) or int(mac[:2], 16) & 1:
            raise OverlayError(f"{where}: {mac!r} is not a unicast MAC address")
        if _checked_ipv4(dst, f"{where}: host of {mac}") not in remotes:
            raise OverlayError(f"{where}: {mac} is said to be behind {dst}, not a remote of it")


# ---------------------------------------------------------------------------- netlink


def _call(what: str, call: Any, *args: Any, **kwargs: Any) -> Any:
    try:
        return call(*args, **kwargs)
    except netlink.NetlinkError as exc:
        raise OverlayError(f"cannot {what}: {os.strerror(exc.code)}") from exc


def _lookup(ipr: Any, ifname: str) -> int | None:
    found = ipr.link_lookup(ifname=ifname)
    return int(found[0]) if found else None


def _delete_link(ipr: Any, ifname: str) -> None:
    index = _lookup(ipr, ifname)
    if index is None:
        return
    try:
        ipr.link("del", index=index)
    except netlink.NetlinkError as exc:
        if exc.code != _ENODEV:  # gone meanwhile
            raise OverlayError(f"cannot delete {ifname}: {os.strerror(exc.code)}") from exc


def _fdb(ipr: Any) -> dict[int, set[tuple[str, str]]]:
    """Every VXLAN device's own (MAC, remote) entries, by device index; the bridges'
    entries carry no remote and are not ours to manage."""
    found: dict[int, set[tuple[str, str]]] = {}
    for entry in _call("read the FDB", ipr.fdb, "dump"):
        dst = entry.get("NDA_DST")
        if dst is not None:
            mac = str(entry.get("NDA_LLADDR")).lower()
            found.setdefault(int(entry["ifindex"]), set()).add((mac, str(dst)))
    return found


def _sync_fdb(
    ipr: Any,
    index: int,
    name: str,
    present: set[tuple[str, str]],
    wanted: frozenset[tuple[str, str]],
    done: dict[str, list[str]],
) -> None:
    # removals first: a MAC that moved host gets its new entry after the old one is gone
    for mac, dst in sorted(present - wanted):
        try:
            ipr.fdb("del", ifindex=index, lladdr=mac, dst=dst)
        except netlink.NetlinkError as exc:
            if exc.code != _ENOENT:
                raise OverlayError(f"cannot remove {mac} {dst} from {name}: {exc}") from exc
        done["removed_fdb"].append(f"{name} {mac} {dst}")
    for mac, dst in sorted(wanted - present):
        _call(f"add {mac} {dst} to {name}", ipr.fdb, "append", ifindex=index, lladdr=mac, dst=dst)
        done["added_fdb"].append(f"{name} {mac} {dst}")
