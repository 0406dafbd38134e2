"""compute: a server's access addresses and shelved snapshot, server groups with their
members, and the state an operator sets on the host's services

Revision ID: 0022
Revises: 0020
Create Date: 2026-12-06 07:40:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0022"
down_revision = "0020"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("compute_servers") as batch_op:
        batch_op.add_column(sa.Column("access_ip_v4", sa.String(15), nullable=True))
        batch_op.add_column(sa.Column("access_ip_v6", sa.String(45), nullable=True))
        batch_op.add_column(sa.Column("shelved_image_id", sa.String(36), nullable=True))
    op.create_table(
        "compute_server_groups",
        sa.Column("id", sa.String(36), primary_key=True),
        sa.Column("project_id", sa.String(64), nullable=False),
        sa.Column("user_id", sa.String(64), nullable=False),
        sa.Column("name", sa.String(255), nullable=False),
        sa.Column("policy", sa.String(32), nullable=False),
        sa.Column("rules", sa.JSON(), nullable=False),
        sa.Column("created_at", sa.DateTime(), nullable=False),
    )
    op.create_index("ix_compute_server_groups_project_id", "compute_server_groups", ["project_id"])
    op.create_table(
        "compute_server_group_members",
        sa.Column("server_id", sa.String(36), primary_key=True),
        sa.Column("group_id", sa.String(36), nullable=False),
    )
    op.create_index(
        "ix_compute_server_group_members_group_id", "compute_server_group_members", ["group_id"]
    )

    op.create_table(
        "compute_service_states",
        sa.Column("host", sa.String(255), primary_key=True),
        sa.Column("binary", sa.String(64), primary_key=True),
        sa.Column("disabled", sa.Boolean(), nullable=False),
        sa.Column("disabled_reason", sa.String(255), nullable=True),
        sa.Column("forced_down", sa.Boolean(), nullable=False),
    )


def downgrade() -> None:
    op.drop_table("compute_service_states")
    op.drop_index("ix_compute_server_group_members_group_id", "compute_server_group_members")
    op.drop_table("compute_server_group_members")
    op.drop_index("ix_compute_server_groups_project_id", "compute_server_groups")
    op.drop_table("compute_server_groups")
    with op.batch_alter_table("compute_servers") as batch_op:
        batch_op.drop_column("shelved_image_id")
        batch_op.drop_column("access_ip_v6")
        batch_op.drop_column("access_ip_v4")
