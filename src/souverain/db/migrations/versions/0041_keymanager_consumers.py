"""keymanager: secret and container consumers; when a project KEK stopped being active

Revision ID: 0041
Revises: 0040
Create Date: 2026-12-07 02:30:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0041"
down_revision = "0040"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "kms_secret_consumers",
        sa.Column("id", sa.String(36), primary_key=True),
        sa.Column("secret_id", sa.String(36), nullable=False, index=True),
        sa.Column("project_id", sa.String(64), nullable=False, index=True),
        sa.Column("service", sa.String(255), nullable=False),
        sa.Column("resource_type", sa.String(255), nullable=False),
        sa.Column("resource_id", sa.String(36), nullable=False),
        sa.Column("created_at", sa.DateTime, nullable=False),
        sa.Column("updated_at", sa.DateTime, nullable=False),
        sa.UniqueConstraint(
            "secret_id",
            "service",
            "resource_type",
            "resource_id",
            name="uq_kms_secret_consumers_resource",
        ),
    )
    op.create_table(
        "kms_container_consumers",
        sa.Column("id", sa.String(36), primary_key=True),
        sa.Column("container_id", sa.String(36), nullable=False, index=True),
        sa.Column("project_id", sa.String(64), nullable=False, index=True),
        sa.Column("name", sa.String(255), nullable=False),
        sa.Column("url", sa.String(255), nullable=False),
        sa.Column("created_at", sa.DateTime, nullable=False),
        sa.Column("updated_at", sa.DateTime, nullable=False),
        sa.UniqueConstraint("container_id", "name", "url", name="uq_kms_container_consumers"),
    )
    with op.batch_alter_table("kms_project_keys") as batch:
        batch.add_column(sa.Column("retired_at", sa.DateTime, nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("kms_project_keys") as batch:
        batch.drop_column("retired_at")
    op.drop_table("kms_container_consumers")
    op.drop_table("kms_secret_consumers")
