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
