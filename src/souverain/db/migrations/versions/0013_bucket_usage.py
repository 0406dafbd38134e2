"""running totals of each bucket's stored bytes and objects, counted from the rows once

Revision ID: 0013
Revises: 0012
Create Date: 2026-12-06 01:40:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0013"
down_revision = "0012"
branch_labels = None
depends_on = None

SHARDS = 8  # objectstore.models.USAGE_SHARDS when this revision was written


def upgrade() -> None:
    op.create_table(
        "s3_bucket_usage",
        sa.Column("bucket_id", sa.String(length=32), nullable=False),
        sa.Column("shard", sa.Integer(), nullable=False),
        sa.Column("project_id", sa.String(length=64), nullable=False),
        sa.Column("stored_bytes", sa.BigInteger(), nullable=False),
        sa.Column("stored_objects", sa.BigInteger(), nullable=False),
        sa.ForeignKeyConstraint(
            ["bucket_id"],
            ["s3_buckets.id"],
            name=op.f("fk_s3_bucket_usage_bucket_id_s3_buckets"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("bucket_id", "shard", name=op.f("pk_s3_bucket_usage")),
    )
    with op.batch_alter_table("s3_bucket_usage", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_s3_bucket_usage_project_id"), ["project_id"], unique=False
        )
    # Existing buckets: shard 0 holds the count of what they store now, the others zero.
    op.execute(
        """
        INSERT INTO s3_bucket_usage (bucket_id, shard, project_id, stored_bytes, stored_objects)
        SELECT b.id, 0, b.project_id,
               COALESCE((SELECT SUM(o.size) FROM s3_objects o WHERE o.bucket_id = b.id), 0)
             + COALESCE((SELECT SUM(p.size) FROM s3_parts p JOIN s3_uploads u
                         ON p.upload_id = u.id WHERE u.bucket_id = b.id), 0),
               (SELECT COUNT(*) FROM s3_objects o
                WHERE o.bucket_id = b.id AND NOT o.is_delete_marker)
        FROM s3_buckets b
        """
    )
    others = sa.text(
        "INSERT INTO s3_bucket_usage (bucket_id, shard, project_id, stored_bytes, "
        "stored_objects) SELECT id, :shard, project_id, 0, 0 FROM s3_buckets"
    )
    for shard in range(1, SHARDS):
        op.get_bind().execute(others, {"shard": shard})


def downgrade() -> None:
    with op.batch_alter_table("s3_bucket_usage", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_s3_bucket_usage_project_id"))
    op.drop_table("s3_bucket_usage")
