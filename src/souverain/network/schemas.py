"""Port and router request bodies, checked into typed values before any rule runs.

Syntax only, with Neutron's messages: whether a subnet is on the network, a group is
the project's or a network is external is for the families to say, with the rows.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from typing import Any

from souverain.common.errors import BadRequest
from souverain.network import ipam
from souverain.network.dhcp_options import check_options
from souverain.network.fields import (
    ICMP_PROTOCOLS,
    IPV6_MODES,
    MAX_DNS,
    MAX_EXTRA_ROUTES,
    MAX_PAIRS,
    MAX_ROUTES,
    PORT_PROTOCOLS,
    PROTOCOLS,
    check_mac,
    flag_of,
    int_of,
    only_fields,
    text_of,
)
from souverain.network.ipam import InvalidInput
from souverain.network.schemas_pools import PoolAsk, pool_ask

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
PORT_TEXTS = ("name", "description", "device_owner", "device_id")
# which host a port is bound on and how: the platform's to say (Neutron: admin_only)
ADMIN_BINDINGS = ("binding:host_id", "binding:profile")
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
        "subnetpool_id",
        "prefixlen",
        "use_default_subnetpool",
    }
)
MAX_FIXED_IPS = 16
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
MAX_GROUPS = 16


@dataclass(frozen=True)
class FixedIp:
    """One requested fixed IP: a subnet of the network, an address, or both."""

    subnet_id: str | None  # as given (its text): a subnet of the network, else refused
    ip_address: str | None  # a valid address


@dataclass(frozen=True)
class PortBody:
    """A port create or update body. `None`: not given (or null where null means default)."""

    network_id: Any = None
    owner: Any = None  # project_id (or tenant_id) as given: who may set it is a rule
    mac_address: str | None = None
    fixed_ips: list[FixedIp] | None = None
    texts: tuple[tuple[str, str], ...] = ()  # name, description, device owner and id given
    admin_state_up: bool | None = None
    port_security_enabled: bool | None = None
    groups_given: bool = False
    security_groups: list[Any] | None = None  # ids or names; None: the default group
    allowed_address_pairs: list[dict[str, str]] | None = None
    extra_dhcp_opts: list[dict[str, Any]] | None = None  # checked; merged on an update
    bindings: tuple[str, ...] = ()  # the admin's binding fields given with a value


@dataclass(frozen=True)
class Gateway:
    """A router's external gateway: the external network, SNAT, and addresses asked for."""

    network_id: Any
    enable_snat: bool
    fixed_ips: list[FixedIp] | None


@dataclass(frozen=True)
class RouterBody:
    """A router create or update body."""

    owner: Any = None
    name: str | None = None
    description: str | None = None
    admin_state_up: bool | None = None
    gateway_given: bool = False
    gateway: Gateway | None = None  # None with gateway_given: clear the gateway
    routes: list[dict[str, str]] | None = None  # extra routes; None: unchanged


@dataclass(frozen=True)
class InterfaceBody:
    """A router interface named by its subnet or by its port: exactly one of them."""

    subnet_id: Any
    port_id: Any


def fixed_ips(value: Any) -> list[FixedIp]:
    if not isinstance(value, list) or len(value) > MAX_FIXED_IPS:
        raise InvalidInput("Invalid input for fixed_ips. Reason: a list is expected.")
    out = []
    for item in value:
        if not isinstance(item, dict) or not set(item) <= {"subnet_id", "ip_address"}:
            raise InvalidInput("Invalid input for fixed_ips. Reason: unexpected key.")
        if not item:
            raise InvalidInput("Invalid input for fixed_ips. Reason: subnet_id or ip_address.")
        subnet_id = str(item["subnet_id"]) if "subnet_id" in item else None
        address = None
        if "ip_address" in item:
            address = str(ipam.parse_address(item["ip_address"], "ip_address"))
        out.append(FixedIp(subnet_id, address))
    return out


def _pairs(value: Any) -> list[dict[str, str]]:
    if not isinstance(value, list) or len(value) > MAX_PAIRS:
        raise InvalidInput(
            f"Invalid input for allowed_address_pairs. Reason: at most {MAX_PAIRS} pairs."
        )
    out = []
    for item in value:
        keys = set(item) if isinstance(item, dict) else set()
        if "ip_address" not in keys or not keys <= {"ip_address", "mac_address"}:
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
            pair["mac_address"] = check_mac(item["mac_address"])
        out.append(pair)
    return out


