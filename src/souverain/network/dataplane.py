"""The network host driver: Linux bridges, taps, a DHCP namespace and dnsmasq per network.

One Linux bridge per network is the single attachment point: guest taps, the DHCP
namespace's veth and (later) a VXLAN device to other hosts all plug into it. Every kernel
object is named from an id with the instance's prefix, so a restarted control plane finds
its objects again and `reconcile` can remove what the database no longer wants without
touching anything else. Every call is idempotent. No HTTP, no database; calls block
(netlink, dnsmasq start): from async code, run them in a thread.
"""

from __future__ import annotations

import contextlib
import fcntl
import ipaddress
import os
import re
import shutil
import signal
import stat
import subprocess
import threading
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from souverain.network import netlink
from souverain.network.dhcp_options import dnsmasq_lines
from souverain.network.ipam import InvalidInput

IFNAME_MAX = 15  # IFNAMSIZ - 1
PREFIX_RE = re.compile(r"^[a-z][a-z0-9]{0,3}$")
ID_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9-]{0,63}$")
MAC_RE = re.compile(r"^[0-9a-f]{2}(:[0-9a-f]{2}){5}$")
HOSTNAME_RE = re.compile(r"^(?!-)[A-Za-z0-9-]{1,63}(?<!-)$")
DNSMASQ = "/usr/sbin/dnsmasq"
IP = "ip"
DNSMASQ_START_TIMEOUT = 10.0
DNSMASQ_STOP_TIMEOUT = 5.0
DEFAULT_LEASE_SECONDS = 86400
# The name of the DHCP veth inside its namespace: alone there, so it needs no id.
NS_IFNAME = "dhcp0"

# One letter after the prefix says what a link is; the rest is hex of the id.
_BRIDGE, _TAP, _DHCP_VETH = "b", "t", "d"
_KINDS = {_BRIDGE: "bridge", _TAP: "tun", _DHCP_VETH: "veth"}


class DataplaneError(Exception):
    """A host networking operation failed; the message says what an operator can act on."""


@dataclass(frozen=True)
class DhcpHost:
    """One port Neutron knows: dnsmasq answers exactly these MACs, with exactly this IP."""

    mac: str
    ip: str
    hostname: str
    options: tuple[tuple[str, str], ...] = ()  # the port's extra DHCP options (name, value)


@dataclass(frozen=True)
class SubnetSpec:
    """The subnet dnsmasq serves; `dhcp_ip` is the DHCP port's address inside it."""

    cidr: str
    gateway: str | None
    dhcp_ip: str
    dns: tuple[str, ...] = ()
    mtu: int = 1500


