"""Network rules: networks, subnets, ports, IPAM, security groups, quotas, tenancy. No HTTP.

Database only: no bridge, tap or firewall rule is touched here (that is
`dataplane.py`'s job, driven later from these rows).

Tenancy is Neutron's: a project sees its own resources, shared networks and
external networks (and their subnets); anything else is reported as not found.
A shared network also takes ports from other projects. Admins see everything.

Every create first takes the project's `network_quotas` row (INSERT .. ON
CONFLICT DO NOTHING, then SELECT .. FOR UPDATE), as the volume service does:
SQLite takes its one writer lock at that first write and PostgreSQL locks the
row, so quota checks cannot be overshot by concurrent requests in any number of
processes. Addresses are guarded by the database itself: the allocations
table's primary key is (subnet_id, ip_address), and a create that loses a race
for an address is retried and picks the next free one.

The interface the compute service uses:

- `get_or_create_auto_network(ctx)`: the project's get-me-a-network network
  (`auto_allocated_network`, one subnet from `default_cidr`), made once.
- `create_port_for_server(ctx, network_id=None, port_id=None, fixed_ip=None,
  server_id=...)`: a port for a server (an existing port of the project, or a
  new one on the network, the auto network when neither is given); returns the
  port view (`mac_address`, `fixed_ips`, ...).
- `bind_port(port_id, server_id, host)`: the port is plugged; status ACTIVE.
- `release_ports_of(server_id)`: ports made for the server are deleted, ports
  the customer brought are unbound and kept.
"""

from __future__ import annotations

import ipaddress
import logging
import re
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar

from sqlalchemy import delete, func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from souverain.common.clock import Clock
from souverain.common.context import RequestContext
from souverain.common.errors import BadRequest, Conflict, Forbidden, NotFound
from souverain.common.ids import new_id, random_bytes
from souverain.common.metering import NULL_METER, Meter, gib
from souverain.common.quota import effective_limits, lock_quota_row
from souverain.config import NetworkSettings
from souverain.db.engine import Database
from souverain.identity.service import IdentityService
from souverain.network import ipam, related
from souverain.network import models as m
from souverain.network.dataplane import DhcpHost, SubnetSpec
from souverain.network.firewall import NetworkZone, PortFilter, Rule
from souverain.network.ipam import InvalidInput
from souverain.network.routing import FloatingIp as FloatingNat
from souverain.network.routing import RouterGateway, RouterInterface

log = logging.getLogger("souverain.network")

T = TypeVar("T")

MAX_FIELD = 255
MAX_ID = 64
ALLOCATION_ATTEMPTS = 20
MAX_DNS = 5
MAX_ROUTES = 20
MAX_PAIRS = 10
AUTO_NETWORK = "auto_allocated_network"
AUTO_ROUTER = "auto_allocated_router"
COMPUTE_OWNER = "compute:nova"
DHCP_OWNER = "network:dhcp"
ROUTER_INTERFACE = "network:router_interface"
ROUTER_GATEWAY = "network:router_gateway"
FLOATING_OWNER = "network:floatingip"
# ports the network service manages itself: not deleted or changed through /ports
SERVICE_OWNERS = frozenset({DHCP_OWNER, ROUTER_INTERFACE, ROUTER_GATEWAY, FLOATING_OWNER})
QUOTA_RESOURCES = (
    "network",
    "subnet",
    "port",
    "router",
    "floatingip",
    "security_group",
    "security_group_rule",
)
MAC_RE = re.compile(r"^[0-9a-fA-F]{2}(:[0-9a-fA-F]{2}){5}$")
IPV6_MODES = (None, "slaac", "dhcpv6-stateful", "dhcpv6-stateless")
PROTOCOLS = {
    "ah": 51,
    "dccp": 33,
    "egp": 8,
    "esp": 50,
    "gre": 47,
    "icmp": 1,
    "icmpv6": 58,
    "igmp": 2,
    "ipip": 4,
    "ipv6-encap": 41,
    "ipv6-frag": 44,
    "ipv6-icmp": 58,
    "ipv6-nonxt": 59,
    "ipv6-opts": 60,
    "ipv6-route": 43,
    "ospf": 89,
    "pgm": 113,
    "rsvp": 46,
    "sctp": 132,
    "tcp": 6,
    "udp": 17,
    "udplite": 136,
    "vrrp": 112,
}
PORT_PROTOCOLS = frozenset({"tcp", "udp", "dccp", "sctp", "udplite", "6", "17", "33", "132", "136"})
ICMP_PROTOCOLS = frozenset({"icmp", "icmpv6", "ipv6-icmp", "1", "58"})


# ---------------------------------------------------------------------- Neutron's error types


class NetworkNotFound(NotFound):
    title = "NetworkNotFound"


class SubnetNotFound(NotFound):
    title = "SubnetNotFound"


class PortNotFound(NotFound):
    title = "PortNotFound"


class SecurityGroupNotFound(NotFound):
    title = "SecurityGroupNotFound"


class SecurityGroupRuleNotFound(NotFound):
    title = "SecurityGroupRuleNotFound"


class IpAddressAlreadyAllocated(Conflict):
    title = "IpAddressAlreadyAllocated"


class IpAddressGenerationFailure(Conflict):
    title = "IpAddressGenerationFailure"


class MacAddressInUse(Conflict):
    title = "MacAddressInUse"


class NetworkInUse(Conflict):
    title = "NetworkInUse"


class SubnetInUse(Conflict):
    title = "SubnetInUse"


class PortInUse(Conflict):
    title = "PortInUse"


class SecurityGroupInUse(Conflict):
    title = "SecurityGroupInUse"


class SecurityGroupCannotRemoveDefault(Conflict):
    title = "SecurityGroupCannotRemoveDefault"


class SecurityGroupRuleExists(Conflict):
    title = "SecurityGroupRuleExists"


class RouterNotFound(NotFound):
    title = "RouterNotFound"


class RouterInUse(Conflict):
    title = "RouterInUse"


class RouterInterfaceNotFound(NotFound):
    title = "RouterInterfaceNotFound"


class RouterInterfaceNotFoundForSubnet(NotFound):
    title = "RouterInterfaceNotFoundForSubnet"


class RouterInterfaceInUseByFloatingIP(Conflict):
    title = "RouterInterfaceInUseByFloatingIP"


class RouterExternalGatewayInUseByFloatingIp(Conflict):
    title = "RouterExternalGatewayInUseByFloatingIp"


class FloatingIPNotFound(NotFound):
    title = "FloatingIPNotFound"


class FloatingIPPortAlreadyAssociated(Conflict):
    title = "FloatingIPPortAlreadyAssociated"


class ExternalGatewayForFloatingIPNotFound(NotFound):
    title = "ExternalGatewayForFloatingIPNotFound"


class OverQuota(Conflict):
    title = "OverQuota"


class PolicyNotAuthorized(Forbidden):
    title = "HTTPForbidden"


# ---------------------------------------------------------------------- listing


@dataclass(frozen=True)
class ListQuery:
    """Neutron's list parameters: filters (a key repeated means OR), sort, page."""

    filters: dict[str, list[str]] = field(default_factory=dict)
    sort: tuple[tuple[str, str], ...] = ()
    limit: int | None = None
    marker: str | None = None
    page_reverse: bool = False


@dataclass(frozen=True)
class Page:
    items: list[dict[str, Any]]
    has_more: bool


def _matches(value: Any, wanted: str, key: str) -> bool:
    if key == "fixed_ips" and isinstance(value, list):
        name, _, expected = wanted.partition("=")
        return any(str(ip.get(name)) == expected for ip in value)
    if isinstance(value, bool):
        return wanted.lower() in (("true", "1") if value else ("false", "0"))
    if isinstance(value, list):
        return wanted in [str(v) for v in value]
    if value is None:
        return wanted in ("", "None")
    return str(value) == wanted


def _sort_value(key: str) -> Callable[[dict[str, Any]], tuple[bool, str]]:
    def value(view: dict[str, Any]) -> tuple[bool, str]:
        item = view.get(key)
        if isinstance(item, bool | int):
            return (item is not None, f"{int(item):020d}")
        return (item is not None, str(item) if item is not None else "")

    return value


def select_page(views: list[dict[str, Any]], query: ListQuery, resource: str) -> Page:
    """Filter, sort (id last as the tie-break) and page views exactly once, in that order."""
    known = set(views[0]) if views else set()
    for key in query.filters:
        if views and key not in known:
            raise BadRequest(f"[{key[:64]}] is invalid attribute for filtering")
    chosen = [
        v
        for v in views
        if all(
            any(_matches(v.get(key), w, key) for w in wanted)
            for key, wanted in query.filters.items()
        )
    ]
    keys = list(query.sort)
    for key, _ in keys:
        if views and key not in known:
            raise BadRequest(f"{key[:64]} is invalid attribute for sort_keys")
    if not any(k == "id" for k, _ in keys):
        keys.append(("id", keys[-1][1] if keys else "asc"))
    for key, direction in reversed(keys):
        chosen.sort(key=_sort_value(key), reverse=direction == "desc")
    if query.marker is not None:
        ids = [v["id"] for v in chosen]
        if query.marker not in ids:
            raise NotFound(f"{resource} {query.marker[:64]} could not be found.")
        at = ids.index(query.marker)
        chosen = chosen[:at] if query.page_reverse else chosen[at + 1 :]
    if query.limit is None:
        return Page(chosen, False)
    if query.page_reverse:
        return Page(chosen[-query.limit :], len(chosen) > query.limit)
    return Page(chosen[: query.limit], len(chosen) > query.limit)


# ---------------------------------------------------------------------- input checks


def _text(body: dict[str, Any], name: str, default: str = "") -> str:
    value = body.get(name, default)
    if value is None:
        value = ""
    if not isinstance(value, str) or len(value) > MAX_FIELD:
        raise InvalidInput(
            f"Invalid input for {name}. Reason: '{str(value)[:32]}' is not a valid string "
            f"of at most {MAX_FIELD} characters."
        )
    return value


def _flag(body: dict[str, Any], name: str, default: bool) -> bool:
    value = body.get(name, default)
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.lower() in ("true", "false"):
        return value.lower() == "true"
    raise InvalidInput(f"Invalid input for {name}. Reason: '{str(value)[:32]}' is not boolean.")


def _id(value: Any, name: str) -> str:
    if not isinstance(value, str) or not value or len(value) > MAX_ID:
        raise InvalidInput(f"Invalid input for {name}. Reason: '{str(value)[:32]}' is not an id.")
    return value


def _int(value: Any, name: str) -> int | None:
    if value is None:
        return None
    if isinstance(value, str) and value.strip().lstrip("-").isdigit():
        value = int(value)
    if not isinstance(value, int) or isinstance(value, bool) or abs(value) > 2**31:
        raise InvalidInput(f"Invalid input for {name}. Reason: '{str(value)[:32]}' is not an int.")
    return value


def _only(body: dict[str, Any], allowed: frozenset[str], resource: str) -> None:
    for key in body:
        if key not in allowed:
            raise BadRequest(f"Unrecognized attribute(s) '{str(key)[:64]}'")


def _owner_of(ctx: RequestContext, body: dict[str, Any]) -> str:
    """The project a new resource belongs to: the caller's, or any an admin names."""
    own = ctx.project_id or ""
    wanted = body.get("project_id", body.get("tenant_id"))
    if wanted is None or wanted == own:
        return own
    if not ctx.is_admin:
        raise BadRequest(
            "Specifying 'project_id' or 'tenant_id' other than the authenticated "
            "project in request requires admin privileges"
        )
    return _id(wanted, "project_id")


def _time(value: Any) -> str:
    return str(value.strftime("%Y-%m-%dT%H:%M:%SZ"))


def _common(row: Any) -> dict[str, Any]:
    return {
        "tenant_id": row.project_id,
        "project_id": row.project_id,
        "created_at": _time(row.created_at),
        "updated_at": _time(row.updated_at),
        "revision_number": row.revision_number,
        "tags": [],
    }


MAX_SEGMENT = 65535  # a conntrack zone is 16 bits; a VXLAN VNI has room for more


def _free_segment(s: Session) -> int:
    """The lowest segmentation id no network holds (the unique column settles races)."""
    used = s.scalars(
        select(m.Network.segmentation_id)
        .where(m.Network.segmentation_id.is_not(None))
        .order_by(m.Network.segmentation_id)
    ).all()
    expected = 1
    for value in used:
        if value != expected:
            break
        expected += 1
    if expected > MAX_SEGMENT:
        raise Conflict("Unable to create the network. No tenant network is available.")
    return expected


def _new_mac() -> str:
    tail = random_bytes(3)
    return "fa:16:3e:" + ":".join(f"{b:02x}" for b in tail)


def _check_mac(value: Any) -> str:
    if not isinstance(value, str) or not MAC_RE.match(value):
        raise InvalidInput(
            f"Invalid input for mac_address. Reason: '{str(value)[:32]}' is not a valid MAC "
            "address."
        )
    mac = value.lower()
    if int(mac[:2], 16) & 1 or mac == "00:00:00:00:00:00":
        raise InvalidInput(
            f"Invalid input for mac_address. Reason: '{value}' is not a valid unicast MAC address."
        )
    return mac


class _Retry(Exception):
    """An address or MAC was taken by a concurrent request: run the transaction again."""


