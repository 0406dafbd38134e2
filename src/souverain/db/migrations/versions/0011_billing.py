"""billing: accounts, account projects and roles, meter events, hourly usage, invoices

Revision ID: 0011
Revises: 0010
Create Date: 2026-11-28 18:15:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "billing_accounts",
        sa.Column("id", sa.String(length=36), nullable=False),
        sa.Column("name", sa.String(length=255), nullable=False),
        sa.Column("billing_contact", sa.String(length=255), nullable=False),
        sa.Column("country", sa.String(length=2), nullable=False),
        sa.Column("vat_number", sa.String(length=32), nullable=True),
        sa.Column("currency", sa.String(length=3), nullable=False),
        sa.Column("project_limit", sa.Integer(), nullable=False),
        sa.Column("budget", sa.String(length=32), nullable=True),
        sa.Column("budget_alerted", sa.String(length=7), nullable=True),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.Column("updated_at", sa.DateTime(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_billing_accounts")),
    )
    op.create_table(
        "billing_account_projects",
        sa.Column("project_id", sa.String(length=64), nullable=False),
        sa.Column("account_id", sa.String(length=36), nullable=False),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.ForeignKeyConstraint(
            ["account_id"],
            ["billing_accounts.id"],
            name=op.f("fk_billing_account_projects_account_id_billing_accounts"),
        ),
        sa.PrimaryKeyConstraint("project_id", name=op.f("pk_billing_account_projects")),
    )
    op.create_index(
        op.f("ix_billing_account_projects_account_id"),
        "billing_account_projects",
        ["account_id"],
        unique=False,
    )
    op.create_table(
        "billing_account_roles",
        sa.Column("account_id", sa.String(length=36), nullable=False),
        sa.Column("user_id", sa.String(length=64), nullable=False),
        sa.Column("role", sa.String(length=16), nullable=False),
        sa.ForeignKeyConstraint(
            ["account_id"],
            ["billing_accounts.id"],
            name=op.f("fk_billing_account_roles_account_id_billing_accounts"),
        ),
        sa.PrimaryKeyConstraint(
            "account_id", "user_id", "role", name=op.f("pk_billing_account_roles")
        ),
    )
    op.create_index(
        op.f("ix_billing_account_roles_user_id"), "billing_account_roles", ["user_id"], unique=False
    )
    op.create_table(
        "billing_events",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("at", sa.DateTime(), nullable=False),
        sa.Column("project_id", sa.String(length=64), nullable=False),
        sa.Column("metric", sa.String(length=32), nullable=False),
        sa.Column("resource_id", sa.String(length=64), nullable=False),
        sa.Column("kind", sa.String(length=8), nullable=False),
        sa.Column("value", sa.String(length=40), nullable=False),
        sa.Column("flavor", sa.String(length=255), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_billing_events")),
    )
    op.create_index(op.f("ix_billing_events_at"), "billing_events", ["at"], unique=False)
    op.create_index(
        op.f("ix_billing_events_project_id"), "billing_events", ["project_id"], unique=False
    )
    op.create_table(
        "billing_usage_hourly",
        sa.Column("project_id", sa.String(length=64), nullable=False),
        sa.Column("metric", sa.String(length=32), nullable=False),
        sa.Column("resource_id", sa.String(length=64), nullable=False),
        sa.Column("flavor", sa.String(length=255), nullable=False),
        sa.Column("hour", sa.DateTime(), nullable=False),
        sa.Column("hours", sa.Integer(), nullable=False),
        sa.Column("quantity", sa.String(length=40), nullable=False),
        sa.PrimaryKeyConstraint(
            "project_id",
            "metric",
            "resource_id",
            "flavor",
            "hour",
            name=op.f("pk_billing_usage_hourly"),
        ),
    )
    op.create_index(
        op.f("ix_billing_usage_hourly_hour"), "billing_usage_hourly", ["hour"], unique=False
    )
    op.create_table(
        "billing_aggregation",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("done_until", sa.DateTime(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_billing_aggregation")),
    )
    op.create_table(
        "billing_invoices",
        sa.Column("id", sa.String(length=36), nullable=False),
        sa.Column("number", sa.String(length=32), nullable=False),
        sa.Column("sequence", sa.Integer(), nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("corrects", sa.String(length=36), nullable=False),
        sa.Column("account_id", sa.String(length=36), nullable=False),
        sa.Column("period", sa.String(length=7), nullable=False),
        sa.Column("issued_at", sa.DateTime(), nullable=False),
        sa.Column("currency", sa.String(length=3), nullable=False),
        sa.Column("subtotal", sa.String(length=40), nullable=False),
        sa.Column("vat_rate", sa.String(length=16), nullable=False),
        sa.Column("vat", sa.String(length=40), nullable=False),
        sa.Column("total", sa.String(length=40), nullable=False),
        sa.Column("vat_note", sa.String(length=255), nullable=False),
        sa.Column("document", sa.JSON(), nullable=False),
        sa.ForeignKeyConstraint(
            ["account_id"],
            ["billing_accounts.id"],
            name=op.f("fk_billing_invoices_account_id_billing_accounts"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_billing_invoices")),
        sa.UniqueConstraint("number", name=op.f("uq_billing_invoices_number")),
        sa.UniqueConstraint("sequence", name=op.f("uq_billing_invoices_sequence")),
        sa.UniqueConstraint(
            "account_id",
            "period",
            "kind",
            "corrects",
            name=op.f("uq_billing_invoices_account_id_period_kind_corrects"),
        ),
    )
    op.create_index(
        op.f("ix_billing_invoices_account_id"), "billing_invoices", ["account_id"], unique=False
    )


def downgrade() -> None:
    for table in (
        "billing_invoices",
        "billing_aggregation",
        "billing_usage_hourly",
        "billing_events",
        "billing_account_roles",
        "billing_account_projects",
        "billing_accounts",
    ):
        op.drop_table(table)
