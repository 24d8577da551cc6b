"""Live consumers: when each worker last completed a receive, per queue.

Revision ID: 0003
Revises: 0002
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "consumers",
        sa.Column("host", sa.String(128), primary_key=True),
        sa.Column("queue", sa.String(80), primary_key=True),
        sa.Column("lane", sa.String(64), nullable=False),
        sa.Column("last_receive_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("reported_at", sa.DateTime(timezone=True), nullable=False),
    )


def downgrade() -> None:
    op.drop_table("consumers")