def _groups(body: dict[str, Any]) -> list[Any] | None:
    value = body.get("security_groups")
    if value is not None and (not isinstance(value, list) or len(value) > MAX_GROUPS):
        raise InvalidInput("Invalid input for security_groups. Reason: a list is expected.")
    return value


def port_create(body: dict[str, Any]) -> PortBody:
    only_fields(body, PORT_FIELDS, "port")
    if "network_id" not in body:
        raise BadRequest("Failed to parse request. Required attribute 'network_id' not specified")
    mac = check_mac(body["mac_address"]) if body.get("mac_address") is not None else None
    fixed = body.get("fixed_ips")
    return _port(
        body,
        network_id=body["network_id"],
        mac_address=mac,
        fixed_ips=None if fixed is None else fixed_ips(fixed),
    )


def port_update(body: dict[str, Any]) -> PortBody:
    only_fields(body, PORT_FIELDS - {"network_id", "project_id", "tenant_id"}, "port")
    if "mac_address" in body:
        raise BadRequest("Cannot update read-only attribute mac_address")
    given = "fixed_ips" in body
    return _port(body, fixed_ips=fixed_ips(body["fixed_ips"] or []) if given else None)


def _port(body: dict[str, Any], **checked: Any) -> PortBody:
    pairs = body.get("allowed_address_pairs")
    return PortBody(
        owner=body.get("project_id", body.get("tenant_id")),
        texts=tuple((name, text_of(body, name)) for name in PORT_TEXTS if name in body),
        admin_state_up=flag_of(body, "admin_state_up", True) if "admin_state_up" in body else None,
        port_security_enabled=(
            flag_of(body, "port_security_enabled", True)
            if "port_security_enabled" in body
            else None
        ),
        groups_given="security_groups" in body,
        security_groups=_groups(body),
        bindings=tuple(name for name in ADMIN_BINDINGS if body.get(name) not in (None, "", {})),
        allowed_address_pairs=(_pairs(pairs or []) if "allowed_address_pairs" in body else None),
        extra_dhcp_opts=(
            check_options(body["extra_dhcp_opts"] or []) if "extra_dhcp_opts" in body else None
        ),
        **checked,
    )


def _gateway(value: Any) -> Gateway | None:
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
    fixed = value.get("external_fixed_ips")
    return Gateway(
        network_id=value["network_id"],
        enable_snat=flag_of(value, "enable_snat", True),
        fixed_ips=None if fixed is None else fixed_ips(fixed),
    )


def router_create(body: dict[str, Any]) -> RouterBody:
    only_fields(body, ROUTER_FIELDS, "router")
    if "routes" in body:  # Neutron's extraroute: set by an update, once interfaces exist
        raise BadRequest("Attribute 'routes' not allowed in POST")
    return _router(body)


def router_update(body: dict[str, Any]) -> RouterBody:
    only_fields(body, ROUTER_FIELDS - {"project_id", "tenant_id"}, "router")
    return _router(body)


def _router(body: dict[str, Any]) -> RouterBody:
    for name in ("distributed", "ha"):
        if name in body and flag_of(body, name, False):
            raise BadRequest(f"Bad router request: {name} routers are not offered here.")
    return RouterBody(
        owner=body.get("project_id", body.get("tenant_id")),
        name=text_of(body, "name") if "name" in body else None,
        description=text_of(body, "description") if "description" in body else None,
        admin_state_up=flag_of(body, "admin_state_up", True) if "admin_state_up" in body else None,
        gateway_given="external_gateway_info" in body,
        gateway=_gateway(body.get("external_gateway_info")),
        routes=extra_routes(body["routes"]) if "routes" in body else None,
    )


