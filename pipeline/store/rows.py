"""Typed rows at the store's boundary: what a caller reads is checked once, here.

A `dict[str, Any]` row lets a typo in a column name or a status string compared
to an enum pass mypy and fail in production; these carry the domain's types
(OrderStatus, Decimal, aware datetimes on SQLite and PostgreSQL alike).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import RowMapping

from pipeline.domain import OrderStatus
from pipeline.store.clock import aware, aware_or_none

__all__ = [
    "Claim", "ConsumerAge", "LineRow", "MovementRow", "NotificationRow", "OrderRow", "OrderSummary",
    "PaymentRow", "ProductInFlight", "ProductRow", "ReservationRow", "ShipmentRow",
    "StepRow", "StockLevelRow", "StockUpdateRow",
]


def _status(value: str | None) -> OrderStatus | None:
    return OrderStatus(value) if value else None


@dataclass(frozen=True, slots=True)
class OrderRow:
    """One row of `orders`, as stored."""

    id: str
    customer_id: str
    priority: str
    status: OrderStatus
    outcome: OrderStatus | None  # the terminal status a COMPENSATING order will reach
    compensating_from: OrderStatus | None  # what there is to undo
    cancel_requested: str | None  # the reason, while a step owns the order
    reasons: tuple[str, ...]
    currency: str
    total_amount: Decimal
    document: dict[str, Any]  # the submitted document, as validated at submit
    document_hash: str
    created_at: datetime
    updated_at: datetime
    terminal_at: datetime | None
    trace_context: str | None

    @property
    def vip(self) -> bool:
        return self.priority == "vip"

    @classmethod
    def of(cls, row: RowMapping) -> OrderRow:
        return cls(
            id=row["id"], customer_id=row["customer_id"], priority=row["priority"],
            status=OrderStatus(row["status"]),
            outcome=_status(row["outcome"]),
            compensating_from=_status(row["compensating_from"]),
            cancel_requested=row["cancel_requested"],
            reasons=tuple(row["reasons"] or ()), currency=row["currency"],
            total_amount=Decimal(row["total_amount"]), document=row["document"],
            document_hash=row["document_hash"], created_at=aware(row["created_at"]),
            updated_at=aware(row["updated_at"]),
            terminal_at=aware_or_none(row["terminal_at"]),
            trace_context=row["trace_context"])


@dataclass(frozen=True, slots=True)
class LineRow:
    """One line of an order: a product, how many, at what unit price."""

    sku: str
    quantity: int
    price: Decimal

    @classmethod
    def of(cls, row: RowMapping) -> LineRow:
        return cls(sku=row["sku"], quantity=int(row["quantity"]), price=Decimal(row["price"]))


@dataclass(frozen=True, slots=True)
class PaymentRow:
    """One entry of an order's payment ledger: what the gateway did, once."""

    kind: str  # authorize | capture | void | refund | decline
    amount: Decimal
    currency: str
    gateway_ref: str | None
    created_at: datetime

    @property
    def reference(self) -> str:
        """The gateway's reference of the effect (only a decline may have none)."""
        if self.gateway_ref is None:
            raise ValueError(f"the {self.kind} entry has no gateway reference")
        return self.gateway_ref

    @classmethod
    def of(cls, row: RowMapping) -> PaymentRow:
        return cls(kind=row["kind"], amount=Decimal(row["amount"]), currency=row["currency"],
                   gateway_ref=row["gateway_ref"], created_at=aware(row["created_at"]))


@dataclass(frozen=True, slots=True)
class ReservationRow:
    """One line's hold on stock: RESERVED, REJECTED, RELEASED or SHIPPED."""

    sku: str
    quantity: int
    state: str
    reserve_sequence: str | None  # the FIFO position of the reservation
    release_sequence: str | None  # ... and of its release
    expires_at: datetime | None
    updated_at: datetime

    @classmethod
    def of(cls, row: RowMapping) -> ReservationRow:
        return cls(sku=row["sku"], quantity=int(row["quantity"]), state=row["state"],
                   reserve_sequence=row["reserve_sequence"],
                   release_sequence=row["release_sequence"],
                   expires_at=aware_or_none(row["expires_at"]),
                   updated_at=aware(row["updated_at"]))


@dataclass(frozen=True, slots=True)
class ShipmentRow:
    """The carrier's shipment of an order (cancelled_at: it voided it)."""

    carrier: str
    tracking_number: str
    created_at: datetime
    cancelled_at: datetime | None

    @classmethod
    def of(cls, row: RowMapping) -> ShipmentRow:
        return cls(carrier=row["carrier"], tracking_number=row["tracking_number"],
                   created_at=aware(row["created_at"]),
                   cancelled_at=aware_or_none(row["cancelled_at"]))


