"""identity: domain-specific configuration and access rules of application credentials

Revision ID: 0025
Revises: 0023
Create Date: 2026-12-06 10:40:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0025"
down_revision = "0023"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "identity_domain_config",
        sa.Column(
            "domain_id",
            sa.String(64),
            sa.ForeignKey("identity_domains.id", ondelete="CASCADE"),
            primary_key=True,
        ),
        sa.Column("group", sa.String(255), primary_key=True),
        sa.Column("option", sa.String(255), primary_key=True),
        sa.Column("value", sa.JSON(), nullable=True),
        sa.Column("sensitive", sa.Boolean(), nullable=False),
    )
    op.create_table(
        "identity_access_rules",
        sa.Column("id", sa.String(64), primary_key=True),
        sa.Column(
            "user_id",
            sa.String(64),
            sa.ForeignKey("identity_users.id", ondelete="CASCADE"),
            nullable=False,
        ),
        sa.Column("service", sa.String(64), nullable=False),
        sa.Column("path", sa.String(225), nullable=False),
        sa.Column("method", sa.String(16), nullable=False),
        sa.UniqueConstraint("user_id", "service", "path", "method"),
    )
    op.create_index(op.f("ix_identity_access_rules_user_id"), "identity_access_rules", ["user_id"])
    op.create_table(
        "identity_app_cred_access_rules",
        sa.Column(
            "app_cred_id",
            sa.String(64),
            sa.ForeignKey("identity_application_credentials.id", ondelete="CASCADE"),
            primary_key=True,
        ),
        sa.Column(
            "access_rule_id",
            sa.String(64),
            sa.ForeignKey("identity_access_rules.id"),
            primary_key=True,
        ),
    )
    op.create_index(
        op.f("ix_identity_app_cred_access_rules_access_rule_id"),
        "identity_app_cred_access_rules",
        ["access_rule_id"],
    )


def downgrade() -> None:
    op.drop_index(
        op.f("ix_identity_app_cred_access_rules_access_rule_id"),
        table_name="identity_app_cred_access_rules",
    )
    op.drop_table("identity_app_cred_access_rules")
    op.drop_index(op.f("ix_identity_access_rules_user_id"), table_name="identity_access_rules")
    op.drop_table("identity_access_rules")
    op.drop_table("identity_domain_config")
