"""Network tables: networks, subnets, subnet pools, ports, IP allocations, security groups,
routers, floating IPs, quota rows.

Database only: nothing here touches the kernel. The one guarantee the tables
themselves give is that an address is never handed out twice: the primary key
of `network_ip_allocations` is (subnet_id, ip_address), across processes.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from sqlalchemy import (
    JSON,
    Boolean,
    DateTime,
    ForeignKey,
    Integer,
    String,
    UniqueConstraint,
)
from sqlalchemy.orm import Mapped, mapped_column

from souverain.db.base import Base


class Network(Base):
    __tablename__ = "networks"

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    project_id: Mapped[str] = mapped_column(String(64), index=True)  # "": the operator's
    name: Mapped[str] = mapped_column(String(255), default="")
    description: Mapped[str] = mapped_column(String(255), default="")
    admin_state_up: Mapped[bool] = mapped_column(Boolean, default=True)
    shared: Mapped[bool] = mapped_column(Boolean, default=False)
    external: Mapped[bool] = mapped_column(Boolean, default=False)
    mtu: Mapped[int] = mapped_column(Integer)
    port_security_enabled: Mapped[bool] = mapped_column(Boolean, default=True)
    # set on the project's get-me-a-network network; unique, so two callers make one
    auto_for_project: Mapped[str | None] = mapped_column(String(64), nullable=True, unique=True)
    # the network's segment on the host: its conntrack zone now, its VXLAN VNI across hosts
    segmentation_id: Mapped[int | None] = mapped_column(Integer, nullable=True, unique=True)
    tags: Mapped[list[str]] = mapped_column(JSON, default=list)  # standard-attr-tag
    revision_number: Mapped[int] = mapped_column(Integer, default=0)
    created_at: Mapped[dt.datetime] = mapped_column(DateTime)
    updated_at: Mapped[dt.datetime] = mapped_column(DateTime)


class Subnet(Base):
    __tablename__ = "network_subnets"

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    network_id: Mapped[str] = mapped_column(ForeignKey("networks.id"), index=True)
    project_id: Mapped[str] = mapped_column(String(64), index=True)
    name: Mapped[str] = mapped_column(String(255), default="")
    description: Mapped[str] = mapped_column(String(255), default="")
    ip_version: Mapped[int] = mapped_column(Integer)
    cidr: Mapped[str] = mapped_column(String(64))
    gateway_ip: Mapped[str | None] = mapped_column(String(64), nullable=True)
    allocation_pools: Mapped[list[dict[str, str]]] = mapped_column(JSON, default=list)
    dns_nameservers: Mapped[list[str]] = mapped_column(JSON, default=list)
    host_routes: Mapped[list[dict[str, str]]] = mapped_column(JSON, default=list)
    enable_dhcp: Mapped[bool] = mapped_column(Boolean, default=True)
    ipv6_ra_mode: Mapped[str | None] = mapped_column(String(16), nullable=True)
    ipv6_address_mode: Mapped[str | None] = mapped_column(String(16), nullable=True)
    # the pool the CIDR was carved from; its other subnets never overlap it
    subnetpool_id: Mapped[str | None] = mapped_column(String(36), nullable=True, index=True)
    tags: Mapped[list[str]] = mapped_column(JSON, default=list)  # standard-attr-tag
    revision_number: Mapped[int] = mapped_column(Integer, default=0)
    created_at: Mapped[dt.datetime] = mapped_column(DateTime)
    updated_at: Mapped[dt.datetime] = mapped_column(DateTime)


class Port(Base):
    __tablename__ = "network_ports"
    __table_args__ = (UniqueConstraint("network_id", "mac_address"),)

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    network_id: Mapped[str] = mapped_column(ForeignKey("networks.id"), index=True)
    project_id: Mapped[str] = mapped_column(String(64), index=True)
    name: Mapped[str] = mapped_column(String(255), default="")
    description: Mapped[str] = mapped_column(String(255), default="")
    admin_state_up: Mapped[bool] = mapped_column(Boolean, default=True)
    mac_address: Mapped[str] = mapped_column(String(17))
    status: Mapped[str] = mapped_column(String(16))
    device_owner: Mapped[str] = mapped_column(String(255), default="")
    device_id: Mapped[str] = mapped_column(String(255), default="", index=True)
    host: Mapped[str] = mapped_column(String(255), default="")
    port_security_enabled: Mapped[bool] = mapped_column(Boolean, default=True)
    allowed_address_pairs: Mapped[list[dict[str, Any]]] = mapped_column(JSON, default=list)
    # [{"opt_name", "opt_value", "ip_version"}]: given to the port by the network's dnsmasq
    extra_dhcp_opts: Mapped[list[dict[str, Any]]] = mapped_column(JSON, default=list)
    # made by the compute service for one server: deleted, not just unbound, with it
    delete_with_device: Mapped[bool] = mapped_column(Boolean, default=False)
    tags: Mapped[list[str]] = mapped_column(JSON, default=list)  # standard-attr-tag
    revision_number: Mapped[int] = mapped_column(Integer, default=0)
    created_at: Mapped[dt.datetime] = mapped_column(DateTime)
    updated_at: Mapped[dt.datetime] = mapped_column(DateTime)


class IpAllocation(Base):
    """One address of a subnet held by one port; the primary key forbids a second holder."""

    __tablename__ = "network_ip_allocations"

    subnet_id: Mapped[str] = mapped_column(ForeignKey("network_subnets.id"), primary_key=True)
    ip_address: Mapped[str] = mapped_column(String(64), primary_key=True)
    port_id: Mapped[str] = mapped_column(
        ForeignKey("network_ports.id", ondelete="CASCADE"), index=True
    )
    network_id: Mapped[str] = mapped_column(String(36), index=True)


class SecurityGroup(Base):
    __tablename__ = "network_security_groups"

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    project_id: Mapped[str] = mapped_column(String(64), index=True)
    name: Mapped[str] = mapped_column(String(255), default="")
    description: Mapped[str] = mapped_column(String(255), default="")
    # set on the project's `default` group only; unique, so two first uses make one
    default_for_project: Mapped[str | None] = mapped_column(String(64), nullable=True, unique=True)
    tags: Mapped[list[str]] = mapped_column(JSON, default=list)  # standard-attr-tag
    revision_number: Mapped[int] = mapped_column(Integer, default=0)
    created_at: Mapped[dt.datetime] = mapped_column(DateTime)
    updated_at: Mapped[dt.datetime] = mapped_column(DateTime)


class SecurityGroupRule(Base):
    __tablename__ = "network_security_group_rules"

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    security_group_id: Mapped[str] = mapped_column(
        ForeignKey("network_security_groups.id", ondelete="CASCADE"), index=True
    )
    project_id: Mapped[str] = mapped_column(String(64), index=True)
    direction: Mapped[str] = mapped_column(String(8))
    ethertype: Mapped[str] = mapped_column(String(8))
    protocol: Mapped[str | None] = mapped_column(String(16), nullable=True)
    port_range_min: Mapped[int | None] = mapped_column(Integer, nullable=True)
    port_range_max: Mapped[int | None] = mapped_column(Integer, nullable=True)
    remote_ip_prefix: Mapped[str | None] = mapped_column(String(64), nullable=True)
    remote_group_id: Mapped[str | None] = mapped_column(String(36), nullable=True)
    description: Mapped[str] = mapped_column(String(255), default="")
    created_at: Mapped[dt.datetime] = mapped_column(DateTime)
    updated_at: Mapped[dt.datetime] = mapped_column(DateTime)


class PortSecurityGroup(Base):
    """Which groups a port is in; the foreign key keeps a group in use from vanishing."""

    __tablename__ = "network_port_security_groups"

    port_id: Mapped[str] = mapped_column(
        ForeignKey("network_ports.id", ondelete="CASCADE"), primary_key=True
    )
    security_group_id: Mapped[str] = mapped_column(
        ForeignKey("network_security_groups.id"), primary_key=True, index=True
    )


class NetworkQuota(Base):
    """A project's limits (None: the configured default), and the row a quota claim locks."""

    __tablename__ = "network_quotas"

    project_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    network: Mapped[int | None] = mapped_column(Integer, nullable=True)
    subnet: Mapped[int | None] = mapped_column(Integer, nullable=True)
    port: Mapped[int | None] = mapped_column(Integer, nullable=True)
    router: Mapped[int | None] = mapped_column(Integer, nullable=True)
    floatingip: Mapped[int | None] = mapped_column(Integer, nullable=True)
    security_group: Mapped[int | None] = mapped_column(Integer, nullable=True)
    security_group_rule: Mapped[int | None] = mapped_column(Integer, nullable=True)
    subnetpool: Mapped[int | None] = mapped_column(Integer, nullable=True)
    updated_at: Mapped[dt.datetime] = mapped_column(DateTime)


