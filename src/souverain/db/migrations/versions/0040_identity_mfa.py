"""identity: user options (multi-factor rules) and the TOTP passcodes already used

Revision ID: 0040
Revises: 0039
Create Date: 2026-12-06 23:10:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0040"
down_revision = "0039"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("identity_users") as batch:
        batch.add_column(sa.Column("options", sa.JSON, nullable=True))
    op.create_table(
        "identity_totp_used",
        sa.Column(
            "user_id",
            sa.String(64),
            sa.ForeignKey("identity_users.id", ondelete="CASCADE"),
            primary_key=True,
        ),
        sa.Column("step", sa.BigInteger, primary_key=True),
        sa.Column("used_at", sa.DateTime, nullable=False, index=True),
    )


def downgrade() -> None:
    op.drop_table("identity_totp_used")
    with op.batch_alter_table("identity_users") as batch:
        batch.drop_column("options")
