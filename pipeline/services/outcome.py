"""What a step tells the workflow, and how it records itself with its change."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

from pipeline.domain import OrderStatus

if TYPE_CHECKING:
    from sqlalchemy import Connection


@dataclass(frozen=True)
class StepResult:
    """`proceed`: run the next step. Otherwise the order is winding down
    (COMPENSATING, with `outcome`) or already finished."""

    proceed: bool
    outcome: OrderStatus | None = None
    reasons: tuple[str, ...] = ()
    repeated: bool = False  # the step's effect was already there (a redelivery)
    detail: str = ""
    next_sent: bool = False  # what follows is sent already, or nothing does (the order ended)

    @classmethod
    def go(cls, detail: str = "", *, repeated: bool = False,
           next_sent: bool = False) -> StepResult:
        return cls(True, detail=detail, repeated=repeated, next_sent=next_sent)

    @classmethod
    def stop(cls, outcome: OrderStatus | None, reasons: tuple[str, ...] = (), *,
             repeated: bool = False, detail: str = "") -> StepResult:
        return cls(False, outcome=outcome, reasons=reasons, repeated=repeated,
                   detail=detail or "; ".join(reasons))


class Record(Protocol):
    """Writes the step's timeline row inside the transaction that makes its change,
    so no reader ever sees the change without the row (or the row without the
    change). A service calls it last in that transaction: `return record(conn, result)`.
    """

    def __call__(self, conn: Connection, result: StepResult) -> StepResult: ...


def unrecorded(conn: Connection, result: StepResult) -> StepResult:
    """For callers outside a step (the CLI, tests): nothing to record."""
    return result
