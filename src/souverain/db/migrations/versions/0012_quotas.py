"""quota rows for compute and object storage (volume and network quotas have theirs)

Revision ID: 0012
Revises: 0011
Create Date: 2026-11-28 18:30:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0012"
down_revision = "0011"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "compute_quotas",
        sa.Column("project_id", sa.String(length=64), nullable=False),
        sa.Column("instances", sa.Integer(), nullable=True),
        sa.Column("cores", sa.Integer(), nullable=True),
        sa.Column("ram", sa.Integer(), nullable=True),
        sa.Column("key_pairs", sa.Integer(), nullable=True),
        sa.Column("metadata_items", sa.Integer(), nullable=True),
        sa.Column("updated_at", sa.DateTime(), nullable=False),
        sa.PrimaryKeyConstraint("project_id", name=op.f("pk_compute_quotas")),
    )
    op.create_table(
        "s3_quotas",
        sa.Column("project_id", sa.String(length=64), nullable=False),
        sa.Column("max_bytes", sa.BigInteger(), nullable=True),
        sa.Column("max_objects", sa.BigInteger(), nullable=True),
        sa.Column("updated_at", sa.DateTime(), nullable=False),
        sa.PrimaryKeyConstraint("project_id", name=op.f("pk_s3_quotas")),
    )


def downgrade() -> None:
    op.drop_table("s3_quotas")
    op.drop_table("compute_quotas")
