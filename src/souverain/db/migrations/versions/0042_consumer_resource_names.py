"""keymanager: a secret consumer's resource id holds a bucket's or container's name

Object storage registers the bucket that seals objects under a customer's key (SSE-KMS)
as that key's consumer, by name: S3 names run to 63 characters, Swift's to 256, past the
36 of a UUID.

Revision ID: 0042
Revises: 0041
Create Date: 2026-12-07 09:00:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0042"
down_revision = "0041"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("kms_secret_consumers") as batch_op:
        batch_op.alter_column(
            "resource_id", existing_type=sa.String(36), type_=sa.String(256), nullable=False
        )


def downgrade() -> None:
    with op.batch_alter_table("kms_secret_consumers") as batch_op:
        batch_op.alter_column(
            "resource_id", existing_type=sa.String(256), type_=sa.String(36), nullable=False
        )