class Dataplane:
    """The data plane of one host; `run_dir` holds dnsmasq's confs, pidfiles and leases.

    Kernel object names: bridge `<prefix>b<hex>`, tap `<prefix>t<hex>`, the DHCP veth's host
    end `<prefix>d<hex>` (all exactly 15 characters, hex from the id), namespace
    `<prefix>dhcp-<network id>`. Two data planes on one host need prefixes that are not
    prefixes of one another. dnsmasq drops to `nobody` and re-reads its hosts file on
    SIGHUP, so `run_dir` and its parents must be traversable by everyone (e.g. under /run).
    """

    def __init__(
        self, run_dir: Path, prefix: str = "sv", lease_seconds: int = DEFAULT_LEASE_SECONDS
    ) -> None:
        if not PREFIX_RE.match(prefix):
            raise DataplaneError(f"prefix {prefix!r}: 1 to 4 lowercase letters and digits")
        if lease_seconds < 120:
            raise DataplaneError("a DHCP lease lasts at least 120 seconds")
        self.run_dir = run_dir.resolve()
        self.prefix = prefix
        self.lease_seconds = lease_seconds
        self._hex_len = IFNAME_MAX - len(prefix) - 1
        self._dhcp_root = self.run_dir / f"{prefix}dhcp"
        self._thread_lock = threading.Lock()

    # ------------------------------------------------------------------------- names

    def bridge_name(self, network_id: str) -> str:
        return self._ifname(_BRIDGE, network_id)

    def tap_name(self, port_id: str) -> str:
        return self._ifname(_TAP, port_id)

    def dhcp_namespace(self, network_id: str) -> str:
        return f"{self.prefix}dhcp-{_checked_id(network_id)}"

    def _dhcp_veth(self, network_id: str) -> str:
        return self._ifname(_DHCP_VETH, network_id)

    def _ifname(self, letter: str, object_id: str) -> str:
        digits = _checked_id(object_id).replace("-", "").lower()
        if len(digits) < self._hex_len or not re.fullmatch(r"[0-9a-f]+", digits):
            raise DataplaneError(
                f"id {object_id!r} must be a UUID (at least {self._hex_len} hex digits)"
            )
        return f"{self.prefix}{letter}{digits[: self._hex_len]}"

    def _ours(self, ifname: str, letter: str) -> bool:
        head = f"{self.prefix}{letter}"
        return (
            len(ifname) == IFNAME_MAX
            and ifname.startswith(head)
            and re.fullmatch(r"[0-9a-f]+", ifname[len(head) :]) is not None
        )

    def _dhcp_dir(self, network_id: str) -> Path:
        return self._dhcp_root / _checked_id(network_id)

    # ---------------------------------------------------------------------- networks

    def ensure_network(self, network_id: str, mtu: int = 1500) -> str:
        """The network's bridge, up, with this MTU; created if missing. Returns its name."""
        _check_mtu(mtu)
        name = self.bridge_name(network_id)
        with self._lock(), netlink.IPRoute() as ipr:
            index = _lookup(ipr, name)
            if index is None:
                _netlink(
                    f"create bridge {name}",
                    ipr.link,
                    "add",
                    ifname=name,
                    kind="bridge",
                    # a fresh guest port forwards at once; no STP across guests
                    br_forward_delay=0,
                    br_stp_state=0,
                    # bridged IPv4 goes through the inet hooks, where the security groups'
                    # stateful rules are (firewall.py), whatever the host's sysctl says
                    br_nf_call_iptables=1,
                )
                index = _lookup(ipr, name)
            elif _kind(ipr.get_links(index)[0]) != "bridge":
                raise DataplaneError(f"{name} exists and is not a bridge: remove it by hand")
            _no_host_ipv6(name)
            _netlink(
                f"enable netfilter on bridge {name}",
                ipr.link,
                "set",
                index=index,
                kind="bridge",
                br_nf_call_iptables=1,
            )
            _netlink(f"bring up bridge {name}", ipr.link, "set", index=index, mtu=mtu, state="up")
        return name

    def delete_network(self, network_id: str) -> None:
        """The bridge, its taps, the DHCP namespace, veth, dnsmasq and files: all gone."""
        self.delete_dhcp(network_id)
        name = self.bridge_name(network_id)
        with self._lock(), netlink.IPRoute() as ipr:
            index = _lookup(ipr, name)
            if index is None:
                return
            for link in ipr.get_links():
                ifname = link.get("ifname")
                if link.get("IFLA_MASTER") == index and (
                    self._ours(ifname, _TAP) or self._ours(ifname, _DHCP_VETH)
                ):
                    _delete_link(ipr, ifname)
            _delete_link(ipr, name)

    # -------------------------------------------------------------------------- taps

    def ensure_tap(self, network_id: str, port_id: str, mac: str | None = None) -> str:
        """A persistent tap (single queue, owner root) in the network's bridge, up.

        QEMU opens it with `-netdev tap,ifname=<name>,script=no,downscript=no`. `mac` is the
        host side's address (not the guest's); None leaves the kernel's random one.
        """
        if mac is not None:
            mac = _checked_mac(mac)
        name = self.tap_name(port_id)
        bridge = self.bridge_name(network_id)
        with self._lock(), netlink.IPRoute() as ipr:
            bridge_index = _lookup(ipr, bridge)
            if bridge_index is None:
                raise DataplaneError(f"network {network_id} has no bridge: ensure_network first")
            index = _lookup(ipr, name)
            if index is None:
                _netlink(
                    f"create tap {name}",
                    ipr.link,
                    "add",
                    ifname=name,
                    kind="tuntap",
                    mode="tap",
                    uid=0,
                    gid=0,
                    ifr={
                        "no_pi": True,
                        "one_queue": False,
                        "vnet_hdr": False,
                        "multi_queue": False,
                    },
                )
                index = _lookup(ipr, name)
            elif _kind(ipr.get_links(index)[0]) != "tun":
                raise DataplaneError(f"{name} exists and is not a tap: remove it by hand")
            mtu = ipr.get_links(bridge_index)[0].get("IFLA_MTU")
            changes: dict[str, Any] = {"master": bridge_index, "mtu": mtu, "state": "up"}
            if mac is not None:
                changes["address"] = mac
            _no_host_ipv6(name)
            _netlink(f"plug tap {name} into {bridge}", ipr.link, "set", index=index, **changes)
        return name

    def delete_tap(self, port_id: str) -> None:
        name = self.tap_name(port_id)
        with self._lock(), netlink.IPRoute() as ipr:
            _delete_link(ipr, name)

    # -------------------------------------------------------------------------- DHCP

    def ensure_dhcp(self, network_id: str, subnet: SubnetSpec, hosts: Sequence[DhcpHost]) -> None:
        """dnsmasq in the network's DHCP namespace answers exactly `hosts` on `subnet`.

        A change of hosts or options rewrites the files and SIGHUPs dnsmasq (leases and pid
        survive); a change of the subnet itself restarts it; a dead dnsmasq is started again.
        """
        network, dhcp_address = _checked_subnet(subnet)
        host_lines = _hosts_file(network, hosts)
        opts_lines = _opts_file(network, subnet) + _host_opts(hosts)
        bridge = self.bridge_name(network_id)
        namespace = self.dhcp_namespace(network_id)
        veth = self._dhcp_veth(network_id)
        directory = self._dhcp_dir(network_id)
        with self._lock():
            with netlink.IPRoute() as ipr:
                bridge_index = _lookup(ipr, bridge)
                if bridge_index is None:
                    raise DataplaneError(
                        f"network {network_id} has no bridge: ensure_network first"
                    )
                self._ensure_namespace_and_veth(ipr, namespace, veth, bridge_index, subnet.mtu)
            _set_namespace_address(namespace, dhcp_address)
            _make_readable_dir(directory)
            # dnsmasq (2.86-2.90 at least) crashes on SIGHUP once hosts carry `set:` tags,
            # so a network whose ports have their own options is restarted instead (its
            # leases are in the lease file: guests keep their addresses)
            tagged = _tagged_hosts(directory / "hosts") or _TAG_MARK in host_lines
            files = {"hosts": host_lines, "opts": opts_lines}
            changed = [
                name for name, text in files.items() if _write_if_changed(directory / name, text)
            ]
            argv = self._dnsmasq_argv(network_id, network)
            pid = self._dnsmasq_pid(network_id)
            for stray in self._dnsmasq_processes().get(network_id, []):
                if stray != pid:  # its pidfile was lost: it would hold port 67 forever
                    _stop(stray)
            # a lease of a port that is gone would keep its address from the next port
            # given it: dnsmasq offers a host's address to nobody while another MAC holds it
            stale = _stale_leases(directory / "leases", hosts)
            if pid is not None and (_proc_argv(pid) != argv or (changed and tagged) or stale):
                _stop(pid)  # the subnet changed (its range is on the command line), or tags
                pid = None
            if stale:  # dnsmasq is stopped: it keeps its leases in memory and rewrites them
                _drop_leases(directory / "leases", stale)
            if pid is None:
                self._start_dnsmasq(network_id, namespace, argv)
            elif changed:
                os.kill(pid, signal.SIGHUP)

    def delete_dhcp(self, network_id: str) -> None:
        """dnsmasq, the namespace, the veth and the files of the network's DHCP: all gone."""
        namespace = self.dhcp_namespace(network_id)
        directory = self._dhcp_dir(network_id)
        with self._lock():
            for pid in self._dnsmasq_processes().get(network_id, []):
                _stop(pid)
            with netlink.IPRoute() as ipr:
                _delete_link(ipr, self._dhcp_veth(network_id))
            if namespace in netlink.netns.listnetns():
                netlink.netns.remove(namespace)
            shutil.rmtree(directory, ignore_errors=True)

    def _ensure_namespace_and_veth(
        self, ipr: Any, namespace: str, veth: str, bridge_index: int, mtu: int
    ) -> None:
        if namespace not in netlink.netns.listnetns():
            netlink.netns.create(namespace)
        with netlink.NetNS(namespace) as ns:
            peer = _lookup(ns, NS_IFNAME)
            index = _lookup(ipr, veth)
            if index is None or peer is None:
                # half a pair (a crash between the two steps) is useless: start again
                if index is not None:
                    _delete_link(ipr, veth)
                if peer is not None:
                    _netlink(f"delete {NS_IFNAME} in {namespace}", ns.link, "del", index=peer)
                _netlink(
                    f"create veth {veth} into {namespace}",
                    ipr.link,
                    "add",
                    ifname=veth,
                    kind="veth",
                    peer={"ifname": NS_IFNAME, "net_ns_fd": namespace},
                )
                index = _lookup(ipr, veth)
                peer = _lookup(ns, NS_IFNAME)
            _no_host_ipv6(veth)
            _netlink(
                f"plug {veth} into the bridge",
                ipr.link,
                "set",
                index=index,
                master=bridge_index,
                mtu=mtu,
                state="up",
            )
            _netlink(
                f"bring up {NS_IFNAME} in {namespace}",
                ns.link,
                "set",
                index=peer,
                mtu=mtu,
                state="up",
            )
            loopback = _lookup(ns, "lo")
            _netlink(f"bring up lo in {namespace}", ns.link, "set", index=loopback, state="up")

    def _dnsmasq_argv(self, network_id: str, network: ipaddress.IPv4Network) -> list[str]:
        directory = self._dhcp_dir(network_id)
        return [
            DNSMASQ,
            "--conf-file=",
            "--no-hosts",
            "--no-resolv",
            "--port=0",
            "--bind-interfaces",
            f"--interface={NS_IFNAME}",
            "--except-interface=lo",
            f"--dhcp-range={network.network_address},static,{network.netmask},{self.lease_seconds}",
            "--dhcp-authoritative",
            f"--dhcp-hostsfile={directory / 'hosts'}",
            f"--dhcp-optsfile={directory / 'opts'}",
            f"--dhcp-leasefile={directory / 'leases'}",
            f"--pid-file={directory / 'dnsmasq.pid'}",
            f"--log-facility={directory / 'dnsmasq.log'}",
            "--log-dhcp",
        ]

    def _start_dnsmasq(self, network_id: str, namespace: str, argv: list[str]) -> None:
        directory = self._dhcp_dir(network_id)
        (directory / "dnsmasq.pid").unlink(missing_ok=True)
        errors = directory / "dnsmasq-start.err"
        with errors.open("w+b") as err:
            # dnsmasq daemonizes once bound; the parent's exit status and stderr say whether
            # it started (it reports bind and config errors through a pipe before exiting).
            proc = subprocess.Popen(
                [IP, "netns", "exec", namespace, *argv],
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=err,
                start_new_session=True,
                cwd=directory,
            )
            try:
                returncode = proc.wait(timeout=DNSMASQ_START_TIMEOUT)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
                returncode = -1
            err.seek(0)
            message = err.read().decode("utf-8", "replace").strip()
        if returncode != 0:
            raise DataplaneError(
                f"dnsmasq for network {network_id} did not start: "
                f"{message or f'exit status {returncode}'} (log: {directory / 'dnsmasq.log'})"
            )
        errors.unlink(missing_ok=True)
        if self._dnsmasq_pid(network_id) is None:
            raise DataplaneError(
                f"dnsmasq for network {network_id} started but is not running: "
                f"see {directory / 'dnsmasq.log'}"
            )

    def _dnsmasq_pid(self, network_id: str) -> int | None:
        """The pid in the network's pidfile, if that process is our dnsmasq for it."""
        pidfile = self._dhcp_dir(network_id) / "dnsmasq.pid"
        try:
            pid = int(pidfile.read_text().strip())
        except (OSError, ValueError):
            return None
        argv = _proc_argv(pid)
        if argv is None or f"--pid-file={pidfile}" not in argv:
            return None
        return pid

    def _dnsmasq_processes(self) -> dict[str, list[int]]:
        """Every live dnsmasq whose pidfile lies under our run dir, by network id."""
        marker = f"--pid-file={self._dhcp_root}/"
        found: dict[str, list[int]] = {}
        for entry in Path("/proc").iterdir():
            if not entry.name.isdigit():
                continue
            argv = _proc_argv(int(entry.name))
            if not argv or Path(argv[0]).name != "dnsmasq":
                continue
            for arg in argv:
                if arg.startswith(marker):
                    network_id = arg[len(marker) :].split("/", 1)[0]
                    found.setdefault(network_id, []).append(int(entry.name))
        return found

    # ------------------------------------------------------------------ reconcile

    def reconcile(self, networks: Mapping[str, Sequence[str]]) -> dict[str, list[str]]:
        """Make the host match `networks` (network id -> its port ids with taps).

        Removes every object of ours not wanted (bridges, taps, DHCP veths, namespaces,
        dnsmasq processes, run files), creates missing bridges and plugs wanted taps into
        their network's bridge. DHCP of wanted networks is left to ensure_dhcp. Returns what
        it did, for the log.
        """
        wanted_bridges = {self.bridge_name(n): n for n in networks}
        wanted_veths = {self._dhcp_veth(n) for n in networks}
        wanted_taps = {self.tap_name(p): n for n, ports in networks.items() for p in ports}
        wanted_namespaces = {self.dhcp_namespace(n) for n in networks}
        done: dict[str, list[str]] = {
            "removed_dnsmasq": [],
            "removed_namespaces": [],
            "removed_links": [],
            "removed_files": [],
            "created_bridges": [],
            "plugged_taps": [],
        }
        with self._lock():
            for network_id, pids in self._dnsmasq_processes().items():
                if network_id not in networks:
                    for pid in pids:
                        _stop(pid)
                        done["removed_dnsmasq"].append(str(pid))
            for namespace in netlink.netns.listnetns():
                if (
                    namespace.startswith(f"{self.prefix}dhcp-")
                    and namespace not in wanted_namespaces
                ):
                    netlink.netns.remove(namespace)
                    done["removed_namespaces"].append(namespace)
            if self._dhcp_root.is_dir():
                for directory in self._dhcp_root.iterdir():
                    if directory.name not in networks:
                        shutil.rmtree(directory, ignore_errors=True)
                        done["removed_files"].append(str(directory))
            with netlink.IPRoute() as ipr:
                for link in ipr.get_links():
                    ifname = link.get("ifname")
                    unwanted = (
                        (self._ours(ifname, _TAP) and ifname not in wanted_taps)
                        or (self._ours(ifname, _DHCP_VETH) and ifname not in wanted_veths)
                        or (self._ours(ifname, _BRIDGE) and ifname not in wanted_bridges)
                    )
                    if unwanted and _kind(link) in _KINDS.values():
                        _delete_link(ipr, ifname)
                        done["removed_links"].append(ifname)
        for name, network_id in wanted_bridges.items():
            with netlink.IPRoute() as ipr:
                missing = _lookup(ipr, name) is None
            if missing:  # at the default MTU: the service's ensure_network sets the real one
                self.ensure_network(network_id)
                done["created_bridges"].append(name)
        with self._lock(), netlink.IPRoute() as ipr:
            for tap, network_id in wanted_taps.items():
                index = _lookup(ipr, tap)
                bridge_index = _lookup(ipr, self.bridge_name(network_id))
                if index is not None and ipr.get_links(index)[0].get("IFLA_MASTER") != bridge_index:
                    _netlink(f"plug {tap}", ipr.link, "set", index=index, master=bridge_index)
                    done["plugged_taps"].append(tap)
        return done

    def inventory(self) -> dict[str, list[str]]:
        """Every object of ours that exists now (what tests check for leaks)."""
        found: dict[str, list[str]] = {
            "bridges": [],
            "taps": [],
            "veths": [],
            "namespaces": [],
            "dnsmasq": [],
            "files": [],
        }
        with netlink.IPRoute() as ipr:
            for link in ipr.get_links():
                ifname = link.get("ifname")
                for letter, key in ((_BRIDGE, "bridges"), (_TAP, "taps"), (_DHCP_VETH, "veths")):
                    if self._ours(ifname, letter):
                        found[key].append(ifname)
        found["namespaces"] = sorted(
            n for n in netlink.netns.listnetns() if n.startswith(f"{self.prefix}dhcp-")
        )
        found["dnsmasq"] = sorted(
            str(pid) for pids in self._dnsmasq_processes().values() for pid in pids
        )
        if self._dhcp_root.is_dir():
            found["files"] = sorted(str(p) for p in self._dhcp_root.iterdir())
        return found

    def remove_run_dir(self) -> None:
        """This cloud's run dir (DHCP files, leases, the lock) gone; the shared parent stays."""
        shutil.rmtree(self.run_dir, ignore_errors=True)

    # ---------------------------------------------------------------------- locking

    @contextlib.contextmanager
    def _lock(self) -> Iterator[None]:
        """Serialise changes across threads and processes sharing this run dir."""
        _make_readable_dir(self.run_dir)
        with self._thread_lock, (self.run_dir / f".{self.prefix}.lock").open("a") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            yield


