"""compute: what Tempest's compute tests need kept: a server's access addresses

Revision ID: 0016
Revises: 0015
Create Date: 2026-12-06 07:40:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0016"
down_revision = "0015"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("compute_servers") as batch_op:
        batch_op.add_column(sa.Column("access_ip_v4", sa.String(15), nullable=True))
        batch_op.add_column(sa.Column("access_ip_v6", sa.String(45), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("compute_servers") as batch_op:
        batch_op.drop_column("access_ip_v6")
        batch_op.drop_column("access_ip_v4")