class SubnetPool(Base):
    """Address space a project carves subnets from: a CIDR of a given size, the next free."""

    __tablename__ = "network_subnet_pools"

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    project_id: Mapped[str] = mapped_column(String(64), index=True)
    name: Mapped[str] = mapped_column(String(255), default="")
    description: Mapped[str] = mapped_column(String(255), default="")
    ip_version: Mapped[int] = mapped_column(Integer)
    prefixes: Mapped[list[str]] = mapped_column(JSON, default=list)
    min_prefixlen: Mapped[int] = mapped_column(Integer)
    max_prefixlen: Mapped[int] = mapped_column(Integer)
    default_prefixlen: Mapped[int] = mapped_column(Integer)
    default_quota: Mapped[int | None] = mapped_column(Integer, nullable=True)
    shared: Mapped[bool] = mapped_column(Boolean, default=False)
    is_default: Mapped[bool] = mapped_column(Boolean, default=False)
    tags: Mapped[list[str]] = mapped_column(JSON, default=list)  # standard-attr-tag
    revision_number: Mapped[int] = mapped_column(Integer, default=0)
    created_at: Mapped[dt.datetime] = mapped_column(DateTime)
    updated_at: Mapped[dt.datetime] = mapped_column(DateTime)


class Router(Base):
    """A project's router; its interfaces and gateway are ports whose device_id is its id."""

    __tablename__ = "network_routers"

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    project_id: Mapped[str] = mapped_column(String(64), index=True)
    name: Mapped[str] = mapped_column(String(255), default="")
    description: Mapped[str] = mapped_column(String(255), default="")
    admin_state_up: Mapped[bool] = mapped_column(Boolean, default=True)
    external_network_id: Mapped[str | None] = mapped_column(String(36), nullable=True)
    gateway_port_id: Mapped[str | None] = mapped_column(String(36), nullable=True)
    enable_snat: Mapped[bool] = mapped_column(Boolean, default=True)
    # extra routes [{"destination": cidr, "nexthop": address}], each nexthop on an interface
    routes: Mapped[list[dict[str, str]]] = mapped_column(JSON, default=list)
    tags: Mapped[list[str]] = mapped_column(JSON, default=list)  # standard-attr-tag
    revision_number: Mapped[int] = mapped_column(Integer, default=0)
    created_at: Mapped[dt.datetime] = mapped_column(DateTime)
    updated_at: Mapped[dt.datetime] = mapped_column(DateTime)


