"""The order as customers send it, and the life cycle of an order.

The document format is the seeds' message format: camelCase fields, money as
decimals, a payment *token* (never a card number).
"""

from __future__ import annotations

import json
import re
import uuid
from dataclasses import dataclass
from decimal import Decimal
from enum import StrEnum
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    EmailStr,
    Field,
    ValidationError,
    field_validator,
)

from pipeline.errors import InvalidOrder
from pipeline.keys import ID_PATTERN, stock_update_id

__all__ = [
    "CANCELLABLE",
    "IN_PROGRESS",
    "PROGRESS",
    "TERMINAL",
    "TRANSITIONS",
    "WINDING_DOWN",
    "Address",
    "Contact",
    "LineItem",
    "Order",
    "OrderStatus",
    "PaymentInfo",
    "StockOp",
    "StockUpdate",
    "can_transition",
    "parse_order",
    "reached",
]

# Bounds at the door: every field of a document is bounded here, before anything
# is stored or enqueued (the business rules come later, in validation).
MAX_LINES = 100  # the business rule (PIPELINE_MAX_LINES_PER_ORDER) is at most this
MAX_QUANTITY = 1_000_000
Money = Annotated[Decimal, Field(ge=0, max_digits=12, decimal_places=2)]
CARD_NUMBER = re.compile(r"^\d{12,19}$")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


def _printable(value: str) -> str:
    # A NUL byte fails the insert on PostgreSQL; control characters have no place
    # in an order and end up in logs and notifications.
    if _CONTROL.search(value):
        raise ValueError("contains control characters")
    return value


Text = Annotated[str, AfterValidator(_printable)]
Id = Annotated[str, Field(min_length=1, max_length=64, pattern=ID_PATTERN)]


class _Doc(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True, frozen=True)


class LineItem(_Doc):
    product_id: Id = Field(alias="productId")
    quantity: int = Field(ge=1, le=MAX_QUANTITY, strict=True)
    price: Money


class PaymentInfo(_Doc):
    token: Text = Field(min_length=3, max_length=128)

    @field_validator("token")
    @classmethod
    def _not_a_card_number(cls, value: str) -> str:
        if CARD_NUMBER.match(value.replace(" ", "").replace("-", "")):
            raise ValueError("looks like a card number; send a payment token instead")
        return value


class Address(_Doc):
    line1: Text = Field(min_length=1, max_length=200)
    line2: Text | None = Field(default=None, max_length=200)
    city: Text = Field(min_length=1, max_length=100)
    state: Text | None = Field(default=None, max_length=100)
    postal_code: Text = Field(alias="postalCode", min_length=2, max_length=16)
    country: str = Field(pattern=r"^[A-Z]{2}$", description="ISO 3166-1 alpha-2")


class Contact(_Doc):
    email: EmailStr | None = None
    phone: str | None = Field(default=None, pattern=r"^\+[1-9]\d{6,14}$")


class Order(_Doc):
    """An order document (the seeds' format)."""

    order_id: Id = Field(alias="orderId", default_factory=lambda: f"ord_{uuid.uuid4().hex[:20]}",
                         min_length=3)
    customer_id: Text = Field(alias="customerId", min_length=1, max_length=64)
    items: list[LineItem] = Field(min_length=1, max_length=MAX_LINES)
    total_amount: Money = Field(alias="totalAmount")
    currency: str = Field(default="USD", pattern=r"^[A-Z]{3}$")
    priority: Literal["normal", "vip"] = "normal"
    payment: PaymentInfo
    shipping_address: Address = Field(alias="shippingAddress")
    contact: Contact = Field(default_factory=Contact)

    @property
    def vip(self) -> bool:
        return self.priority == "vip"

    def document(self) -> dict[str, Any]:
        """The JSON document, in the seeds' camelCase."""
        return self.model_dump(mode="json", by_alias=True, exclude_none=True)


MAX_PROBLEMS = 20  # one message per bad field, but a 10,000-line mess is not 10,000 lines
_PLAIN = re.compile(r"^[A-Za-z0-9_]+$")


def _segment(part: Any) -> str:
    """A field path segment, quoted when it is an unexpected key of any shape."""
    text = str(part)
    return text if _PLAIN.match(text) else json.dumps(text[:40])


def parse_order(data: Any) -> Order:
    """Validate a document; raise InvalidOrder with one message per bad field."""
    if not isinstance(data, dict):
        raise InvalidOrder([f"order: expected a JSON object, got {type(data).__name__}"])
    try:
        return Order.model_validate(data)
    except ValidationError as error:
        problems = []
        for item in error.errors(include_url=False, include_input=False):
            where = ".".join(_segment(part) for part in item["loc"]) or "order"
            problems.append(f"{where}: {item['msg']}"[:300])
        if len(problems) > MAX_PROBLEMS:
            problems = [*problems[:MAX_PROBLEMS],
                        f"... and {len(problems) - MAX_PROBLEMS} more problem(s)"]
        raise InvalidOrder(problems) from None
    except RecursionError:
        raise InvalidOrder(["order: nested too deeply"]) from None


