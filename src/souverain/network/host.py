"""The host side of the network service: the objects that touch the kernel.

A cloud runs either all three (root, data plane on) or none of them: servers then
take networks none. The service is handed this at construction, never later.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from pathlib import Path

from souverain.network.dataplane import Dataplane
from souverain.network.firewall import Firewall
from souverain.network.overlay import remove_overlay
from souverain.network.routing import Routing


@dataclass(frozen=True)
class HostNetwork:
    """Bridges, taps and dnsmasq; routers' namespaces; the nftables firewall."""

    dataplane: Dataplane
    routing: Routing
    firewall: Firewall

    def decommission(self) -> dict[str, list[str]]:
        """Everything this cloud made on this host gone, found by its prefix and nothing
        else: routers' namespaces and veths, the external networks' NAT tables and
        addresses, bridges, taps, DHCP namespaces, dnsmasq, the firewall's tables and the
        run dir. What a start would rebuild from the database; the rows are not touched."""
        done = self.routing.reconcile({})
        public = self.routing.public_networks()
        for network_id in public:
            self.routing.delete_public(network_id)
        done["removed_public_tables"] = [self.routing.public_table(n) for n in public]
        done["removed_vxlans"] = remove_overlay(self.dataplane.prefix)
        done.update(self.dataplane.reconcile({}))
        tables = self.firewall.inventory()
        self.firewall.delete()
        done["removed_firewall_tables"] = tables
        self.dataplane.remove_run_dir()
        done["removed_run_dir"] = [str(self.dataplane.run_dir)]
        return done


def dataplane_prefix(digest: str) -> str:
    """Four characters naming this cloud's kernel objects: a letter, then base 36 (1.2 million
    values, so clouds sharing a host, as tests do, do not take each other's bridges)."""
    number = int(digest[:12], 16)
    alphabet = "abcdefghijklmnopqrstuvwxyz0123456789"
    first, number = alphabet[number % 26], number // 26
    rest = ""
    for _ in range(3):
        rest += alphabet[number % 36]
        number //= 36
    return first + rest


def host_network(data_dir: Path, make_run_dir: bool = True) -> HostNetwork:
    """This cloud's kernel side on this host (a serve's or an agent's: the same names, so
    `souverain host decommission` with the same data dir finds them). One host may run
    several clouds (tests do): the names of its objects and its run dir derive from the
    data dir."""
    digest = hashlib.sha256(str(data_dir.resolve()).encode()).hexdigest()
    run_dir = Path("/run/souverain-net") / digest[:8]
    if make_run_dir:
        run_dir.mkdir(parents=True, exist_ok=True)
        for directory in (run_dir.parent, run_dir):  # dnsmasq runs as nobody: it must get in
            os.chmod(directory, 0o755)  # noqa: S103 - dnsmasq (nobody) reads below
    plane = Dataplane(run_dir, prefix=dataplane_prefix(digest))
    return HostNetwork(plane, Routing(plane), Firewall(plane.prefix))