class NetworkService:
    def __init__(
        self, db: Database, identity: IdentityService, clock: Clock, settings: NetworkSettings
    ) -> None:
        # billable changes are recorded on it (the billing service's, set by the server)
        self.meter: Meter = NULL_METER
        self.db = db
        self.identity = identity
        self.clock = clock
        self.settings = settings
        # the host side (bridges, taps, dnsmasq; routers; firewall), set by the server when
        # it runs one
        self.dataplane: Any = None
        self.routing: Any = None
        self.firewall: Any = None
        # called with a server id when its ports' addresses change (a floating IP comes or
        # goes): the compute service refreshes what the server shows, as Nova's
        # network-changed event does
        self.address_listeners: list[Callable[[str], None]] = []
        # one writer of the firewall and of the routers at a time; each write is whole
        self._firewall_lock = threading.Lock()
        self._routing_lock = threading.Lock()

    # ------------------------------------------------------------------ lifecycle

    def set_up(self) -> None:
        """The operator's external network `public` and its subnet, made once."""
        with self.db.session() as s:
            found = s.scalars(
                select(m.Network).where(
                    m.Network.name == "public", m.Network.external, m.Network.project_id == ""
                )
            ).first()
            if found is not None:
                return
            net = self._new_network_row(s, "", {"name": "public"}, external=True, shared=False)
            s.add(net)
            s.flush()
            cidr = ipam.parse_cidr(self.settings.public_cidr)
            pools = [
                {"start": self.settings.public_pool_start, "end": self.settings.public_pool_end}
            ]
            s.add(
                self._new_subnet_row(
                    s,
                    net,
                    "",
                    {
                        "name": "public-subnet",
                        "cidr": str(cidr),
                        "ip_version": cidr.version,
                        "gateway_ip": self.settings.public_gateway,
                        "allocation_pools": pools,
                        "dns_nameservers": list(self.settings.dns_nameservers),
                        "enable_dhcp": False,
                    },
                )
            )
            log.info("created the external network 'public' (%s)", cidr)

    def close(self) -> None:
        return None

    # ------------------------------------------------------------------ plumbing

    def _now(self) -> Any:
        return self.clock.now().replace(tzinfo=None)

    def _lock_quota(self, s: Session, project_id: str) -> None:
        lock_quota_row(s, m.NetworkQuota, project_id, self._now())

    def _owned_page(
        self,
        ctx: RequestContext,
        query: ListQuery,
        model: Any,
        views_of: Callable[[Session, Sequence[Any]], list[dict[str, Any]]],
        resource: str,
    ) -> Page:
        """A list of rows the caller's project owns (all of them for an admin), as a page.

        `views_of` shapes all the rows at once: a constant number of queries per page."""
        with self.db.session() as s:
            stmt = select(model)
            if not ctx.is_admin:
                stmt = stmt.where(model.project_id == (ctx.project_id or ""))
            views = views_of(s, s.scalars(stmt).all())
        return select_page(views, query, resource)

    def _retrying(self, work: Callable[[Session], T]) -> T:
        """Run `work` in a transaction, again when it lost a race for a unique address."""
        for _ in range(ALLOCATION_ATTEMPTS):
            try:
                with self.db.session() as s:
                    return work(s)
            except (_Retry, IntegrityError):
                continue
        raise IpAddressGenerationFailure("No more IP addresses available: too much contention.")

    # ------------------------------------------------------------------ quotas

    def default_limits(self) -> dict[str, int]:
        st = self.settings
        return {
            "network": st.quota_networks,
            "subnet": st.quota_subnets,
            "port": st.quota_ports,
            "router": st.quota_routers,
            "floatingip": st.quota_floatingips,
            "security_group": st.quota_security_groups,
            "security_group_rule": st.quota_security_group_rules,
        }

    def _limits_of(self, s: Session, project_id: str) -> dict[str, int]:
        return effective_limits(s, m.NetworkQuota, project_id, self.default_limits())

    def _usage_of(self, s: Session, project_id: str) -> dict[str, int]:
        def count(model: Any) -> int:
            return int(
                s.scalar(
                    select(func.count()).select_from(model).where(model.project_id == project_id)
                )
                or 0
            )

        return {
            "network": count(m.Network),
            "subnet": count(m.Subnet),
            "port": count(m.Port),
            "router": count(m.Router),
            "floatingip": count(m.FloatingIp),
            "security_group": count(m.SecurityGroup),
            "security_group_rule": count(m.SecurityGroupRule),
        }

    def _claim(self, s: Session, project_id: str, resource: str, count: int = 1) -> None:
        """Refuse (409 OverQuota) what would pass the limit; call after `_lock_quota`."""
        if not project_id:
            return
        limit = self._limits_of(s, project_id)[resource]
        if limit < 0:
            return
        used = self._usage_of(s, project_id)[resource]
        if used + count > limit:
            raise OverQuota(f"Quota exceeded for resources: ['{resource}'].")

    def _quota_scope(self, ctx: RequestContext, project_id: str) -> None:
        if not (ctx.is_admin or project_id == ctx.project_id):
            raise PolicyNotAuthorized("rule:get_quota is disallowed by policy")

    def quota_of(self, ctx: RequestContext, project_id: str) -> dict[str, int]:
        self._quota_scope(ctx, project_id)
        with self.db.session() as s:
            return self._limits_of(s, project_id)

    def quota_details(self, ctx: RequestContext, project_id: str) -> dict[str, Any]:
        self._quota_scope(ctx, project_id)
        with self.db.session() as s:
            limits, used = self._limits_of(s, project_id), self._usage_of(s, project_id)
        return {k: {"limit": limits[k], "used": used[k], "reserved": 0} for k in QUOTA_RESOURCES}

    def list_quotas(self, ctx: RequestContext) -> list[dict[str, Any]]:
        if not ctx.is_admin:
            raise PolicyNotAuthorized("rule:get_quota is disallowed by policy")
        with self.db.session() as s:
            ids = s.scalars(select(m.NetworkQuota.project_id)).all()
            out = []
            for pid in ids:
                row = s.get(m.NetworkQuota, pid)
                if row is not None and any(getattr(row, k) is not None for k in QUOTA_RESOURCES):
                    out.append({**self._limits_of(s, pid), "project_id": pid, "tenant_id": pid})
            return out

    def update_quota(
        self, ctx: RequestContext, project_id: str, changes: dict[str, Any]
    ) -> dict[str, int]:
        if not ctx.is_admin:
            raise PolicyNotAuthorized("rule:update_quota is disallowed by policy")
        _id(project_id, "project_id")
        clean: dict[str, int] = {}
        for key, value in changes.items():
            if key not in QUOTA_RESOURCES:
                raise BadRequest(f"Unrecognized attribute(s) '{str(key)[:64]}'")
            number = _int(value, key)
            if number is None or number < -1:
                raise InvalidInput(f"Invalid input for {key}. Reason: '{value}' is not -1 or more.")
            clean[key] = number
        with self.db.session() as s:
            self._lock_quota(s, project_id)
            row = s.get(m.NetworkQuota, project_id)
            assert row is not None
            for key, number in clean.items():
                setattr(row, key, number)
            row.updated_at = self._now()
            s.flush()
            return self._limits_of(s, project_id)

    def reset_quota(self, ctx: RequestContext, project_id: str) -> None:
        if not ctx.is_admin:
            raise PolicyNotAuthorized("rule:delete_quota is disallowed by policy")
        with self.db.session() as s:
            row = s.get(m.NetworkQuota, project_id)
            if row is not None:
                for key in QUOTA_RESOURCES:
                    setattr(row, key, None)

    # ------------------------------------------------------------------ networks

    def _visible(self, ctx: RequestContext, net: m.Network) -> bool:
        return ctx.is_admin or net.project_id == ctx.project_id or net.shared or net.external

    def _network(self, s: Session, ctx: RequestContext, network_id: Any) -> m.Network:
        row = s.get(m.Network, network_id) if isinstance(network_id, str) else None
        if row is None or not self._visible(ctx, row):
            raise NetworkNotFound(f"Network {str(network_id)[:64]} could not be found.")
        return row

    def _owned_network(self, s: Session, ctx: RequestContext, network_id: Any) -> m.Network:
        row = self._network(s, ctx, network_id)
        if not (ctx.is_admin or row.project_id == ctx.project_id):
            raise PolicyNotAuthorized("The request is disallowed by policy for this network.")
        return row

    def network_view(self, s: Session, row: m.Network) -> dict[str, Any]:
        return self.network_views(s, [row])[0]

    def network_views(self, s: Session, rows: Sequence[m.Network]) -> list[dict[str, Any]]:
        """The views of many networks, with their subnets in one query."""
        subnets = related.subnet_ids_by_network(s, [r.id for r in rows])
        return [self._network_body(r, subnets.get(r.id, [])) for r in rows]

    @staticmethod
    def _network_body(row: m.Network, subnets: list[str]) -> dict[str, Any]:
        return {
            "id": row.id,
            "name": row.name,
            "description": row.description,
            "admin_state_up": row.admin_state_up,
            "status": "ACTIVE",
            "subnets": subnets,
            "shared": row.shared,
            "router:external": row.external,
            "mtu": row.mtu,
            "port_security_enabled": row.port_security_enabled,
            "availability_zone_hints": [],
            "availability_zones": ["nova"],
            "ipv4_address_scope": None,
            "ipv6_address_scope": None,
            "is_default": row.external,
            "l2_adjacency": True,
            **_common(row),
        }

    def _network_fields(
        self, ctx: RequestContext, body: dict[str, Any], row: m.Network | None
    ) -> dict[str, Any]:
        _only(
            body,
            frozenset(
                {
                    "name",
                    "description",
                    "admin_state_up",
                    "shared",
                    "router:external",
                    "mtu",
                    "port_security_enabled",
                    "project_id",
                    "tenant_id",
                    "availability_zone_hints",
                    "tags",
                }
            ),
            "network",
        )
        out: dict[str, Any] = {}
        for name in ("name", "description"):
            if name in body:
                out[name] = _text(body, name)
        for name, attr in (
            ("admin_state_up", "admin_state_up"),
            ("port_security_enabled", "port_security_enabled"),
        ):
            if name in body:
                out[attr] = _flag(body, name, True)
        for name, attr in (("shared", "shared"), ("router:external", "external")):
            if name in body:
                value = _flag(body, name, False)
                current = getattr(row, attr) if row is not None else False
                if value != current and not ctx.is_admin:
                    raise PolicyNotAuthorized(
                        f"(rule:create_network and rule:create_network:{name}) is disallowed "
                        "by policy"
                    )
                out[attr] = value
        if "mtu" in body:
            mtu = _int(body["mtu"], "mtu")
            if mtu is None or not 68 <= mtu <= self.settings.mtu:
                raise InvalidInput(
                    f"Invalid input for operation: Requested MTU is too big, maximum is "
                    f"{self.settings.mtu}."
                )
            out["mtu"] = mtu
        return out

    def _new_network_row(
        self,
        s: Session,
        project_id: str,
        body: dict[str, Any],
        external: bool = False,
        shared: bool = False,
    ) -> m.Network:
        now = self._now()
        return m.Network(
            id=new_id(),
            segmentation_id=_free_segment(s),
            project_id=project_id,
            name=body.get("name", ""),
            description=body.get("description", ""),
            admin_state_up=body.get("admin_state_up", True),
            shared=body.get("shared", shared),
            external=body.get("external", external),
            mtu=body.get("mtu", self.settings.mtu),
            port_security_enabled=body.get("port_security_enabled", True),
            revision_number=1,
            created_at=now,
            updated_at=now,
        )

    def create_network(self, ctx: RequestContext, body: dict[str, Any]) -> dict[str, Any]:
        fields = self._network_fields(ctx, body, None)
        project_id = _owner_of(ctx, body)

        def work(s: Session) -> dict[str, Any]:
            self._lock_quota(s, project_id)
            self._claim(s, project_id, "network")
            row = self._new_network_row(s, project_id, fields)
            s.add(row)
            s.flush()
            return self.network_view(s, row)

        return self._retrying(work)

    def get_network(self, ctx: RequestContext, network_id: str) -> dict[str, Any]:
        with self.db.session() as s:
            return self.network_view(s, self._network(s, ctx, network_id))

    def list_networks(self, ctx: RequestContext, query: ListQuery) -> Page:
        with self.db.session() as s:
            stmt = select(m.Network)
            if not ctx.is_admin:
                stmt = stmt.where(
                    (m.Network.project_id == (ctx.project_id or ""))
                    | m.Network.shared
                    | m.Network.external
                )
            views = self.network_views(s, s.scalars(stmt).all())
        return select_page(views, query, "Network")

    def update_network(
        self, ctx: RequestContext, network_id: str, body: dict[str, Any]
    ) -> dict[str, Any]:
        with self.db.session() as s:
            row = self._owned_network(s, ctx, network_id)
            fields = self._network_fields(ctx, body, row)
            if "project_id" in body or "tenant_id" in body:
                raise BadRequest("Cannot update read-only attribute project_id")
            if fields.get("shared") is False and row.shared:
                others = s.scalar(
                    select(func.count())
                    .select_from(m.Port)
                    .where(m.Port.network_id == row.id, m.Port.project_id != row.project_id)
                )
                if others:
                    raise InvalidInput(
                        "Unable to reconfigure sharing settings for network "
                        f"{row.id}. Multiple tenants are using it."
                    )
            for key, value in fields.items():
                setattr(row, key, value)
            row.revision_number += 1
            row.updated_at = self._now()
            s.flush()
            return self.network_view(s, row)

    def delete_network(self, ctx: RequestContext, network_id: str) -> None:
        with self.db.session() as s:
            row = self._owned_network(s, ctx, network_id)
            in_use = s.scalar(
                select(func.count())
                .select_from(m.Port)
                .where(m.Port.network_id == row.id, m.Port.device_owner != DHCP_OWNER)
            )
            if in_use:
                raise NetworkInUse(
                    f"Unable to complete operation on network {row.id}. There are one or more "
                    "ports still in use on the network."
                )
            for dhcp in s.scalars(
                select(m.Port).where(m.Port.network_id == row.id, m.Port.device_owner == DHCP_OWNER)
            ).all():
                self._delete_port_row(s, dhcp)  # the network's own DHCP port goes with it
            s.execute(delete(m.Subnet).where(m.Subnet.network_id == row.id))
            s.delete(row)
        if self.dataplane is not None:  # its bridge, DHCP namespace and dnsmasq too
            self.dataplane.delete_network(network_id)

    # ------------------------------------------------------------------ subnets

    def _subnet(self, s: Session, ctx: RequestContext, subnet_id: Any) -> m.Subnet:
        row = s.get(m.Subnet, subnet_id) if isinstance(subnet_id, str) else None
        if row is not None and not (ctx.is_admin or row.project_id == ctx.project_id):
            net = s.get(m.Network, row.network_id)
            if net is None or not (net.shared or net.external):
                row = None
        if row is None:
            raise SubnetNotFound(f"Subnet {str(subnet_id)[:64]} could not be found.")
        return row

    def subnet_view(self, row: m.Subnet) -> dict[str, Any]:
        return {
            "id": row.id,
            "name": row.name,
            "description": row.description,
            "network_id": row.network_id,
            "ip_version": row.ip_version,
            "cidr": row.cidr,
            "gateway_ip": row.gateway_ip,
            "allocation_pools": [dict(p) for p in row.allocation_pools],
            "dns_nameservers": list(row.dns_nameservers),
            "host_routes": [dict(r) for r in row.host_routes],
            "enable_dhcp": row.enable_dhcp,
            "ipv6_ra_mode": row.ipv6_ra_mode,
            "ipv6_address_mode": row.ipv6_address_mode,
            "subnetpool_id": None,
            "service_types": [],
            "segment_id": None,
            "dns_publish_fixed_ip": False,
            **_common(row),
        }

    def _dns(self, value: Any, version: int) -> list[str]:
        if not isinstance(value, list) or len(value) > MAX_DNS:
            raise InvalidInput(
                f"Invalid input for dns_nameservers. Reason: a list of at most {MAX_DNS} "
                "addresses is expected."
            )
        out = [str(ipam.parse_address(v, "dns_nameservers")) for v in value]
        if len(set(out)) != len(out):
            raise InvalidInput("Invalid input for dns_nameservers. Reason: duplicate nameserver.")
        return out

    def _routes(self, value: Any, version: int) -> list[dict[str, str]]:
        if not isinstance(value, list) or len(value) > MAX_ROUTES:
            raise InvalidInput(
                f"Invalid input for host_routes. Reason: a list of at most {MAX_ROUTES} routes."
            )
        out = []
        for item in value:
            if not isinstance(item, dict) or set(item) != {"destination", "nexthop"}:
                raise InvalidInput(
                    "Invalid input for host_routes. Reason: each route is {destination, nexthop}."
                )
            dest = item["destination"]
            try:
                net = ipaddress.ip_network(dest, strict=False) if isinstance(dest, str) else None
            except ValueError:
                net = None
            if net is None or net.version != version or len(dest) > 64:
                raise InvalidInput("Invalid input for host_routes. Reason: bad destination.")
            hop = ipam.parse_address(item["nexthop"], "host_routes", version)
            out.append({"destination": str(net), "nexthop": str(hop)})
        return out

    def _new_subnet_row(
        self, s: Session, net: m.Network, project_id: str, body: dict[str, Any]
    ) -> m.Subnet:
        version = _int(body.get("ip_version", 4), "ip_version")
        if version not in (4, 6):
            raise InvalidInput(f"Invalid input for ip_version. Reason: '{version}' is not 4 or 6.")
        if "cidr" not in body:
            raise BadRequest("Bad subnets request: a cidr must be specified.")
        cidr = ipam.parse_cidr(body["cidr"], version)
        for other in s.scalars(select(m.Subnet).where(m.Subnet.network_id == net.id)).all():
            if ipaddress.ip_network(other.cidr).overlaps(cidr):
                raise InvalidInput(
                    f"Invalid input for operation: Requested subnet with cidr: {cidr} for network: "
                    f"{net.id} overlaps with another subnet."
                )
        gateway = (
            ipam.check_gateway(cidr, body["gateway_ip"])
            if "gateway_ip" in body
            else ipam.default_gateway(cidr)
        )
        if "allocation_pools" in body and body["allocation_pools"] is not None:
            pools = ipam.check_pools(cidr, body["allocation_pools"], gateway)
        else:
            pools = ipam.default_pools(cidr, gateway)
        modes = {}
        for name in ("ipv6_ra_mode", "ipv6_address_mode"):
            value = body.get(name)
            if value not in IPV6_MODES or (value is not None and version != 6):
                raise InvalidInput(f"Invalid input for {name}. Reason: '{str(value)[:32]}'.")
            modes[name] = value
        now = self._now()
        return m.Subnet(
            id=new_id(),
            network_id=net.id,
            project_id=project_id,
            name=_text(body, "name"),
            description=_text(body, "description"),
            ip_version=version,
            cidr=str(cidr),
            gateway_ip=gateway,
            allocation_pools=[p.view(version) for p in pools],
            dns_nameservers=self._dns(body.get("dns_nameservers") or [], version),
            host_routes=self._routes(body.get("host_routes") or [], version),
            enable_dhcp=_flag(body, "enable_dhcp", True),
            revision_number=1,
            created_at=now,
            updated_at=now,
            **modes,
        )

    SUBNET_FIELDS = frozenset(
        {
            "name",
            "description",
            "network_id",
            "ip_version",
            "cidr",
            "gateway_ip",
            "allocation_pools",
            "dns_nameservers",
            "host_routes",
            "enable_dhcp",
            "ipv6_ra_mode",
            "ipv6_address_mode",
            "project_id",
            "tenant_id",
            "tags",
        }
    )

    def create_subnet(self, ctx: RequestContext, body: dict[str, Any]) -> dict[str, Any]:
        _only(body, self.SUBNET_FIELDS, "subnet")
        project_id = _owner_of(ctx, body)
        if "network_id" not in body:
            raise BadRequest(
                "Failed to parse request. Required attribute 'network_id' not specified"
            )
        with self.db.session() as s:
            self._lock_quota(s, project_id)
            net = self._owned_network(s, ctx, body["network_id"])
            self._claim(s, project_id, "subnet")
            row = self._new_subnet_row(s, net, project_id, body)
            s.add(row)
            s.flush()
            return self.subnet_view(row)

    def get_subnet(self, ctx: RequestContext, subnet_id: str) -> dict[str, Any]:
        with self.db.session() as s:
            return self.subnet_view(self._subnet(s, ctx, subnet_id))

    def list_subnets(self, ctx: RequestContext, query: ListQuery) -> Page:
        with self.db.session() as s:
            stmt = select(m.Subnet)
            if not ctx.is_admin:
                visible = select(m.Network.id).where(m.Network.shared | m.Network.external)
                stmt = stmt.where(
                    (m.Subnet.project_id == (ctx.project_id or ""))
                    | m.Subnet.network_id.in_(visible)
                )
            views = [self.subnet_view(r) for r in s.scalars(stmt).all()]
        return select_page(views, query, "Subnet")

    def update_subnet(
        self, ctx: RequestContext, subnet_id: str, body: dict[str, Any]
    ) -> dict[str, Any]:
        allowed = frozenset(
            {
                "name",
                "description",
                "gateway_ip",
                "dns_nameservers",
                "host_routes",
                "enable_dhcp",
                "allocation_pools",
            }
        )
        _only(body, allowed, "subnet")
        with self.db.session() as s:
            row = self._subnet(s, ctx, subnet_id)
            if not (ctx.is_admin or row.project_id == ctx.project_id):
                raise PolicyNotAuthorized("rule:update_subnet is disallowed by policy")
            cidr = ipaddress.ip_network(row.cidr)
            for name in ("name", "description"):
                if name in body:
                    setattr(row, name, _text(body, name))
            if "gateway_ip" in body:
                row.gateway_ip = ipam.check_gateway(cidr, body["gateway_ip"])
            if "allocation_pools" in body:
                pools = ipam.check_pools(cidr, body["allocation_pools"], row.gateway_ip)
                row.allocation_pools = [p.view(row.ip_version) for p in pools]
            elif row.gateway_ip and ipam.in_pools(
                int(ipaddress.ip_address(row.gateway_ip)), ipam.pools_of(row.allocation_pools)
            ):
                raise ipam.GatewayConflict(
                    f"Gateway ip {row.gateway_ip} conflicts with allocation pool."
                )
            if "dns_nameservers" in body:
                row.dns_nameservers = self._dns(body["dns_nameservers"] or [], row.ip_version)
            if "host_routes" in body:
                row.host_routes = self._routes(body["host_routes"] or [], row.ip_version)
            if "enable_dhcp" in body:
                row.enable_dhcp = _flag(body, "enable_dhcp", True)
            row.revision_number += 1
            row.updated_at = self._now()
            return self.subnet_view(row)

    def delete_subnet(self, ctx: RequestContext, subnet_id: str) -> None:
        with self.db.session() as s:
            row = self._subnet(s, ctx, subnet_id)
            if not (ctx.is_admin or row.project_id == ctx.project_id):
                raise PolicyNotAuthorized("rule:delete_subnet is disallowed by policy")
            used = s.scalar(
                select(func.count())
                .select_from(m.IpAllocation)
                .where(m.IpAllocation.subnet_id == row.id)
            )
            if used:
                raise SubnetInUse(
                    f"Unable to complete operation on subnet {row.id}: One or more ports have an "
                    "IP allocation from this subnet."
                )
            s.delete(row)

    # ------------------------------------------------------------------ ports

    def _port(self, s: Session, ctx: RequestContext, port_id: Any) -> m.Port:
        row = s.get(m.Port, port_id) if isinstance(port_id, str) else None
        if row is None or not (ctx.is_admin or row.project_id == ctx.project_id):
            raise PortNotFound(f"Port {str(port_id)[:64]} could not be found.")
        return row

    def port_view(self, s: Session, row: m.Port) -> dict[str, Any]:
        return self.port_views(s, [row])[0]

    def port_views(self, s: Session, rows: Sequence[m.Port]) -> list[dict[str, Any]]:
        """The views of many ports: addresses and groups in one query each, not per port."""
        ids = [r.id for r in rows]
        ips, groups = related.ips_by_port(s, ids), related.groups_by_port(s, ids)
        return [self._port_body(r, ips.get(r.id, []), groups.get(r.id, [])) for r in rows]

    @staticmethod
    def _port_body(row: m.Port, ips: list[tuple[str, str]], groups: list[str]) -> dict[str, Any]:
        return {
            "id": row.id,
            "name": row.name,
            "description": row.description,
            "network_id": row.network_id,
            "admin_state_up": row.admin_state_up,
            "mac_address": row.mac_address,
            "status": row.status,
            "device_owner": row.device_owner,
            "device_id": row.device_id,
            "fixed_ips": [{"subnet_id": sid, "ip_address": ip} for sid, ip in ips],
            "security_groups": groups,
            "port_security_enabled": row.port_security_enabled,
            "allowed_address_pairs": [dict(p) for p in row.allowed_address_pairs],
            "extra_dhcp_opts": [],
            "binding:vnic_type": "normal",
            "binding:host_id": row.host,
            "binding:vif_type": "tap" if row.host else "unbound",
            "binding:vif_details": {},
            "binding:profile": {},
            "dns_name": "",
            "dns_assignment": [],
            "propagate_uplink_status": False,
            **_common(row),
        }

    PORT_FIELDS = frozenset(
        {
            "name",
            "description",
            "network_id",
            "admin_state_up",
            "mac_address",
            "fixed_ips",
            "device_owner",
            "device_id",
            "security_groups",
            "port_security_enabled",
            "allowed_address_pairs",
            "project_id",
            "tenant_id",
            "binding:vnic_type",
            "binding:host_id",
            "binding:profile",
            "tags",
            "extra_dhcp_opts",
            "dns_name",
        }
    )

    def _wanted_ips(
        self, s: Session, net: m.Network, value: Any
    ) -> list[tuple[m.Subnet, str | None]]:
        """(subnet, requested address or None) for each requested fixed IP, checked."""
        subnets = s.scalars(
            select(m.Subnet).where(m.Subnet.network_id == net.id).order_by(m.Subnet.created_at)
        ).all()
        if value is None:
            out: list[tuple[m.Subnet, str | None]] = []
            for version in (4, 6):
                first = next((sn for sn in subnets if sn.ip_version == version), None)
                if first is not None:
                    out.append((first, None))
            return out
        if not isinstance(value, list) or len(value) > 16:
            raise InvalidInput("Invalid input for fixed_ips. Reason: a list is expected.")
        wanted: list[tuple[m.Subnet, str | None]] = []
        for item in value:
            if not isinstance(item, dict) or not set(item) <= {"subnet_id", "ip_address"}:
                raise InvalidInput("Invalid input for fixed_ips. Reason: unexpected key.")
            subnet = None
            if "subnet_id" in item:
                subnet = next((sn for sn in subnets if sn.id == item["subnet_id"]), None)
                if subnet is None:
                    raise InvalidInput(
                        f"Invalid input for operation: Failed to create port on network "
                        f"{net.id}, because fixed_ips included invalid subnet "
                        f"{str(item['subnet_id'])[:64]}."
                    )
            address = None
            if "ip_address" in item:
                ip = ipam.parse_address(item["ip_address"], "ip_address")
                if subnet is None:
                    subnet = next(
                        (sn for sn in subnets if ip in ipaddress.ip_network(sn.cidr)), None
                    )
                    if subnet is None:
                        raise InvalidInput(
                            f"Invalid input for operation: IP address {ip} is not a valid IP "
                            f"for any of the subnets on the specified network."
                        )
                address = ipam.check_fixed_address(
                    ipaddress.ip_network(subnet.cidr), str(ip), subnet.gateway_ip
                )
            if subnet is None:
                raise InvalidInput("Invalid input for fixed_ips. Reason: subnet_id or ip_address.")
            wanted.append((subnet, address))
        return wanted

    def _allocate(
        self, s: Session, port: m.Port, wanted: list[tuple[m.Subnet, str | None]]
    ) -> None:
        for subnet, address in wanted:
            taken = s.scalars(
                select(m.IpAllocation.ip_address).where(m.IpAllocation.subnet_id == subnet.id)
            ).all()
            if address is not None:
                if address in taken:
                    raise IpAddressAlreadyAllocated(
                        f"IP address {address} already allocated in subnet {subnet.id}"
                    )
                chosen = address
            else:
                free = ipam.next_free(
                    ipam.pools_of(subnet.allocation_pools), taken, subnet.ip_version
                )
                if free is None:
                    raise IpAddressGenerationFailure(
                        f"No more IP addresses available on network {port.network_id}."
                    )
                chosen = free
            s.add(
                m.IpAllocation(
                    subnet_id=subnet.id,
                    ip_address=chosen,
                    port_id=port.id,
                    network_id=port.network_id,
                )
            )
            try:
                s.flush()
            except IntegrityError:
                raise _Retry() from None

    def _groups(self, s: Session, ctx: RequestContext, project_id: str, value: Any) -> list[str]:
        if value is None:
            return [self._default_group_id(s, project_id)] if project_id else []
        if not isinstance(value, list) or len(value) > 16:
            raise InvalidInput("Invalid input for security_groups. Reason: a list is expected.")
        out = []
        for group_id in value:
            group = s.get(m.SecurityGroup, group_id) if isinstance(group_id, str) else None
            if group is not None and not (ctx.is_admin or group.project_id == project_id):
                group = None
            if group is None and isinstance(group_id, str):
                # the CLI may name a group instead of giving its id
                group = s.scalars(
                    select(m.SecurityGroup).where(
                        m.SecurityGroup.project_id == project_id,
                        m.SecurityGroup.name == group_id,
                    )
                ).first()
            if group is None:
                raise SecurityGroupNotFound(f"Security group {str(group_id)[:64]} does not exist")
            if group.id not in out:
                out.append(group.id)
        return out

    def _pairs(self, value: Any) -> list[dict[str, str]]:
        if not isinstance(value, list) or len(value) > MAX_PAIRS:
            raise InvalidInput(
                f"Invalid input for allowed_address_pairs. Reason: at most {MAX_PAIRS} pairs."
            )
        out = []
        for item in value:
            if (
                not isinstance(item, dict)
                or "ip_address" not in item
                or not set(item)
                <= {
                    "ip_address",
                    "mac_address",
                }
            ):
                raise InvalidInput(
                    "Invalid input for allowed_address_pairs. Reason: {ip_address, mac_address}."
                )
            raw = item["ip_address"]
            try:
                net = ipaddress.ip_network(raw, strict=False) if isinstance(raw, str) else None
            except ValueError:
                net = None
            if net is None or len(raw) > 64:
                raise InvalidInput(
                    f"Invalid input for allowed_address_pairs. Reason: '{str(raw)[:32]}' is not "
                    "an IP address or CIDR."
                )
            pair = {"ip_address": raw}
            if item.get("mac_address") is not None:
                pair["mac_address"] = _check_mac(item["mac_address"])
            out.append(pair)
        return out

    def _port_security(
        self, s: Session, ctx: RequestContext, row: m.Port, body: dict[str, Any], creating: bool
    ) -> None:
        if "port_security_enabled" in body:
            row.port_security_enabled = _flag(body, "port_security_enabled", True)
        groups_given = "security_groups" in body
        if "allowed_address_pairs" in body:
            row.allowed_address_pairs = self._pairs(body["allowed_address_pairs"] or [])
        if not row.port_security_enabled:
            if groups_given and body["security_groups"]:
                raise Conflict(
                    "Port has security group associated. Cannot disable port security or ip "
                    "address until security group is removed"
                )
            if row.allowed_address_pairs:
                raise Conflict(
                    "Port Security must be enabled in order to have allowed address pairs on a "
                    "port."
                )
            s.execute(delete(m.PortSecurityGroup).where(m.PortSecurityGroup.port_id == row.id))
            return
        if groups_given or creating:
            wanted = body.get("security_groups") if groups_given else None
            groups = self._groups(s, ctx, row.project_id, wanted)
            s.execute(delete(m.PortSecurityGroup).where(m.PortSecurityGroup.port_id == row.id))
            for group_id in groups:
                s.add(m.PortSecurityGroup(port_id=row.id, security_group_id=group_id))

    def _plain_port_fields(self, row: m.Port, body: dict[str, Any]) -> None:
        for name in ("name", "description", "device_owner", "device_id"):
            if name in body:
                setattr(row, name, _text(body, name))
        if "admin_state_up" in body:
            row.admin_state_up = _flag(body, "admin_state_up", True)

    def create_port(
        self, ctx: RequestContext, body: dict[str, Any], delete_with_device: bool = False
    ) -> dict[str, Any]:
        _only(body, self.PORT_FIELDS, "port")
        project_id = _owner_of(ctx, body)
        if "network_id" not in body:
            raise BadRequest(
                "Failed to parse request. Required attribute 'network_id' not specified"
            )
        mac = _check_mac(body["mac_address"]) if body.get("mac_address") is not None else None
        if project_id:
            self._ensure_default_group(project_id)

        def work(s: Session) -> dict[str, Any]:
            self._lock_quota(s, project_id)
            net = self._network(s, ctx, body["network_id"])
            if not (ctx.is_admin or net.project_id == ctx.project_id or net.shared):
                raise PolicyNotAuthorized(
                    "(rule:create_port and rule:create_port:network) is disallowed by policy"
                )
            self._claim(s, project_id, "port")
            wanted = self._wanted_ips(s, net, body.get("fixed_ips"))
            if mac is not None:
                clash = s.scalar(
                    select(m.Port.id).where(m.Port.network_id == net.id, m.Port.mac_address == mac)
                )
                if clash:
                    raise MacAddressInUse(
                        f"Unable to complete operation for network {net.id}. The mac address "
                        f"{mac} is in use."
                    )
            now = self._now()
            row = m.Port(
                id=new_id(),
                network_id=net.id,
                project_id=project_id,
                mac_address=mac or _new_mac(),
                status="DOWN",
                port_security_enabled=net.port_security_enabled,
                allowed_address_pairs=[],
                delete_with_device=delete_with_device,
                revision_number=1,
                created_at=now,
                updated_at=now,
            )
            self._plain_port_fields(row, body)
            s.add(row)
            try:
                s.flush()
            except IntegrityError:
                raise _Retry() from None
            self._port_security(s, ctx, row, body, creating=True)
            self._allocate(s, row, wanted)
            s.flush()
            return self.port_view(s, row)

        return self._retrying(work)

    def get_port(self, ctx: RequestContext, port_id: str) -> dict[str, Any]:
        with self.db.session() as s:
            return self.port_view(s, self._port(s, ctx, port_id))

    def list_ports(self, ctx: RequestContext, query: ListQuery) -> Page:
        with self.db.session() as s:
            stmt = select(m.Port)
            if not ctx.is_admin:
                stmt = stmt.where(m.Port.project_id == (ctx.project_id or ""))
            for key in ("network_id", "device_id"):
                if len(query.filters.get(key, [])) == 1:
                    stmt = stmt.where(getattr(m.Port, key) == query.filters[key][0])
            views = self.port_views(s, s.scalars(stmt).all())
        return select_page(views, query, "Port")

    def update_port(
        self, ctx: RequestContext, port_id: str, body: dict[str, Any]
    ) -> dict[str, Any]:
        _only(body, self.PORT_FIELDS - {"network_id", "project_id", "tenant_id"}, "port")
        if "mac_address" in body:
            raise BadRequest("Cannot update read-only attribute mac_address")

        def work(s: Session) -> dict[str, Any]:
            row = self._port(s, ctx, port_id)
            self._plain_port_fields(row, body)
            self._port_security(s, ctx, row, body, creating=False)
            if "fixed_ips" in body:
                net = s.get(m.Network, row.network_id)
                assert net is not None
                wanted = self._wanted_ips(s, net, body["fixed_ips"] or [])
                current = s.scalars(
                    select(m.IpAllocation).where(m.IpAllocation.port_id == row.id)
                ).all()
                keep = {(a.subnet_id, a.ip_address) for a in current}
                fresh = [(sn, ip) for sn, ip in wanted if (sn.id, ip) not in keep]
                wanted_keys = {(sn.id, ip) for sn, ip in wanted}
                for a in current:
                    if (a.subnet_id, a.ip_address) not in wanted_keys:
                        s.delete(a)
                s.flush()
                self._allocate(s, row, fresh)
            row.revision_number += 1
            row.updated_at = self._now()
            s.flush()
            return self.port_view(s, row)

        view = self._retrying(work)
        if view["status"] == "ACTIVE":  # its groups, addresses or pairs may have changed
            self.sync_firewall()
            if "fixed_ips" in body and self.dataplane is not None:
                self.refresh_dhcp(view["network_id"])
        return view

    def delete_port(self, ctx: RequestContext, port_id: str) -> None:
        with self.db.session() as s:
            row = self._port(s, ctx, port_id)
            if row.device_owner in SERVICE_OWNERS:
                raise PortInUse(
                    f"Port {row.id} cannot be deleted directly via the port API: has device "
                    f"owner {row.device_owner}."
                )
            network_id, wired = row.network_id, row.status == "ACTIVE" and bool(row.host)
            routers = self._delete_port_row(s, row)
        for router_id in routers:
            self.sync_router(router_id)
        if wired:
            self.unwire_port(port_id, network_id)

    def _delete_port_row(self, s: Session, row: m.Port) -> set[str]:
        """Delete a port; floating IPs pointing at it are let go. Returns their routers."""
        routers: set[str] = set()
        for fip in s.scalars(select(m.FloatingIp).where(m.FloatingIp.port_id == row.id)).all():
            if fip.router_id:
                routers.add(fip.router_id)
            fip.port_id, fip.fixed_ip_address, fip.router_id = None, None, None
        s.execute(delete(m.IpAllocation).where(m.IpAllocation.port_id == row.id))
        s.execute(delete(m.PortSecurityGroup).where(m.PortSecurityGroup.port_id == row.id))
        s.delete(row)
        return routers

    # ------------------------------------------------------------------ for the compute service

    def get_or_create_auto_network(self, ctx: RequestContext) -> dict[str, Any]:
        """The project's get-me-a-network network with its subnet, made on first call."""
        project_id = ctx.project_id or ""
        with self.db.session() as s:
            row = s.scalars(
                select(m.Network).where(m.Network.auto_for_project == project_id)
            ).first()
            if row is not None:
                return self.network_view(s, row)
        try:
            with self.db.session() as s:
                self._lock_quota(s, project_id)
                row = self._new_network_row(s, project_id, {"name": AUTO_NETWORK})
                row.auto_for_project = project_id
                s.add(row)
                s.flush()
                cidr = ipam.parse_cidr(self.settings.default_cidr)
                subnet = self._new_subnet_row(
                    s,
                    row,
                    project_id,
                    {
                        "name": AUTO_NETWORK + "-subnet",
                        "cidr": str(cidr),
                        "ip_version": cidr.version,
                        "dns_nameservers": list(self.settings.dns_nameservers),
                    },
                )
                s.add(subnet)
                s.flush()
                view = self.network_view(s, row)
        except IntegrityError:
            return self.get_or_create_auto_network(ctx)
        self._auto_router(ctx, view["subnets"][0])
        return view

    def _auto_router(self, ctx: RequestContext, subnet_id: str) -> None:
        """Get-me-a-network's router: the new subnet reaches `public` (SNAT), as Neutron's
        auto-allocated topology does. Without a router quota left the network stays private."""
        with self.db.session() as s:
            public = s.scalar(
                select(m.Network.id)
                .where(m.Network.external, m.Network.project_id == "")
                .order_by(m.Network.created_at)
            )
        if public is None:
            return
        try:
            router = self.create_router(
                ctx,
                {"name": AUTO_ROUTER, "external_gateway_info": {"network_id": public}},
            )
        except OverQuota:
            log.warning(
                "project %s has no router quota left: its auto network is private", ctx.project_id
            )
            return
        self.add_router_interface(ctx, router["id"], {"subnet_id": subnet_id})

    def create_port_for_server(
        self,
        ctx: RequestContext,
        network_id: str | None = None,
        port_id: str | None = None,
        fixed_ip: str | None = None,
        *,
        server_id: str,
        security_groups: list[str] | None = None,
    ) -> dict[str, Any]:
        if port_id is not None:
            with self.db.session() as s:
                row = self._port(s, ctx, port_id)
                if row.device_id and row.device_id != server_id:
                    raise PortInUse(
                        f"Unable to complete operation on port {row.id} for network "
                        f"{row.network_id}. Port already has an attached device {row.device_id}."
                    )
                row.device_id, row.device_owner = server_id, COMPUTE_OWNER
                row.updated_at = self._now()
                s.flush()
                return self.port_view(s, row)
        if network_id is None:
            network_id = self.get_or_create_auto_network(ctx)["id"]
        body: dict[str, Any] = {
            "network_id": network_id,
            "device_id": server_id,
            "device_owner": COMPUTE_OWNER,
        }
        if fixed_ip is not None:
            body["fixed_ips"] = [{"ip_address": fixed_ip}]
        if security_groups is not None:
            body["security_groups"] = security_groups
        return self.create_port(ctx, body, delete_with_device=True)

    def bind_port(self, port_id: str, server_id: str, host: str) -> dict[str, Any]:
        with self.db.session() as s:
            row = s.get(m.Port, port_id)
            if row is None:
                raise PortNotFound(f"Port {port_id[:64]} could not be found.")
            row.device_id, row.host, row.status = server_id, host, "ACTIVE"
            row.updated_at = self._now()
            s.flush()
            return self.port_view(s, row)

    def release_port(self, port_id: str) -> None:
        """One port leaves its server: deleted if made for it, else unbound; unplugged."""
        with self.db.session() as s:
            row = s.get(m.Port, port_id)
            if row is None:
                return
            network_id = row.network_id
            if row.delete_with_device:
                routers = self._delete_port_row(s, row)
            else:
                routers = set()
                row.device_id, row.device_owner, row.host, row.status = "", "", "", "DOWN"
                row.updated_at = self._now()
        for router_id in routers:
            self.sync_router(router_id)
        self.unwire_port(port_id, network_id)

    def _tell_servers(self, port_ids: set[str | None]) -> None:
        with self.db.session() as s:
            devices = s.scalars(
                select(m.Port.device_id).where(
                    m.Port.id.in_([p for p in port_ids if p]), m.Port.device_owner.like("compute:%")
                )
            ).all()
        for device_id in set(devices):
            for listener in self.address_listeners:
                try:
                    listener(device_id)
                except Exception:
                    log.exception("server %s could not refresh its addresses", device_id)

    def release_ports_of(self, server_id: str) -> None:
        routers: set[str] = set()
        with self.db.session() as s:
            for row in s.scalars(select(m.Port).where(m.Port.device_id == server_id)).all():
                if row.delete_with_device:
                    routers |= self._delete_port_row(s, row)
                else:
                    row.device_id, row.device_owner, row.host, row.status = "", "", "", "DOWN"
                    row.updated_at = self._now()
        for router_id in routers:
            self.sync_router(router_id)

    # ------------------------------------------------------------------ data plane

    def ports_of(self, server_id: str) -> list[dict[str, Any]]:
        """The ports plugged into a server, oldest first (the guest's eth0, eth1, ...)."""
        with self.db.session() as s:
            rows = s.scalars(
                select(m.Port)
                .where(m.Port.device_id == server_id)
                .order_by(m.Port.created_at, m.Port.id)
            ).all()
            return self.port_views(s, rows)

    def _plane(self) -> Any:
        if self.dataplane is None:
            raise Conflict("This cloud runs no network data plane: servers take networks none.")
        return self.dataplane

    def wire_port(self, port_id: str) -> str:
        """Plug a bound port into its network: bridge, tap, and its DHCP host entry."""
        plane = self._plane()
        with self.db.session() as s:
            port = s.get(m.Port, port_id)
            if port is None:
                raise PortNotFound(f"Port {port_id[:64]} could not be found.")
            network = s.get(m.Network, port.network_id)
            assert network is not None
            network_id, mtu, mac = network.id, network.mtu, port.mac_address
        plane.ensure_network(network_id, mtu)
        # the tap's own MAC must differ from the guest's, or the bridge keeps the guest's
        # frames for the host (it takes its ports' MACs as local): fe:... as libvirt does
        tap = str(plane.ensure_tap(network_id, port_id, "fe" + mac[2:]))
        self.sync_firewall()  # before the guest runs: filtered from its first frame
        self.refresh_dhcp(network_id)
        return tap

    def reconcile_dataplane(self) -> None:
        """At start: the kernel holds exactly the bridges, taps, dnsmasq, routers and rules
        the rows describe; anything else of ours goes. Guests' traffic is not interrupted:
        what exists and is wanted is left in place (the firewall is replaced atomically)."""
        if self.dataplane is None:
            return
        with self.db.session() as s:
            rows = s.execute(
                select(m.Port.network_id, m.Port.id).where(
                    m.Port.device_owner.like("compute:%"), m.Port.status == "ACTIVE"
                )
            ).all()
            routed = s.scalars(
                select(m.Port.network_id).where(m.Port.device_owner == ROUTER_INTERFACE)
            ).all()
            router_ids = s.scalars(select(m.Router.id).where(m.Router.admin_state_up)).all()
            mtus = dict(s.execute(select(m.Network.id, m.Network.mtu)).all())
        public = self._public_networks()
        wanted: dict[str, list[str]] = {}
        for network_id, port_id in rows:
            wanted.setdefault(network_id, []).append(port_id)
        for network_id in [*routed, *(p[0] for p in public)]:
            wanted.setdefault(network_id, [])
        changed = self.dataplane.reconcile(wanted)
        for network_id in wanted:
            self.dataplane.ensure_network(network_id, mtus.get(network_id, self.settings.mtu))
        if self.routing is not None:
            for network_id, cidr, host_ip, mtu in public:
                self.routing.ensure_public(network_id, cidr, host_ip, mtu)
            states = {}
            with self.db.session() as s:
                for router_id in router_ids:
                    row = s.get(m.Router, router_id)
                    if row is not None:
                        states[router_id] = self._router_state(s, row)[:3]
            changed.update(self.routing.reconcile(states))
        self.sync_firewall()
        if any(changed.values()):
            log.info("network data plane reconciled: %s", changed)
        for network_id, ports in wanted.items():
            if not ports:
                continue
            try:
                self.refresh_dhcp(network_id)
            except Exception:
                log.exception("DHCP of network %s could not be restored", network_id)

    def _router_state(
        self, s: Session, row: m.Router
    ) -> tuple[RouterGateway | None, list[RouterInterface], list[FloatingNat], dict[str, int]]:
        """What the router's namespace must hold, and the bridges (network -> MTU) it needs."""
        bridges: dict[str, int] = {}
        gateway = None
        if row.gateway_port_id and row.external_network_id:
            port = s.get(m.Port, row.gateway_port_id)
            net = s.get(m.Network, row.external_network_id)
            v4 = [] if port is None else [x for x in self._ips_of(s, port.id) if ":" not in x[1]]
            subnet = s.get(m.Subnet, v4[0][0]) if v4 else None
            if port is not None and net is not None and subnet is not None:
                gateway = RouterGateway(
                    network_id=net.id,
                    port_id=port.id,
                    mac=port.mac_address,
                    ip=v4[0][1],
                    prefixlen=ipaddress.ip_network(subnet.cidr).prefixlen,
                    next_hop=subnet.gateway_ip,
                    snat=row.enable_snat,
                    mtu=net.mtu,
                )
                bridges[net.id] = net.mtu
        interfaces = []
        for port in s.scalars(
            select(m.Port)
            .where(m.Port.device_id == row.id, m.Port.device_owner == ROUTER_INTERFACE)
            .order_by(m.Port.created_at, m.Port.id)
        ).all():
            net = s.get(m.Network, port.network_id)
            v4 = [x for x in self._ips_of(s, port.id) if ":" not in x[1]]
            subnet = s.get(m.Subnet, v4[0][0]) if v4 else None
            if net is None or subnet is None:
                continue
            interfaces.append(
                RouterInterface(
                    network_id=net.id,
                    port_id=port.id,
                    mac=port.mac_address,
                    ip=v4[0][1],
                    prefixlen=ipaddress.ip_network(subnet.cidr).prefixlen,
                    mtu=net.mtu,
                )
            )
            bridges[net.id] = net.mtu
        floating = []
        if gateway is not None:
            for fip in s.scalars(
                select(m.FloatingIp)
                .where(m.FloatingIp.router_id == row.id, m.FloatingIp.port_id.is_not(None))
                .order_by(m.FloatingIp.created_at)
            ).all():
                if fip.fixed_ip_address:
                    floating.append(FloatingNat(fip.floating_ip_address, fip.fixed_ip_address))
        return gateway, interfaces, floating, bridges

    def sync_router(self, router_id: str) -> None:
        """The router's namespace matches its rows (interfaces, gateway, floating IPs)."""
        if self.routing is None:
            return
        with self._routing_lock:
            with self.db.session() as s:
                row = s.get(m.Router, router_id)
                state = None
                if row is not None and row.admin_state_up:
                    state = self._router_state(s, row)
            if state is None:
                self._meter_egress(router_id)  # the last bytes, before the counter goes
                self.routing.delete_router(router_id)
                return
            gateway, interfaces, floating, bridges = state
            for network_id, mtu in bridges.items():
                self.dataplane.ensure_network(network_id, mtu)
            self.routing.ensure_router(router_id, gateway, interfaces, floating)

    def _meter_egress(self, router_id: str, project_id: str | None = None) -> None:
        sent = self.routing.take_egress(router_id) if self.routing is not None else 0
        if not sent:
            return
        if project_id is None:
            with self.db.session() as s:
                row = s.get(m.Router, router_id)
                project_id = row.project_id if row is not None else None
        if project_id is None:  # already deleted: the owner is in its last meter events
            log.warning("router %s sent %d bytes with no owner left to bill", router_id, sent)
            return
        self.meter.counter(project_id, "egress.gb", router_id, gib(sent))

    def sample_egress(self) -> None:
        """Bill what each router sent out of the cloud since the last sample (guest
        traffic leaving through its gateway, SNAT and floating IPs alike)."""
        if self.routing is None:
            return
        with self.db.session() as s:
            routers = s.execute(
                select(m.Router.id, m.Router.project_id).where(
                    m.Router.external_network_id.is_not(None)
                )
            ).all()
        for router_id, project_id in routers:
            try:
                self._meter_egress(router_id, project_id)
            except Exception:
                log.exception("egress of router %s could not be read", router_id)

    def _public_networks(self) -> list[tuple[str, str, str, int]]:
        """(network id, CIDR, the host's address, MTU) of each operator external network."""
        with self.db.session() as s:
            rows = s.execute(
                select(m.Network.id, m.Network.mtu, m.Subnet.cidr, m.Subnet.gateway_ip)
                .join(m.Subnet, m.Subnet.network_id == m.Network.id)
                .where(m.Network.external, m.Subnet.ip_version == 4)
                .order_by(m.Subnet.created_at)
            ).all()
        out: dict[str, tuple[str, str, str, int]] = {}
        for network_id, mtu, cidr, gateway in rows:
            if gateway and network_id not in out:
                out[network_id] = (network_id, cidr, gateway, mtu)
        return list(out.values())

    def sync_firewall(self) -> None:
        """The security groups and anti-spoofing of every wired port, as one nft transaction."""
        if self.firewall is None or self.dataplane is None:
            return
        plane = self.dataplane
        with self._firewall_lock:
            with self.db.session() as s:
                # tenant networks only: the external network's bridge carries the host's own
                # traffic, whose replies leave from the host in zone 0
                zones = [
                    NetworkZone(bridge=plane.bridge_name(net_id), zone=segment)
                    for net_id, segment in s.execute(
                        select(m.Network.id, m.Network.segmentation_id).where(
                            m.Network.external.is_(False)
                        )
                    ).all()
                    if segment is not None
                ]
                ports = s.scalars(
                    select(m.Port).where(
                        m.Port.device_owner.like("compute:%"),
                        m.Port.status == "ACTIVE",
                        m.Port.host != "",
                    )
                ).all()
                port_ids = [p.id for p in ports]
                ips: dict[str, list[str]] = {}
                for port_id, ip in s.execute(
                    select(m.IpAllocation.port_id, m.IpAllocation.ip_address)
                    .where(m.IpAllocation.port_id.in_(port_ids))
                    .order_by(m.IpAllocation.ip_address)
                ).all():
                    ips.setdefault(port_id, []).append(ip)
                memberships: dict[str, list[str]] = {}
                for port_id, group_id in s.execute(
                    select(
                        m.PortSecurityGroup.port_id, m.PortSecurityGroup.security_group_id
                    ).where(m.PortSecurityGroup.port_id.in_(port_ids))
                ).all():
                    memberships.setdefault(port_id, []).append(group_id)
                group_ids = {g for groups in memberships.values() for g in groups}
                rules: dict[str, list[Rule]] = {}
                for r in s.scalars(
                    select(m.SecurityGroupRule)
                    .where(m.SecurityGroupRule.security_group_id.in_(group_ids))
                    .order_by(m.SecurityGroupRule.created_at, m.SecurityGroupRule.id)
                ).all():
                    rules.setdefault(r.security_group_id, []).append(
                        Rule(
                            direction=r.direction,
                            ethertype=r.ethertype,
                            protocol=r.protocol,
                            port_min=r.port_range_min,
                            port_max=r.port_range_max,
                            remote_prefix=r.remote_ip_prefix,
                            remote_group=r.remote_group_id,
                        )
                    )
            members: dict[str, list[str]] = {}
            filters = []
            for port in ports:
                for group_id in memberships.get(port.id, []):
                    members.setdefault(group_id, []).extend(ips.get(port.id, []))
                if not port.port_security_enabled:
                    continue
                pairs = tuple(
                    (str(p["ip_address"]), p.get("mac_address")) for p in port.allowed_address_pairs
                )
                filters.append(
                    PortFilter(
                        ifname=plane.tap_name(port.id),
                        mac=port.mac_address,
                        ips=tuple(ips.get(port.id, [])),
                        allowed_pairs=pairs,
                        rules=tuple(
                            rule for g in memberships.get(port.id, []) for rule in rules.get(g, [])
                        ),
                    )
                )
            self.firewall.apply(zones, filters, members)

    def unwire_port(self, port_id: str, network_id: str) -> None:
        if self.dataplane is None:
            return
        self.dataplane.delete_tap(port_id)
        self.sync_firewall()
        self.refresh_dhcp(network_id)

    def refresh_dhcp(self, network_id: str) -> None:
        """dnsmasq for the network's first IPv4 DHCP subnet answers exactly its bound ports."""
        plane = self._plane()
        with self.db.session() as s:
            network = s.get(m.Network, network_id)
            subnet = s.scalar(
                select(m.Subnet)
                .where(
                    m.Subnet.network_id == network_id,
                    m.Subnet.ip_version == 4,
                    m.Subnet.enable_dhcp.is_(True),
                )
                .order_by(m.Subnet.created_at)
            )
            if network is None or subnet is None:
                plane.delete_dhcp(network_id)
                return
            project_id, subnet_id = network.project_id, subnet.id
            cidr, gateway, dns = subnet.cidr, subnet.gateway_ip, tuple(subnet.dns_nameservers)
            mtu = network.mtu
            dhcp_ip = s.scalar(
                select(m.IpAllocation.ip_address)
                .join(m.Port, m.Port.id == m.IpAllocation.port_id)
                .where(m.IpAllocation.subnet_id == subnet_id, m.Port.device_owner == DHCP_OWNER)
            )
        if dhcp_ip is None:
            system = RequestContext(
                user_id="souverain",
                user_domain_id="default",
                roles=frozenset({"admin"}),
                project_id=project_id or None,
            )
            port = self.create_port(
                system,
                {
                    "network_id": network_id,
                    "project_id": project_id,
                    "device_owner": DHCP_OWNER,
                    "device_id": f"dhcp-{network_id}",
                    "fixed_ips": [{"subnet_id": subnet_id}],
                    "port_security_enabled": False,
                },
            )
            dhcp_ip = port["fixed_ips"][0]["ip_address"]
        with self.db.session() as s:
            rows = s.execute(
                select(m.Port.mac_address, m.IpAllocation.ip_address)
                .join(m.IpAllocation, m.IpAllocation.port_id == m.Port.id)
                .where(
                    m.IpAllocation.subnet_id == subnet_id,
                    m.Port.device_owner.like("compute:%"),
                    m.Port.status == "ACTIVE",
                )
            ).all()
        hosts = [
            DhcpHost(mac=mac, ip=ip, hostname="host-" + ip.replace(".", "-")) for mac, ip in rows
        ]
        plane.ensure_dhcp(
            network_id,
            SubnetSpec(cidr=cidr, gateway=gateway, dhcp_ip=str(dhcp_ip), dns=dns, mtu=mtu),
            hosts,
        )

    # ------------------------------------------------------------------ security groups

    def _ensure_default_group(self, project_id: str) -> str:
        """The project's `default` group, made on first use (once, whoever races)."""
        with self.db.session() as s:
            found = s.scalar(
                select(m.SecurityGroup.id).where(m.SecurityGroup.default_for_project == project_id)
            )
            if found:
                return str(found)
        try:
            with self.db.session() as s:
                now = self._now()
                group = m.SecurityGroup(
                    id=new_id(),
                    project_id=project_id,
                    name="default",
                    description="Default security group",
                    default_for_project=project_id,
                    revision_number=1,
                    created_at=now,
                    updated_at=now,
                )
                s.add(group)
                s.flush()
                for ethertype in ("IPv4", "IPv6"):
                    s.add(self._rule_row(group, "egress", ethertype))
                    s.add(self._rule_row(group, "ingress", ethertype, remote_group_id=group.id))
                return group.id
        except IntegrityError:
            return self._ensure_default_group(project_id)

    def _default_group_id(self, s: Session, project_id: str) -> str:
        found = s.scalar(
            select(m.SecurityGroup.id).where(m.SecurityGroup.default_for_project == project_id)
        )
        if found is None:
            raise SecurityGroupNotFound("Security group default does not exist")
        return str(found)

    def _rule_row(
        self, group: m.SecurityGroup, direction: str, ethertype: str, **extra: Any
    ) -> m.SecurityGroupRule:
        now = self._now()
        return m.SecurityGroupRule(
            id=new_id(),
            security_group_id=group.id,
            project_id=group.project_id,
            direction=direction,
            ethertype=ethertype,
            description=extra.pop("description", ""),
            created_at=now,
            updated_at=now,
            **extra,
        )

    def rule_view(self, row: m.SecurityGroupRule) -> dict[str, Any]:
        return {
            "id": row.id,
            "security_group_id": row.security_group_id,
            "direction": row.direction,
            "ethertype": row.ethertype,
            "protocol": row.protocol,
            "port_range_min": row.port_range_min,
            "port_range_max": row.port_range_max,
            "remote_ip_prefix": row.remote_ip_prefix,
            "remote_group_id": row.remote_group_id,
            "remote_address_group_id": None,
            "normalized_cidr": row.remote_ip_prefix,
            "description": row.description,
            "belongs_to_default_sg": None,
            "tenant_id": row.project_id,
            "project_id": row.project_id,
            "created_at": _time(row.created_at),
            "updated_at": _time(row.updated_at),
            "revision_number": 0,
            "tags": [],
        }

    def group_view(self, s: Session, row: m.SecurityGroup) -> dict[str, Any]:
        return self.group_views(s, [row])[0]

    def group_views(self, s: Session, rows: Sequence[m.SecurityGroup]) -> list[dict[str, Any]]:
        """The views of many security groups, with all their rules in one query."""
        rules = related.rules_by_group(s, [r.id for r in rows])
        return [self._group_body(r, rules.get(r.id, [])) for r in rows]

    def _group_body(self, row: m.SecurityGroup, rules: list[m.SecurityGroupRule]) -> dict[str, Any]:
        return {
            "id": row.id,
            "name": row.name,
            "description": row.description,
            "security_group_rules": [self.rule_view(r) for r in rules],
            "stateful": True,
            "shared": False,
            **_common(row),
        }

    def _group(self, s: Session, ctx: RequestContext, group_id: Any) -> m.SecurityGroup:
        row = s.get(m.SecurityGroup, group_id) if isinstance(group_id, str) else None
        if row is None or not (ctx.is_admin or row.project_id == ctx.project_id):
            raise SecurityGroupNotFound(f"Security group {str(group_id)[:64]} does not exist")
        return row

    def create_security_group(self, ctx: RequestContext, body: dict[str, Any]) -> dict[str, Any]:
        _only(
            body,
            frozenset({"name", "description", "project_id", "tenant_id", "stateful", "tags"}),
            "security_group",
        )
        project_id = _owner_of(ctx, body)
        name = _text(body, "name")
        if name == "default":
            raise Conflict("Default security group already exists.")
        if project_id:
            self._ensure_default_group(project_id)
        with self.db.session() as s:
            self._lock_quota(s, project_id)
            self._claim(s, project_id, "security_group")
            self._claim(s, project_id, "security_group_rule", 2)
            now = self._now()
            row = m.SecurityGroup(
                id=new_id(),
                project_id=project_id,
                name=name,
                description=_text(body, "description"),
                revision_number=1,
                created_at=now,
                updated_at=now,
            )
            s.add(row)
            s.flush()
            for ethertype in ("IPv4", "IPv6"):
                s.add(self._rule_row(row, "egress", ethertype))
            s.flush()
            return self.group_view(s, row)

    def get_security_group(self, ctx: RequestContext, group_id: str) -> dict[str, Any]:
        with self.db.session() as s:
            return self.group_view(s, self._group(s, ctx, group_id))

    def list_security_groups(self, ctx: RequestContext, query: ListQuery) -> Page:
        if ctx.project_id:
            self._ensure_default_group(ctx.project_id)
        return self._owned_page(ctx, query, m.SecurityGroup, self.group_views, "Security group")

    def update_security_group(
        self, ctx: RequestContext, group_id: str, body: dict[str, Any]
    ) -> dict[str, Any]:
        _only(body, frozenset({"name", "description", "stateful"}), "security_group")
        with self.db.session() as s:
            row = self._group(s, ctx, group_id)
            if "name" in body:
                name = _text(body, "name")
                if row.default_for_project and name != "default":
                    raise Conflict("Updating default security group not allowed.")
                if not row.default_for_project and name == "default":
                    raise Conflict("Default security group already exists.")
                row.name = name
            if "description" in body:
                row.description = _text(body, "description")
            row.revision_number += 1
            row.updated_at = self._now()
            return self.group_view(s, row)

    def delete_security_group(self, ctx: RequestContext, group_id: str) -> None:
        with self.db.session() as s:
            row = self._group(s, ctx, group_id)
            if row.default_for_project and not ctx.is_admin:
                raise SecurityGroupCannotRemoveDefault(
                    "Insufficient rights for removing default security group."
                )
            used = s.scalar(
                select(func.count())
                .select_from(m.PortSecurityGroup)
                .where(m.PortSecurityGroup.security_group_id == row.id)
            )
            if used:
                raise SecurityGroupInUse(f"Security Group {row.id} in use.")
            s.execute(
                delete(m.SecurityGroupRule).where(m.SecurityGroupRule.security_group_id == row.id)
            )
            s.delete(row)

    RULE_FIELDS = frozenset(
        {
            "security_group_id",
            "direction",
            "ethertype",
            "protocol",
            "port_range_min",
            "port_range_max",
            "remote_ip_prefix",
            "remote_group_id",
            "remote_address_group_id",
            "description",
            "project_id",
            "tenant_id",
        }
    )

    def _rule_fields(self, s: Session, ctx: RequestContext, body: dict[str, Any]) -> dict[str, Any]:
        direction = body.get("direction")
        if direction not in ("ingress", "egress"):
            raise InvalidInput(
                f"Invalid input for direction. Reason: '{str(direction)[:32]}' is not in "
                "['ingress', 'egress']."
            )
        ethertype = body.get("ethertype", "IPv4")
        if ethertype not in ("IPv4", "IPv6"):
            raise InvalidInput(
                f"Invalid input for ethertype. Reason: '{str(ethertype)[:32]}' is not in "
                "['IPv4', 'IPv6']."
            )
        protocol = _protocol(body.get("protocol"))
        low = _int(body.get("port_range_min"), "port_range_min")
        high = _int(body.get("port_range_max"), "port_range_max")
        _check_ports(protocol, low, high)
        prefix = body.get("remote_ip_prefix")
        group_id = body.get("remote_group_id")
        if prefix is not None and group_id is not None:
            raise BadRequest("Only remote_ip_prefix or remote_group_id may be provided.")
        if prefix is not None:
            try:
                net = (
                    ipaddress.ip_network(prefix, strict=False) if isinstance(prefix, str) else None
                )
            except ValueError:
                net = None
            if net is None or len(prefix) > 64:
                raise InvalidInput(
                    f"Invalid input for remote_ip_prefix. Reason: '{str(prefix)[:32]}' is not a "
                    "valid IP prefix."
                )
            if f"IPv{net.version}" != ethertype:
                raise BadRequest(f"Conflicting value ethertype {ethertype} for CIDR {prefix}")
            prefix = str(net)
        if group_id is not None:
            group_id = self._group(s, ctx, group_id).id
        return {
            "direction": direction,
            "ethertype": ethertype,
            "protocol": protocol,
            "port_range_min": low,
            "port_range_max": high,
            "remote_ip_prefix": prefix,
            "remote_group_id": group_id,
            "description": _text(body, "description"),
        }

    def create_security_group_rule(
        self, ctx: RequestContext, body: dict[str, Any]
    ) -> dict[str, Any]:
        _only(body, self.RULE_FIELDS, "security_group_rule")
        with self.db.session() as s:
            group = self._group(s, ctx, body.get("security_group_id"))
            fields = self._rule_fields(s, ctx, body)
            self._lock_quota(s, group.project_id)
            self._claim(s, group.project_id, "security_group_rule")
            same = [
                r
                for r in s.scalars(
                    select(m.SecurityGroupRule).where(
                        m.SecurityGroupRule.security_group_id == group.id
                    )
                ).all()
                if _same_rule(r, fields)
            ]
            if same:
                raise SecurityGroupRuleExists(
                    f"Security group rule already exists. Rule id is {same[0].id}."
                )
            row = self._rule_row(group, **fields)
            s.add(row)
            group.revision_number += 1
            s.flush()
            view = self.rule_view(row)
        self._sync_firewall_for(view["security_group_id"])
        return view

    def _sync_firewall_for(self, group_id: str) -> None:
        """A group's rules changed: rewrite the firewall if a wired port carries them."""
        with self.db.session() as s:
            carried = s.scalar(
                select(func.count())
                .select_from(m.PortSecurityGroup)
                .join(m.Port, m.Port.id == m.PortSecurityGroup.port_id)
                .where(
                    m.PortSecurityGroup.security_group_id == group_id,
                    m.Port.status == "ACTIVE",
                    m.Port.host != "",
                )
            )
        if carried:
            self.sync_firewall()

    def _rule(self, s: Session, ctx: RequestContext, rule_id: Any) -> m.SecurityGroupRule:
        row = s.get(m.SecurityGroupRule, rule_id) if isinstance(rule_id, str) else None
        if row is None or not (ctx.is_admin or row.project_id == ctx.project_id):
            raise SecurityGroupRuleNotFound(
                f"Security group rule {str(rule_id)[:64]} does not exist"
            )
        return row

    def get_security_group_rule(self, ctx: RequestContext, rule_id: str) -> dict[str, Any]:
        with self.db.session() as s:
            return self.rule_view(self._rule(s, ctx, rule_id))

    def list_security_group_rules(self, ctx: RequestContext, query: ListQuery) -> Page:
        if ctx.project_id:
            self._ensure_default_group(ctx.project_id)
        return self._owned_page(
            ctx,
            query,
            m.SecurityGroupRule,
            lambda _s, rows: [self.rule_view(r) for r in rows],
            "Security group rule",
        )

    def delete_security_group_rule(self, ctx: RequestContext, rule_id: str) -> None:
        with self.db.session() as s:
            row = self._rule(s, ctx, rule_id)
            group_id = row.security_group_id
            s.delete(row)
        self._sync_firewall_for(group_id)

    # ------------------------------------------------------------------ routers

    ROUTER_FIELDS = frozenset(
        {
            "name",
            "description",
            "admin_state_up",
            "external_gateway_info",
            "project_id",
            "tenant_id",
            "distributed",
            "ha",
            "routes",
            "availability_zone_hints",
            "flavor_id",
            "tags",
        }
    )

    def _router(self, s: Session, ctx: RequestContext, router_id: Any) -> m.Router:
        row = s.get(m.Router, router_id) if isinstance(router_id, str) else None
        if row is None or not (ctx.is_admin or row.project_id == ctx.project_id):
            raise RouterNotFound(f"Router {str(router_id)[:64]} could not be found")
        return row

    def _ips_of(self, s: Session, port_id: str) -> list[tuple[str, str]]:
        return sorted(
            (str(sid), str(ip))
            for sid, ip in s.execute(
                select(m.IpAllocation.subnet_id, m.IpAllocation.ip_address).where(
                    m.IpAllocation.port_id == port_id
                )
            ).all()
        )

    def router_view(self, s: Session, row: m.Router) -> dict[str, Any]:
        return self.router_views(s, [row])[0]

    def router_views(self, s: Session, rows: Sequence[m.Router]) -> list[dict[str, Any]]:
        """The views of many routers, with their gateway addresses in one query."""
        ips = related.ips_by_port(s, [r.gateway_port_id for r in rows if r.gateway_port_id])
        return [self._router_body(r, ips.get(r.gateway_port_id or "", [])) for r in rows]

    @staticmethod
    def _router_body(row: m.Router, ips: list[tuple[str, str]]) -> dict[str, Any]:
        info = None
        if row.external_network_id:
            info = {
                "network_id": row.external_network_id,
                "enable_snat": row.enable_snat,
                "external_fixed_ips": [{"subnet_id": sid, "ip_address": ip} for sid, ip in ips],
            }
        return {
            "id": row.id,
            "name": row.name,
            "description": row.description,
            "admin_state_up": row.admin_state_up,
            "status": "ACTIVE",
            "external_gateway_info": info,
            "routes": [],
            "distributed": False,
            "ha": False,
            "flavor_id": None,
            "availability_zone_hints": [],
            "availability_zones": ["nova"],
            **_common(row),
        }

    def _system_port(
        self,
        s: Session,
        net: m.Network,
        project_id: str,
        owner: str,
        device_id: str,
        wanted: list[tuple[m.Subnet, str | None]],
    ) -> m.Port:
        """A port the network service itself holds (router, gateway, floating IP): no groups."""
        now = self._now()
        row = m.Port(
            id=new_id(),
            network_id=net.id,
            project_id=project_id,
            mac_address=_new_mac(),
            status="ACTIVE",
            device_owner=owner,
            device_id=device_id,
            port_security_enabled=False,
            allowed_address_pairs=[],
            revision_number=1,
            created_at=now,
            updated_at=now,
        )
        s.add(row)
        try:
            s.flush()
        except IntegrityError:
            raise _Retry() from None
        self._allocate(s, row, [(sn, ip) for sn, ip in wanted if sn.ip_version == 4] or wanted)
        return row

    def _gateway_wanted(
        self, s: Session, ctx: RequestContext, value: Any
    ) -> tuple[m.Network, bool, Any] | None:
        if value is None or value == {}:
            return None
        if not isinstance(value, dict) or not set(value) <= {
            "network_id",
            "enable_snat",
            "external_fixed_ips",
        }:
            raise InvalidInput(
                "Invalid input for external_gateway_info. Reason: keys network_id, enable_snat, "
                "external_fixed_ips."
            )
        if "network_id" not in value:
            raise InvalidInput(
                "Invalid input for external_gateway_info. Reason: network_id is required."
            )
        net = self._network(s, ctx, value["network_id"])
        if not net.external:
            raise BadRequest(f"Bad router request: Network {net.id} is not an external network.")
        snat = _flag(value, "enable_snat", True)
        if not snat and not ctx.is_admin:
            raise PolicyNotAuthorized(
                "rule:create_router:external_gateway_info:enable_snat is disallowed by policy"
            )
        fixed = value.get("external_fixed_ips")
        if fixed is not None and not ctx.is_admin:
            raise PolicyNotAuthorized(
                "rule:create_router:external_gateway_info:external_fixed_ips is disallowed by "
                "policy"
            )
        return net, snat, fixed

    def _set_gateway(
        self, s: Session, row: m.Router, wanted: tuple[m.Network, bool, Any] | None
    ) -> None:
        moving = wanted is None or wanted[0].id != row.external_network_id
        if row.external_network_id and moving:
            held = s.scalar(
                select(func.count())
                .select_from(m.FloatingIp)
                .where(m.FloatingIp.router_id == row.id)
            )
            if held:
                raise RouterExternalGatewayInUseByFloatingIp(
                    f"Gateway cannot be updated for router {row.id}, since a gateway to external "
                    f"network {row.external_network_id} is required by one or more floating IPs."
                )
            if row.gateway_port_id:
                old = s.get(m.Port, row.gateway_port_id)
                if old is not None:
                    self._delete_port_row(s, old)
            row.external_network_id, row.gateway_port_id = None, None
        if wanted is None:
            return
        net, snat, fixed = wanted
        row.enable_snat = snat
        if moving:
            port = self._system_port(
                s, net, "", ROUTER_GATEWAY, row.id, self._wanted_ips(s, net, fixed)
            )
            row.external_network_id, row.gateway_port_id = net.id, port.id

    def _router_plain(self, row: m.Router, body: dict[str, Any]) -> None:
        for name in ("name", "description"):
            if name in body:
                setattr(row, name, _text(body, name))
        if "admin_state_up" in body:
            row.admin_state_up = _flag(body, "admin_state_up", True)
        for name in ("distributed", "ha"):
            if name in body and _flag(body, name, False):
                raise BadRequest(f"Bad router request: {name} routers are not offered here.")
        if body.get("routes"):
            raise BadRequest("Bad router request: extra routes are not offered here.")

    def create_router(self, ctx: RequestContext, body: dict[str, Any]) -> dict[str, Any]:
        _only(body, self.ROUTER_FIELDS, "router")
        project_id = _owner_of(ctx, body)

        def work(s: Session) -> dict[str, Any]:
            self._lock_quota(s, project_id)
            self._claim(s, project_id, "router")
            now = self._now()
            row = m.Router(
                id=new_id(),
                project_id=project_id,
                enable_snat=True,
                admin_state_up=True,
                revision_number=1,
                created_at=now,
                updated_at=now,
            )
            self._router_plain(row, body)
            s.add(row)
            s.flush()
            self._set_gateway(
                s, row, self._gateway_wanted(s, ctx, body.get("external_gateway_info"))
            )
            s.flush()
            return self.router_view(s, row)

        view = self._retrying(work)
        self.meter.gauge(project_id, "router", view["id"], 1)
        self.sync_router(view["id"])
        return view

    def get_router(self, ctx: RequestContext, router_id: str) -> dict[str, Any]:
        with self.db.session() as s:
            return self.router_view(s, self._router(s, ctx, router_id))

    def list_routers(self, ctx: RequestContext, query: ListQuery) -> Page:
        return self._owned_page(ctx, query, m.Router, self.router_views, "Router")

    def update_router(
        self, ctx: RequestContext, router_id: str, body: dict[str, Any]
    ) -> dict[str, Any]:
        _only(body, self.ROUTER_FIELDS - {"project_id", "tenant_id"}, "router")

        def work(s: Session) -> dict[str, Any]:
            row = self._router(s, ctx, router_id)
            self._router_plain(row, body)
            if "external_gateway_info" in body:
                self._set_gateway(
                    s, row, self._gateway_wanted(s, ctx, body["external_gateway_info"])
                )
            row.revision_number += 1
            row.updated_at = self._now()
            s.flush()
            return self.router_view(s, row)

        view = self._retrying(work)
        self.sync_router(router_id)
        return view

    def delete_router(self, ctx: RequestContext, router_id: str) -> None:
        with self.db.session() as s:
            row = self._router(s, ctx, router_id)
            interfaces = s.scalar(
                select(func.count())
                .select_from(m.Port)
                .where(m.Port.device_id == row.id, m.Port.device_owner == ROUTER_INTERFACE)
            )
            if interfaces:
                raise RouterInUse(f"Router {row.id} still has ports")
            self._set_gateway(s, row, None)
            project_id, router_id = row.project_id, row.id
            s.delete(row)
        self.meter.gauge(project_id, "router", router_id, 0)
        if self.routing is not None:
            self._meter_egress(router_id, project_id)
        self.sync_router(router_id)

    def _interface_info(self, row: m.Router, port: m.Port, subnet_ids: list[str]) -> dict[str, Any]:
        return {
            "id": row.id,
            "tenant_id": row.project_id,
            "project_id": row.project_id,
            "port_id": port.id,
            "network_id": port.network_id,
            "subnet_id": subnet_ids[0] if subnet_ids else None,
            "subnet_ids": subnet_ids,
        }

    def _interface_body(self, body: dict[str, Any]) -> tuple[str | None, str | None]:
        _only(body, frozenset({"subnet_id", "port_id"}), "router")
        subnet_id, port_id = body.get("subnet_id"), body.get("port_id")
        if (subnet_id is None) == (port_id is None):
            raise BadRequest("Bad router request: Either subnet_id or port_id must be specified.")
        return subnet_id, port_id

    def _check_overlap(self, s: Session, row: m.Router, subnet: m.Subnet) -> None:
        attached = s.execute(
            select(m.Subnet.id, m.Subnet.cidr)
            .join(m.IpAllocation, m.IpAllocation.subnet_id == m.Subnet.id)
            .join(m.Port, m.Port.id == m.IpAllocation.port_id)
            .where(m.Port.device_id == row.id, m.Port.device_owner == ROUTER_INTERFACE)
        ).all()
        mine = ipaddress.ip_network(subnet.cidr)
        for other_id, cidr in attached:
            if other_id == subnet.id:
                raise BadRequest(
                    f"Bad router request: Router already has a port on subnet {subnet.id}."
                )
            if mine.overlaps(ipaddress.ip_network(cidr)):
                raise BadRequest(
                    f"Bad router request: Cidr {subnet.cidr} of subnet {subnet.id} overlaps with "
                    f"cidr {cidr} of subnet {other_id}."
                )

    def add_router_interface(
        self, ctx: RequestContext, router_id: str, body: dict[str, Any]
    ) -> dict[str, Any]:
        subnet_id, port_id = self._interface_body(body)

        def work(s: Session) -> dict[str, Any]:
            row = self._router(s, ctx, router_id)
            self._lock_quota(s, row.project_id)
            if port_id is not None:
                port = self._port(s, ctx, port_id)
                if port.device_id or port.device_owner:
                    raise PortInUse(
                        f"Unable to complete operation on port {port.id} for network "
                        f"{port.network_id}. Port already has an attached device {port.device_id}."
                    )
                ips = self._ips_of(s, port.id)
                if not ips:
                    raise BadRequest(
                        "Bad router request: Router port must have at least one fixed IP."
                    )
                for sid, _ in ips:
                    sn = s.get(m.Subnet, sid)
                    assert sn is not None
                    self._check_overlap(s, row, sn)
                port.device_id, port.device_owner, port.status = row.id, ROUTER_INTERFACE, "ACTIVE"
                port.port_security_enabled = False
                port.allowed_address_pairs = []
                s.execute(delete(m.PortSecurityGroup).where(m.PortSecurityGroup.port_id == port.id))
                port.updated_at = self._now()
                s.flush()
                return self._interface_info(row, port, [sid for sid, _ in ips])
            subnet = self._subnet(s, ctx, subnet_id)
            if not (ctx.is_admin or subnet.project_id == row.project_id):
                raise SubnetNotFound(f"Subnet {subnet.id} could not be found.")
            net = s.get(m.Network, subnet.network_id)
            assert net is not None
            if net.external:
                raise BadRequest(
                    f"Bad router request: Router interface on external network {net.id} is not "
                    "allowed: set it as the router's gateway."
                )
            if not subnet.gateway_ip:
                raise BadRequest(
                    "Bad router request: Subnet for router interface must have a gateway IP."
                )
            self._check_overlap(s, row, subnet)
            self._claim(s, row.project_id, "port")
            port = self._system_port(
                s, net, row.project_id, ROUTER_INTERFACE, row.id, [(subnet, subnet.gateway_ip)]
            )
            return self._interface_info(row, port, [subnet.id])

        info = self._retrying(work)
        self.sync_router(router_id)
        return info

    def remove_router_interface(
        self, ctx: RequestContext, router_id: str, body: dict[str, Any]
    ) -> dict[str, Any]:
        subnet_id, port_id = self._interface_body(body)
        with self.db.session() as s:
            row = self._router(s, ctx, router_id)
            ports = s.scalars(
                select(m.Port).where(
                    m.Port.device_id == row.id, m.Port.device_owner == ROUTER_INTERFACE
                )
            ).all()
            found = None
            for port in ports:
                ips = self._ips_of(s, port.id)
                if port.id == port_id or any(sid == subnet_id for sid, _ in ips):
                    found = (port, ips)
                    break
            if found is None:
                if port_id is not None:
                    raise RouterInterfaceNotFound(
                        f"Router {row.id} does not have an interface with id {str(port_id)[:64]}"
                    )
                raise RouterInterfaceNotFoundForSubnet(
                    f"Router {row.id} has no interface on subnet {str(subnet_id)[:64]}"
                )
            port, ips = found
            subnets = [sid for sid, _ in ips]
            for fip_fixed in s.scalars(
                select(m.FloatingIp.fixed_ip_address).where(m.FloatingIp.router_id == row.id)
            ).all():
                for sid in subnets:
                    sn = s.get(m.Subnet, sid)
                    if (
                        sn is not None
                        and fip_fixed
                        and ipaddress.ip_address(fip_fixed) in ipaddress.ip_network(sn.cidr)
                    ):
                        raise RouterInterfaceInUseByFloatingIP(
                            f"Router interface for subnet {sid} on router {row.id} cannot be "
                            "deleted, as it is required by one or more floating IPs."
                        )
            info = self._interface_info(row, port, subnets)
            self._delete_port_row(s, port)
        self.sync_router(router_id)
        return info

    # ------------------------------------------------------------------ floating IPs

    FIP_FIELDS = frozenset(
        {
            "floating_network_id",
            "floating_ip_address",
            "subnet_id",
            "port_id",
            "fixed_ip_address",
            "description",
            "project_id",
            "tenant_id",
            "dns_name",
            "dns_domain",
            "qos_policy_id",
            "tags",
        }
    )

    def _floating(self, s: Session, ctx: RequestContext, fip_id: Any) -> m.FloatingIp:
        row = s.get(m.FloatingIp, fip_id) if isinstance(fip_id, str) else None
        if row is None or not (ctx.is_admin or row.project_id == ctx.project_id):
            raise FloatingIPNotFound(f"Floating IP {str(fip_id)[:64]} could not be found")
        return row

    def floating_view(self, s: Session, row: m.FloatingIp) -> dict[str, Any]:
        return self.floating_views(s, [row])[0]

    def floating_views(self, s: Session, rows: Sequence[m.FloatingIp]) -> list[dict[str, Any]]:
        """The views of many floating IPs, with the ports they point at in one query."""
        ports = related.ports_by_id(s, [r.port_id for r in rows if r.port_id])
        return [self._floating_body(r, ports.get(r.port_id or "")) for r in rows]

    @staticmethod
    def _floating_body(row: m.FloatingIp, port: m.Port | None) -> dict[str, Any]:
        details = None
        if row.port_id and port is not None:
            details = {
                "name": port.name,
                "network_id": port.network_id,
                "mac_address": port.mac_address,
                "admin_state_up": port.admin_state_up,
                "status": port.status,
                "device_id": port.device_id,
                "device_owner": port.device_owner,
            }
        return {
            "id": row.id,
            "floating_ip_address": row.floating_ip_address,
            "floating_network_id": row.floating_network_id,
            "router_id": row.router_id,
            "port_id": row.port_id,
            "fixed_ip_address": row.fixed_ip_address,
            "status": "ACTIVE" if row.port_id else "DOWN",
            "description": row.description,
            "port_details": details,
            "qos_policy_id": None,
            "dns_domain": "",
            "dns_name": "",
            "port_forwardings": [],
            **_common(row),
        }

    def _associate(
        self, s: Session, ctx: RequestContext, row: m.FloatingIp, port_id: Any, fixed: Any
    ) -> None:
        """Point the floating IP at a port's fixed IPv4, through the router that reaches it."""
        if port_id is None:
            row.port_id, row.fixed_ip_address, row.router_id = None, None, None
            return
        port = self._port(s, ctx, port_id)
        if port.project_id != row.project_id:
            raise PortNotFound(f"Port {port.id} could not be found.")
        v4 = [(sid, ip) for sid, ip in self._ips_of(s, port.id) if ":" not in ip]
        if fixed is not None:
            chosen = [(sid, ip) for sid, ip in v4 if ip == fixed]
            if not chosen:
                raise BadRequest(
                    f"Bad floatingip request: Port {port.id} does not have fixed ip "
                    f"{str(fixed)[:64]}."
                )
        elif len(v4) > 1:
            raise BadRequest(
                f"Bad floatingip request: Port {port.id} has multiple fixed IPv4 addresses. "
                "Must provide a specific IPv4 address when assigning a floating IP."
            )
        else:
            chosen = v4
        if not chosen:
            raise BadRequest(
                f"Bad floatingip request: Port {port.id} does not have any IPv4 address: "
                "a floating IP needs one."
            )
        subnet_id, address = chosen[0]
        router_id = s.scalar(
            select(m.Router.id)
            .join(m.Port, m.Port.device_id == m.Router.id)
            .join(m.IpAllocation, m.IpAllocation.port_id == m.Port.id)
            .where(
                m.Port.device_owner == ROUTER_INTERFACE,
                m.IpAllocation.subnet_id == subnet_id,
                m.Router.external_network_id == row.floating_network_id,
            )
            .order_by(m.Router.created_at)
        )
        if router_id is None:
            raise ExternalGatewayForFloatingIPNotFound(
                f"External network {row.floating_network_id} is not reachable from subnet "
                f"{subnet_id}. Therefore, cannot associate Port {port.id} with a Floating IP."
            )
        taken = s.scalar(
            select(m.FloatingIp.id).where(
                m.FloatingIp.port_id == port.id,
                m.FloatingIp.fixed_ip_address == address,
                m.FloatingIp.id != row.id,
            )
        )
        if taken:
            raise FloatingIPPortAlreadyAssociated(
                f"Cannot associate floating IP {row.floating_ip_address} ({row.id}) with port "
                f"{port.id} using fixed IP {address}, as that fixed IP already has a floating IP "
                f"on external network {row.floating_network_id}."
            )
        row.port_id, row.fixed_ip_address, row.router_id = port.id, address, router_id

    def create_floating_ip(self, ctx: RequestContext, body: dict[str, Any]) -> dict[str, Any]:
        _only(body, self.FIP_FIELDS, "floatingip")
        project_id = _owner_of(ctx, body)
        if "floating_network_id" not in body:
            raise BadRequest(
                "Failed to parse request. Required attribute 'floating_network_id' not specified"
            )
        if "floating_ip_address" in body and not ctx.is_admin:
            raise PolicyNotAuthorized(
                "rule:create_floatingip and rule:create_floatingip:floating_ip_address is "
                "disallowed by policy"
            )

        def work(s: Session) -> dict[str, Any]:
            self._lock_quota(s, project_id)
            net = self._network(s, ctx, body["floating_network_id"])
            if not net.external:
                raise BadRequest(
                    f"Bad floatingip request: Network {net.id} is not a valid external network."
                )
            self._claim(s, project_id, "floatingip")
            wanted_item: dict[str, Any] = {}
            if body.get("subnet_id") is not None:
                wanted_item["subnet_id"] = body["subnet_id"]
            if body.get("floating_ip_address") is not None:
                wanted_item["ip_address"] = body["floating_ip_address"]
            wanted = self._wanted_ips(s, net, [wanted_item] if wanted_item else None)
            fip_id = new_id()
            port = self._system_port(s, net, "", FLOATING_OWNER, fip_id, wanted)
            ips = self._ips_of(s, port.id)
            if not ips:
                raise IpAddressGenerationFailure(
                    f"No more IP addresses available on network {net.id}."
                )
            now = self._now()
            row = m.FloatingIp(
                id=fip_id,
                project_id=project_id,
                floating_network_id=net.id,
                floating_ip_address=ips[0][1],
                floating_port_id=port.id,
                description=_text(body, "description"),
                revision_number=1,
                created_at=now,
                updated_at=now,
            )
            s.add(row)
            if body.get("port_id") is not None:
                self._associate(s, ctx, row, body["port_id"], body.get("fixed_ip_address"))
            s.flush()
            return self.floating_view(s, row)

        view = self._retrying(work)
        self.meter.gauge(project_id, "floatingip", view["id"], 1)
        if view["router_id"]:
            self.sync_router(view["router_id"])
            self._tell_servers({view["port_id"]})
        return view

    def get_floating_ip(self, ctx: RequestContext, fip_id: str) -> dict[str, Any]:
        with self.db.session() as s:
            return self.floating_view(s, self._floating(s, ctx, fip_id))

    def list_floating_ips(self, ctx: RequestContext, query: ListQuery) -> Page:
        return self._owned_page(ctx, query, m.FloatingIp, self.floating_views, "Floating IP")

    def update_floating_ip(
        self, ctx: RequestContext, fip_id: str, body: dict[str, Any]
    ) -> dict[str, Any]:
        _only(body, frozenset({"port_id", "fixed_ip_address", "description"}), "floatingip")
        with self.db.session() as s:
            row = self._floating(s, ctx, fip_id)
            before, before_port = row.router_id, row.port_id
            if "port_id" in body:
                self._associate(s, ctx, row, body["port_id"], body.get("fixed_ip_address"))
            if "description" in body:
                row.description = _text(body, "description")
            row.revision_number += 1
            row.updated_at = self._now()
            s.flush()
            view = self.floating_view(s, row)
        for router_id in {before, view["router_id"]} - {None}:
            self.sync_router(str(router_id))
        self._tell_servers({before_port, view["port_id"]})
        return view

    def delete_floating_ip(self, ctx: RequestContext, fip_id: str) -> None:
        with self.db.session() as s:
            row = self._floating(s, ctx, fip_id)
            router_id, port_id = row.router_id, row.port_id
            project_id, fip_id = row.project_id, row.id
            port = s.get(m.Port, row.floating_port_id)
            if port is not None:
                self._delete_port_row(s, port)
            s.delete(row)
        self.meter.gauge(project_id, "floatingip", fip_id, 0)
        if router_id:
            self.sync_router(router_id)
            self._tell_servers({port_id})

    def floating_ips_of_ports(self, port_ids: list[str]) -> dict[str, list[str]]:
        """Port id -> the floating addresses pointing at it (for a server's addresses)."""
        if not port_ids:
            return {}
        with self.db.session() as s:
            rows = s.execute(
                select(m.FloatingIp.port_id, m.FloatingIp.floating_ip_address)
                .where(m.FloatingIp.port_id.in_(port_ids))
                .order_by(m.FloatingIp.created_at)
            ).all()
        out: dict[str, list[str]] = {}
        for port_id, address in rows:
            out.setdefault(str(port_id), []).append(str(address))
        return out