# ------------------------------------------------------------------------ validation


def _checked_id(value: str) -> str:
    if not ID_RE.match(value):
        raise DataplaneError(f"invalid id {value!r}")
    return value


def _checked_mac(value: str) -> str:
    mac = value.lower()
    if not MAC_RE.match(mac) or int(mac[:2], 16) & 1:
        raise DataplaneError(f"invalid unicast MAC address {value!r}")
    return mac


def _check_mtu(mtu: int) -> None:
    if not 576 <= mtu <= 9000:
        raise DataplaneError(f"MTU {mtu} is outside 576..9000")


def _checked_subnet(subnet: SubnetSpec) -> tuple[ipaddress.IPv4Network, ipaddress.IPv4Interface]:
    _check_mtu(subnet.mtu)
    try:
        network = ipaddress.IPv4Network(subnet.cidr)
        dhcp_ip = ipaddress.IPv4Address(subnet.dhcp_ip)
        gateway = None if subnet.gateway is None else ipaddress.IPv4Address(subnet.gateway)
        for server in subnet.dns:
            ipaddress.IPv4Address(server)
    except ValueError as exc:
        raise DataplaneError(f"subnet {subnet.cidr}: {exc} (IPv4 only for now)") from exc
    if network.prefixlen > 30:
        raise DataplaneError(f"subnet {subnet.cidr} is too small for DHCP")
    usable = (network.network_address, network.broadcast_address)
    for name, address in (("DHCP address", dhcp_ip), ("gateway", gateway)):
        if address is not None and (address not in network or address in usable):
            raise DataplaneError(f"{name} {address} is not a host address of {network}")
    return network, ipaddress.IPv4Interface(f"{dhcp_ip}/{network.prefixlen}")