def extra_routes(value: Any) -> list[dict[str, str]]:
    """A router's `routes` (null clears them): destinations and next hops of one IP version
    each, no route given twice. Whether a next hop is connected is the routers' rule."""
    if value is None:
        return []
    if not isinstance(value, list):
        raise InvalidInput("Invalid input for routes. Reason: a list of routes is expected.")
    if len(value) > MAX_EXTRA_ROUTES:
        raise RoutesExhausted(
            f"Unable to complete operation for router. The number of routes exceeds the "
            f"maximum {MAX_EXTRA_ROUTES}."
        )
    out: list[dict[str, str]] = []
    for item in value:
        if not isinstance(item, dict) or set(item) != {"destination", "nexthop"}:
            raise InvalidInput(
                "Invalid input for routes. Reason: each route is {destination, nexthop}."
            )
        route = _route(item["destination"], item["nexthop"])
        if route in out:
            raise InvalidInput(f"Invalid input for routes. Reason: Duplicate hostroute '{route}'.")
        out.append(route)
    return out


class RoutesExhausted(BadRequest):
    title = "RoutesExhausted"


def _route(destination: Any, nexthop: Any) -> dict[str, str]:
    try:
        net = (
            ipaddress.ip_network(destination, strict=True)
            if isinstance(destination, str) and len(destination) <= 64 and "/" in destination
            else None
        )
    except ValueError:
        net = None
    if net is None:
        raise InvalidInput(
            f"Invalid input for routes. Reason: '{str(destination)[:64]}' is not a valid "
            "destination CIDR (no host bits)."
        )
    hop = ipam.parse_address(nexthop, "routes", net.version)
    return {"destination": str(net), "nexthop": str(hop)}


def router_interface(body: dict[str, Any]) -> InterfaceBody:
    only_fields(body, frozenset({"subnet_id", "port_id"}), "router")
    subnet_id, port_id = body.get("subnet_id"), body.get("port_id")
    if (subnet_id is None) == (port_id is None):
        raise BadRequest("Bad router request: Either subnet_id or port_id must be specified.")
    return InterfaceBody(subnet_id, port_id)


@dataclass(frozen=True)
class FloatingBody:
    """A floating IP create or update body; `None`: not given."""

    network_id: Any = None
    owner: Any = None
    address_given: bool = False  # naming the address is the admin's
    wanted: list[FixedIp] | None = None  # the subnet or address asked for on the network
    port_given: bool = False
    port_id: Any = None  # None with port_given: let go of the port
    fixed_ip_address: Any = None
    description: str | None = None


def floating_create(body: dict[str, Any]) -> FloatingBody:
    only_fields(body, FIP_FIELDS, "floatingip")
    if "floating_network_id" not in body:
        raise BadRequest(
            "Failed to parse request. Required attribute 'floating_network_id' not specified"
        )
    item: dict[str, Any] = {}
    if body.get("subnet_id") is not None:
        item["subnet_id"] = body["subnet_id"]
    if body.get("floating_ip_address") is not None:
        item["ip_address"] = body["floating_ip_address"]
    return FloatingBody(
        network_id=body["floating_network_id"],
        owner=body.get("project_id", body.get("tenant_id")),
        address_given="floating_ip_address" in body,
        wanted=fixed_ips([item]) if item else None,
        port_given=body.get("port_id") is not None,
        port_id=body.get("port_id"),
        fixed_ip_address=body.get("fixed_ip_address"),
        description=text_of(body, "description"),
    )


def floating_update(body: dict[str, Any]) -> FloatingBody:
    only_fields(body, frozenset({"port_id", "fixed_ip_address", "description"}), "floatingip")
    return FloatingBody(
        port_given="port_id" in body,
        port_id=body.get("port_id"),
        fixed_ip_address=body.get("fixed_ip_address"),
        description=text_of(body, "description") if "description" in body else None,
    )


NETWORK_FIELDS = frozenset(
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
)


@dataclass(frozen=True)
class NetworkBody:
    """A network create or update body; `None`: not given."""

    owner: Any = None
    owner_given: bool = False
    plain: tuple[tuple[str, Any], ...] = ()  # name, description and the two flags given
    shared: bool | None = None
    external: bool | None = None  # `router:external`
    mtu_given: bool = False
    mtu: int | None = None  # the largest the cloud allows is the service's to say


