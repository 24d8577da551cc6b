"""A simulated payment gateway and carrier: real components, not stubs.

Each keeps its own books (`external_calls`: every call received; and
`external_effects`: one row per idempotency key that had an effect), written
in its own transaction as a remote system would. Those books are what prove
there was no double charge: an idempotency key can have one effect at most.

Both have settings for latency, transient errors, declines/refusals and
timeouts. A transient error happens either before the effect, or after it (the
response was lost): the second kind is exactly what idempotency keys are for.
Deterministic triggers for tests: payment token ``tok_decline`` is always
declined; postal code ``00000`` is always refused by the carrier.
"""

from __future__ import annotations

import hashlib
import random
import time
from collections.abc import Callable
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from sqlalchemy import Engine, bindparam, select
from sqlalchemy.exc import IntegrityError

from pipeline.errors import GatewayUnavailable
from pipeline.store import schema as t
from pipeline.store.clock import now
from pipeline.store.db import reading
from pipeline.store.prepared import insert_into

DECLINED_TOKEN = "tok_decline"
UNDELIVERABLE_POSTCODE = "00000"


@dataclass(frozen=True)
class Faults:
    latency_ms: float = 0.0
    transient_error_rate: float = 0.0
    refusal_rate: float = 0.0
    timeout_ms: float = 2000.0


_EFFECT = select(t.external_effects.c.result).where(
    t.external_effects.c.system == bindparam("system"),
    t.external_effects.c.idempotency_key == bindparam("key"))


class _RemoteSystem:
    system = ""

    def __init__(self, engine: Engine, faults: Faults, rng: random.Random) -> None:
        self.engine = engine
        self.faults = faults
        self.rng = rng

    def _call(self, operation: str, key: str, amount: Decimal | None,
              decide: Callable[[], dict[str, Any]]) -> dict[str, Any]:
        faults = self.faults
        latency = faults.latency_ms * (0.5 + self.rng.random())
        if latency > faults.timeout_ms:
            time.sleep(faults.timeout_ms / 1000)
            raise GatewayUnavailable(
                f"{self.system} {operation}: no answer in {faults.timeout_ms} ms")
        if latency:
            time.sleep(latency / 1000)
        roll = self.rng.random()
        if roll < faults.transient_error_rate / 2:
            self._log(operation, key, "failed", amount, None)
            raise GatewayUnavailable(f"{self.system} {operation}: 503 service unavailable")
        result, effect = self._apply_once(operation, key, amount, decide)
        if roll < faults.transient_error_rate:
            # The effect happened but the response was lost on the way back.
            raise GatewayUnavailable(f"{self.system} {operation}: connection reset after request")
        return result | {"replayed": effect == "replayed"}

    def _apply_once(self, operation: str, key: str, amount: Decimal | None,
                    decide: Callable[[], dict[str, Any]]) -> tuple[dict[str, Any], str]:
        try:
            with self.engine.begin() as conn:
                stored = conn.execute(_EFFECT, {"system": self.system, "key": key}
                                      ).scalar_one_or_none()
                if stored is None:
                    result = decide()
                    stamp = now()
                    conn.execute(insert_into(t.external_effects), {
                        "system": self.system, "idempotency_key": key, "operation": operation,
                        "reference": result["reference"], "result": result, "amount": amount,
                        "created_at": stamp})
                    conn.execute(insert_into(t.external_calls), {
                        "system": self.system, "operation": operation, "idempotency_key": key,
                        "effect": "applied", "amount": amount, "reference": result["reference"],
                        "received_at": stamp})
                    return result, "applied"
        except IntegrityError:
            # Two calls with one key raced (PostgreSQL); the first one's effect stands.
            return self._apply_once(operation, key, amount, decide)
        self._log(operation, key, "replayed", amount, stored.get("reference"))
        return dict(stored), "replayed"

    def find(self, key: str) -> dict[str, Any] | None:
        """What the request with idempotency key `key` did, if it reached us at all.

        A remote system's "retrieve by idempotency key" (payment gateways and
        carriers offer one): how a caller whose response was lost learns the
        truth without repeating the request.
        """
        faults = self.faults
        latency = faults.latency_ms * (0.5 + self.rng.random())
        if latency > faults.timeout_ms:
            time.sleep(faults.timeout_ms / 1000)
            raise GatewayUnavailable(f"{self.system} lookup: no answer in {faults.timeout_ms} ms")
        if latency:
            time.sleep(latency / 1000)
        if self.rng.random() < faults.transient_error_rate / 2:
            raise GatewayUnavailable(f"{self.system} lookup: 503 service unavailable")
        with reading(self.engine) as conn:
            row = conn.execute(select(t.external_effects.c.result, t.external_effects.c.amount)
                               .where(t.external_effects.c.system == self.system,
                                      t.external_effects.c.idempotency_key == key)).first()
        self._log("lookup", key, "lookup", None, row.result.get("reference") if row else None)
        if row is None:
            return None
        return {**row.result, "amount": None if row.amount is None else str(row.amount)}

    def _log(self, operation: str, key: str, effect: str, amount: Decimal | None,
             reference: str | None) -> None:
        with self.engine.begin() as conn:
            conn.execute(insert_into(t.external_calls), {
                "system": self.system, "operation": operation, "idempotency_key": key,
                "effect": effect, "amount": amount, "reference": reference,
                "received_at": now()})

    @staticmethod
    def _reference(prefix: str, key: str) -> str:
        return prefix + hashlib.sha256(key.encode()).hexdigest()[:16]


