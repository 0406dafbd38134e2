"""routers, floating IPs, and a segmentation id per network

Revision ID: 0010
Revises: 0009
Create Date: 2026-11-28 17:50:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("networks") as batch_op:
        batch_op.add_column(sa.Column("segmentation_id", sa.Integer(), nullable=True))
        batch_op.create_unique_constraint(op.f("uq_networks_segmentation_id"), ["segmentation_id"])
    conn = op.get_bind()
    ids = conn.execute(sa.text("SELECT id FROM networks ORDER BY created_at, id")).scalars()
    for number, network_id in enumerate(list(ids), start=1):
        conn.execute(
            sa.text("UPDATE networks SET segmentation_id = :n WHERE id = :id"),
            {"n": number, "id": network_id},
        )
    op.create_table(
        "network_routers",
        sa.Column("id", sa.String(length=36), nullable=False),
        sa.Column("project_id", sa.String(length=64), nullable=False),
        sa.Column("name", sa.String(length=255), nullable=False),
        sa.Column("description", sa.String(length=255), nullable=False),
        sa.Column("admin_state_up", sa.Boolean(), nullable=False),
        sa.Column("external_network_id", sa.String(length=36), nullable=True),
        sa.Column("gateway_port_id", sa.String(length=36), nullable=True),
        sa.Column("enable_snat", sa.Boolean(), nullable=False),
        sa.Column("revision_number", sa.Integer(), nullable=False),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.Column("updated_at", sa.DateTime(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_network_routers")),
    )
    op.create_index(
        op.f("ix_network_routers_project_id"), "network_routers", ["project_id"], unique=False
    )
    op.create_table(
        "network_floating_ips",
        sa.Column("id", sa.String(length=36), nullable=False),
        sa.Column("project_id", sa.String(length=64), nullable=False),
        sa.Column("floating_network_id", sa.String(length=36), nullable=False),
        sa.Column("floating_ip_address", sa.String(length=64), nullable=False),
        sa.Column("floating_port_id", sa.String(length=36), nullable=False),
        sa.Column("port_id", sa.String(length=36), nullable=True),
        sa.Column("fixed_ip_address", sa.String(length=64), nullable=True),
        sa.Column("router_id", sa.String(length=36), nullable=True),
        sa.Column("description", sa.String(length=255), nullable=False),
        sa.Column("revision_number", sa.Integer(), nullable=False),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.Column("updated_at", sa.DateTime(), nullable=False),
        sa.ForeignKeyConstraint(
            ["floating_network_id"],
            ["networks.id"],
            name=op.f("fk_network_floating_ips_floating_network_id_networks"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_network_floating_ips")),
        sa.UniqueConstraint(
            "port_id",
            "fixed_ip_address",
            name=op.f("uq_network_floating_ips_port_id_fixed_ip_address"),
        ),
    )
    for column in ("floating_network_id", "port_id", "project_id", "router_id"):
        op.create_index(
            op.f(f"ix_network_floating_ips_{column}"),
            "network_floating_ips",
            [column],
            unique=False,
        )


def downgrade() -> None:
    op.drop_table("network_floating_ips")
    op.drop_table("network_routers")
    with op.batch_alter_table("networks") as batch_op:
        batch_op.drop_constraint(op.f("uq_networks_segmentation_id"), type_="unique")
        batch_op.drop_column("segmentation_id")
