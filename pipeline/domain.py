"""The order as customers send it, and the life cycle of an order.

The document format is the seeds' message format: camelCase fields, money as
decimals, a payment *token* (never a card number).
"""

from __future__ import annotations

import re
import uuid
from decimal import Decimal
from enum import StrEnum
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, EmailStr, Field, ValidationError, field_validator

from pipeline.errors import InvalidOrder

__all__ = [
    "TERMINAL",
    "TRANSITIONS",
    "Address",
    "Contact",
    "LineItem",
    "Order",
    "OrderStatus",
    "PaymentInfo",
    "can_transition",
    "parse_order",
]

Money = Annotated[Decimal, Field(ge=0, max_digits=12, decimal_places=2)]
CARD_NUMBER = re.compile(r"^\d{12,19}$")


class _Doc(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True, frozen=True)


class LineItem(_Doc):
    product_id: str = Field(alias="productId", min_length=1, max_length=64,
                            pattern=r"^[A-Za-z0-9_.:-]+$")
    quantity: int = Field(ge=1)
    price: Money


class PaymentInfo(_Doc):
    token: str = Field(min_length=3, max_length=128)

    @field_validator("token")
    @classmethod
    def _not_a_card_number(cls, value: str) -> str:
        if CARD_NUMBER.match(value.replace(" ", "").replace("-", "")):
            raise ValueError("looks like a card number; send a payment token instead")
        return value


class Address(_Doc):
    line1: str = Field(min_length=1, max_length=200)
    line2: str | None = Field(default=None, max_length=200)
    city: str = Field(min_length=1, max_length=100)
    state: str | None = Field(default=None, max_length=100)
    postal_code: str = Field(alias="postalCode", min_length=2, max_length=16)
    country: str = Field(pattern=r"^[A-Z]{2}$", description="ISO 3166-1 alpha-2")


class Contact(_Doc):
    email: EmailStr | None = None
    phone: str | None = Field(default=None, pattern=r"^\+[1-9]\d{6,14}$")


class Order(_Doc):
    """An order document (the seeds' format)."""

    order_id: str = Field(alias="orderId", default_factory=lambda: f"ord_{uuid.uuid4().hex[:20]}",
                          min_length=3, max_length=64, pattern=r"^[A-Za-z0-9_-]+$")
    customer_id: str = Field(alias="customerId", min_length=1, max_length=64)
    items: list[LineItem] = Field(min_length=1)
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


def parse_order(data: Any) -> Order:
    """Validate a document; raise InvalidOrder with one message per bad field."""
    if not isinstance(data, dict):
        raise InvalidOrder([f"expected a JSON object, got {type(data).__name__}"])
    try:
        return Order.model_validate(data)
    except ValidationError as error:
        problems = []
        for item in error.errors():
            where = ".".join(str(part) for part in item["loc"]) or "order"
            problems.append(f"{where}: {item['msg']}")
        raise InvalidOrder(problems) from None


class OrderStatus(StrEnum):
    """Where an order is. Only the store changes it (see TRANSITIONS)."""

    RECEIVED = "RECEIVED"
    """Stored and its workflow enqueued; validation has not run yet."""
    VALIDATED = "VALIDATED"
    """Schema and business rules passed."""
    PAYMENT_AUTHORIZED = "PAYMENT_AUTHORIZED"
    """The gateway authorized the total; nothing captured yet."""
    RESERVING = "RESERVING"
    """One reservation per line is on inventory.fifo; waiting for all of them."""
    RESERVED = "RESERVED"
    """Every line is reserved."""
    SHIPPED = "SHIPPED"
    """Shipment created and payment captured; the customer is being told."""
    COMPENSATING = "COMPENSATING"
    """A step failed for good; completed steps are being undone. `outcome` says how it will end."""
    COMPLETED = "COMPLETED"
    """Terminal: shipped, captured, customer notified."""
    REJECTED = "REJECTED"
    """Terminal: broke a business rule (reasons recorded); customer notified."""
    PAYMENT_DECLINED = "PAYMENT_DECLINED"
    """Terminal: the gateway declined; customer notified."""
    OUT_OF_STOCK = "OUT_OF_STOCK"
    """Terminal: a line could not be reserved; lines released, authorization voided."""
    SHIPPING_FAILED = "SHIPPING_FAILED"
    """Terminal: the carrier refused; lines released, payment voided or refunded."""
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
TRANSITIONS: dict[OrderStatus, frozenset[OrderStatus]] = {
    S.RECEIVED: frozenset({S.VALIDATED, S.COMPENSATING}),
    S.VALIDATED: frozenset({S.PAYMENT_AUTHORIZED, S.COMPENSATING}),
    S.PAYMENT_AUTHORIZED: frozenset({S.RESERVING, S.COMPENSATING}),
    S.RESERVING: frozenset({S.RESERVED, S.COMPENSATING}),
    S.RESERVED: frozenset({S.SHIPPED, S.COMPENSATING}),
    S.SHIPPED: frozenset({S.COMPLETED}),
    S.COMPENSATING: frozenset(TERMINAL - {S.COMPLETED}),
    **{terminal: frozenset() for terminal in TERMINAL},
}

# The order in which the happy path visits statuses; used to tell whether a
# redelivered step's work is already done.
PROGRESS: tuple[OrderStatus, ...] = (
    S.RECEIVED, S.VALIDATED, S.PAYMENT_AUTHORIZED, S.RESERVING, S.RESERVED, S.SHIPPED,
    S.COMPLETED,
)


def can_transition(current: OrderStatus, new: OrderStatus) -> bool:
    return new in TRANSITIONS[current]


def reached(current: OrderStatus, target: OrderStatus) -> bool:
    """True when an order in `current` has already passed `target` on the happy path."""
    if current in PROGRESS and target in PROGRESS:
        return PROGRESS.index(current) >= PROGRESS.index(target)
    return False
