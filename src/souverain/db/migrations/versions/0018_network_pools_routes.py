"""subnet pools, the pool a subnet came from, routers' extra routes, tags on network
resources, ports' extra DHCP options, metering labels and their rules

Revision ID: 0018
Revises: 0017
Create Date: 2026-12-06 07:25:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0018"
down_revision = "0017"
branch_labels = None
depends_on = None


TAGGED = (
    "networks",
    "network_subnets",
    "network_ports",
    "network_security_groups",
    "network_routers",
    "network_floating_ips",
)


def upgrade() -> None:
    op.create_table(
        "network_subnet_pools",
        sa.Column("id", sa.String(length=36), nullable=False),
        sa.Column("project_id", sa.String(length=64), nullable=False),
        sa.Column("name", sa.String(length=255), nullable=False),
        sa.Column("description", sa.String(length=255), nullable=False),
        sa.Column("ip_version", sa.Integer(), nullable=False),
        sa.Column("prefixes", sa.JSON(), nullable=False),
        sa.Column("min_prefixlen", sa.Integer(), nullable=False),
        sa.Column("max_prefixlen", sa.Integer(), nullable=False),
        sa.Column("default_prefixlen", sa.Integer(), nullable=False),
        sa.Column("default_quota", sa.Integer(), nullable=True),
        sa.Column("shared", sa.Boolean(), nullable=False),
        sa.Column("is_default", sa.Boolean(), nullable=False),
        sa.Column("tags", sa.JSON(), nullable=False),
        sa.Column("revision_number", sa.Integer(), nullable=False),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.Column("updated_at", sa.DateTime(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_network_subnet_pools")),
    )
    op.create_index(
        op.f("ix_network_subnet_pools_project_id"), "network_subnet_pools", ["project_id"]
    )
    with op.batch_alter_table("network_subnets") as batch_op:
        batch_op.add_column(sa.Column("subnetpool_id", sa.String(length=36), nullable=True))
        batch_op.create_index(op.f("ix_network_subnets_subnetpool_id"), ["subnetpool_id"])
    with op.batch_alter_table("network_routers") as batch_op:
        batch_op.add_column(
            sa.Column("routes", sa.JSON(), nullable=False, server_default=sa.text("'[]'"))
        )
    with op.batch_alter_table("network_ports") as batch_op:
        batch_op.add_column(
            sa.Column("extra_dhcp_opts", sa.JSON(), nullable=False, server_default=sa.text("'[]'"))
        )
    _metering()
    for table in TAGGED:
        with op.batch_alter_table(table) as batch_op:
            batch_op.add_column(
                sa.Column("tags", sa.JSON(), nullable=False, server_default=sa.text("'[]'"))
            )


def _metering() -> None:
    op.create_table(
        "network_meter_labels",
        sa.Column("id", sa.String(length=36), nullable=False),
        sa.Column("project_id", sa.String(length=64), nullable=False),
        sa.Column("name", sa.String(length=255), nullable=False),
        sa.Column("description", sa.String(length=255), nullable=False),
        sa.Column("shared", sa.Boolean(), nullable=False),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_network_meter_labels")),
    )
    op.create_index(
        op.f("ix_network_meter_labels_project_id"), "network_meter_labels", ["project_id"]
    )
    op.create_table(
        "network_meter_rules",
        sa.Column("id", sa.String(length=36), nullable=False),
        sa.Column("metering_label_id", sa.String(length=36), nullable=False),
        sa.Column("direction", sa.String(length=8), nullable=False),
        sa.Column("excluded", sa.Boolean(), nullable=False),
        sa.Column("remote_ip_prefix", sa.String(length=64), nullable=True),
        sa.Column("source_ip_prefix", sa.String(length=64), nullable=True),
        sa.Column("destination_ip_prefix", sa.String(length=64), nullable=True),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.ForeignKeyConstraint(
            ["metering_label_id"],
            ["network_meter_labels.id"],
            name=op.f("fk_network_meter_rules_metering_label_id_network_meter_labels"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_network_meter_rules")),
    )
    op.create_index(
        op.f("ix_network_meter_rules_metering_label_id"),
        "network_meter_rules",
        ["metering_label_id"],
    )


def downgrade() -> None:
    op.drop_table("network_meter_rules")
    op.drop_table("network_meter_labels")
    with op.batch_alter_table("network_ports") as batch_op:
        batch_op.drop_column("extra_dhcp_opts")
    for table in TAGGED:
        with op.batch_alter_table(table) as batch_op:
            batch_op.drop_column("tags")
    with op.batch_alter_table("network_routers") as batch_op:
        batch_op.drop_column("routes")
    with op.batch_alter_table("network_subnets") as batch_op:
        batch_op.drop_index(op.f("ix_network_subnets_subnetpool_id"))
        batch_op.drop_column("subnetpool_id")
    op.drop_index(op.f("ix_network_subnet_pools_project_id"), table_name="network_subnet_pools")
    op.drop_table("network_subnet_pools")