def _hosts_file(network: ipaddress.IPv4Network, hosts: Sequence[DhcpHost]) -> str:
    lines = []
    macs: set[str] = set()
    addresses: set[ipaddress.IPv4Address] = set()
    for host in sorted(hosts, key=lambda h: h.mac.lower()):
        mac = _checked_mac(host.mac)
        try:
            address = ipaddress.IPv4Address(host.ip)
        except ValueError as exc:
            raise DataplaneError(f"host {mac}: {exc}") from exc
        if address not in network:
            raise DataplaneError(f"host {mac}: {address} is not in {network}")
        if not HOSTNAME_RE.match(host.hostname):
            raise DataplaneError(f"host {mac}: invalid host name {host.hostname!r}")
        if mac in macs or address in addresses:
            raise DataplaneError(f"host {mac}: MAC or address {address} given twice")
        macs.add(mac)
        addresses.add(address)
        tag = f"set:{_host_tag(mac)}," if host.options else ""
        lines.append(f"{mac},{tag}{address},{host.hostname}\n")
    return "".join(lines)


_TAG_MARK = ",set:"


def _stale_leases(path: Path, hosts: Sequence[DhcpHost]) -> set[str]:
    """The IPv4 lease lines ("expiry mac ip name client-id") of no current (mac, ip) host."""
    try:
        lines = path.read_text().splitlines()
    except OSError:
        return set()
    wanted = {(h.mac.lower(), h.ip) for h in hosts}
    stale = set()
    for line in lines:
        fields = line.split()
        if len(fields) >= 3 and ":" in fields[1] and (fields[1].lower(), fields[2]) not in wanted:
            stale.add(line)
    return stale


