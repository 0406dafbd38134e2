"""volume: backups kept as objects in the project's buckets, and their quotas

Revision ID: 0023
Revises: 0022
Create Date: 2026-12-06 08:10:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0023"
down_revision = "0022"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "volume_backups",
        sa.Column("id", sa.String(length=36), nullable=False),
        sa.Column("project_id", sa.String(length=64), nullable=False),
        sa.Column("user_id", sa.String(length=64), nullable=False),
        sa.Column("volume_id", sa.String(length=36), nullable=False),
        sa.Column("snapshot_id", sa.String(length=36), nullable=True),
        sa.Column("parent_id", sa.String(length=36), nullable=True),
        sa.Column("name", sa.String(length=255), nullable=True),
        sa.Column("description", sa.String(length=255), nullable=True),
        sa.Column("container", sa.String(length=63), nullable=False),
        sa.Column("size", sa.Integer(), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("availability_zone", sa.String(length=64), nullable=True),
        sa.Column("metadata", sa.JSON(), nullable=False),
        sa.Column("chunks", sa.JSON(), nullable=False),
        sa.Column("volume_info", sa.JSON(), nullable=False),
        sa.Column("object_count", sa.Integer(), nullable=False),
        sa.Column("stored_bytes", sa.Integer(), nullable=False),
        sa.Column("fail_reason", sa.Text(), nullable=True),
        sa.Column("data_timestamp", sa.DateTime(), nullable=False),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.Column("updated_at", sa.DateTime(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_volume_backups")),
    )
    for column in ("project_id", "volume_id", "parent_id", "status"):
        op.create_index(
            op.f(f"ix_volume_backups_{column}"), "volume_backups", [column], unique=False
        )
    with op.batch_alter_table("volume_quotas") as batch_op:
        batch_op.add_column(sa.Column("backups", sa.Integer(), nullable=True))
        batch_op.add_column(sa.Column("backup_gigabytes", sa.Integer(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("volume_quotas") as batch_op:
        batch_op.drop_column("backup_gigabytes")
        batch_op.drop_column("backups")
    for column in ("project_id", "volume_id", "parent_id", "status"):
        op.drop_index(op.f(f"ix_volume_backups_{column}"), table_name="volume_backups")
    op.drop_table("volume_backups")
