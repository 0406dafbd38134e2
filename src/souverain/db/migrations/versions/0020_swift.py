"""swift: account and container metadata beside the buckets; container names up to 256 bytes

Revision ID: 0020
Revises: 0021
Create Date: 2026-12-06 07:30:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0020"
down_revision = "0021"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("s3_buckets") as batch_op:
        batch_op.alter_column(
            "name", existing_type=sa.String(length=63), type_=sa.String(length=256)
        )
    op.create_table(
        "swift_accounts",
        sa.Column("project_id", sa.String(length=64), nullable=False),
        sa.Column("meta", sa.JSON(), nullable=False),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.PrimaryKeyConstraint("project_id", name=op.f("pk_swift_accounts")),
    )
    op.create_table(
        "swift_containers",
        sa.Column("bucket_id", sa.String(length=32), nullable=False),
        sa.Column("meta", sa.JSON(), nullable=False),
        sa.Column("settings", sa.JSON(), nullable=False),
        sa.ForeignKeyConstraint(
            ["bucket_id"],
            ["s3_buckets.id"],
            name=op.f("fk_swift_containers_bucket_id_s3_buckets"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("bucket_id", name=op.f("pk_swift_containers")),
    )
    op.create_table(
        "swift_manifests",
        sa.Column("bucket_id", sa.String(length=32), nullable=False),
        sa.Column("key", sa.String(length=1024), nullable=False),
        sa.Column("etag", sa.String(length=64), nullable=False),
        sa.Column("segments", sa.JSON(), nullable=False),
        sa.ForeignKeyConstraint(
            ["bucket_id"],
            ["s3_buckets.id"],
            name=op.f("fk_swift_manifests_bucket_id_s3_buckets"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("bucket_id", "key", name=op.f("pk_swift_manifests")),
    )
    op.create_table(
        "swift_expiring",
        sa.Column("bucket_id", sa.String(length=32), nullable=False),
        sa.Column("key", sa.String(length=1024), nullable=False),
        sa.Column("delete_at", sa.BigInteger(), nullable=False),
        sa.ForeignKeyConstraint(
            ["bucket_id"],
            ["s3_buckets.id"],
            name=op.f("fk_swift_expiring_bucket_id_s3_buckets"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("bucket_id", "key", name=op.f("pk_swift_expiring")),
    )
    with op.batch_alter_table("swift_expiring") as batch_op:
        batch_op.create_index(batch_op.f("ix_swift_expiring_delete_at"), ["delete_at"])


def downgrade() -> None:
    op.drop_table("swift_expiring")
    op.drop_table("swift_manifests")
    op.drop_table("swift_containers")
    op.drop_table("swift_accounts")
    with op.batch_alter_table("s3_buckets") as batch_op:
        batch_op.alter_column(
            "name", existing_type=sa.String(length=256), type_=sa.String(length=63)
        )
