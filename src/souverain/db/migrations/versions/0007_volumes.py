"""volumes: volume types, volumes, snapshots, volume quotas

Revision ID: 0007
Revises: 0006
Create Date: 2026-11-30 10:00:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "volume_types",
        sa.Column("id", sa.String(length=36), nullable=False),
        sa.Column("name", sa.String(length=255), nullable=False),
        sa.Column("description", sa.String(length=255), nullable=True),
        sa.Column("is_public", sa.Boolean(), nullable=False),
        sa.Column("extra_specs", sa.JSON(), nullable=False),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.Column("updated_at", sa.DateTime(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_volume_types")),
        sa.UniqueConstraint("name", name=op.f("uq_volume_types_name")),
    )
    op.create_table(
        "volumes",
        sa.Column("id", sa.String(length=36), nullable=False),
        sa.Column("project_id", sa.String(length=64), nullable=False),
        sa.Column("user_id", sa.String(length=64), nullable=False),
        sa.Column("name", sa.String(length=255), nullable=True),
        sa.Column("description", sa.String(length=255), nullable=True),
        sa.Column("size", sa.Integer(), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("volume_type_id", sa.String(length=36), nullable=False),
        sa.Column("availability_zone", sa.String(length=64), nullable=False),
        sa.Column("bootable", sa.Boolean(), nullable=False),
        sa.Column("readonly", sa.Boolean(), nullable=False),
        sa.Column("metadata", sa.JSON(), nullable=False),
        sa.Column("image_metadata", sa.JSON(), nullable=True),
        sa.Column("snapshot_id", sa.String(length=36), nullable=True),
        sa.Column("source_volid", sa.String(length=36), nullable=True),
        sa.Column("error_message", sa.Text(), nullable=True),
        sa.Column("server_id", sa.String(length=36), nullable=True),
        sa.Column("device", sa.String(length=64), nullable=True),
        sa.Column("attachment_id", sa.String(length=36), nullable=True),
        sa.Column("attached_at", sa.DateTime(), nullable=True),
        sa.Column("attach_seq", sa.Integer(), nullable=False),
        sa.Column("delete_on_termination", sa.Boolean(), nullable=False),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.Column("updated_at", sa.DateTime(), nullable=False),
        sa.ForeignKeyConstraint(
            ["volume_type_id"],
            ["volume_types.id"],
            name=op.f("fk_volumes_volume_type_id_volume_types"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_volumes")),
    )
    with op.batch_alter_table("volumes", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_volumes_project_id"), ["project_id"], unique=False)
        batch_op.create_index(batch_op.f("ix_volumes_name"), ["name"], unique=False)
        batch_op.create_index(batch_op.f("ix_volumes_status"), ["status"], unique=False)
        batch_op.create_index(batch_op.f("ix_volumes_server_id"), ["server_id"], unique=False)

    op.create_table(
        "volume_snapshots",
        sa.Column("id", sa.String(length=36), nullable=False),
        sa.Column("project_id", sa.String(length=64), nullable=False),
        sa.Column("user_id", sa.String(length=64), nullable=False),
        sa.Column("volume_id", sa.String(length=36), nullable=False),
        sa.Column("name", sa.String(length=255), nullable=True),
        sa.Column("description", sa.String(length=255), nullable=True),
        sa.Column("size", sa.Integer(), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("metadata", sa.JSON(), nullable=False),
        sa.Column("error_message", sa.Text(), nullable=True),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.Column("updated_at", sa.DateTime(), nullable=False),
        sa.ForeignKeyConstraint(
            ["volume_id"],
            ["volumes.id"],
            name=op.f("fk_volume_snapshots_volume_id_volumes"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_volume_snapshots")),
    )
    with op.batch_alter_table("volume_snapshots", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_volume_snapshots_project_id"), ["project_id"], unique=False
        )
        batch_op.create_index(
            batch_op.f("ix_volume_snapshots_volume_id"), ["volume_id"], unique=False
        )

    op.create_table(
        "volume_quotas",
        sa.Column("project_id", sa.String(length=64), nullable=False),
        sa.Column("volumes", sa.Integer(), nullable=True),
        sa.Column("gigabytes", sa.Integer(), nullable=True),
        sa.Column("snapshots", sa.Integer(), nullable=True),
        sa.Column("updated_at", sa.DateTime(), nullable=False),
        sa.PrimaryKeyConstraint("project_id", name=op.f("pk_volume_quotas")),
    )


def downgrade() -> None:
    op.drop_table("volume_quotas")
    with op.batch_alter_table("volume_snapshots", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_volume_snapshots_volume_id"))
        batch_op.drop_index(batch_op.f("ix_volume_snapshots_project_id"))
    op.drop_table("volume_snapshots")
    with op.batch_alter_table("volumes", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_volumes_server_id"))
        batch_op.drop_index(batch_op.f("ix_volumes_status"))
        batch_op.drop_index(batch_op.f("ix_volumes_name"))
        batch_op.drop_index(batch_op.f("ix_volumes_project_id"))
    op.drop_table("volumes")
    op.drop_table("volume_types")
