"""volume: encryption types (LUKS) and the key ids of encrypted volumes and snapshots

Revision ID: 0039
Revises: 0038
Create Date: 2026-12-06 23:20:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0039"
down_revision = "0038"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "volume_type_encryption",
        sa.Column(
            "volume_type_id",
            sa.String(36),
            sa.ForeignKey("volume_types.id", ondelete="CASCADE"),
            primary_key=True,
        ),
        sa.Column("encryption_id", sa.String(36), nullable=False, unique=True),
        sa.Column("provider", sa.String(255), nullable=False),
        sa.Column("cipher", sa.String(255), nullable=True),
        sa.Column("key_size", sa.Integer, nullable=True),
        sa.Column("control_location", sa.String(16), nullable=False),
        sa.Column("created_at", sa.DateTime, nullable=False),
        sa.Column("updated_at", sa.DateTime, nullable=True),
    )
    with op.batch_alter_table("volumes") as batch:
        batch.add_column(sa.Column("encryption_key_id", sa.String(36), nullable=True))
    with op.batch_alter_table("volume_snapshots") as batch:
        batch.add_column(sa.Column("encryption_key_id", sa.String(36), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("volume_snapshots") as batch:
        batch.drop_column("encryption_key_id")
    with op.batch_alter_table("volumes") as batch:
        batch.drop_column("encryption_key_id")
    op.drop_table("volume_type_encryption")
