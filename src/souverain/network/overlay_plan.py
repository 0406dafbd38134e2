"""What the VXLAN overlay of one host must be, read from the network rows: `Segment`s.

A host carries a tenant network's segment when one of the network's ports is bound to it
(`Port.host`, set by compute's bind_port; DHCP and router ports count once bound to a
network node). Its remotes are the other hosts bound to a port of the same network, and
each of their ports' MACs is pinned to its host, as Neutron's l2population does. Host
names become underlay addresses through a seam the composition root passes in (network
must not read compute's tables). Reads only: no kernel, no writes.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from sqlalchemy import or_, select
from sqlalchemy.orm import Session

from souverain.db.engine import Database
from souverain.network import models as m
from souverain.network.overlay import Segment

log = logging.getLogger(__name__)

# host name -> its underlay (tunnel endpoint) address, for every host of the cloud
HostAddresses = Callable[[], Mapping[str, str]]


def plan_segments(
    session: Session,
    host: str,
    host_addresses: Mapping[str, str],
    bridge_name: Callable[[str], str],
    incoming: frozenset[str] = frozenset(),
) -> list[Segment]:
    """The segments `host` must carry, by network id. `bridge_name` is the host data plane's
    naming (Dataplane.bridge_name). A host with no known address is left out of the
    remotes (and logged): nothing can be sent to it. `incoming`: servers moving to this
    host, whose ports count as its own already (their taps are made before they arrive)."""
    if not host:
        return []
    here = select(m.Port.network_id).where(
        or_(m.Port.host == host, m.Port.device_id.in_(sorted(incoming)))
    )
    rows = session.execute(
        select(
            m.Network.id,
            m.Network.segmentation_id,
            m.Port.host,
            m.Port.mac_address,
            m.Port.device_id,
        )
        .join(m.Port, m.Port.network_id == m.Network.id)
        .where(
            m.Network.id.in_(here),
            m.Network.external.is_(False),
            m.Network.segmentation_id.is_not(None),
            m.Port.host != "",
        )
        .order_by(m.Network.id, m.Port.mac_address)
    ).all()
    own = host_addresses.get(host)
    vnis: dict[str, int] = {}
    remotes: dict[str, set[str]] = {}
    macs: dict[str, dict[str, str]] = {}
    unknown: set[str] = set()
    for network_id, vni, port_host, mac, device_id in rows:
        if vni is None:  # filtered out by the query; mypy cannot know
            continue
        vnis[network_id] = vni
        remotes.setdefault(network_id, set())
        macs.setdefault(network_id, {})
        if port_host == host or device_id in incoming:
            continue
        address = host_addresses.get(port_host)
        if address is None or address == own:
            unknown.add(port_host)
            continue
        remotes[network_id].add(address)
        macs[network_id][mac.lower()] = address
    if unknown:
        log.warning("overlay: no usable underlay address for hosts %s", sorted(unknown))
    return [
        Segment(
            network_id=network_id,
            vni=vni,
            bridge=bridge_name(network_id),
            remotes=frozenset(remotes[network_id]),
            macs=macs[network_id],
        )
        for network_id, vni in vnis.items()
    ]


@dataclass(frozen=True)
class OverlayPlan:
    """plan_segments over the cloud's database, with the seams the composition root gives."""

    db: Database
    host_addresses: HostAddresses
    bridge_name: Callable[[str], str]

    def segments(self, host: str) -> list[Segment]:
        with self.db.session() as s:
            return plan_segments(s, host, self.host_addresses(), self.bridge_name)
