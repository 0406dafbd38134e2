"""objectstore: server-side encryption (each version's mode, wrapped data key, KMS key id,
SSE-C key HMAC, multipart part numbers) and the buckets' default encryption

Revision ID: 0038
Revises: 0037
Create Date: 2026-12-06 23:10:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0038"
down_revision = "0037"
branch_labels = None
depends_on = None

_SEALED = ("sse_mode", "sse_key_id", "sse_wrapped", "sse_customer")


def _sealed_columns() -> list[sa.Column]:  # type: ignore[type-arg]
    return [
        sa.Column("sse_mode", sa.String(16), nullable=True),
        sa.Column("sse_key_id", sa.String(255), nullable=True),
        sa.Column("sse_wrapped", sa.LargeBinary, nullable=True),
        sa.Column("sse_customer", sa.String(128), nullable=True),
    ]


def upgrade() -> None:
    # nullable columns added in place (no table rebuild on SQLite): NULL is "not encrypted"
    for column in _sealed_columns():
        op.add_column("s3_objects", column)
    op.add_column("s3_objects", sa.Column("sse_parts", sa.JSON, nullable=True))
    for column in _sealed_columns():
        op.add_column("s3_uploads", column)
    op.add_column("s3_buckets", sa.Column("encryption", sa.JSON, nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("s3_buckets") as batch:
        batch.drop_column("encryption")
    with op.batch_alter_table("s3_uploads") as batch:
        for name in _SEALED:
            batch.drop_column(name)
    with op.batch_alter_table("s3_objects") as batch:
        batch.drop_column("sse_parts")
        for name in _SEALED:
            batch.drop_column(name)
