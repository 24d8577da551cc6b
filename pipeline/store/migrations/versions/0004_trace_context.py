"""Trace context: the W3C traceparent of an order's root span and of each outbox event.

orders.trace_context lets work on an order from outside its steps (a re-drive, a
cancellation) continue the order's trace; outbox.traceparent is sent with the
event as an SNS message attribute (pipeline.tracing). Both stay NULL when
tracing is off.

Revision ID: 0004
Revises: 0003
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("orders") as batch:
        batch.add_column(sa.Column("trace_context", sa.String(128), nullable=True))
    with op.batch_alter_table("outbox") as batch:
        batch.add_column(sa.Column("traceparent", sa.String(128), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("outbox") as batch:
        batch.drop_column("traceparent")
    with op.batch_alter_table("orders") as batch:
        batch.drop_column("trace_context")
