"""compute: host aggregates (os-aggregates), their hosts and metadata

Revision ID: 0029
Revises: 0031
Create Date: 2026-12-06 13:50:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0029"
down_revision = "0031"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "compute_aggregates",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column("uuid", sa.String(36), nullable=False, unique=True),
        sa.Column("name", sa.String(255), nullable=False, unique=True),
        sa.Column("availability_zone", sa.String(255), nullable=True),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.Column("updated_at", sa.DateTime(), nullable=True),
    )
    op.create_table(
        "compute_aggregate_hosts",
        sa.Column("aggregate_id", sa.Integer(), primary_key=True),
        sa.Column("host", sa.String(255), primary_key=True),
    )
    op.create_index("ix_compute_aggregate_hosts_host", "compute_aggregate_hosts", ["host"])
    op.create_table(
        "compute_aggregate_metadata",
        sa.Column("aggregate_id", sa.Integer(), primary_key=True),
        sa.Column("key", sa.String(255), primary_key=True),
        sa.Column("value", sa.String(255), nullable=False),
    )


def downgrade() -> None:
    op.drop_table("compute_aggregate_metadata")
    op.drop_index("ix_compute_aggregate_hosts_host", "compute_aggregate_hosts")
    op.drop_table("compute_aggregate_hosts")
    op.drop_table("compute_aggregates")
