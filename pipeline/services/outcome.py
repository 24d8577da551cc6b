"""What a step tells the workflow."""

from __future__ import annotations

from dataclasses import dataclass

from pipeline.domain import OrderStatus


@dataclass(frozen=True)
class StepResult:
    """`proceed`: run the next step. Otherwise the order is winding down
    (COMPENSATING, with `outcome`) or already finished."""

    proceed: bool
    outcome: OrderStatus | None = None
    reasons: tuple[str, ...] = ()
    repeated: bool = False  # the step's effect was already there (a redelivery)
    detail: str = ""

    @classmethod
    def go(cls, detail: str = "", *, repeated: bool = False) -> StepResult:
        return cls(True, detail=detail, repeated=repeated)

    @classmethod
    def stop(cls, outcome: OrderStatus | None, reasons: tuple[str, ...] = (), *,
             repeated: bool = False, detail: str = "") -> StepResult:
        return cls(False, outcome=outcome, reasons=reasons, repeated=repeated,
                   detail=detail or "; ".join(reasons))
