"""compute: migrations, the record of each move of a server between hosts (os-migrations)

Revision ID: 0034
Revises: 0032
Create Date: 2026-12-06 16:30:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0034"
down_revision = "0032"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "compute_migrations",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column("uuid", sa.String(36), nullable=False, unique=True),
        sa.Column("instance_uuid", sa.String(36), nullable=False),
        sa.Column("source_compute", sa.String(255), nullable=True),
        sa.Column("dest_compute", sa.String(255), nullable=True),
        sa.Column("source_node", sa.String(255), nullable=True),
        sa.Column("dest_node", sa.String(255), nullable=True),
        sa.Column("dest_host", sa.String(64), nullable=True),
        sa.Column("status", sa.String(32), nullable=False),
        sa.Column("migration_type", sa.String(32), nullable=False),
        sa.Column("old_instance_type_id", sa.String(255), nullable=True),
        sa.Column("new_instance_type_id", sa.String(255), nullable=True),
        sa.Column("project_id", sa.String(64), nullable=False),
        sa.Column("user_id", sa.String(64), nullable=False),
        sa.Column("endpoint", sa.JSON(), nullable=True),
        sa.Column("message", sa.Text(), nullable=True),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.Column("updated_at", sa.DateTime(), nullable=False),
    )
    op.create_index("ix_compute_migrations_instance", "compute_migrations", ["instance_uuid", "id"])
    op.create_index("ix_compute_migrations_status", "compute_migrations", ["status"])
    op.create_index("ix_compute_migrations_updated_at", "compute_migrations", ["updated_at"])


def downgrade() -> None:
    op.drop_table("compute_migrations")
