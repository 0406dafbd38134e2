"""image: interoperable import (staged data, import tasks) and metadata definitions;
identity: trusts (OS-TRUST), endpoint filters (OS-EP-FILTER), implied-role rules

An image gets the store file its staged data waits in until imported; an import runs
as a task the owner can read. Metadata definition namespaces (with their objects,
properties and tags as JSON) and their resource type associations get their tables.
A trust records which of a trustor's roles on a project its trustee may use. Endpoint
groups and the endpoints (or groups) associated with a project narrow its catalog.
Administrators may add implied-role rules beside the fixed ones.

Revision ID: 0019
Revises: 0018
Create Date: 2026-12-06 07:40:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0019"
down_revision = "0018"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("images") as batch_op:
        batch_op.add_column(sa.Column("staged_file_id", sa.String(32), nullable=True))
    op.create_table(
        "image_tasks",
        sa.Column("id", sa.String(36), primary_key=True),
        sa.Column("type", sa.String(32), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("owner", sa.String(64), nullable=False, index=True),
        sa.Column("image_id", sa.String(36), nullable=True, index=True),
        sa.Column("input", sa.JSON(), nullable=False),
        sa.Column("result", sa.JSON(), nullable=True),
        sa.Column("message", sa.Text(), nullable=False),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.Column("updated_at", sa.DateTime(), nullable=False),
        sa.Column("expires_at", sa.DateTime(), nullable=True),
    )
    op.create_table(
        "image_metadef_namespaces",
        sa.Column("namespace", sa.String(80), primary_key=True),
        sa.Column("display_name", sa.String(80), nullable=True),
        sa.Column("description", sa.Text(), nullable=True),
        sa.Column("visibility", sa.String(16), nullable=False),
        sa.Column("protected", sa.Boolean(), nullable=False),
        sa.Column("owner", sa.String(64), nullable=True, index=True),
        sa.Column("properties", sa.JSON(), nullable=False),
        sa.Column("objects", sa.JSON(), nullable=False),
        sa.Column("tags", sa.JSON(), nullable=False),
        sa.Column("resource_types", sa.JSON(), nullable=False),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.Column("updated_at", sa.DateTime(), nullable=False),
    )

    op.create_table(
        "identity_trusts",
        sa.Column("id", sa.String(64), primary_key=True),
        sa.Column(
            "trustor_user_id",
            sa.String(64),
            sa.ForeignKey("identity_users.id", ondelete="CASCADE"),
            nullable=False,
            index=True,
        ),
        sa.Column(
            "trustee_user_id",
            sa.String(64),
            sa.ForeignKey("identity_users.id", ondelete="CASCADE"),
            nullable=False,
            index=True,
        ),
        sa.Column("project_id", sa.String(64), nullable=False, index=True),
        sa.Column("impersonation", sa.Boolean(), nullable=False),
        sa.Column("role_ids", sa.JSON(), nullable=False),
        sa.Column("expires_at", sa.DateTime(), nullable=True),
        sa.Column("remaining_uses", sa.Integer(), nullable=True),
        sa.Column("created_at", sa.DateTime(), nullable=False),
    )

    op.create_table(
        "identity_endpoint_groups",
        sa.Column("id", sa.String(64), primary_key=True),
        sa.Column("name", sa.String(255), nullable=False),
        sa.Column("description", sa.Text(), nullable=False),
        sa.Column("filters", sa.JSON(), nullable=False),
    )
    op.create_table(
        "identity_project_endpoints",
        sa.Column(
            "project_id",
            sa.String(64),
            sa.ForeignKey("identity_projects.id", ondelete="CASCADE"),
            primary_key=True,
        ),
        sa.Column("endpoint_id", sa.String(64), primary_key=True),
        sa.Column("endpoint_group_id", sa.String(64), primary_key=True),
    )

    op.create_table(
        "identity_implied_roles",
        sa.Column(
            "prior_role_id",
            sa.String(64),
            sa.ForeignKey("identity_roles.id", ondelete="CASCADE"),
            primary_key=True,
        ),
        sa.Column(
            "implied_role_id",
            sa.String(64),
            sa.ForeignKey("identity_roles.id", ondelete="CASCADE"),
            primary_key=True,
        ),
    )


def downgrade() -> None:
    op.drop_table("identity_implied_roles")
    op.drop_table("identity_project_endpoints")
    op.drop_table("identity_endpoint_groups")
    op.drop_table("identity_trusts")
    op.drop_table("image_metadef_namespaces")
    op.drop_table("image_tasks")
    with op.batch_alter_table("images") as batch_op:
        batch_op.drop_column("staged_file_id")