class FloatingIp(Base):
    """An external address held by a project; `floating_port_id` holds it in IPAM."""

    __tablename__ = "network_floating_ips"
    # one floating IP per fixed address of a port
    __table_args__ = (UniqueConstraint("port_id", "fixed_ip_address"),)

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    project_id: Mapped[str] = mapped_column(String(64), index=True)
    floating_network_id: Mapped[str] = mapped_column(ForeignKey("networks.id"), index=True)
    floating_ip_address: Mapped[str] = mapped_column(String(64))
    floating_port_id: Mapped[str] = mapped_column(String(36))
    port_id: Mapped[str | None] = mapped_column(String(36), nullable=True, index=True)
    fixed_ip_address: Mapped[str | None] = mapped_column(String(64), nullable=True)
    router_id: Mapped[str | None] = mapped_column(String(36), nullable=True, index=True)
    description: Mapped[str] = mapped_column(String(255), default="")
    tags: Mapped[list[str]] = mapped_column(JSON, default=list)  # standard-attr-tag
    revision_number: Mapped[int] = mapped_column(Integer, default=0)
    created_at: Mapped[dt.datetime] = mapped_column(DateTime)
    updated_at: Mapped[dt.datetime] = mapped_column(DateTime)


class MeteringLabel(Base):
    """An admin's traffic meter over the routers of a project (all projects' if shared)."""

    __tablename__ = "network_meter_labels"

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    project_id: Mapped[str] = mapped_column(String(64), index=True)
    name: Mapped[str] = mapped_column(String(255), default="")
    description: Mapped[str] = mapped_column(String(255), default="")
    shared: Mapped[bool] = mapped_column(Boolean, default=False)
    created_at: Mapped[dt.datetime] = mapped_column(DateTime)


class MeteringLabelRule(Base):
    """What a label counts: traffic of one direction through a router's gateway, from and
    to the prefixes given; an `excluded` rule keeps its traffic out of the label."""

    __tablename__ = "network_meter_rules"

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    metering_label_id: Mapped[str] = mapped_column(
        ForeignKey("network_meter_labels.id", ondelete="CASCADE"), index=True
    )
    direction: Mapped[str] = mapped_column(String(8))
    excluded: Mapped[bool] = mapped_column(Boolean, default=False)
    remote_ip_prefix: Mapped[str | None] = mapped_column(String(64), nullable=True)
    source_ip_prefix: Mapped[str | None] = mapped_column(String(64), nullable=True)
    destination_ip_prefix: Mapped[str | None] = mapped_column(String(64), nullable=True)
    created_at: Mapped[dt.datetime] = mapped_column(DateTime)