def _drop_leases(path: Path, stale: set[str]) -> None:
    kept = [line for line in path.read_text().splitlines() if line not in stale]
    _write_if_changed(path, "".join(f"{line}\n" for line in kept))


def _tagged_hosts(path: Path) -> bool:
    try:
        return _TAG_MARK in path.read_text()
    except OSError:
        return False


def _host_tag(mac: str) -> str:
    return "port-" + mac.lower().replace(":", "")


def _host_opts(hosts: Sequence[DhcpHost]) -> str:
    """Each host's own options, given only to it through the tag its hosts line sets."""
    try:
        return "".join(
            dnsmasq_lines(_host_tag(_checked_mac(h.mac)), h.options)
            for h in sorted(hosts, key=lambda h: h.mac.lower())
            if h.options
        )
    except InvalidInput as exc:
        raise DataplaneError(f"a DHCP option is refused: {exc.message}") from None


def _opts_file(network: ipaddress.IPv4Network, subnet: SubnetSpec) -> str:
    # An empty option stops dnsmasq from offering itself as router or DNS server.
    return (
        f"option:router{',' + subnet.gateway if subnet.gateway else ''}\n"
        f"option:dns-server{''.join(',' + s for s in subnet.dns)}\n"
        f"option:netmask,{network.netmask}\n"
        f"option:mtu,{subnet.mtu}\n"
    )


