"""The host side of the network service: the objects that touch the kernel.

A cloud runs either all three (root, data plane on) or none of them: servers then
take networks none. The service is handed this at construction, never later.
"""

from __future__ import annotations

from dataclasses import dataclass

from souverain.network.dataplane import Dataplane
from souverain.network.firewall import Firewall
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
        done.update(self.dataplane.reconcile({}))
        tables = self.firewall.inventory()
        self.firewall.delete()
        done["removed_firewall_tables"] = tables
        self.dataplane.remove_run_dir()
        done["removed_run_dir"] = [str(self.dataplane.run_dir)]
        return done
