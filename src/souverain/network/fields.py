"""Body fields every network resource reads, the device owners and the limits.

Syntax and names only: no rule of a resource, no database."""

from __future__ import annotations

import re
from typing import Any

from souverain.common.audit import note_target_project
from souverain.common.context import RequestContext
from souverain.common.errors import BadRequest, Forbidden
from souverain.common.ids import random_bytes
from souverain.network.ipam import InvalidInput

MAX_FIELD = 255
MAX_ID = 64
ALLOCATION_ATTEMPTS = 20
MAX_DNS = 5
MAX_ROUTES = 20
MAX_EXTRA_ROUTES = 30  # Neutron's default max_routes
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
    "subnetpool",
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


def text_of(body: dict[str, Any], name: str, default: str = "") -> str:
    value = body.get(name, default)
    if value is None:
        value = ""
    if not isinstance(value, str) or len(value) > MAX_FIELD:
        raise InvalidInput(
            f"Invalid input for {name}. Reason: '{str(value)[:32]}' is not a valid string "
            f"of at most {MAX_FIELD} characters."
        )
    return value


def flag_of(body: dict[str, Any], name: str, default: bool) -> bool:
    value = body.get(name, default)
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.lower() in ("true", "false"):
        return value.lower() == "true"
    raise InvalidInput(f"Invalid input for {name}. Reason: '{str(value)[:32]}' is not boolean.")


def check_id(value: Any, name: str) -> str:
    if not isinstance(value, str) or not value or len(value) > MAX_ID:
        raise InvalidInput(f"Invalid input for {name}. Reason: '{str(value)[:32]}' is not an id.")
    return value


def int_of(value: Any, name: str) -> int | None:
    if value is None:
        return None
    if isinstance(value, str) and value.strip().lstrip("-").isdigit():
        value = int(value)
    if not isinstance(value, int) or isinstance(value, bool) or abs(value) > 2**31:
        raise InvalidInput(f"Invalid input for {name}. Reason: '{str(value)[:32]}' is not an int.")
    return value


def only_fields(body: dict[str, Any], allowed: frozenset[str], resource: str) -> None:
    for key in body:
        if key not in allowed:
            raise BadRequest(f"Unrecognized attribute(s) '{str(key)[:64]}'")


def owner_of(ctx: RequestContext, body: dict[str, Any]) -> str:
    """The project a new resource belongs to: the caller's, or any an admin names."""
    return owner_named(ctx, body.get("project_id", body.get("tenant_id")))


def owner_named(ctx: RequestContext, wanted: Any) -> str:
    """The project a new resource belongs to, given what the body named (or None)."""
    own = ctx.project_id or ""
    if wanted is None or wanted == own:
        if not own:  # an admin's domain or system token: no project to bill it to
            raise Forbidden(
                "Network resources belong to projects: name one or use a project-scoped token."
            )
        note_target_project(own)
        return own
    if not ctx.is_admin:
        raise BadRequest(
            "Specifying 'project_id' or 'tenant_id' other than the authenticated "
            "project in request requires admin privileges"
        )
    project = check_id(wanted, "project_id")
    note_target_project(project)  # an admin making a customer's resource: its owners see it
    return project


def new_mac() -> str:
    tail = random_bytes(3)
    return "fa:16:3e:" + ":".join(f"{b:02x}" for b in tail)


def check_mac(value: Any) -> str:
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
