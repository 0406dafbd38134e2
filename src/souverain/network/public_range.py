"""The external network's range must be this cloud's alone on the host.

A second bridge holding the same gateway address (another cloud's, or one a stopped cloud
left) would answer ARP for it, and floating IPs would stop answering from the host.
"""

from __future__ import annotations

import ipaddress
from typing import Any

from souverain.network.dataplane import DataplaneError


def refuse_held(ipr: Any, network: ipaddress.IPv4Network, own_bridge: str) -> None:
    """The external network must be this cloud's alone on the host: another link holding an
    address in it (another cloud's bridge, a forgotten one) would answer for its gateway."""
    for address in ipr.get_addr(family=2):
        held = ipaddress.IPv4Interface(f"{address.get('IFA_ADDRESS')}/{address['prefixlen']}")
        if held.ip not in network:  # an address inside the range: its gateway or a neighbour
            continue
        links = ipr.get_links(address["index"])
        name = links[0].get("ifname") if links else f"link {address['index']}"
        if name != own_bridge:
            raise DataplaneError(
                f"the external network {network} is already on {name} ({held}), which is not "
                f"this cloud's: set network.public_cidr and network.public_gateway (or "
                f"SOUVERAIN_NETWORK__PUBLIC_CIDR and ..._PUBLIC_GATEWAY) to a free range, or "
                f"remove {held} from {name} (a stopped cloud's: `souverain host decommission`)"
            )
