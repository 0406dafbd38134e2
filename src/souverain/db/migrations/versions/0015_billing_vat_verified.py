"""billing: a VAT number earns reverse charge only once the operator has verified it

Accounts that already hold a number start unverified: nobody checked those numbers,
and the operator verifies each before its next invoice if reverse charge is due.

Revision ID: 0015
Revises: 0013
Create Date: 2026-12-06 05:40:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0015"
down_revision = "0014"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("billing_accounts") as batch_op:
        batch_op.add_column(
            sa.Column("vat_verified", sa.Boolean(), nullable=False, server_default=sa.false())
        )


def downgrade() -> None:
    with op.batch_alter_table("billing_accounts") as batch_op:
        batch_op.drop_column("vat_verified")