class OrderStatus(StrEnum):
    """Where an order is. Only the store changes it (see TRANSITIONS).

    Two statuses are claims: a step moves the order into AUTHORIZING or
    SHIPPING *before* it calls the gateway or the carrier, so nothing else
    (a cancellation, a hold expiry) can end the order while an external effect
    is in flight. Only the claiming step moves it on.
    """

    RECEIVED = "RECEIVED"
    """Stored; its workflow is enqueued (or will be, by the reconciler)."""
    VALIDATED = "VALIDATED"
    """Schema and business rules passed."""
    AUTHORIZING = "AUTHORIZING"
    """The payment step owns the order while it asks the gateway for an authorization.
    A cancellation now is recorded and honoured by that step."""
    PAYMENT_AUTHORIZED = "PAYMENT_AUTHORIZED"
    """Authorized, lines not yet sent (only orders from before the payment step fanned
    out the lines itself pass through here)."""
    RESERVING = "RESERVING"
    """Authorized; one reservation per line is on inventory.fifo; waiting for all of them."""
    RESERVED = "RESERVED"
    """Every line is reserved."""
    SHIPPING = "SHIPPING"
    """The shipping step owns the order: capture, then the carrier. Too late to cancel."""
    SHIPPED = "SHIPPED"
    """Shipment created and payment captured; the customer is being told."""
    COMPENSATING = "COMPENSATING"
    """A step failed for good or the order was cancelled; completed steps are being
    undone. `outcome` says how it will end, `compensating_from` where it left off."""
    NEEDS_ATTENTION = "NEEDS_ATTENTION"
    """Compensation could not finish (a step gave up): money or stock is not yet right.
    Not terminal: the reconciler (or a DLQ redrive) retries until it is."""
    COMPLETED = "COMPLETED"
    """Terminal: shipped, captured, customer notified."""
    REJECTED = "REJECTED"
    """Terminal: broke a business rule (reasons recorded); customer notified."""
    PAYMENT_DECLINED = "PAYMENT_DECLINED"
    """Terminal: the gateway declined; customer notified."""
    OUT_OF_STOCK = "OUT_OF_STOCK"
    """Terminal: a line could not be reserved; lines released, authorization voided."""
    SHIPPING_FAILED = "SHIPPING_FAILED"
    """Terminal: the carrier refused; lines released, payment refunded."""
    CANCELLED = "CANCELLED"
    """Terminal: cancelled before shipment; compensated."""
    FAILED = "FAILED"
    """Terminal: a step failed permanently for a technical reason; compensated, dead-lettered."""

    @property
    def terminal(self) -> bool:
        return self in TERMINAL


TERMINAL = frozenset({
    OrderStatus.COMPLETED, OrderStatus.REJECTED, OrderStatus.PAYMENT_DECLINED,
    OrderStatus.OUT_OF_STOCK, OrderStatus.SHIPPING_FAILED, OrderStatus.CANCELLED,
    OrderStatus.FAILED,
})

S = OrderStatus

# Orders the workers are working on: past admission (validation taken), not ended,
# not parked waiting for a person. pipeline.worker.intake bounds how many there are.
IN_PROGRESS = frozenset(OrderStatus) - TERMINAL - {OrderStatus.RECEIVED,
                                                    OrderStatus.NEEDS_ATTENTION}
TRANSITIONS: dict[OrderStatus, frozenset[OrderStatus]] = {
    S.RECEIVED: frozenset({S.VALIDATED, S.COMPENSATING}),
    S.VALIDATED: frozenset({S.AUTHORIZING, S.COMPENSATING}),
    S.AUTHORIZING: frozenset({S.RESERVING, S.COMPENSATING}),
    S.PAYMENT_AUTHORIZED: frozenset({S.RESERVING, S.COMPENSATING}),
    S.RESERVING: frozenset({S.RESERVED, S.COMPENSATING}),
    S.RESERVED: frozenset({S.SHIPPING, S.COMPENSATING}),
    S.SHIPPING: frozenset({S.SHIPPED, S.COMPENSATING}),
    S.SHIPPED: frozenset({S.COMPLETED}),
    S.COMPENSATING: frozenset((TERMINAL - {S.COMPLETED}) | {S.NEEDS_ATTENTION}),
    S.NEEDS_ATTENTION: frozenset({S.COMPENSATING}),
    **{terminal: frozenset() for terminal in TERMINAL},
}

# The order in which the happy path visits statuses; used to tell whether a
# redelivered step's work is already done, and how far compensation must go back.
PROGRESS: tuple[OrderStatus, ...] = (
    S.RECEIVED, S.VALIDATED, S.AUTHORIZING, S.PAYMENT_AUTHORIZED, S.RESERVING, S.RESERVED,
    S.SHIPPING, S.SHIPPED, S.COMPLETED,
)
# A cancellation wins at once from these; from AUTHORIZING it is recorded and the
# payment step honours it; from SHIPPING on it is too late.
CANCELLABLE = frozenset({S.RECEIVED, S.VALIDATED, S.PAYMENT_AUTHORIZED, S.RESERVING,
                         S.RESERVED})
WINDING_DOWN = frozenset({S.COMPENSATING, S.NEEDS_ATTENTION})


def can_transition(current: OrderStatus, new: OrderStatus) -> bool:
    return new in TRANSITIONS[current]


def reached(current: OrderStatus, target: OrderStatus) -> bool:
    """True when an order in `current` has already passed `target` on the happy path."""
    if current in PROGRESS and target in PROGRESS:
        return PROGRESS.index(current) >= PROGRESS.index(target)
    return False


class StockOp(StrEnum):
    RESERVE = "reserve"  # an order line takes stock
    RELEASE = "release"  # compensation gives it back
    RESTOCK = "restock"  # a delivery adds stock


@dataclass(frozen=True)
class StockUpdate:
    """One message for inventory.fifo: group = product id, dedup = ref + product + op.

    `ref` is the order id for reserve/release and the restock id for restock.
    """

    ref: str
    sku: str
    quantity: int
    op: StockOp

    @property
    def group_id(self) -> str:
        return self.sku

    @property
    def update_id(self) -> str:
        """Its stock_updates key, which is also its MessageDeduplicationId."""
        return stock_update_id(self.ref, self.sku, self.op.value)
