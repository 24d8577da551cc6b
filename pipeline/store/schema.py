"""Tables. Unique constraints are what make every step safe to run twice."""

from __future__ import annotations

from sqlalchemy import (
    JSON,
    Column,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    Numeric,
    String,
    Table,
    Text,
    UniqueConstraint,
)

metadata = MetaData()

MONEY = Numeric(12, 2)

orders = Table(
    "orders", metadata,
    Column("id", String(64), primary_key=True),
    Column("customer_id", String(64), nullable=False),
    Column("priority", String(8), nullable=False),
    Column("status", String(24), nullable=False, index=True),
    Column("outcome", String(24)),  # the terminal status a COMPENSATING order will reach
    # The status the order left when compensation began: what there is to undo.
    Column("compensating_from", String(24)),
    # A cancellation asked for while a step owned the order (AUTHORIZING).
    Column("cancel_requested", String(500)),
    Column("reasons", JSON, nullable=False, default=list),
    Column("currency", String(3), nullable=False),
    Column("total_amount", MONEY, nullable=False),
    Column("document", JSON, nullable=False),
    Column("document_hash", String(64), nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("updated_at", DateTime(timezone=True), nullable=False),
    Column("terminal_at", DateTime(timezone=True)),
    # The W3C traceparent of the order's root span (pipeline.tracing); NULL when off.
    Column("trace_context", String(128)),
)

order_lines = Table(
    "order_lines", metadata,
    Column("order_id", String(64), ForeignKey("orders.id"), primary_key=True),
    Column("sku", String(64), primary_key=True),
    Column("quantity", Integer, nullable=False),
    Column("price", MONEY, nullable=False),
)

steps = Table(
    "steps", metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("order_id", String(64), nullable=False, index=True),
    Column("step", String(48), nullable=False),
    Column("attempt", Integer, nullable=False),
    Column("started_at", DateTime(timezone=True), nullable=False),
    Column("finished_at", DateTime(timezone=True)),
    # ok | repeated | stopped | retry | deferred | failed | error | reconciled
    Column("outcome", String(24)),
    Column("detail", Text),
    Column("worker", String(128)),
)

products = Table(
    "products", metadata,
    Column("sku", String(64), primary_key=True),
    Column("name", String(200), nullable=False),
    Column("price", MONEY, nullable=False),
    Column("currency", String(3), nullable=False),
)

stock = Table(
    "stock", metadata,
    Column("sku", String(64), ForeignKey("products.sku"), primary_key=True),
    Column("available", Integer, nullable=False),
    Column("reserved", Integer, nullable=False),
    Column("shipped", Integer, nullable=False),
)

stock_movements = Table(
    "stock_movements", metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("sku", String(64), nullable=False),
    # adjust | restock | reserve | refuse | release | ship; every applied FIFO
    # update leaves exactly one row (refusals with zero deltas), so the rows'
    # id order per product is the order in which its updates were applied.
    Column("kind", String(16), nullable=False),
    Column("delta_available", Integer, nullable=False),
    Column("delta_reserved", Integer, nullable=False),
    Column("delta_shipped", Integer, nullable=False),
    Column("order_id", String(64)),
    Column("sqs_sequence", String(40)),  # SequenceNumber of the FIFO message that caused it
    Column("applied_at", DateTime(timezone=True), nullable=False),
    Index("ix_movements_sku_id", "sku", "id"),
)

stock_updates = Table(
    # One row per FIFO stock update: written when published, stamped when
    # applied. Unapplied rows are what is in flight per product.
    "stock_updates", metadata,
    Column("update_id", String(160), primary_key=True),  # = its MessageDeduplicationId
    Column("sku", String(64), nullable=False),
    Column("op", String(12), nullable=False),  # reserve | release | restock
    Column("ref", String(64), nullable=False),  # order id, or restock id
    Column("quantity", Integer, nullable=False),
    Column("published_at", DateTime(timezone=True), nullable=False),
    Column("applied_at", DateTime(timezone=True)),
    Column("sqs_sequence", String(40)),
    # RESERVED | REJECTED | RELEASED | RESTOCKED | DEAD_LETTERED | REVOKED
    Column("result", String(16)),
    Index("ix_stock_updates_pending", "applied_at", "sku"),
)

reservations = Table(
    "reservations", metadata,
    Column("order_id", String(64), primary_key=True),
    Column("sku", String(64), primary_key=True),
    Column("quantity", Integer, nullable=False),
    Column("state", String(12), nullable=False),  # RESERVED | REJECTED | RELEASED | SHIPPED
    Column("reserve_sequence", String(40)),
    Column("release_sequence", String(40)),
    Column("expires_at", DateTime(timezone=True)),
    Column("updated_at", DateTime(timezone=True), nullable=False),
)

payments = Table(
    "payments", metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("order_id", String(64), nullable=False, index=True),
    Column("kind", String(12), nullable=False),  # authorize | capture | void | refund | decline
    Column("amount", MONEY, nullable=False),
    Column("currency", String(3), nullable=False),
    Column("gateway_ref", String(64)),
    Column("idempotency_key", String(128), nullable=False, unique=True),
    Column("created_at", DateTime(timezone=True), nullable=False),
)

shipments = Table(
    "shipments", metadata,
    Column("order_id", String(64), primary_key=True),
    Column("carrier", String(32), nullable=False),
    Column("tracking_number", String(64), nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("cancelled_at", DateTime(timezone=True)),  # the carrier voided it (compensation)
)

notifications = Table(
    "notifications", metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("order_id", String(64), nullable=False, index=True),
    Column("template", String(32), nullable=False),
    Column("channel", String(8), nullable=False),  # email | sms | local
    Column("recipient", String(200), nullable=False),
    Column("body", Text, nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False),
    UniqueConstraint("order_id", "template", "channel", name="uq_notification_once"),
)

# The simulated gateway's and carrier's own books: every call they received,
# and whether it had an effect or was a replay of an idempotency key.
external_calls = Table(
    "external_calls", metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("system", String(16), nullable=False),  # gateway | carrier
    Column("operation", String(16), nullable=False),
    Column("idempotency_key", String(128), nullable=False),
    Column("effect", String(8), nullable=False),  # applied | replayed | failed
    Column("amount", MONEY),
    Column("reference", String(64)),
    Column("received_at", DateTime(timezone=True), nullable=False),
    Index("ix_external_calls_key", "system", "idempotency_key"),
)

external_effects = Table(
    "external_effects", metadata,
    Column("system", String(16), primary_key=True),
    Column("idempotency_key", String(128), primary_key=True),
    Column("operation", String(16), nullable=False),
    Column("reference", String(64), nullable=False),
    Column("result", JSON, nullable=False),
    Column("amount", MONEY),
    Column("created_at", DateTime(timezone=True), nullable=False),
)

circuit_breakers = Table(
    "circuit_breakers", metadata,
    Column("name", String(32), primary_key=True),
    Column("state", String(12), nullable=False),  # CLOSED | OPEN | HALF_OPEN
    Column("failures", Integer, nullable=False),
    Column("changed_at", DateTime(timezone=True)),
)

idempotency_keys = Table(
    "idempotency_keys", metadata,
    Column("key", String(160), primary_key=True),
    Column("result", JSON, nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False),
)


# Transactional outbox: a business event is written in the same transaction as
# the change it reports, and `pipeline relay` publishes it to its SNS topic
# (at least once; consumers dedupe by event id). Nothing is published for a
# change that rolled back, and nothing is lost when SNS is unreachable.
outbox = Table(
    "outbox", metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("event_id", String(40), nullable=False, unique=True),
    Column("topic", String(32), nullable=False),  # a topology topic, without prefix
    Column("event_type", String(48), nullable=False),
    Column("body", JSON, nullable=False),
    Column("attributes", JSON, nullable=False),  # SNS message attributes (filter policies)
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("published_at", DateTime(timezone=True)),
    # An event SNS refuses for good (too large, say) is parked with the reason,
    # so it is never retried forever and the rest keep flowing.
    Column("parked_reason", Text),
    # The context the event was recorded in, sent as its `traceparent` attribute.
    Column("traceparent", String(128)),
    Index("ix_outbox_pending", "published_at", "id"),
)

# Leases: work that one process at a time may do (the reconciler's sweep, the
# relay's batch), held until `until`, renewed by the holder.
leases = Table(
    "leases", metadata,
    Column("name", String(64), primary_key=True),
    Column("holder", String(128), nullable=False),
    Column("until", DateTime(timezone=True), nullable=False),
)


# Live consumers: each worker's watchdog writes, per queue it consumes, when it
# last completed a receive (pipeline.sqs.liveness).
consumers = Table(
    "consumers", metadata,
    Column("host", String(128), primary_key=True),  # host:pid of the worker
    Column("queue", String(80), primary_key=True),
    Column("lane", String(64), nullable=False),
    Column("last_receive_at", DateTime(timezone=True), nullable=False),
    Column("reported_at", DateTime(timezone=True), nullable=False),
)
