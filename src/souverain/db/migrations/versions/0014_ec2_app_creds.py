"""an EC2 key made with an application credential names it, and goes when it goes

Revision ID: 0014
Revises: 0013
Create Date: 2026-12-06 05:40:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0014"
down_revision = "0013"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # Keys made before this revision stay unbound: their blobs are encrypted, and none
    # could be bound then.
    with op.batch_alter_table("identity_credentials", schema=None) as batch_op:
        batch_op.add_column(sa.Column("app_cred_id", sa.String(length=64), nullable=True))
        batch_op.create_index(
            batch_op.f("ix_identity_credentials_app_cred_id"), ["app_cred_id"], unique=False
        )
        batch_op.create_foreign_key(
            batch_op.f("fk_identity_credentials_app_cred_id_identity_application_credentials"),
            "identity_application_credentials",
            ["app_cred_id"],
            ["id"],
            ondelete="CASCADE",
        )


def downgrade() -> None:
    with op.batch_alter_table("identity_credentials", schema=None) as batch_op:
        batch_op.drop_constraint(
            batch_op.f("fk_identity_credentials_app_cred_id_identity_application_credentials"),
            type_="foreignkey",
        )
        batch_op.drop_index(batch_op.f("ix_identity_credentials_app_cred_id"))
        batch_op.drop_column("app_cred_id")
