"""compute: flavors, flavor access, keypairs, servers, instance actions

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-28 15:10:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "compute_flavors",
        sa.Column("id", sa.String(length=255), nullable=False),
        sa.Column("name", sa.String(length=255), nullable=False),
        sa.Column("vcpus", sa.Integer(), nullable=False),
        sa.Column("ram", sa.Integer(), nullable=False),
        sa.Column("disk", sa.Integer(), nullable=False),
        sa.Column("ephemeral", sa.Integer(), nullable=False),
        sa.Column("swap", sa.Integer(), nullable=False),
        sa.Column("rxtx_factor", sa.Float(), nullable=False),
        sa.Column("is_public", sa.Boolean(), nullable=False),
        sa.Column("disabled", sa.Boolean(), nullable=False),
        sa.Column("description", sa.Text(), nullable=True),
        sa.Column("extra_specs", sa.JSON(), nullable=False),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_compute_flavors")),
        sa.UniqueConstraint("name", name=op.f("uq_compute_flavors_name")),
    )
    op.create_table(
        "compute_flavor_access",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("flavor_id", sa.String(length=255), nullable=False),
        sa.Column("project_id", sa.String(length=64), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_compute_flavor_access")),
        sa.UniqueConstraint(
            "flavor_id", "project_id", name=op.f("uq_compute_flavor_access_flavor_id")
        ),
    )
    op.create_index(
        op.f("ix_compute_flavor_access_flavor_id"), "compute_flavor_access", ["flavor_id"]
    )
    op.create_table(
        "compute_keypairs",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("user_id", sa.String(length=64), nullable=False),
        sa.Column("name", sa.String(length=255), nullable=False),
        sa.Column("type", sa.String(length=16), nullable=False),
        sa.Column("public_key", sa.Text(), nullable=False),
        sa.Column("fingerprint", sa.String(length=128), nullable=False),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_compute_keypairs")),
        sa.UniqueConstraint("user_id", "name", name=op.f("uq_compute_keypairs_user_id")),
    )
    op.create_index(op.f("ix_compute_keypairs_user_id"), "compute_keypairs", ["user_id"])
    op.create_table(
        "compute_servers",
        sa.Column("id", sa.String(length=36), nullable=False),
        sa.Column("project_id", sa.String(length=64), nullable=False),
        sa.Column("user_id", sa.String(length=64), nullable=False),
        sa.Column("name", sa.String(length=255), nullable=False),
        sa.Column("hostname", sa.String(length=255), nullable=False),
        sa.Column("description", sa.Text(), nullable=True),
        sa.Column("image_id", sa.String(length=64), nullable=False),
        sa.Column("flavor", sa.JSON(), nullable=False),
        sa.Column("old_flavor", sa.JSON(), nullable=True),
        sa.Column("vcpus", sa.Integer(), nullable=False),
        sa.Column("memory_mib", sa.Integer(), nullable=False),
        sa.Column("disk_gib", sa.Integer(), nullable=False),
        sa.Column("key_name", sa.String(length=255), nullable=True),
        sa.Column("key_data", sa.Text(), nullable=True),
        sa.Column("user_data", sa.Text(), nullable=True),
        sa.Column("server_metadata", sa.JSON(), nullable=False),
        sa.Column("tags", sa.JSON(), nullable=False),
        sa.Column("config_drive", sa.Boolean(), nullable=False),
        sa.Column("availability_zone", sa.String(length=255), nullable=False),
        sa.Column("networks", sa.JSON(), nullable=True),
        sa.Column("addresses", sa.JSON(), nullable=False),
        sa.Column("mac", sa.String(length=17), nullable=False),
        sa.Column("host", sa.String(length=255), nullable=True),
        sa.Column("vm_state", sa.String(length=32), nullable=False),
        sa.Column("task_state", sa.String(length=32), nullable=True),
        sa.Column("power_state", sa.Integer(), nullable=False),
        sa.Column("fault", sa.JSON(), nullable=True),
        sa.Column("locked", sa.Boolean(), nullable=False),
        sa.Column("reservation_id", sa.String(length=32), nullable=False),
        sa.Column("launch_index", sa.Integer(), nullable=False),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.Column("updated_at", sa.DateTime(), nullable=False),
        sa.Column("launched_at", sa.DateTime(), nullable=True),
        sa.Column("terminated_at", sa.DateTime(), nullable=True),
        sa.Column("deleted", sa.Boolean(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_compute_servers")),
    )
    op.create_index("ix_compute_servers_project", "compute_servers", ["project_id", "deleted"])
    op.create_index("ix_compute_servers_host", "compute_servers", ["host", "deleted"])
    op.create_index(op.f("ix_compute_servers_updated_at"), "compute_servers", ["updated_at"])
    op.create_table(
        "compute_instance_actions",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("server_id", sa.String(length=36), nullable=False),
        sa.Column("project_id", sa.String(length=64), nullable=False),
        sa.Column("user_id", sa.String(length=64), nullable=False),
        sa.Column("request_id", sa.String(length=64), nullable=False),
        sa.Column("action", sa.String(length=32), nullable=False),
        sa.Column("start_time", sa.DateTime(), nullable=False),
        sa.Column("finish_time", sa.DateTime(), nullable=True),
        sa.Column("result", sa.String(length=16), nullable=True),
        sa.Column("message", sa.Text(), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_compute_instance_actions")),
    )
    op.create_index(
        "ix_compute_instance_actions_server", "compute_instance_actions", ["server_id", "id"]
    )


def downgrade() -> None:
    op.drop_table("compute_instance_actions")
    op.drop_table("compute_servers")
    op.drop_table("compute_keypairs")
    op.drop_table("compute_flavor_access")
    op.drop_table("compute_flavors")
