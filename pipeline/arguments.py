"""What a step's message carries, checked before anything runs: ids, quantities,
stock operations; and the names a delivery goes by on the timeline."""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

from config.topology import Task
from pipeline.domain import StockOp, StockUpdate
from pipeline.errors import InvalidTaskArguments
from pipeline.keys import ID_PATTERN
from pipeline.services.inventory import parse_op
from pipeline.workflow import Undo

__all__ = ["ARITY", "MAX_ID", "MAX_QUANTITY", "check_arguments", "checked_id", "line_update",
           "restock_update", "step_name", "subject"]

_ID = re.compile(ID_PATTERN)
MAX_ID = 64
MAX_QUANTITY = 1_000_000
# Positional arguments of each step's task (keyword arguments are refused).
ARITY = {Task.APPLY_LINE: 4, Task.RESTOCK: 3, **{task: 1 for task in (
    Task.VALIDATE, Task.AUTHORIZE, Task.RESERVE, Task.RELEASE, Task.SHIP,
    Task.CANCEL_SHIPMENT, Task.REVERSE_PAYMENT, Task.NOTIFY)}}


def checked_id(value: Any, what: str) -> str:
    if not isinstance(value, str) or not 0 < len(value) <= MAX_ID or not _ID.match(value):
        raise InvalidTaskArguments(f"{what} must be an id of 1-{MAX_ID} characters "
                                   f"[A-Za-z0-9_.-], got {str(value)[:80]!r}")
    return value


def _quantity(value: Any) -> int:
    if type(value) is not int or not 0 < value <= MAX_QUANTITY:
        raise InvalidTaskArguments(f"quantity must be an integer 1-{MAX_QUANTITY}, "
                                   f"got {str(value)[:40]!r}")
    return value


def line_update(args: Sequence[Any]) -> StockUpdate:
    """An apply_line message's (order id, product id, quantity, reserve | release)."""
    order_id, sku, quantity, op = args
    return StockUpdate(checked_id(order_id, "order id"), checked_id(sku, "product id"),
                       _quantity(quantity),
                       parse_op(op, allowed=(StockOp.RESERVE, StockOp.RELEASE)))


def restock_update(args: Sequence[Any]) -> StockUpdate:
    """A restock message's (restock id, product id, quantity)."""
    restock_id, sku, quantity = args
    return StockUpdate(checked_id(restock_id, "restock id"), checked_id(sku, "product id"),
                       _quantity(quantity), StockOp.RESTOCK)


def check_arguments(task: Task, args: Sequence[Any]) -> None:
    if len(args) != ARITY[task]:
        raise InvalidTaskArguments(f"{task.value} takes {ARITY[task]} argument(s), "
                                   f"got {len(args)}")
    checked_id(args[0], "order id" if task is not Task.RESTOCK else "restock id")


def step_name(task: Task, args: Sequence[Any]) -> str:
    """The step as the order's timeline records it."""
    if task is Task.APPLY_LINE and len(args) >= 4:
        return f"{args[3]}:{args[1]}"
    return {
        Task.VALIDATE: "validate", Task.AUTHORIZE: "authorize_payment",
        Task.RESERVE: "reserve_inventory", Task.RELEASE: "release_inventory",
        Task.SHIP: "ship", Task.CANCEL_SHIPMENT: Undo.CANCEL_SHIPMENT.value,
        Task.REVERSE_PAYMENT: Undo.REVERSE_PAYMENT.value, Task.NOTIFY: "notify",
        Task.RESTOCK: "restock",
    }.get(task, task.value)


def subject(task: Task, args: Sequence[Any]) -> str:
    """The order (or restock) a delivery is about, for the timeline and dead letters."""
    return str(args[0])[:MAX_ID] if args else "-"
