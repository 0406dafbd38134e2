"""volume: room for every Cinder status in `volumes.status` ("awaiting-transfer" is 17)

SQLite never enforced the old 16; PostgreSQL refused the transfer's status with an
error. Widened where the length is enforced; SQLite's declared type is left as it is
(rewriting the table there would change nothing it checks).

Revision ID: 0032
Revises: 0029
Create Date: 2026-12-06 14:00:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0032"
down_revision = "0029"
branch_labels = None
depends_on = None


def upgrade() -> None:
    if op.get_bind().dialect.name != "sqlite":
        op.alter_column("volumes", "status", type_=sa.String(32), existing_type=sa.String(16))


def downgrade() -> None:
    if op.get_bind().dialect.name != "sqlite":
        op.alter_column("volumes", "status", type_=sa.String(16), existing_type=sa.String(32))
