"""A step that never returns is killed at its time limit; its lane goes on, and its
order ends.

Without time limits a wedged step held its prefork process for good, and the
visibility keeper kept its message hidden for good: two of them and the orders lane
(two processes) ran nothing more, with every order behind them stranded. With the
limits but before the kill was decided on like any failure, a step killed on every
attempt went to the DLQ without a reason and its order waited in SHIPPING for good
(the reconciler's re-drive was killed the same way).
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from config.settings import STEP_KILL_GRACE_S
from config.topology import queue_by_name
from pipeline.api import submit_order
from pipeline.app import app
from pipeline.dev.demo import CATALOG, sample_order
from pipeline.dev.procfile import ProcLine, read_procfile
from pipeline.domain import OrderStatus
from pipeline.ops import dlq
from pipeline.ops.audit import order_violations
from pipeline.testing import wait_until
from tests.fixtures import Pipeline
from tests.integration.wedged import WEDGE, WEDGED_POSTCODE_ENV

pytestmark = [pytest.mark.integration,
              pytest.mark.parametrize("pipeline", ["sqlite"], indirect=True)]

LIMIT_S = 3  # soft; the kill comes STEP_KILL_GRACE_S later
KILLED = f"Hard time limit ({LIMIT_S + STEP_KILL_GRACE_S}s) exceeded for"


@pytest.fixture(autouse=True)
def catalog(pipeline: Pipeline) -> None:
    for sku, (price, quantity) in CATALOG.items():
        pipeline.rt.store.set_stock(sku, quantity, price=price)


@contextmanager
def wedged_orders_lane(pipeline: Pipeline, **env: str) -> Iterator[tuple[int, Path, int]]:
    """The orders lane, swapped for one that can wedge (tests.integration.wedged) with
    LIMIT_S as its step time limit: (its processes, its log, where the log starts)."""
    lanes = pipeline.lanes
    line = next(line for line in read_procfile() if line.name == "orders")
    found = re.search(r"-P prefork -c (\d+)", line.command)
    assert found, line.command
    lanes.stop_one(lanes.live("orders"))
    log_path = pipeline.log_dir / "orders-wedged.log"
    earlier = log_path.stat().st_size if log_path.exists() else 0  # logs are appended to
    worker = lanes.start_with(
        ProcLine("orders-wedged", f"{line.command} -I tests.integration.wedged"),
        PIPELINE_STEP_TIME_LIMIT_S=str(LIMIT_S), **env)
    try:
        yield int(found.group(1)), log_path, earlier
    finally:
        lanes.stop_one(worker)
        lanes.start(line)


def test_wedged_steps_are_killed_at_the_time_limit_and_the_lane_goes_on(
        pipeline: Pipeline, tmp_path: Path) -> None:
    store = pipeline.rt.store
    with wedged_orders_lane(pipeline) as (processes, log_path, earlier):
        # No limits stamped by this process (Celery copies the sender's into each
        # message, and this one's are the default): the lane's own setting decides.
        wedges = [app.send_task(WEDGE, args=[str(tmp_path)], queue="orders", time_limit=None,
                                soft_time_limit=None).id for _ in range(processes)]
        wait_until(lambda: all((tmp_path / w).exists() for w in wedges), timeout=120,
                   message="every process of the lane wedged")
        order_id = submit_order(sample_order("single", 7))
        wait_until(lambda: store.status(order_id).terminal, timeout=180,
                   message="the order ended past the wedged steps")
        assert store.status(order_id) is OrderStatus.COMPLETED, store.order(order_id).reasons
        wait_until(lambda: all((tmp_path / f"{w}.done").exists() for w in wedges),
                   timeout=120, message="each wedged message delivered again, and run")
        log = log_path.read_bytes()[earlier:].decode(errors="replace")
        assert log.count(f"{KILLED} {WEDGE}") == processes, log[-3000:]


def test_a_step_killed_on_every_attempt_is_given_up_with_its_reason_and_its_order_ends(
        pipeline: Pipeline) -> None:
    store, rt = pipeline.rt.store, pipeline.rt
    postcode = "99999"
    document = sample_order("single", 8)
    document["shippingAddress"]["postalCode"] = postcode
    with wedged_orders_lane(pipeline, **{WEDGED_POSTCODE_ENV: postcode}) as (
            _, log_path, earlier):
        # ship_order is sent by the inventory lane, whose limits (the default 300 s)
        # Celery stamps into the message: the wedged lane's own LIMIT_S must decide.
        order_id = submit_order(document)
        wait_until(lambda: store.status(order_id).terminal, timeout=240,
                   message="the order whose shipment wedges ended")
        log = log_path.read_bytes()[earlier:].decode(errors="replace")
    attempts = queue_by_name("shipping").attempts
    assert store.status(order_id) is OrderStatus.FAILED, store.order(order_id).reasons
    assert log.count(f"{KILLED} tasks.shipping.ship_order") == attempts, log[-3000:]
    (reason,) = store.order(order_id).reasons
    assert f"gave up after {attempts} attempts" in reason, reason
    assert "killed at its hard time limit" in reason, reason
    retried = [s for s in store.timeline(order_id) if s.step == "ship" and s.outcome == "retry"]
    assert len(retried) == attempts - 1, store.timeline(order_id)
    assert [p.kind for p in store.payment_entries(order_id)] == ["authorize", "capture",
                                                                 "refund"]
    assert order_violations(store, [order_id]) == {}
    (letter,) = [x for x in dlq.peek(rt.settings, rt.sqs, "shipping") if x.order_id == order_id]
    assert letter.reason.startswith("StepOverran: gave up after"), letter.reason
