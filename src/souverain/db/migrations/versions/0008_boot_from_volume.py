"""compute: servers that boot from a volume

Revision ID: 0008
Revises: 0007
Create Date: 2026-11-28 15:50:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("compute_servers") as batch_op:
        batch_op.add_column(sa.Column("root_volume_id", sa.String(length=36), nullable=True))
        batch_op.add_column(
            sa.Column("root_volume_delete", sa.Boolean(), nullable=False, server_default=sa.false())
        )


def downgrade() -> None:
    with op.batch_alter_table("compute_servers") as batch_op:
        batch_op.drop_column("root_volume_delete")
        batch_op.drop_column("root_volume_id")