def network(body: dict[str, Any]) -> NetworkBody:
    only_fields(body, NETWORK_FIELDS, "network")
    plain: list[tuple[str, Any]] = []
    for name in ("name", "description"):
        if name in body:
            plain.append((name, text_of(body, name)))
    for name in ("admin_state_up", "port_security_enabled"):
        if name in body:
            plain.append((name, flag_of(body, name, True)))
    return NetworkBody(
        owner=body.get("project_id", body.get("tenant_id")),
        owner_given="project_id" in body or "tenant_id" in body,
        plain=tuple(plain),
        shared=flag_of(body, "shared", False) if "shared" in body else None,
        external=flag_of(body, "router:external", False) if "router:external" in body else None,
        mtu_given="mtu" in body,
        mtu=int_of(body["mtu"], "mtu") if "mtu" in body else None,
    )


@dataclass(frozen=True)
class SubnetBody:
    """A subnet as asked for, checked against its own CIDR (not yet against the network's)."""

    network_id: Any
    owner: Any
    name: str
    description: str
    ip_version: int
    cidr: ipaddress.IPv4Network | ipaddress.IPv6Network
    gateway_ip: str | None
    allocation_pools: list[dict[str, str]]
    dns_nameservers: list[str]
    host_routes: list[dict[str, str]]
    enable_dhcp: bool
    ipv6_ra_mode: str | None
    ipv6_address_mode: str | None


def subnet_create(body: dict[str, Any]) -> SubnetBody | PoolAsk:
    """A subnet with its own CIDR, or one asking a subnet pool for its CIDR."""
    only_fields(body, SUBNET_FIELDS, "subnet")
    if "network_id" not in body:
        raise BadRequest("Failed to parse request. Required attribute 'network_id' not specified")
    ask = pool_ask(body)
    return subnet(body) if ask is None else ask


def subnet(body: dict[str, Any]) -> SubnetBody:
    """A subnet body's fields, checked: what a create, the auto network and `public` share."""
    version = int_of(body.get("ip_version", 4), "ip_version")
    if version not in (4, 6):
        raise InvalidInput(f"Invalid input for ip_version. Reason: '{version}' is not 4 or 6.")
    if "cidr" not in body:
        raise BadRequest("Bad subnets request: a cidr must be specified.")
    cidr = ipam.parse_cidr(body["cidr"], version)
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
    return SubnetBody(
        network_id=body.get("network_id"),
        owner=body.get("project_id", body.get("tenant_id")),
        name=text_of(body, "name"),
        description=text_of(body, "description"),
        ip_version=version,
        cidr=cidr,
        gateway_ip=gateway,
        allocation_pools=[p.view(version) for p in pools],
        dns_nameservers=dns_nameservers(body.get("dns_nameservers") or []),
        host_routes=host_routes(body.get("host_routes") or [], version),
        enable_dhcp=flag_of(body, "enable_dhcp", True),
        ipv6_ra_mode=modes["ipv6_ra_mode"],
        ipv6_address_mode=modes["ipv6_address_mode"],
    )


@dataclass(frozen=True)
class SubnetChanges:
    """A subnet update. A gateway, pools and routes are checked by the family against the
    subnet's own CIDR and IP version; `None` or not given: unchanged."""

    texts: tuple[tuple[str, str], ...] = ()
    gateway_given: bool = False
    gateway_ip: Any = None
    pools_given: bool = False
    allocation_pools: Any = None
    dns_nameservers: list[str] | None = None
    routes_given: bool = False
    host_routes: Any = None
    enable_dhcp: bool | None = None


def subnet_update(body: dict[str, Any]) -> SubnetChanges:
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
    only_fields(body, allowed, "subnet")
    given = "dns_nameservers" in body
    return SubnetChanges(
        texts=tuple((n, text_of(body, n)) for n in ("name", "description") if n in body),
        gateway_given="gateway_ip" in body,
        gateway_ip=body.get("gateway_ip"),
        pools_given="allocation_pools" in body,
        allocation_pools=body.get("allocation_pools"),
        dns_nameservers=dns_nameservers(body["dns_nameservers"] or []) if given else None,
        routes_given="host_routes" in body,
        host_routes=body.get("host_routes"),
        enable_dhcp=flag_of(body, "enable_dhcp", True) if "enable_dhcp" in body else None,
    )


def dns_nameservers(value: Any) -> list[str]:
    if not isinstance(value, list) or len(value) > MAX_DNS:
        raise InvalidInput(
            f"Invalid input for dns_nameservers. Reason: a list of at most {MAX_DNS} "
            "addresses is expected."
        )
    out = [str(ipam.parse_address(v, "dns_nameservers")) for v in value]
    if len(set(out)) != len(out):
        raise InvalidInput("Invalid input for dns_nameservers. Reason: duplicate nameserver.")
    return out


