"""compute: the hypervisor hosts of the cloud, their reports and agent credentials

Revision ID: 0028
Revises: 0024
Create Date: 2026-12-06 13:40:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0028"
down_revision = "0024"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "compute_hosts",
        sa.Column("name", sa.String(255), primary_key=True),
        sa.Column("address", sa.String(64), nullable=True),
        sa.Column("roles", sa.String(64), nullable=False),
        sa.Column("vcpus", sa.Integer(), nullable=False),
        sa.Column("memory_mib", sa.Integer(), nullable=False),
        sa.Column("disk_gib", sa.Integer(), nullable=False),
        sa.Column("physical_vcpus", sa.Integer(), nullable=False),
        sa.Column("physical_memory_mib", sa.Integer(), nullable=False),
        sa.Column("physical_disk_gib", sa.Integer(), nullable=False),
        sa.Column("hypervisor_type", sa.String(32), nullable=False),
        sa.Column("hypervisor_version", sa.Integer(), nullable=False),
        sa.Column("token_hash", sa.String(64), nullable=True, unique=True),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.Column("last_seen_at", sa.DateTime(), nullable=True),
        sa.Column("revision", sa.Integer(), nullable=False, server_default="0"),
    )


def downgrade() -> None:
    op.drop_table("compute_hosts")
