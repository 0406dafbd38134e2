"""objectstore: Object Lock (WORM) on buckets, versions and multipart uploads; lifecycle

A bucket's `object_lock` is NULL while Object Lock is off, `{}` once enabled, and
holds its default retention rule (`Mode` with `Days` or `Years`) when one is set.
A version's retention (mode, until) and legal hold are its own columns; an upload
carries what its object will get when completed. A bucket's `lifecycle` holds its
lifecycle rules (NULL: none); `lifecycle_lease` is the time until which one serving
process holds the bucket's lifecycle sweep. `public_access_block` holds the bucket's
four public access block flags (NULL: none set). `grants` on buckets, versions and
uploads holds an access control list of explicit grants (NULL: the canned `acl` holds).

Revision ID: 0021
Revises: 0019
Create Date: 2026-12-06 07:20:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0021"
down_revision = "0019"
branch_labels = None
depends_on = None

_LOCK_COLUMNS = ("lock_mode", "lock_until", "legal_hold")


def _lock_columns() -> list[sa.Column[object]]:
    return [
        sa.Column("lock_mode", sa.String(16), nullable=True),
        sa.Column("lock_until", sa.DateTime(), nullable=True),
        sa.Column("legal_hold", sa.Boolean(), nullable=True),
    ]


def upgrade() -> None:
    with op.batch_alter_table("s3_buckets") as batch_op:
        batch_op.add_column(sa.Column("object_lock", sa.JSON(), nullable=True))
        batch_op.add_column(sa.Column("lifecycle", sa.JSON(), nullable=True))
        batch_op.add_column(sa.Column("lifecycle_lease", sa.DateTime(), nullable=True))
        batch_op.add_column(sa.Column("public_access_block", sa.JSON(), nullable=True))
        batch_op.add_column(sa.Column("grants", sa.JSON(), nullable=True))
    for table in ("s3_objects", "s3_uploads"):
        with op.batch_alter_table(table) as batch_op:
            for column in _lock_columns():
                batch_op.add_column(column)
            batch_op.add_column(sa.Column("grants", sa.JSON(), nullable=True))


def downgrade() -> None:
    for table in ("s3_uploads", "s3_objects"):
        with op.batch_alter_table(table) as batch_op:
            batch_op.drop_column("grants")
            for name in _LOCK_COLUMNS:
                batch_op.drop_column(name)
    with op.batch_alter_table("s3_buckets") as batch_op:
        batch_op.drop_column("grants")
        batch_op.drop_column("public_access_block")
        batch_op.drop_column("lifecycle_lease")
        batch_op.drop_column("lifecycle")
        batch_op.drop_column("object_lock")
