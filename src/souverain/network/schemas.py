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
from souverain.network.fields import MAX_PAIRS, check_mac, flag_of, only_fields, text_of
from souverain.network.ipam import InvalidInput

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
MAX_FIXED_IPS = 16
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
        allowed_address_pairs=(_pairs(pairs or []) if "allowed_address_pairs" in body else None),
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
    return _router(body)


def router_update(body: dict[str, Any]) -> RouterBody:
    only_fields(body, ROUTER_FIELDS - {"project_id", "tenant_id"}, "router")
    return _router(body)


def _router(body: dict[str, Any]) -> RouterBody:
    for name in ("distributed", "ha"):
        if name in body and flag_of(body, name, False):
            raise BadRequest(f"Bad router request: {name} routers are not offered here.")
    if body.get("routes"):
        raise BadRequest("Bad router request: extra routes are not offered here.")
    return RouterBody(
        owner=body.get("project_id", body.get("tenant_id")),
        name=text_of(body, "name") if "name" in body else None,
        description=text_of(body, "description") if "description" in body else None,
        admin_state_up=flag_of(body, "admin_state_up", True) if "admin_state_up" in body else None,
        gateway_given="external_gateway_info" in body,
        gateway=_gateway(body.get("external_gateway_info")),
    )


def router_interface(body: dict[str, Any]) -> InterfaceBody:
    only_fields(body, frozenset({"subnet_id", "port_id"}), "router")
    subnet_id, port_id = body.get("subnet_id"), body.get("port_id")
    if (subnet_id is None) == (port_id is None):
        raise BadRequest("Bad router request: Either subnet_id or port_id must be specified.")
    return InterfaceBody(subnet_id, port_id)
