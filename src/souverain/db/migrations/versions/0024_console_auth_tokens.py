"""compute: the tokens of console URLs (os-console-auth-tokens), stored hashed

Revision ID: 0024
Revises: 0026
Create Date: 2026-12-06 10:30:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0024"
down_revision = "0026"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "compute_console_auth_tokens",
        sa.Column("token_hash", sa.String(64), primary_key=True),
        sa.Column("server_id", sa.String(36), nullable=False),
        sa.Column("console_type", sa.String(32), nullable=False),
        sa.Column("host", sa.String(255), nullable=False),
        sa.Column("port", sa.Integer(), nullable=False),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.Column("expires_at", sa.DateTime(), nullable=False),
    )
    op.create_index(
        "ix_compute_console_auth_tokens_server_id", "compute_console_auth_tokens", ["server_id"]
    )
    op.create_index(
        "ix_compute_console_auth_tokens_expires_at", "compute_console_auth_tokens", ["expires_at"]
    )


def downgrade() -> None:
    op.drop_index("ix_compute_console_auth_tokens_expires_at", "compute_console_auth_tokens")
    op.drop_index("ix_compute_console_auth_tokens_server_id", "compute_console_auth_tokens")
    op.drop_table("compute_console_auth_tokens")
