"""object storage: buckets, object versions, multipart uploads and parts

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-28 12:13:06.144107
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "s3_buckets",
        sa.Column("id", sa.String(length=32), nullable=False),
        sa.Column("name", sa.String(length=63), nullable=False),
        sa.Column("project_id", sa.String(length=64), nullable=False),
        sa.Column("owner_user_id", sa.String(length=64), nullable=False),
        sa.Column("region", sa.String(length=64), nullable=False),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.Column("versioning", sa.String(length=16), nullable=False),
        sa.Column("acl", sa.String(length=32), nullable=False),
        sa.Column("policy", sa.Text(), nullable=True),
        sa.Column("cors", sa.JSON(), nullable=True),
        sa.Column("tags", sa.JSON(), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_s3_buckets")),
        sa.UniqueConstraint("name", name=op.f("uq_s3_buckets_name")),
    )
    with op.batch_alter_table("s3_buckets", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_s3_buckets_project_id"), ["project_id"], unique=False)

    op.create_table(
        "s3_objects",
        sa.Column("seq", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("bucket_id", sa.String(length=32), nullable=False),
        sa.Column("key", sa.Text(), nullable=False),
        sa.Column("version_id", sa.String(length=64), nullable=False),
        sa.Column("is_latest", sa.Boolean(), nullable=False),
        sa.Column("is_delete_marker", sa.Boolean(), nullable=False),
        sa.Column("size", sa.BigInteger(), nullable=False),
        sa.Column("etag", sa.String(length=64), nullable=False),
        sa.Column("segments", sa.JSON(), nullable=False),
        sa.Column("headers", sa.JSON(), nullable=False),
        sa.Column("user_meta", sa.JSON(), nullable=False),
        sa.Column("checksums", sa.JSON(), nullable=False),
        sa.Column("tags", sa.JSON(), nullable=False),
        sa.Column("acl", sa.String(length=32), nullable=False),
        sa.Column("owner_project_id", sa.String(length=64), nullable=False),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.ForeignKeyConstraint(
            ["bucket_id"],
            ["s3_buckets.id"],
            name=op.f("fk_s3_objects_bucket_id_s3_buckets"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("seq", name=op.f("pk_s3_objects")),
        sa.UniqueConstraint(
            "bucket_id", "key", "version_id", name=op.f("uq_s3_objects_bucket_id_key_version_id")
        ),
    )
    with op.batch_alter_table("s3_objects", schema=None) as batch_op:
        batch_op.create_index("ix_s3_objects_history", ["bucket_id", "key", "seq"], unique=False)
        batch_op.create_index(
            "ix_s3_objects_listing", ["bucket_id", "is_latest", "key"], unique=False
        )

    op.create_table(
        "s3_uploads",
        sa.Column("id", sa.String(length=64), nullable=False),
        sa.Column("bucket_id", sa.String(length=32), nullable=False),
        sa.Column("key", sa.Text(), nullable=False),
        sa.Column("initiator_user_id", sa.String(length=64), nullable=False),
        sa.Column("owner_project_id", sa.String(length=64), nullable=False),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.Column("headers", sa.JSON(), nullable=False),
        sa.Column("user_meta", sa.JSON(), nullable=False),
        sa.Column("tags", sa.JSON(), nullable=False),
        sa.Column("acl", sa.String(length=32), nullable=False),
        sa.Column("checksum_algorithm", sa.String(length=16), nullable=False),
        sa.ForeignKeyConstraint(
            ["bucket_id"],
            ["s3_buckets.id"],
            name=op.f("fk_s3_uploads_bucket_id_s3_buckets"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_s3_uploads")),
    )
    with op.batch_alter_table("s3_uploads", schema=None) as batch_op:
        batch_op.create_index("ix_s3_uploads_key", ["bucket_id", "key", "created_at"], unique=False)

    op.create_table(
        "s3_parts",
        sa.Column("upload_id", sa.String(length=64), nullable=False),
        sa.Column("number", sa.Integer(), nullable=False),
        sa.Column("size", sa.BigInteger(), nullable=False),
        sa.Column("etag", sa.String(length=64), nullable=False),
        sa.Column("blob_id", sa.String(length=32), nullable=False),
        sa.Column("checksums", sa.JSON(), nullable=False),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.ForeignKeyConstraint(
            ["upload_id"],
            ["s3_uploads.id"],
            name=op.f("fk_s3_parts_upload_id_s3_uploads"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("upload_id", "number", name=op.f("pk_s3_parts")),
    )


def downgrade() -> None:
    op.drop_table("s3_parts")
    with op.batch_alter_table("s3_uploads", schema=None) as batch_op:
        batch_op.drop_index("ix_s3_uploads_key")

    op.drop_table("s3_uploads")
    with op.batch_alter_table("s3_objects", schema=None) as batch_op:
        batch_op.drop_index("ix_s3_objects_listing")
        batch_op.drop_index("ix_s3_objects_history")

    op.drop_table("s3_objects")
    with op.batch_alter_table("s3_buckets", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_s3_buckets_project_id"))

    op.drop_table("s3_buckets")
