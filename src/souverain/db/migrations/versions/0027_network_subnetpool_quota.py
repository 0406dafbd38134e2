"""network: a per-project limit on subnet pools (Neutron's `subnetpool` quota)

Revision ID: 0027
Revises: 0023
Create Date: 2026-12-06 10:30:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0027"
down_revision = "0025"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("network_quotas") as batch:
        batch.add_column(sa.Column("subnetpool", sa.Integer(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("network_quotas") as batch:
        batch.drop_column("subnetpool")
