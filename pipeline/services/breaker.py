"""The payment gateway's circuit breaker, its state shared through the store.

Decisions are in pipeline.breaker_state; this applies them with the
store's compare-and-set, so two workers never both probe a half-open breaker.
"""

from __future__ import annotations

from collections.abc import Callable
from decimal import Decimal
from typing import Any, TypeVar

from pipeline.breaker_state import BreakerConfig, BreakerRow, after_call, before_call
from pipeline.errors import CircuitOpen, RetryableError
from pipeline.services.simulators import SimulatedGateway
from pipeline.store import Store
from pipeline.store.clock import now

__all__ = ["Breaker", "GuardedGateway"]

T = TypeVar("T")


class Breaker:
    """A breaker whose state lives in the store, shared by every process."""

    def __init__(self, store: Store, name: str, config: BreakerConfig) -> None:
        self.store = store
        self.name = name
        self.config = config

    def call(self, operation: Callable[[], T]) -> T:
        row = self.store.breaker_row(self.name)
        admission = before_call(row, now(), self.config)
        if not admission.allowed:
            raise CircuitOpen(self.name, admission.retry_after_s)
        if admission.becomes is not None:
            if not self.store.breaker_swap(self.name, row, admission.becomes):
                raise CircuitOpen(self.name, 1.0)  # another caller is probing
            row = admission.becomes
        try:
            result = operation()
        except RetryableError:
            self._record(row, ok=False)
            raise
        self._record(row, ok=True)
        return result

    def _record(self, row: BreakerRow, *, ok: bool) -> None:
        for _ in range(3):  # compare-and-set; re-read when another caller wrote first
            new = after_call(row, ok, now(), self.config)
            if new == row or self.store.breaker_swap(self.name, row, new):
                return
            row = self.store.breaker_row(self.name)


class GuardedGateway:
    """The payment gateway behind a breaker: same calls, refused while open."""

    def __init__(self, gateway: SimulatedGateway, breaker: Breaker) -> None:
        self.gateway = gateway
        self.breaker = breaker

    def authorize(self, key: str, token: str, amount: Decimal, currency: str) -> dict[str, Any]:
        return self.breaker.call(lambda: self.gateway.authorize(key, token, amount, currency))

    def capture(self, key: str, authorization: str, amount: Decimal) -> dict[str, Any]:
        return self.breaker.call(lambda: self.gateway.capture(key, authorization, amount))

    def void(self, key: str, authorization: str) -> dict[str, Any]:
        return self.breaker.call(lambda: self.gateway.void(key, authorization))

    def refund(self, key: str, capture: str, amount: Decimal) -> dict[str, Any]:
        return self.breaker.call(lambda: self.gateway.refund(key, capture, amount))

    def find(self, key: str) -> dict[str, Any] | None:
        return self.breaker.call(lambda: self.gateway.find(key))
