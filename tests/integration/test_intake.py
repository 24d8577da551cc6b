"""Admission control end to end: with PIPELINE_INTAKE_LIMIT orders in progress, the
orders lane stops receiving new orders; they wait in SQS and run once orders end."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

import pytest

from pipeline import get_order
from pipeline.api import cancel_order, submit_order
from pipeline.dev.demo import sample_order
from pipeline.domain import OrderStatus, parse_order
from pipeline.store.clock import aware
from pipeline.testing import stock_catalog, wait_until
from pipeline.worker.intake import RESUME_AT
from tests.fixtures import INTAKE_LIMIT, Pipeline

pytestmark = pytest.mark.integration
S = OrderStatus


def test_new_orders_wait_in_sqs_while_the_lanes_hold_the_limit(pipeline: Pipeline) -> None:
    store = pipeline.rt.store
    stock_catalog(store)
    leftover = store.orders_in_progress()
    assert leftover < INTAKE_LIMIT * RESUME_AT - 1, (
        f"{leftover} orders of earlier tests are still in progress: the gate could not open")
    log = pipeline.log_dir / "orders.log"
    seen = log.read_text(errors="replace").count("intake held")
    # Orders in progress that no message drives: the limit is reached and stays so.
    filler = []
    for _ in range(INTAKE_LIMIT):
        order = parse_order(sample_order("single", 1) | {"orderId": f"f{uuid.uuid4().hex[:12]}"})
        assert store.create_order(order)
        assert store.transition(order.order_id, S.VALIDATED, expected=[S.RECEIVED])
        filler.append(order.order_id)
    wait_until(lambda: log.read_text(errors="replace").count("intake held") > seen,
               timeout=60, message="the orders lane to hold its intake")

    waiting = submit_order(sample_order("single", 2))
    # Its message is on the orders queue; nothing receives it while the gate is held.
    assert get_order(waiting)["status"] == S.RECEIVED
    released_at = datetime.now(UTC)
    for order_id in filler:
        assert cancel_order(order_id, reason="test filler")
    view = wait_until(lambda: (v := get_order(waiting))["terminal"] and v, timeout=90,
                      message="the held order to run once the filler ended")
    assert view["status"] == S.COMPLETED
    validate = next(s for s in view["timeline"] if s["step"] == "validate")
    started = datetime.fromisoformat(str(validate["startedAt"]))
    assert aware(started) > released_at
    assert "intake open" in log.read_text(errors="replace")[-200_000:]
    wait_until(lambda: all(get_order(o)["status"] == S.CANCELLED for o in filler),
               timeout=90, message="every filler order to end cancelled")
