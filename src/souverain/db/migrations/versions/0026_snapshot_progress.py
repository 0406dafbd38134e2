"""volume: a snapshot's progress as os-update_snapshot_status reports it, and a project's
own largest volume (per_volume_gigabytes)

Revision ID: 0026
Revises: 0023
Create Date: 2026-12-06 10:30:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0026"
down_revision = "0027"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("volume_snapshots") as batch_op:
        batch_op.add_column(sa.Column("progress", sa.String(length=8), nullable=True))
    with op.batch_alter_table("volume_quotas") as batch_op:
        batch_op.add_column(sa.Column("per_volume_gigabytes", sa.Integer(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("volume_quotas") as batch_op:
        batch_op.drop_column("per_volume_gigabytes")
    with op.batch_alter_table("volume_snapshots") as batch_op:
        batch_op.drop_column("progress")
