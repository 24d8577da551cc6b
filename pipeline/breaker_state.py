"""Circuit-breaker decisions (pure): closed → open → half-open → closed.

The state is shared by every worker through the store (one row per breaker),
so one process's failures open it for all. Pure decisions live here; the
store applies them with compare-and-set so two workers never both probe.

* CLOSED: calls go through; `failure_threshold` consecutive transient
  failures open it.
* OPEN: calls are refused for `open_s` with CircuitOpen(retry_after); the
  payment step then defers its message instead of failing the order.
* HALF_OPEN: one caller probes; success closes, failure re-opens. A probe
  that never reports back (its worker died) is replaced after `open_s`.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import datetime
from enum import StrEnum

__all__ = ["Admission", "BreakerConfig", "BreakerRow", "BreakerState", "after_call",
           "before_call"]


class BreakerState(StrEnum):
    CLOSED = "CLOSED"
    OPEN = "OPEN"
    HALF_OPEN = "HALF_OPEN"


@dataclass(frozen=True)
class BreakerConfig:
    failure_threshold: int = 5
    open_s: float = 10.0


@dataclass(frozen=True)
class BreakerRow:
    state: BreakerState = BreakerState.CLOSED
    failures: int = 0
    changed_at: datetime | None = None  # when it last opened or started probing


@dataclass(frozen=True)
class Admission:
    allowed: bool
    becomes: BreakerRow | None = None  # the row to compare-and-set before calling
    retry_after_s: float = 0.0


def before_call(row: BreakerRow, now: datetime, config: BreakerConfig) -> Admission:
    if row.state is BreakerState.CLOSED:
        return Admission(True)
    elapsed = (now - row.changed_at).total_seconds() if row.changed_at else config.open_s
    if elapsed < config.open_s:
        return Admission(False, retry_after_s=max(config.open_s - elapsed, 0.5))
    # Open long enough, or a probe went silent: this caller probes.
    return Admission(True, becomes=BreakerRow(BreakerState.HALF_OPEN, row.failures, now))


def after_call(row: BreakerRow, ok: bool, now: datetime, config: BreakerConfig) -> BreakerRow:
    if ok:
        return BreakerRow()
    failures = row.failures + 1
    if row.state is BreakerState.HALF_OPEN or failures >= config.failure_threshold:
        return BreakerRow(BreakerState.OPEN, failures, now)
    return replace(row, failures=failures)