# ---------------------------------------------------------------------------- netlink


def _netlink(what: str, call: Any, *args: Any, **kwargs: Any) -> Any:
    try:
        return call(*args, **kwargs)
    except netlink.NetlinkError as exc:
        raise DataplaneError(f"cannot {what}: {os.strerror(exc.code)}") from exc


def _lookup(ipr: Any, ifname: str) -> int | None:
    found = ipr.link_lookup(ifname=ifname)
    return int(found[0]) if found else None


def _kind(link: Any) -> str | None:
    kind = link.get(("IFLA_LINKINFO", "IFLA_INFO_KIND"))
    return None if kind is None else str(kind)


def _delete_link(ipr: Any, ifname: str) -> None:
    index = _lookup(ipr, ifname)
    if index is None:
        return
    try:
        ipr.link("del", index=index)
    except netlink.NetlinkError as exc:
        if exc.code != 19:  # ENODEV: gone meanwhile (its veth peer went with its namespace)
            raise DataplaneError(f"cannot delete {ifname}: {os.strerror(exc.code)}") from exc


def _no_host_ipv6(ifname: str) -> None:
    """The host has no address on a tenant's L2: no link-local, no SLAAC from a guest's RA."""
    knob = Path(f"/proc/sys/net/ipv6/conf/{ifname}/disable_ipv6")
    if knob.exists():
        knob.write_text("1")


