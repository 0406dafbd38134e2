"""volume: private volume types' project access, QoS specs, volume transfers

Revision ID: 0017
Revises: 0015
Create Date: 2026-12-06 07:40:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0017"
down_revision = "0015"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "volume_qos_specs",
        sa.Column("id", sa.String(length=36), nullable=False),
        sa.Column("name", sa.String(length=255), nullable=False),
        sa.Column("consumer", sa.String(length=16), nullable=False),
        sa.Column("specs", sa.JSON(), nullable=False),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_volume_qos_specs")),
        sa.UniqueConstraint("name", name=op.f("uq_volume_qos_specs_name")),
    )
    with op.batch_alter_table("volume_types") as batch_op:
        batch_op.add_column(sa.Column("qos_specs_id", sa.String(length=36), nullable=True))
        batch_op.create_foreign_key(
            batch_op.f("fk_volume_types_qos_specs_id_volume_qos_specs"),
            "volume_qos_specs",
            ["qos_specs_id"],
            ["id"],
        )
    op.create_table(
        "volume_type_access",
        sa.Column("volume_type_id", sa.String(length=36), nullable=False),
        sa.Column("project_id", sa.String(length=64), nullable=False),
        sa.ForeignKeyConstraint(
            ["volume_type_id"],
            ["volume_types.id"],
            name=op.f("fk_volume_type_access_volume_type_id_volume_types"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("volume_type_id", "project_id", name=op.f("pk_volume_type_access")),
    )
    op.create_table(
        "volume_transfers",
        sa.Column("id", sa.String(length=36), nullable=False),
        sa.Column("volume_id", sa.String(length=36), nullable=False),
        sa.Column("name", sa.String(length=255), nullable=True),
        sa.Column("salt", sa.String(length=64), nullable=False),
        sa.Column("crypt_hash", sa.String(length=128), nullable=False),
        sa.Column("source_project_id", sa.String(length=64), nullable=False),
        sa.Column("destination_project_id", sa.String(length=64), nullable=True),
        sa.Column("accepted", sa.Boolean(), nullable=False),
        sa.Column("no_snapshots", sa.Boolean(), nullable=False),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.ForeignKeyConstraint(
            ["volume_id"], ["volumes.id"], name=op.f("fk_volume_transfers_volume_id_volumes")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_volume_transfers")),
    )
    op.create_index(
        op.f("ix_volume_transfers_volume_id"), "volume_transfers", ["volume_id"], unique=False
    )
    op.create_index(
        op.f("ix_volume_transfers_source_project_id"),
        "volume_transfers",
        ["source_project_id"],
        unique=False,
    )


def downgrade() -> None:
    op.drop_index(op.f("ix_volume_transfers_source_project_id"), table_name="volume_transfers")
    op.drop_index(op.f("ix_volume_transfers_volume_id"), table_name="volume_transfers")
    op.drop_table("volume_transfers")
    op.drop_table("volume_type_access")
    with op.batch_alter_table("volume_types") as batch_op:
        batch_op.drop_constraint(
            batch_op.f("fk_volume_types_qos_specs_id_volume_qos_specs"), type_="foreignkey"
        )
        batch_op.drop_column("qos_specs_id")
    op.drop_table("volume_qos_specs")
