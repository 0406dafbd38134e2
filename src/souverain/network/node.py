"""The network node of a cloud whose tenant networks span hosts (`network.overlay = "vxlan"`).

`souverain serve` with the database runs DHCP, routers, SNAT and floating IPs for every
tenant network as before; with the overlay its DHCP and router ports are bound to its own
host name, so each network's VXLAN segment reaches it, and guests on agent hosts get their
leases and their way out through it. `NetworkNode.tick` (a bounded loop in `server.py`)
makes the node follow the rows: one cheap reading of the network tables per tick, and only
when it moved: the node's own ports bound, dnsmasq told of ports bound elsewhere, the
node's segments reconciled, and every agent host whose plan changed woken (`hosts_changed`,
compute's revision bump through the composition root).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from typing import Any

from sqlalchemy import select, update

from souverain.db.engine import Database
from souverain.network import models as m
from souverain.network.fields import DHCP_OWNER, ROUTER_INTERFACE
from souverain.network.host import HostNetwork
from souverain.network.host_plan import host_plan, network_fingerprint
from souverain.network.overlay import Overlay
from souverain.network.overlay_plan import HostAddresses, plan_segments
from souverain.network.wiring import Wiring

log = logging.getLogger("souverain.network")


class NetworkNode:
    def __init__(
        self,
        db: Database,
        wiring: Wiring,
        host: HostNetwork,
        name: str,
        address: str | None,
        addresses: HostAddresses,
        agent_hosts: Callable[[], Iterable[str]],
        hosts_changed: Callable[[set[str]], None],
    ) -> None:
        self.db = db
        self.wiring = wiring
        self.host = host
        self.name = name
        # no underlay address: a one-machine cloud with the overlay setting, no segments
        self.overlay = Overlay(host.dataplane.prefix, address) if address else None
        self.addresses = addresses
        self.agent_hosts = agent_hosts
        self.hosts_changed = hosts_changed
        self._reading: Any = None
        self._networks: dict[str, tuple[Any, ...]] = {}
        self._plans: dict[str, str] = {}

    def tick(self) -> bool:
        """Follow the rows if they moved since the last tick; whether they had."""
        addresses = dict(self.addresses())
        with self.db.session() as s:
            reading = (
                network_fingerprint(s),
                sorted(addresses.items()),
                sorted(self.agent_hosts()),
            )
        if reading == self._reading:
            return False
        self._refresh_dhcp()  # may make a network's DHCP port: bound just below
        self._bind_own_ports()
        self._reconcile_overlay(addresses)
        self._wake_hosts(addresses)
        self._reading = reading
        return True

    def forget(self) -> None:
        """After a failed tick: the next one does everything again."""
        self._reading = None
        self._networks.clear()

    def _bind_own_ports(self) -> None:
        """DHCP and router interface ports of tenant networks live here: bound to this node,
        so every host with a guest on their network carries the segment to it."""
        with self.db.session() as s:
            tenant = select(m.Network.id).where(m.Network.external.is_(False))
            s.execute(
                update(m.Port)
                .where(
                    m.Port.device_owner.in_((DHCP_OWNER, ROUTER_INTERFACE)),
                    m.Port.network_id.in_(tenant),
                    m.Port.host != self.name,
                )
                .values(host=self.name)
                .execution_options(synchronize_session=False)
            )

    def _refresh_dhcp(self) -> None:
        """dnsmasq answers every guest port of its subnet, wherever it is bound: a network
        whose set of bound ports changed is refreshed (its bridge made first)."""
        with self.db.session() as s:
            rows = s.execute(
                select(
                    m.Port.network_id,
                    m.Port.id,
                    m.Port.mac_address,
                    m.Port.host,
                    m.Port.revision_number,  # its addresses or DHCP options changed
                    m.Network.mtu,
                )
                .join(m.Network, m.Network.id == m.Port.network_id)
                .where(
                    m.Port.device_owner.like("compute:%"),
                    m.Port.status == "ACTIVE",
                    m.Port.host != "",
                    m.Network.external.is_(False),
                )
                .order_by(m.Port.network_id, m.Port.id)
            ).all()
        now: dict[str, tuple[Any, ...]] = {}
        mtus: dict[str, int] = {}
        for network_id, port_id, mac, host, revision, mtu in rows:
            now[network_id] = (*now.get(network_id, ()), (port_id, mac, host, revision))
            mtus[network_id] = int(mtu)
        plane = self.host.dataplane
        for network_id, ports in now.items():
            if self._networks.get(network_id) == ports:
                continue
            try:
                plane.ensure_network(network_id, mtus[network_id])
                self.wiring.refresh_dhcp(network_id)
            except Exception:  # the next change or restart tries again; others go on
                log.exception("DHCP of network %s could not follow its ports", network_id)
                continue
            self._networks[network_id] = ports
        for network_id in set(self._networks) - set(now):
            del self._networks[network_id]

    def _reconcile_overlay(self, addresses: dict[str, str]) -> None:
        if self.overlay is None:
            return
        with self.db.session() as s:
            segments = plan_segments(s, self.name, addresses, self.host.dataplane.bridge_name)
        changed = self.overlay.reconcile(segments)
        if any(changed.values()):
            log.info("network node overlay reconciled: %s", changed)

    def _wake_hosts(self, addresses: dict[str, str]) -> None:
        """Bump the revision of every agent host whose plan is not what it was: its agent's
        watch answers at once with the new plan (remotes, MACs, rules)."""
        changed: set[str] = set()
        with self.db.session() as s:
            for host in sorted(set(self.agent_hosts())):
                digest = host_plan(s, host, addresses)["digest"]
                if self._plans.get(host) != digest:
                    changed.add(host)
                    self._plans[host] = digest
        if changed:
            self.hosts_changed(changed)
