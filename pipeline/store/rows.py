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
from pipeline.store.clock import aware

__all__ = ["LineRow", "OrderRow", "PaymentRow", "ReservationRow", "ShipmentRow"]


def _status(value: str | None) -> OrderStatus | None:
    return OrderStatus(value) if value else None


def _aware(stamp: datetime | None) -> datetime | None:
    return aware(stamp) if stamp is not None else None


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
            terminal_at=_aware(row["terminal_at"]),
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
                   expires_at=_aware(row["expires_at"]),
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
                   cancelled_at=_aware(row["cancelled_at"]))
