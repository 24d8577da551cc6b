"""Chaos: orders keep flowing while worker processes are SIGKILLed, the emulator is
frozen for 10 s and restarted on its persisted state, and the gateway fails 20 % of
calls transiently. Every order must end terminal with a clean audit.

It runs on its own emulator (a fixed port, so a restart keeps the endpoint),
queue prefix and database; producers are `pipeline submit` processes, so a
producer that gives up mid-outage is simply run again (submit is idempotent).
"""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest

from pipeline.audit import audit
from pipeline.demo import CATALOG, KINDS, sample_order
from pipeline.procfile import ProcessGroup, read_procfile
from pipeline.sqs.emulator import Emulator, start_emulator
from pipeline.store import Store, create_db_engine, outbox
from pipeline.testing import PIPELINE_LANES, WORKER_LANES, free_port, wait_until

pytestmark = pytest.mark.integration
ORDERS = 150
ROOT = Path(__file__).resolve().parents[2]
ARTIFACTS = ROOT / "test-artifacts"
PIPELINE = str(Path(sys.executable).parent / "pipeline")


def children(pid: int) -> list[int]:
    found = []
    for task in Path(f"/proc/{pid}/task").glob("*/children"):
        found += [int(p) for p in task.read_text().split()]
    return found


class Chaos:
    """An emulator that can be frozen and restarted, and the lanes that use it."""

    def __init__(self, tmp: Path) -> None:
        self.port = free_port()
        self.data_dir = tmp / "fauxqs"
        self.emulator: Emulator = start_emulator(self.port, data_dir=self.data_dir)
        self.env = {
            **os.environ,
            "PIPELINE_SQS_ENDPOINT_URL": self.emulator.endpoint,
            "PIPELINE_QUEUE_PREFIX": f"c{uuid.uuid4().hex[:6]}-",
            "PIPELINE_DATABASE_URL": f"sqlite:///{tmp / 'chaos.db'}",
            "PIPELINE_WAIT_TIME_SECONDS": "2",
            "PIPELINE_CONNECT_TIMEOUT_S": "2",
            "PIPELINE_GATEWAY_TRANSIENT_ERROR_RATE": "0.2",
            # An order whose compensation gave up waits for attention; here the
            # reconciler retries it every few seconds instead of every minute.
            "PIPELINE_RECONCILE_INTERVAL_S": "3",
            "PIPELINE_ATTENTION_RETRY_S": "5",
        }
        self.lanes = ProcessGroup(self.env, tmp / "logs")
        self.events: list[str] = []

    def run(self, *args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
        return subprocess.run([PIPELINE, *args], input=stdin, text=True, capture_output=True,
                              env=self.env, cwd=ROOT, timeout=120, check=False)

    def restart_emulator(self) -> None:
        self.emulator.stop()
        self.emulator = start_emulator(self.port, data_dir=self.data_dir)
        self.events.append("emulator restarted on its persisted state")

    def freeze_emulator(self, seconds: float) -> None:
        os.kill(self.emulator.process.pid, signal.SIGSTOP)
        time.sleep(seconds)  # the outage itself, not a synchronization
        os.kill(self.emulator.process.pid, signal.SIGCONT)
        self.events.append(f"emulator frozen for {seconds:.0f}s")

    def kill_a_worker_process(self, rng: random.Random) -> None:
        pool_children = [pid for r in self.lanes.running if r.process.poll() is None
                         for pid in children(r.process.pid)]
        if pool_children:
            victim = rng.choice(pool_children)
            os.kill(victim, signal.SIGKILL)
            self.events.append(f"SIGKILL pool process {victim}")

    def supervise(self) -> None:
        """What a process manager does: start a lane again when it has died."""
        for running in self.lanes.dead():
            self.lanes.running.remove(running)
            running.log.close()
            self.lanes.start(running.line)
            self.events.append(f"lane {running.line.name} restarted after exit "
                               f"{running.process.returncode}")

    def stop(self) -> None:
        self.lanes.stop()
        self.emulator.stop()


@pytest.fixture
def chaos(tmp_path: Path) -> Iterator[Chaos]:
    c = Chaos(tmp_path)
    try:
        provisioned = c.run("provision")
        assert provisioned.returncode == 0, provisioned.stderr
        for sku, (price, quantity) in CATALOG.items():
            assert c.run("stock", "set", sku, str(quantity * 3), "--price",
                         str(price)).returncode == 0
        for line in read_procfile():
            if line.name in PIPELINE_LANES:
                c.lanes.start(line)
        wait_until(lambda: all("ready." in (c.lanes.log_dir / f"{name}.log").read_text()
                               for name in WORKER_LANES), timeout=60,
                   message="every lane ready")
        yield c
    finally:
        c.stop()


def submit_until_accepted(chaos: Chaos, documents: list[dict[str, Any]]) -> int:
    """One producer: submit, and submit again while SQS is unreachable. Returns tries."""
    payload = "\n".join(json.dumps(d) for d in documents)
    for attempt in range(1, 60):
        done = chaos.run("submit", "-", stdin=payload)
        if done.returncode == 0:
            return attempt
        assert "could not be published" in done.stderr, done.stderr
        time.sleep(1)  # back off before producing again (a producer's pace)
    raise AssertionError("a producer never got its orders accepted")


@pytest.mark.timeout(600)
def test_every_order_ends_and_audits_clean_through_kills_freeze_and_restart(
        chaos: Chaos) -> None:
    rng = random.Random(5)
    documents = [sample_order(KINDS[n % len(KINDS)], n) for n in range(ORDERS)]
    batches = [documents[i:i + 15] for i in range(0, ORDERS, 15)]
    tries: list[int] = []

    def produce() -> None:
        for batch in batches:
            tries.append(submit_until_accepted(chaos, batch))

    pool = ThreadPoolExecutor(1)
    producer = pool.submit(produce)
    started = time.monotonic()
    froze = restarted = False
    while time.monotonic() - started < 45:
        chaos.supervise()
        chaos.kill_a_worker_process(rng)
        elapsed = time.monotonic() - started
        if not froze and elapsed > 8:
            chaos.freeze_emulator(10)
            froze = True
        elif not restarted and elapsed > 28:
            chaos.restart_emulator()
            restarted = True
        time.sleep(3)  # the controller's pace: a kill every few seconds
    producer.result(timeout=300)  # re-raises a producer's failure
    pool.shutdown()

    store = Store(create_db_engine(chaos.env["PIPELINE_DATABASE_URL"]))
    ids = [d["orderId"] for d in documents]

    def open_orders() -> list[str]:
        chaos.supervise()
        return [i for i in ids if not store.status(i).terminal]

    wait_until(lambda: not open_orders(), timeout=400, interval=1,
               message=f"every order terminal (chaos: {chaos.events})")
    report = audit(store)
    ARTIFACTS.mkdir(exist_ok=True)
    (ARTIFACTS / "chaos.json").write_text(json.dumps({
        "events": chaos.events, "producerTries": tries, "audit": report.as_dict(),
        "secondsToSettle": round(time.monotonic() - started, 1)}, indent=2, default=str))
    assert report.clean, (report.violations, chaos.events)
    assert sum(report.orders_by_status.values()) == ORDERS
    assert report.orders_by_status.get("COMPLETED", 0) > ORDERS // 3, report.orders_by_status
    assert any("SIGKILL" in e for e in chaos.events) and froze and restarted
    # Business events made it to SNS despite the outage: the outbox drains.
    def drained() -> bool:
        chaos.supervise()
        return not outbox.pending(store.engine)

    wait_until(drained, timeout=60, message="the outbox relay to publish every event")