def _set_namespace_address(namespace: str, address: ipaddress.IPv4Interface) -> None:
    with netlink.NetNS(namespace) as ns:
        index = _lookup(ns, NS_IFNAME)
        present = {
            (a.get("IFA_ADDRESS"), a["prefixlen"]) for a in ns.get_addr(index=index, family=2)
        }
        wanted = (str(address.ip), address.network.prefixlen)
        for ip, prefixlen in present - {wanted}:
            _netlink(
                f"remove {ip} in {namespace}",
                ns.addr,
                "del",
                index=index,
                address=ip,
                prefixlen=prefixlen,
            )
        if wanted not in present:
            _netlink(
                f"add {address} in {namespace}",
                ns.addr,
                "add",
                index=index,
                address=wanted[0],
                prefixlen=wanted[1],
            )


# -------------------------------------------------------------------- files, processes


def _make_readable_dir(path: Path) -> None:
    # one level at a time: under the server's umask (077) `mkdir(parents=True)` would leave
    # the intermediate directories closed to dnsmasq, which runs as nobody
    for directory in reversed((path, *path.parents)):
        if not directory.exists():
            with contextlib.suppress(FileExistsError):
                directory.mkdir()
            os.chmod(directory, 0o755)  # noqa: S103 -- dnsmasq must read below it
    os.chmod(path, 0o755)  # noqa: S103 -- dnsmasq runs as nobody and must read below it
    for parent in path.parents:
        if not parent.stat().st_mode & stat.S_IXOTH:
            raise DataplaneError(
                f"{parent} is not traversable by others: dnsmasq (user nobody) cannot read its "
                "hosts file below it; choose a run dir under /run"
            )


def _write_if_changed(dest: Path, text: str) -> bool:
    try:
        if dest.read_text() == text:
            return False
    except OSError:
        pass
    tmp = dest.with_name(f".{dest.name}.{os.getpid()}.{threading.get_ident()}.tmp")
    with tmp.open("w") as out:
        out.write(text)
        out.flush()
        os.fsync(out.fileno())
    os.chmod(tmp, 0o644)
    os.replace(tmp, dest)
    return True


def _proc_argv(pid: int) -> list[str] | None:
    """The command line of a live (not zombie) process, or None."""
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return None
    if not raw:
        return None
    return raw.rstrip(b"\0").decode("utf-8", "replace").split("\0")


def _stop(pid: int) -> None:
    """SIGTERM, then SIGKILL if it lingers; dnsmasq is daemonized, init reaps it."""
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGTERM)
    for stop_signal in (signal.SIGKILL, None):
        deadline = time.monotonic() + DNSMASQ_STOP_TIMEOUT
        while _proc_argv(pid) is not None:
            if time.monotonic() > deadline:
                break
            time.sleep(0.02)
        else:
            return
        if stop_signal is not None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, stop_signal)
    raise DataplaneError(f"dnsmasq (pid {pid}) survives SIGKILL: look at the host")