def _protocol(value: Any) -> str | None:
    if value is None or value in ("any", ""):
        return None
    if isinstance(value, int) and not isinstance(value, bool):
        value = str(value)
    if not isinstance(value, str) or len(value) > 16:
        raise InvalidInput("Invalid input for protocol. Reason: a name or a number 0-255.")
    lowered = value.lower()
    if lowered in PROTOCOLS:
        return lowered
    if lowered.isdigit() and 0 <= int(lowered) <= 255:
        return str(int(lowered))
    raise InvalidInput(
        f"Security group rule protocol {value[:16]} not supported. Only protocol values "
        f"{sorted(PROTOCOLS)} and integer representations [0 to 255] are supported."
    )


def _check_ports(protocol: str | None, low: int | None, high: int | None) -> None:
    """Neutron's port range semantics: TCP-like ports 1-65535 and min <= max;
    for ICMP, min is the type and max the code (0-255), and a code needs a type."""
    if low is None and high is None:
        return
    if protocol is None:
        raise BadRequest("Must also specify protocol if port range is given.")
    if protocol in ICMP_PROTOCOLS:
        for value, name in ((low, "type"), (high, "code")):
            if value is not None and not 0 <= value <= 255:
                raise BadRequest(
                    f"Invalid value for ICMP {name} (port_range_min or port_range_max): {value}. "
                    "It must be 0 to 255."
                )
        if low is None:
            raise BadRequest(
                f"ICMP code (port-range-max) {high} is provided but ICMP type (port-range-min) "
                "is missing."
            )
        return
    if protocol not in PORT_PROTOCOLS:
        raise BadRequest(
            f"Invalid protocol {protocol} for port range, only supported for TCP, "
            "UDP, UDPLITE, SCTP and DCCP."
        )
    if low == 0 or high == 0:
        raise BadRequest("Invalid value for port 0.")
    if low is None or high is None or not 1 <= low <= high <= 65535:
        raise BadRequest(
            "For TCP/UDP protocols, port_range_min must be <= port_range_max and both between "
            "1 and 65535."
        )


def _same_rule(row: m.SecurityGroupRule, fields: dict[str, Any]) -> bool:
    keys = (
        "direction",
        "ethertype",
        "protocol",
        "port_range_min",
        "port_range_max",
        "remote_group_id",
    )
    if any(getattr(row, k) != fields[k] for k in keys):
        return False

    # Neutron treats "any address" as the same as no prefix
    def norm(prefix: str | None) -> str | None:
        return None if prefix in ("0.0.0.0/0", "::/0") else prefix

    return norm(row.remote_ip_prefix) == norm(fields["remote_ip_prefix"])
