"""What every resource family of the network service shares: the database, the clock,
the host side, the meter, and the transaction helpers. No rules of any resource here.

Each family (`Networks`, `Ports`, ...) is a `Part` built on one `Core` and one
`Families`; a family reaches another through `Families` (ports ask networks for a
visible network, routers ask ports for a system port). `NetworkService` builds the
families and fills `Families` once, in its constructor.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, TypeVar

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from souverain.common.clock import Clock
from souverain.common.context import RequestContext
from souverain.common.metering import NULL_METER, Meter
from souverain.common.quota import lock_quota_row
from souverain.config import NetworkSettings
from souverain.db.engine import Database
from souverain.identity.service import IdentityService
from souverain.network import models as m
from souverain.network.errors import IpAddressGenerationFailure
from souverain.network.fields import ALLOCATION_ATTEMPTS
from souverain.network.host import HostNetwork

if TYPE_CHECKING:
    from souverain.network.dataplane import Dataplane
    from souverain.network.firewall import Firewall
    from souverain.network.floating_ips import FloatingIps
    from souverain.network.metering import Metering
    from souverain.network.networks import Networks
    from souverain.network.ports import Ports
    from souverain.network.quotas import Quotas
    from souverain.network.routers import Routers
    from souverain.network.routing import Routing
    from souverain.network.security_groups import SecurityGroups
    from souverain.network.servers import Servers
    from souverain.network.subnet_pools import SubnetPools
    from souverain.network.tags import Tags
    from souverain.network.wiring import Wiring

T = TypeVar("T")


class Retry(Exception):
    """An address or MAC was taken by a concurrent request: run the transaction again."""


class Core:
    """The state the families share; one per `NetworkService`."""

    def __init__(
        self,
        db: Database,
        identity: IdentityService,
        clock: Clock,
        settings: NetworkSettings,
        host: HostNetwork | None,
    ) -> None:
        self.db = db
        self.identity = identity
        self.clock = clock
        self.settings = settings
        self.host = host
        # billable changes are recorded on it (the billing service's, set by the server)
        self.meter: Meter = NULL_METER
        # called with a server id when its ports' addresses change (a floating IP comes or
        # goes): the compute service refreshes what the server shows, as Nova's
        # network-changed event does
        self.address_listeners: list[Callable[[str], None]] = []
        # one writer of the firewall and of the routers at a time; each write is whole
        self.firewall_lock = threading.Lock()
        self.routing_lock = threading.Lock()


class Families:
    """Every family of one service, for the families to reach each other."""

    quotas: Quotas
    networks: Networks
    ports: Ports
    groups: SecurityGroups
    routers: Routers
    floating_ips: FloatingIps
    wiring: Wiring
    servers: Servers
    subnet_pools: SubnetPools
    tags: Tags
    metering: Metering


class Part:
    """One resource family: its rules over the shared state."""

    def __init__(self, core: Core, families: Families) -> None:
        self.core = core
        self.families = families

    # ------------------------------------------------------------------ shared state

    @property
    def db(self) -> Database:
        return self.core.db

    @property
    def settings(self) -> NetworkSettings:
        return self.core.settings

    @property
    def meter(self) -> Meter:
        return self.core.meter

    @property
    def host(self) -> HostNetwork | None:
        return self.core.host

    @property
    def dataplane(self) -> Dataplane | None:
        return None if self.core.host is None else self.core.host.dataplane

    @property
    def routing(self) -> Routing | None:
        return None if self.core.host is None else self.core.host.routing

    @property
    def firewall(self) -> Firewall | None:
        return None if self.core.host is None else self.core.host.firewall

    # ------------------------------------------------------------------ the other families

    @property
    def quotas(self) -> Quotas:
        return self.families.quotas

    @property
    def networks(self) -> Networks:
        return self.families.networks

    @property
    def ports(self) -> Ports:
        return self.families.ports

    @property
    def groups(self) -> SecurityGroups:
        return self.families.groups

    @property
    def routers(self) -> Routers:
        return self.families.routers

    @property
    def floating_ips(self) -> FloatingIps:
        return self.families.floating_ips

    @property
    def wiring(self) -> Wiring:
        return self.families.wiring

    @property
    def servers(self) -> Servers:
        return self.families.servers

    @property
    def metering(self) -> Metering:
        return self.families.metering

    @property
    def subnet_pools(self) -> SubnetPools:
        return self.families.subnet_pools

    # ------------------------------------------------------------------ transactions

    def _now(self) -> Any:
        return self.core.clock.now().replace(tzinfo=None)

    def _lock_quota(self, s: Session, project_id: str) -> None:
        lock_quota_row(s, m.NetworkQuota, project_id, self._now())

    def _owned_rows(self, s: Session, ctx: RequestContext, model: Any) -> Sequence[Any]:
        """The rows of `model` the caller's project owns (all of them for an admin)."""
        stmt = select(model)
        if not ctx.is_admin:
            stmt = stmt.where(model.project_id == (ctx.project_id or ""))
        return s.scalars(stmt).all()

    def _retrying(self, work: Callable[[Session], T]) -> T:
        """Run `work` in a transaction, again when it lost a race for a unique address."""
        for _ in range(ALLOCATION_ATTEMPTS):
            try:
                with self.db.session() as s:
                    return work(s)
            except (Retry, IntegrityError):
                continue
        raise IpAddressGenerationFailure("No more IP addresses available: too much contention.")
