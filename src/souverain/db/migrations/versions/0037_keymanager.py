"""keymanager: project key-encryption keys, secrets, metadata, containers, orders, ACLs,
quotas (Barbican v1)

Revision ID: 0037
Revises: 0036
Create Date: 2026-12-06 23:10:00
"""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from alembic import op

revision = "0037"
down_revision = "0036"
branch_labels = None
depends_on = None


def _stamps() -> list[sa.Column[Any]]:
    return [
        sa.Column("created_at", sa.DateTime, nullable=False),
        sa.Column("updated_at", sa.DateTime, nullable=False),
    ]


def upgrade() -> None:
    op.create_table(
        "kms_project_keys",
        sa.Column("id", sa.String(32), primary_key=True),
        sa.Column("project_id", sa.String(64), nullable=False, index=True),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("active_for", sa.String(64), nullable=True),
        sa.Column("root_version", sa.String(64), nullable=False, index=True),
        sa.Column("wrapped", sa.LargeBinary, nullable=False),
        sa.Column("created_at", sa.DateTime, nullable=False),
        sa.UniqueConstraint("active_for", name="uq_kms_project_keys_active_for"),
    )
    op.create_table(
        "kms_secrets",
        sa.Column("id", sa.String(36), primary_key=True),
        sa.Column("project_id", sa.String(64), nullable=False, index=True),
        sa.Column("creator_id", sa.String(64), nullable=False),
        sa.Column("name", sa.String(255), nullable=True),
        sa.Column("secret_type", sa.String(32), nullable=False),
        sa.Column("algorithm", sa.String(255), nullable=True),
        sa.Column("bit_length", sa.Integer, nullable=True),
        sa.Column("mode", sa.String(255), nullable=True),
        sa.Column("expiration", sa.DateTime, nullable=True),
        sa.Column("content_type", sa.String(255), nullable=True),
        sa.Column("kek_id", sa.String(32), nullable=True, index=True),
        sa.Column("wrapped_key", sa.LargeBinary, nullable=True),
        sa.Column("ciphertext", sa.LargeBinary, nullable=True),
        *_stamps(),
    )
    op.create_table(
        "kms_secret_metadata",
        sa.Column("secret_id", sa.String(36), primary_key=True),
        sa.Column("key", sa.String(255), primary_key=True),
        sa.Column("value", sa.Text, nullable=False),
    )
    op.create_table(
        "kms_containers",
        sa.Column("id", sa.String(36), primary_key=True),
        sa.Column("project_id", sa.String(64), nullable=False, index=True),
        sa.Column("creator_id", sa.String(64), nullable=False),
        sa.Column("name", sa.String(255), nullable=True),
        sa.Column("type", sa.String(16), nullable=False),
        *_stamps(),
    )
    op.create_table(
        "kms_container_secrets",
        sa.Column("container_id", sa.String(36), primary_key=True),
        sa.Column("secret_id", sa.String(36), primary_key=True, index=True),
        sa.Column("name", sa.String(255), nullable=True),
    )
    op.create_table(
        "kms_orders",
        sa.Column("id", sa.String(36), primary_key=True),
        sa.Column("project_id", sa.String(64), nullable=False, index=True),
        sa.Column("creator_id", sa.String(64), nullable=False),
        sa.Column("type", sa.String(16), nullable=False),
        sa.Column("meta", sa.JSON, nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("secret_id", sa.String(36), nullable=True),
        sa.Column("container_id", sa.String(36), nullable=True),
        sa.Column("error_status_code", sa.String(16), nullable=True),
        sa.Column("error_reason", sa.String(255), nullable=True),
        *_stamps(),
    )
    op.create_table(
        "kms_acls",
        sa.Column("entity_id", sa.String(36), primary_key=True),
        sa.Column("project_access", sa.Boolean, nullable=False),
        *_stamps(),
    )
    op.create_table(
        "kms_acl_users",
        sa.Column("entity_id", sa.String(36), primary_key=True),
        sa.Column("user_id", sa.String(64), primary_key=True, index=True),
    )
    op.create_table(
        "kms_quotas",
        sa.Column("project_id", sa.String(64), primary_key=True),
        sa.Column("secrets", sa.Integer, nullable=True),
        sa.Column("orders", sa.Integer, nullable=True),
        sa.Column("containers", sa.Integer, nullable=True),
        sa.Column("consumers", sa.Integer, nullable=True),
        *_stamps(),
    )


def downgrade() -> None:
    for table in (
        "kms_quotas",
        "kms_acl_users",
        "kms_acls",
        "kms_orders",
        "kms_container_secrets",
        "kms_containers",
        "kms_secret_metadata",
        "kms_secrets",
        "kms_project_keys",
    ):
        op.drop_table(table)