@dataclass(frozen=True, slots=True)
class OrderSummary:
    """An order as listed: what `pipeline orders` shows, without its document."""

    id: str
    status: OrderStatus
    priority: str
    total_amount: Decimal
    currency: str
    created_at: datetime
    terminal_at: datetime | None

    @classmethod
    def of(cls, row: RowMapping) -> OrderSummary:
        return cls(id=row["id"], status=OrderStatus(row["status"]), priority=row["priority"],
                   total_amount=Decimal(row["total_amount"]), currency=row["currency"],
                   created_at=aware(row["created_at"]),
                   terminal_at=aware_or_none(row["terminal_at"]))


@dataclass(frozen=True, slots=True)
class StepRow:
    """One attempt of a step in an order's timeline, written when it ended."""

    step: str
    attempt: int
    outcome: str | None  # ok | repeated | stopped | retry | deferred | failed | error | ...
    started_at: datetime
    finished_at: datetime | None
    detail: str | None
    worker: str | None

    @classmethod
    def of(cls, row: RowMapping) -> StepRow:
        return cls(step=row["step"], attempt=int(row["attempt"]), outcome=row["outcome"],
                   started_at=aware(row["started_at"]),
                   finished_at=aware_or_none(row["finished_at"]),
                   detail=row["detail"], worker=row["worker"])


@dataclass(frozen=True, slots=True)
class NotificationRow:
    """One message sent to the customer (at most one per template and channel)."""

    template: str
    channel: str
    recipient: str
    body: str
    created_at: datetime

    @classmethod
    def of(cls, row: RowMapping) -> NotificationRow:
        return cls(template=row["template"], channel=row["channel"],
                   recipient=row["recipient"], body=row["body"],
                   created_at=aware(row["created_at"]))


@dataclass(frozen=True, slots=True)
class ProductRow:
    """A catalog entry: the price an order's line must carry."""

    sku: str
    name: str
    price: Decimal
    currency: str

    @classmethod
    def of(cls, row: RowMapping) -> ProductRow:
        return cls(sku=row["sku"], name=row["name"], price=Decimal(row["price"]),
                   currency=row["currency"])


@dataclass(frozen=True, slots=True)
class StockLevelRow:
    """A product's price and its stock: free to sell, held by orders, shipped."""

    sku: str
    price: Decimal
    available: int
    reserved: int
    shipped: int

    @classmethod
    def of(cls, row: RowMapping) -> StockLevelRow:
        return cls(sku=row["sku"], price=Decimal(row["price"]),
                   available=int(row["available"]), reserved=int(row["reserved"]),
                   shipped=int(row["shipped"]))


@dataclass(frozen=True, slots=True)
class MovementRow:
    """One applied change to a product's stock, in the order it was applied."""

    id: int
    kind: str  # adjust | restock | reserve | refuse | release | ship
    delta_available: int
    delta_reserved: int
    delta_shipped: int
    order_id: str | None
    sqs_sequence: str | None
    applied_at: datetime

    @classmethod
    def of(cls, row: RowMapping) -> MovementRow:
        return cls(id=int(row["id"]), kind=row["kind"],
                   delta_available=int(row["delta_available"]),
                   delta_reserved=int(row["delta_reserved"]),
                   delta_shipped=int(row["delta_shipped"]), order_id=row["order_id"],
                   sqs_sequence=row["sqs_sequence"], applied_at=aware(row["applied_at"]))


@dataclass(frozen=True, slots=True)
class StockUpdateRow:
    """The note of one FIFO stock update: published, and (once) applied."""

    update_id: str
    sku: str
    op: str  # reserve | release | restock
    ref: str  # the order id, or the restock id
    quantity: int
    published_at: datetime
    applied_at: datetime | None
    sqs_sequence: str | None
    result: str | None

    @classmethod
    def of(cls, row: RowMapping) -> StockUpdateRow:
        return cls(update_id=row["update_id"], sku=row["sku"], op=row["op"], ref=row["ref"],
                   quantity=int(row["quantity"]), published_at=aware(row["published_at"]),
                   applied_at=aware_or_none(row["applied_at"]), sqs_sequence=row["sqs_sequence"],
                   result=row["result"])


@dataclass(frozen=True, slots=True)
class ProductInFlight:
    """A product's FIFO updates published and not yet applied."""

    sku: str
    updates: int
    oldest_age_s: float

    def as_json(self) -> dict[str, Any]:
        return {"productId": self.sku, "inFlight": self.updates,
                "oldestAgeSeconds": self.oldest_age_s}


@dataclass(frozen=True, slots=True)
class ConsumerAge:
    """A live worker's last completed receive on one queue, and how long ago."""

    lane: str
    queue: str
    host: str
    age_s: float

    def as_json(self) -> dict[str, Any]:
        return {"lane": self.lane, "queue": self.queue, "host": self.host,
                "ageSeconds": self.age_s}


@dataclass(frozen=True, slots=True)
class Claim:
    """What a step that claimed its order works with, read in the claim's transaction."""

    order: OrderRow  # as claimed (its new status)
    lines: list[LineRow]
    payments: list[PaymentRow]  # the ledger, when asked for
