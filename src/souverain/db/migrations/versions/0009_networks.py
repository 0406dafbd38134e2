"""networks: networks, subnets, ports, IP allocations, security groups, network quotas

Revision ID: 0009
Revises: 0008
Create Date: 2026-11-28 16:20:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "network_quotas",
        sa.Column("project_id", sa.String(length=64), nullable=False),
        sa.Column("network", sa.Integer(), nullable=True),
        sa.Column("subnet", sa.Integer(), nullable=True),
        sa.Column("port", sa.Integer(), nullable=True),
        sa.Column("router", sa.Integer(), nullable=True),
        sa.Column("floatingip", sa.Integer(), nullable=True),
        sa.Column("security_group", sa.Integer(), nullable=True),
        sa.Column("security_group_rule", sa.Integer(), nullable=True),
        sa.Column("updated_at", sa.DateTime(), nullable=False),
        sa.PrimaryKeyConstraint("project_id", name=op.f("pk_network_quotas")),
    )
    op.create_table(
        "network_security_groups",
        sa.Column("id", sa.String(length=36), nullable=False),
        sa.Column("project_id", sa.String(length=64), nullable=False),
        sa.Column("name", sa.String(length=255), nullable=False),
        sa.Column("description", sa.String(length=255), nullable=False),
        sa.Column("default_for_project", sa.String(length=64), nullable=True),
        sa.Column("revision_number", sa.Integer(), nullable=False),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.Column("updated_at", sa.DateTime(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_network_security_groups")),
        sa.UniqueConstraint(
            "default_for_project", name=op.f("uq_network_security_groups_default_for_project")
        ),
    )
    op.create_index(
        op.f("ix_network_security_groups_project_id"),
        "network_security_groups",
        ["project_id"],
        unique=False,
    )
    op.create_table(
        "networks",
        sa.Column("id", sa.String(length=36), nullable=False),
        sa.Column("project_id", sa.String(length=64), nullable=False),
        sa.Column("name", sa.String(length=255), nullable=False),
        sa.Column("description", sa.String(length=255), nullable=False),
        sa.Column("admin_state_up", sa.Boolean(), nullable=False),
        sa.Column("shared", sa.Boolean(), nullable=False),
        sa.Column("external", sa.Boolean(), nullable=False),
        sa.Column("mtu", sa.Integer(), nullable=False),
        sa.Column("port_security_enabled", sa.Boolean(), nullable=False),
        sa.Column("auto_for_project", sa.String(length=64), nullable=True),
        sa.Column("revision_number", sa.Integer(), nullable=False),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.Column("updated_at", sa.DateTime(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_networks")),
        sa.UniqueConstraint("auto_for_project", name=op.f("uq_networks_auto_for_project")),
    )
    op.create_index(op.f("ix_networks_project_id"), "networks", ["project_id"], unique=False)
    op.create_table(
        "network_ports",
        sa.Column("id", sa.String(length=36), nullable=False),
        sa.Column("network_id", sa.String(length=36), nullable=False),
        sa.Column("project_id", sa.String(length=64), nullable=False),
        sa.Column("name", sa.String(length=255), nullable=False),
        sa.Column("description", sa.String(length=255), nullable=False),
        sa.Column("admin_state_up", sa.Boolean(), nullable=False),
        sa.Column("mac_address", sa.String(length=17), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("device_owner", sa.String(length=255), nullable=False),
        sa.Column("device_id", sa.String(length=255), nullable=False),
        sa.Column("host", sa.String(length=255), nullable=False),
        sa.Column("port_security_enabled", sa.Boolean(), nullable=False),
        sa.Column("allowed_address_pairs", sa.JSON(), nullable=False),
        sa.Column("delete_with_device", sa.Boolean(), nullable=False),
        sa.Column("revision_number", sa.Integer(), nullable=False),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.Column("updated_at", sa.DateTime(), nullable=False),
        sa.ForeignKeyConstraint(
            ["network_id"], ["networks.id"], name=op.f("fk_network_ports_network_id_networks")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_network_ports")),
        sa.UniqueConstraint(
            "network_id", "mac_address", name=op.f("uq_network_ports_network_id_mac_address")
        ),
    )
    op.create_index(
        op.f("ix_network_ports_device_id"), "network_ports", ["device_id"], unique=False
    )
    op.create_index(
        op.f("ix_network_ports_network_id"), "network_ports", ["network_id"], unique=False
    )
    op.create_index(
        op.f("ix_network_ports_project_id"), "network_ports", ["project_id"], unique=False
    )
    op.create_table(
        "network_security_group_rules",
        sa.Column("id", sa.String(length=36), nullable=False),
        sa.Column("security_group_id", sa.String(length=36), nullable=False),
        sa.Column("project_id", sa.String(length=64), nullable=False),
        sa.Column("direction", sa.String(length=8), nullable=False),
        sa.Column("ethertype", sa.String(length=8), nullable=False),
        sa.Column("protocol", sa.String(length=16), nullable=True),
        sa.Column("port_range_min", sa.Integer(), nullable=True),
        sa.Column("port_range_max", sa.Integer(), nullable=True),
        sa.Column("remote_ip_prefix", sa.String(length=64), nullable=True),
        sa.Column("remote_group_id", sa.String(length=36), nullable=True),
        sa.Column("description", sa.String(length=255), nullable=False),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.Column("updated_at", sa.DateTime(), nullable=False),
        sa.ForeignKeyConstraint(
            ["security_group_id"],
            ["network_security_groups.id"],
            name=op.f("fk_network_security_group_rules_security_group_id_network_security_groups"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_network_security_group_rules")),
    )
    op.create_index(
        op.f("ix_network_security_group_rules_project_id"),
        "network_security_group_rules",
        ["project_id"],
        unique=False,
    )
    op.create_index(
        op.f("ix_network_security_group_rules_security_group_id"),
        "network_security_group_rules",
        ["security_group_id"],
        unique=False,
    )
    op.create_table(
        "network_subnets",
        sa.Column("id", sa.String(length=36), nullable=False),
        sa.Column("network_id", sa.String(length=36), nullable=False),
        sa.Column("project_id", sa.String(length=64), nullable=False),
        sa.Column("name", sa.String(length=255), nullable=False),
        sa.Column("description", sa.String(length=255), nullable=False),
        sa.Column("ip_version", sa.Integer(), nullable=False),
        sa.Column("cidr", sa.String(length=64), nullable=False),
        sa.Column("gateway_ip", sa.String(length=64), nullable=True),
        sa.Column("allocation_pools", sa.JSON(), nullable=False),
        sa.Column("dns_nameservers", sa.JSON(), nullable=False),
        sa.Column("host_routes", sa.JSON(), nullable=False),
        sa.Column("enable_dhcp", sa.Boolean(), nullable=False),
        sa.Column("ipv6_ra_mode", sa.String(length=16), nullable=True),
        sa.Column("ipv6_address_mode", sa.String(length=16), nullable=True),
        sa.Column("revision_number", sa.Integer(), nullable=False),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.Column("updated_at", sa.DateTime(), nullable=False),
        sa.ForeignKeyConstraint(
            ["network_id"], ["networks.id"], name=op.f("fk_network_subnets_network_id_networks")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_network_subnets")),
    )
    op.create_index(
        op.f("ix_network_subnets_network_id"), "network_subnets", ["network_id"], unique=False
    )
    op.create_index(
        op.f("ix_network_subnets_project_id"), "network_subnets", ["project_id"], unique=False
    )
    op.create_table(
        "network_ip_allocations",
        sa.Column("subnet_id", sa.String(length=36), nullable=False),
        sa.Column("ip_address", sa.String(length=64), nullable=False),
        sa.Column("port_id", sa.String(length=36), nullable=False),
        sa.Column("network_id", sa.String(length=36), nullable=False),
        sa.ForeignKeyConstraint(
            ["port_id"],
            ["network_ports.id"],
            name=op.f("fk_network_ip_allocations_port_id_network_ports"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["subnet_id"],
            ["network_subnets.id"],
            name=op.f("fk_network_ip_allocations_subnet_id_network_subnets"),
        ),
        sa.PrimaryKeyConstraint("subnet_id", "ip_address", name=op.f("pk_network_ip_allocations")),
    )
    op.create_index(
        op.f("ix_network_ip_allocations_network_id"),
        "network_ip_allocations",
        ["network_id"],
        unique=False,
    )
    op.create_index(
        op.f("ix_network_ip_allocations_port_id"),
        "network_ip_allocations",
        ["port_id"],
        unique=False,
    )
    op.create_table(
        "network_port_security_groups",
        sa.Column("port_id", sa.String(length=36), nullable=False),
        sa.Column("security_group_id", sa.String(length=36), nullable=False),
        sa.ForeignKeyConstraint(
            ["port_id"],
            ["network_ports.id"],
            name=op.f("fk_network_port_security_groups_port_id_network_ports"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["security_group_id"],
            ["network_security_groups.id"],
            name=op.f("fk_network_port_security_groups_security_group_id_network_security_groups"),
        ),
        sa.PrimaryKeyConstraint(
            "port_id", "security_group_id", name=op.f("pk_network_port_security_groups")
        ),
    )
    op.create_index(
        op.f("ix_network_port_security_groups_security_group_id"),
        "network_port_security_groups",
        ["security_group_id"],
        unique=False,
    )


def downgrade() -> None:
    op.drop_index(
        op.f("ix_network_port_security_groups_security_group_id"),
        table_name="network_port_security_groups",
    )
    op.drop_table("network_port_security_groups")
    op.drop_index(op.f("ix_network_ip_allocations_port_id"), table_name="network_ip_allocations")
    op.drop_index(op.f("ix_network_ip_allocations_network_id"), table_name="network_ip_allocations")
    op.drop_table("network_ip_allocations")
    op.drop_index(op.f("ix_network_subnets_project_id"), table_name="network_subnets")
    op.drop_index(op.f("ix_network_subnets_network_id"), table_name="network_subnets")
    op.drop_table("network_subnets")
    op.drop_index(
        op.f("ix_network_security_group_rules_security_group_id"),
        table_name="network_security_group_rules",
    )
    op.drop_index(
        op.f("ix_network_security_group_rules_project_id"),
        table_name="network_security_group_rules",
    )
    op.drop_table("network_security_group_rules")
    op.drop_index(op.f("ix_network_ports_project_id"), table_name="network_ports")
    op.drop_index(op.f("ix_network_ports_network_id"), table_name="network_ports")
    op.drop_index(op.f("ix_network_ports_device_id"), table_name="network_ports")
    op.drop_table("network_ports")
    op.drop_index(op.f("ix_networks_project_id"), table_name="networks")
    op.drop_table("networks")
    op.drop_index(
        op.f("ix_network_security_groups_project_id"), table_name="network_security_groups"
    )
    op.drop_table("network_security_groups")
    op.drop_table("network_quotas")
