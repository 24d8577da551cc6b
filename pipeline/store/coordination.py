"""What the processes share to coordinate: leases (one reconciler at a time), the
watchdogs' receive reports (is a lane consuming?), and the circuit breakers' rows."""

from __future__ import annotations

from datetime import datetime, timedelta

from sqlalchemy import Engine, RowMapping, select, update

from pipeline.breaker_state import BreakerRow, BreakerState
from pipeline.store import outbox, prepared
from pipeline.store import schema as t
from pipeline.store.clock import aware, aware_or_none, now
from pipeline.store.db import reading
from pipeline.store.prepared import insert_once
from pipeline.store.rows import ConsumerAge

__all__ = ["Coordination"]


def _breaker(row: RowMapping) -> BreakerRow:
    return BreakerRow(BreakerState(row["state"]), row["failures"],
                      aware_or_none(row["changed_at"]))


class Coordination:
    engine: Engine

    # ---------------------------------------------------------------- leases
    def take_lease(self, name: str, holder: str, duration_s: float) -> bool:
        """Hold `name` for `duration_s` (renewing one's own lease); False when another
        holder's lease has not run out."""
        stamp = now()
        until = stamp + timedelta(seconds=duration_s)
        with self.engine.begin() as conn:
            if insert_once(conn, t.leases, {"name": name, "holder": holder[:128],
                                             "until": until}):
                return True
            return bool(conn.execute(update(t.leases).where(
                t.leases.c.name == name,
                (t.leases.c.until < stamp) | (t.leases.c.holder == holder[:128]),
            ).values(holder=holder[:128], until=until)).rowcount == 1)

    def lease_until(self, name: str) -> datetime | None:
        """When `name`'s current lease runs out (None: never taken)."""
        with reading(self.engine) as conn:
            until = conn.execute(select(t.leases.c.until).where(
                t.leases.c.name == name)).scalar_one_or_none()
        return aware_or_none(until)

    def record_consumers(self, host: str, lane: str, ages: dict[str, float]) -> None:
        """A worker's watchdog: seconds since its last receive, per queue."""
        stamp = now()
        with self.engine.begin() as conn:
            for queue, age in ages.items():
                values = {"lane": lane, "reported_at": stamp,
                          "last_receive_at": stamp - timedelta(seconds=age)}
                if not conn.execute(update(t.consumers).where(
                        t.consumers.c.host == host, t.consumers.c.queue == queue)
                        .values(**values)).rowcount:
                    insert_once(conn, t.consumers, {"host": host, "queue": queue, **values})

    def consumer_ages(self, *, reported_within_s: float = 60.0) -> list[ConsumerAge]:
        """Per live worker (one that reported recently) and queue: the last receive's age."""
        stamp = now()
        with reading(self.engine) as conn:
            rows = conn.execute(select(t.consumers).where(
                t.consumers.c.reported_at >= stamp - timedelta(seconds=reported_within_s))
                .order_by(t.consumers.c.lane, t.consumers.c.queue)).mappings().all()
        return [ConsumerAge(r["lane"], r["queue"], r["host"],
                            round((stamp - aware(r["last_receive_at"])).total_seconds(), 1))
                for r in rows]

    # ------------------------------------------------------------- breakers
    def breaker_row(self, name: str) -> BreakerRow:
        with reading(self.engine) as conn:
            row = conn.execute(prepared.BREAKER, {"name": name}).mappings().first()
        return _breaker(row) if row is not None else BreakerRow()

    def breaker_swap(self, name: str, expected: BreakerRow, new: BreakerRow) -> bool:
        """Compare-and-set a breaker's row; False if it changed meanwhile."""
        values = {"state": new.state.value, "failures": new.failures,
                  "changed_at": new.changed_at}
        with self.engine.begin() as conn:
            swapped = (expected == BreakerRow() and insert_once(
                conn, t.circuit_breakers, {"name": name, **values})) or conn.execute(
                update(t.circuit_breakers).where(
                    t.circuit_breakers.c.name == name,
                    t.circuit_breakers.c.state == expected.state.value,
                    t.circuit_breakers.c.failures == expected.failures,
                ).values(**values)).rowcount == 1
            if swapped and new.state != expected.state:
                outbox.health(conn, f"breaker_{new.state.value.lower()}",
                              {"breaker": name, "state": new.state.value,
                               "failures": new.failures},
                              severity="critical" if new.state.value == "OPEN" else "info")
            return bool(swapped)

    def breakers(self) -> dict[str, BreakerRow]:
        with reading(self.engine) as conn:
            rows = conn.execute(select(t.circuit_breakers)
                                .order_by(t.circuit_breakers.c.name)).mappings().all()
        return {r["name"]: _breaker(r) for r in rows}
