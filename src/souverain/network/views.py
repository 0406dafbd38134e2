"""Neutron's wire shapes: the dict each network resource is shown as.

Pure functions of rows (and the rows hanging off them), so a shape can change without
touching a rule. No database, no HTTP: the families hand rows here, the API answers
with what comes back.
"""

from __future__ import annotations

from typing import Any

from souverain.network import models as m
from souverain.network.floating_ips import FloatingRecord
from souverain.network.networks import NetworkRecord, SubnetRecord
from souverain.network.ports import PortRecord
from souverain.network.routers import Interface, RouterRecord
from souverain.network.security_groups import GroupRecord


def timestamp(value: Any) -> str:
    return str(value.strftime("%Y-%m-%dT%H:%M:%SZ"))


def common(row: Any) -> dict[str, Any]:
    """The attributes every Neutron resource carries."""
    return {
        "tenant_id": row.project_id,
        "project_id": row.project_id,
        "created_at": timestamp(row.created_at),
        "updated_at": timestamp(row.updated_at),
        "revision_number": row.revision_number,
        "tags": sorted(row.tags or []),
    }


def _provider(row: m.Network, overlay: str) -> dict[str, Any]:
    """How the network is carried: the admin's to see, as Neutron's policy has it. The
    external network is the hosts' own link (flat); a tenant network is a VXLAN segment
    with overlay on, else a bridge on the one host (Neutron's `local`)."""
    if row.external:
        kind, physical, segment = "flat", "public", None
    elif overlay == "vxlan":
        kind, physical, segment = "vxlan", None, row.segmentation_id
    else:
        kind, physical, segment = "local", None, None
    return {
        "provider:network_type": kind,
        "provider:physical_network": physical,
        "provider:segmentation_id": segment,
    }


def network(record: NetworkRecord, admin: bool = False, overlay: str = "none") -> dict[str, Any]:
    """A network; `admin` True (an admin caller) adds the provider attributes."""
    row, subnets = record.row, record.subnet_ids
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
        **(_provider(row, overlay) if admin else {}),
        **common(row),
    }


def subnet(record: SubnetRecord) -> dict[str, Any]:
    row = record.row
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
        "subnetpool_id": row.subnetpool_id,
        "service_types": [],
        "segment_id": None,
        "dns_publish_fixed_ip": False,
        "router:external": record.external,
        **common(row),
    }


def subnet_pool(row: m.SubnetPool) -> dict[str, Any]:
    return {
        "id": row.id,
        "name": row.name,
        "description": row.description,
        "ip_version": row.ip_version,
        "prefixes": list(row.prefixes),
        "min_prefixlen": row.min_prefixlen,
        "max_prefixlen": row.max_prefixlen,
        "default_prefixlen": row.default_prefixlen,
        "default_quota": row.default_quota,
        "address_scope_id": None,
        "is_default": row.is_default,
        "shared": row.shared,
        **common(row),
    }


def _binding(row: m.Port) -> dict[str, Any]:
    """Where the port is plugged: the admin's to see, as Neutron's policy has it."""
    return {
        "binding:host_id": row.host,
        "binding:vif_type": "tap" if row.host else "unbound",
        "binding:vif_details": {},
        "binding:profile": {},
    }


def port(record: PortRecord, admin: bool = True) -> dict[str, Any]:
    """A port; `admin` False (a project's caller) leaves out the host binding."""
    row, ips, groups = record.row, record.ips, record.groups
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
        "extra_dhcp_opts": [dict(o) for o in row.extra_dhcp_opts or []],
        "binding:vnic_type": "normal",
        **(_binding(row) if admin else {}),
        "dns_name": "",
        "dns_assignment": [],
        "propagate_uplink_status": False,
        **common(row),
    }


def security_group_rule(row: m.SecurityGroupRule) -> dict[str, Any]:
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
        "description": row.description,
        "belongs_to_default_sg": None,
        "tenant_id": row.project_id,
        "project_id": row.project_id,
        "created_at": timestamp(row.created_at),
        "updated_at": timestamp(row.updated_at),
        "revision_number": 0,
    }


def security_group(record: GroupRecord) -> dict[str, Any]:
    row, rules = record.row, record.rules
    return {
        "id": row.id,
        "name": row.name,
        "description": row.description,
        "security_group_rules": [security_group_rule(r) for r in rules],
        "stateful": True,
        "shared": False,
        **common(row),
    }


def router(record: RouterRecord) -> dict[str, Any]:
    row, ips = record.row, record.gateway_ips
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
        "routes": [dict(r) for r in row.routes or []],
        "distributed": False,
        "ha": False,
        "flavor_id": None,
        "availability_zone_hints": [],
        "availability_zones": ["nova"],
        **common(row),
    }


def router_interface(interface: Interface) -> dict[str, Any]:
    row, port, subnet_ids = interface.router, interface.port, interface.subnet_ids
    return {
        "id": row.id,
        "tenant_id": row.project_id,
        "project_id": row.project_id,
        "port_id": port.id,
        "network_id": port.network_id,
        "subnet_id": subnet_ids[0] if subnet_ids else None,
        "subnet_ids": subnet_ids,
    }


def floating_ip(record: FloatingRecord) -> dict[str, Any]:
    row, port = record.row, record.port
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
        **common(row),
    }


def metering_label(row: m.MeteringLabel) -> dict[str, Any]:
    return {
        "id": row.id,
        "name": row.name,
        "description": row.description,
        "shared": row.shared,
        "tenant_id": row.project_id,
        "project_id": row.project_id,
    }


def metering_label_rule(row: m.MeteringLabelRule) -> dict[str, Any]:
    return {
        "id": row.id,
        "metering_label_id": row.metering_label_id,
        "direction": row.direction,
        "excluded": row.excluded,
        "remote_ip_prefix": row.remote_ip_prefix,
        "source_ip_prefix": row.source_ip_prefix,
        "destination_ip_prefix": row.destination_ip_prefix,
    }