def host_routes(value: Any, version: int) -> list[dict[str, str]]:
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


@dataclass(frozen=True)
class GroupBody:
    """A security group create or update body; `None`: not given."""

    owner: Any = None
    name: str | None = None
    description: str | None = None


def group_create(body: dict[str, Any]) -> GroupBody:
    allowed = frozenset({"name", "description", "project_id", "tenant_id", "stateful", "tags"})
    only_fields(body, allowed, "security_group")
    return GroupBody(
        owner=body.get("project_id", body.get("tenant_id")),
        name=text_of(body, "name"),
        description=text_of(body, "description"),
    )


def group_update(body: dict[str, Any]) -> GroupBody:
    only_fields(body, frozenset({"name", "description", "stateful"}), "security_group")
    return GroupBody(
        name=text_of(body, "name") if "name" in body else None,
        description=text_of(body, "description") if "description" in body else None,
    )


@dataclass(frozen=True)
class RuleBody:
    """A security group rule: the group's and remote group's ids are as given."""

    security_group_id: Any
    direction: str
    ethertype: str
    protocol: str | None
    port_range_min: int | None
    port_range_max: int | None
    remote_ip_prefix: str | None
    remote_group_id: Any
    description: str


def rule_create(body: dict[str, Any]) -> RuleBody:
    only_fields(body, RULE_FIELDS, "security_group_rule")
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
    low = _port_value(body.get("port_range_min"), "port_range_min")
    high = _port_value(body.get("port_range_max"), "port_range_max")
    _check_ports(protocol, low, high)
    prefix, group_id = body.get("remote_ip_prefix"), body.get("remote_group_id")
    if prefix is not None and group_id is not None:
        raise BadRequest("Only remote_ip_prefix or remote_group_id may be provided.")
    return RuleBody(
        security_group_id=body.get("security_group_id"),
        direction=direction,
        ethertype=ethertype,
        protocol=protocol,
        port_range_min=low,
        port_range_max=high,
        remote_ip_prefix=None if prefix is None else _prefix(prefix, ethertype),
        remote_group_id=group_id,
        description=text_of(body, "description"),
    )


def _prefix(prefix: Any, ethertype: str) -> str:
    try:
        net = ipaddress.ip_network(prefix, strict=False) if isinstance(prefix, str) else None
    except ValueError:
        net = None
    if net is None or len(prefix) > 64:
        raise InvalidInput(
            f"Invalid input for remote_ip_prefix. Reason: '{str(prefix)[:32]}' is not a "
            "valid IP prefix."
        )
    if f"IPv{net.version}" != ethertype:
        raise BadRequest(f"Conflicting value ethertype {ethertype} for CIDR {prefix}")
    return str(net)


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


class InvalidPortValue(BadRequest):
    title = "SecurityGroupInvalidPortValue"


def _port_value(value: Any, name: str) -> int | None:
    """A port bound as Neutron converts it: an integer 0-65535 (or its text), else refused
    naming the value, before any protocol-specific check."""
    number = int_of(value, name)
    if number is not None and not 0 <= number <= 65535:
        raise InvalidPortValue(f"Invalid value for port {number}")
    return number


def _check_ports(protocol: str | None, low: int | None, high: int | None) -> None:
    """Neutron's port range semantics: TCP-like ports 1-65535 and min <= max;
    for ICMP, min is the type and max the code (0-255), and a code needs a type."""
    if low is None and high is None:
        return
    if protocol is None:
        raise BadRequest("Must also specify protocol if port range is given.")
    if protocol in ICMP_PROTOCOLS:
        for value, field, attr in (
            (low, "type", "port_range_min"),
            (high, "code", "port_range_max"),
        ):
            if value is not None and not 0 <= value <= 255:
                raise InvalidInput(
                    f"Invalid value for ICMP {field} ({attr}) {value}. It must be 0 to 255."
                )
        if low is None:
            raise InvalidInput(
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
        raise InvalidPortValue("Invalid value for port 0")
    if low is None or high is None or low > high:
        raise InvalidInput("For TCP/UDP protocols, port_range_min must be <= port_range_max")
