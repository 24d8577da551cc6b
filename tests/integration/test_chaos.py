"""Chaos: orders keep flowing while worker processes are SIGKILLed, the emulator is
frozen for 10 s and restarted on its persisted state, messages are destroyed
behind the workers' backs, and the gateway fails 20 % of calls transiently. Every
order must end, with a clean audit (pipeline.dev.chaos drives the faults; `make chaos`
is the long version)."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from sqlalchemy import func, select

from pipeline.dev.chaos import Chaos
from pipeline.dev.demo import CATALOG, KINDS, sample_order
from pipeline.ops.audit import audit
from pipeline.store import Store, create_db_engine, outbox
from pipeline.store import schema as t
from pipeline.store.db import reading
from pipeline.testing import PIPELINE_LANES, WORKER_LANES, wait_until

pytestmark = pytest.mark.integration
ORDERS = 150
ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts"
# Faster recovery than production, as a test environment would set it: a dead
# worker's messages come back in 20 s, an order waiting for attention is retried
# every 5 s, lost messages are re-driven within 20 s x maxReceiveCount + 10 s.
CHAOS_SETTINGS = {"PIPELINE_GATEWAY_TRANSIENT_ERROR_RATE": "0.2",
                  "PIPELINE_VISIBILITY_CAP_S": "20", "PIPELINE_RECONCILE_INTERVAL_S": "3",
                  "PIPELINE_RECONCILE_SLACK_S": "10", "PIPELINE_ATTENTION_RETRY_S": "5"}


@pytest.fixture
def chaos(tmp_path: Path) -> Iterator[Chaos]:
    c = Chaos(tmp_path, f"sqlite:///{tmp_path / 'chaos.db'}", CHAOS_SETTINGS)
    try:
        c.start({sku: (price, quantity * 3) for sku, (price, quantity) in CATALOG.items()},
                PIPELINE_LANES)
        wait_until(lambda: all("ready." in (c.lanes.log_dir / f"{name}.log").read_text()
                               for name in WORKER_LANES), timeout=60,
                   message="every lane ready")
        yield c
    finally:
        c.stop()


@pytest.mark.timeout(600)
def test_every_order_ends_and_audits_clean_through_kills_freeze_restart_and_loss(
        chaos: Chaos) -> None:
    documents = [sample_order(KINDS[n % len(KINDS)], n) for n in range(ORDERS)]
    batches = [documents[i:i + 15] for i in range(0, ORDERS, 15)]
    tries: list[int] = []

    def produce() -> None:
        for batch in batches:
            tries.append(chaos.submit_until_accepted(batch))

    pool = ThreadPoolExecutor(1)
    producer = pool.submit(produce)
    started = time.monotonic()
    froze = restarted = lost = False
    while time.monotonic() - started < 45:
        chaos.supervise()
        chaos.kill_a_pool_process()
        chaos.destroy_messages(0.05)
        elapsed = time.monotonic() - started
        if not lost and elapsed > 4:
            lost = chaos.destroy_one("payments")  # an authorization lost for good
        if not froze and elapsed > 8:
            chaos.freeze_emulator(10)
            froze = True
        elif not restarted and elapsed > 28:
            chaos.restart_emulator()
            restarted = True
        time.sleep(3)  # the controller's pace: a kill every few seconds
    producer.result(timeout=300)  # re-raises a producer's failure
    pool.shutdown()

    store = Store(create_db_engine(chaos.database_url))
    ids = [d["orderId"] for d in documents]

    def open_orders() -> list[str]:
        chaos.supervise()
        return [i for i in ids if not store.status(i).terminal]

    wait_until(lambda: not open_orders(), timeout=400, interval=1,
               message=f"every order terminal (chaos: {chaos.events})")
    report = audit(store)
    ARTIFACTS.mkdir(exist_ok=True)
    (ARTIFACTS / "chaos.json").write_text(json.dumps({
        "events": chaos.events, "producerTries": tries, "destroyed": chaos.destroyed,
        "audit": report.as_dict(), "secondsToSettle": round(time.monotonic() - started, 1)},
        indent=2, default=str))
    assert report.clean, (report.violations, chaos.events)
    assert sum(report.orders_by_status.values()) == ORDERS
    assert report.orders_by_status.get("COMPLETED", 0) > ORDERS // 3, report.orders_by_status
    assert any("SIGKILL" in e for e in chaos.events) and froze and restarted and lost
    with reading(store.engine) as conn:  # the lost message's order was re-driven
        redriven = conn.execute(select(func.count()).select_from(t.steps).where(
            t.steps.c.outcome == "reconciled")).scalar_one()
    assert redriven >= 1
    assert chaos.exits == []  # no lane died of anything but the kills

    def drained() -> bool:  # business events reach SNS despite the outage
        chaos.supervise()
        return not outbox.pending(store.engine)

    wait_until(drained, timeout=60, message="the outbox relay to publish every event")