class SimulatedGateway(_RemoteSystem):
    """Authorize, capture, void, refund; idempotent per key."""

    system = "gateway"

    def authorize(self, key: str, token: str, amount: Decimal, currency: str) -> dict[str, Any]:
        def decide() -> dict[str, Any]:
            if token == DECLINED_TOKEN:
                return {"approved": False, "reason": "card declined (tok_decline)",
                        "reference": self._reference("dec_", key)}
            if self.rng.random() < self.faults.refusal_rate:
                return {"approved": False, "reason": "insufficient funds",
                        "reference": self._reference("dec_", key)}
            return {"approved": True, "reference": self._reference("auth_", key),
                    "currency": currency}
        return self._call("authorize", key, amount, decide)

    def capture(self, key: str, authorization: str, amount: Decimal) -> dict[str, Any]:
        return self._call("capture", key, amount, lambda: {
            "approved": True, "reference": self._reference("cap_", key),
            "authorization": authorization})

    def void(self, key: str, authorization: str) -> dict[str, Any]:
        return self._call("void", key, None, lambda: {
            "approved": True, "reference": self._reference("void_", key),
            "authorization": authorization})

    def refund(self, key: str, capture: str, amount: Decimal) -> dict[str, Any]:
        return self._call("refund", key, amount, lambda: {
            "approved": True, "reference": self._reference("ref_", key), "capture": capture})


class SimulatedCarrier(_RemoteSystem):
    """Creates shipments with tracking numbers; idempotent per key."""

    system = "carrier"

    def create_shipment(self, key: str, address: dict[str, Any], parcels: int) -> dict[str, Any]:
        def decide() -> dict[str, Any]:
            if address.get("postalCode") == UNDELIVERABLE_POSTCODE:
                return {"accepted": False, "reason": "address undeliverable (postal code 00000)",
                        "reference": self._reference("rej_", key)}
            if self.rng.random() < self.faults.refusal_rate:
                return {"accepted": False, "reason": "carrier refused the parcel",
                        "reference": self._reference("rej_", key)}
            tracking = "TRK" + hashlib.sha256(key.encode()).hexdigest()[:12].upper()
            return {"accepted": True, "reference": tracking, "parcels": parcels}
        return self._call("ship", key, None, decide)

    def cancel_shipment(self, key: str, tracking_number: str) -> dict[str, Any]:
        """Void a shipment's label before pickup; idempotent per key."""
        return self._call("cancel", key, None, lambda: {
            "cancelled": True, "reference": tracking_number})
