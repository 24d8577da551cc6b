"""Claims, attention, parked events and leases.

orders.compensating_from (what compensation must undo), orders.cancel_requested
(a cancellation asked for while a step owns the order), shipments.cancelled_at
(a voided carrier shipment), outbox.parked_reason (an event SNS refuses for
good), and the leases table (one reconciler or relay batch at a time).

Revision ID: 0002
Revises: 0001
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("orders") as batch:
        batch.add_column(sa.Column("compensating_from", sa.String(24), nullable=True))
        batch.add_column(sa.Column("cancel_requested", sa.String(500), nullable=True))
    with op.batch_alter_table("shipments") as batch:
        batch.add_column(sa.Column("cancelled_at", sa.DateTime(timezone=True), nullable=True))
    with op.batch_alter_table("outbox") as batch:
        batch.add_column(sa.Column("parked_reason", sa.Text(), nullable=True))
    op.create_table(
        "leases",
        sa.Column("name", sa.String(64), primary_key=True),
        sa.Column("holder", sa.String(128), nullable=False),
        sa.Column("until", sa.DateTime(timezone=True), nullable=False),
    )


def downgrade() -> None:
    op.drop_table("leases")
    with op.batch_alter_table("outbox") as batch:
        batch.drop_column("parked_reason")
    with op.batch_alter_table("shipments") as batch:
        batch.drop_column("cancelled_at")
    with op.batch_alter_table("orders") as batch:
        batch.drop_column("cancel_requested")
        batch.drop_column("compensating_from")
