"""Dead letters: garbage is dead-lettered with a reason, and `pipeline dlq` shows,
redrives and purges them."""

from __future__ import annotations

import subprocess
import sys
import uuid
from itertools import pairwise
from pathlib import Path
from typing import Any

import pytest

from config.topology import Task
from pipeline import get_order
from pipeline.app import app
from pipeline.dev.demo import sample_order, wait_for_lanes
from pipeline.domain import OrderStatus, parse_order
from pipeline.ops import dlq
from pipeline.testing import wait_until
from tests.fixtures import Pipeline

pytestmark = pytest.mark.integration
S = OrderStatus


def letters(pipeline: Pipeline, queue: str) -> list[dlq.DeadLetter]:
    return dlq.peek(pipeline.rt.settings, pipeline.rt.sqs, queue)


def cli(pipeline: Pipeline, *args: str) -> subprocess.CompletedProcess[str]:
    import os

    command = str(Path(sys.executable).parent / "pipeline")
    return subprocess.run([command, *args], text=True,
                          capture_output=True, env={**os.environ, **pipeline.env},
                          timeout=60, check=False)


def test_garbage_on_a_queue_is_dead_lettered_with_its_reason_and_workers_carry_on(
        pipeline: Pipeline) -> None:
    rt = pipeline.rt
    url = rt.sqs.get_queue_url(QueueName=rt.settings.queue_prefix + "notifications")["QueueUrl"]
    tag = uuid.uuid4().hex[:8]
    rt.sqs.send_message(QueueUrl=url, MessageBody=f"not json {tag}")
    rt.sqs.send_message(QueueUrl=url, MessageBody=f"%%%{tag}%%% not base64 either {{")
    rt.sqs.send_message(QueueUrl=url, MessageBody=tag + "x" * 100_000)
    app.send_task("tasks.nope.unknown", args=[f"order-{tag}"], queue="notifications")
    app.send_task(Task.NOTIFY.value, args=[f"order-{tag}", "surplus", "arguments"],
                  queue="notifications")

    expected = {"NotATaskMessage", "UnknownTask", "InvalidTaskArguments", "OversizedMessage"}

    def reasons() -> dict[str, list[dlq.DeadLetter]]:
        found: dict[str, list[dlq.DeadLetter]] = {}
        for x in letters(pipeline, "notifications"):
            if tag in x.body or x.order_id == f"order-{tag}":
                found.setdefault(x.reason.split(":")[0], []).append(x)
        return found

    found = wait_until(lambda: (r := reasons()) and sum(map(len, r.values())) >= 5 and r,
                       timeout=60, message="five dead letters with reasons")
    assert expected <= set(found), found.keys()
    assert len(found["NotATaskMessage"]) == 2  # both undecodable bodies
    wrong = found["InvalidTaskArguments"][0]
    assert wrong.task == Task.NOTIFY.value
    assert "takes 1 argument(s), got 3" in wrong.reason
    assert wrong.order_id == f"order-{tag}"
    wait_for_lanes(timeout=30)  # every lane still consumes
    dlq.purge(rt.settings, rt.sqs, "notifications")


def test_a_dead_letter_shows_its_reason_and_redrive_finishes_the_order(
        pipeline: Pipeline) -> None:
    order_id = f"late-{uuid.uuid4().hex[:10]}"
    # A notification for an order that does not exist yet: a permanent error,
    # dead-lettered at once with its reason (no retries, no redrive-policy wait).
    app.signature(Task.NOTIFY.value, args=(order_id,)).apply_async(queue="notifications")
    found = wait_until(lambda: [x for x in letters(pipeline, "notifications")
                                if x.order_id == order_id], timeout=30,
                       message="the dead letter")
    letter = found[0]
    assert letter.reason.startswith("OrderNotFound")
    assert letter.task == Task.NOTIFY.value and letter.step == "notify" and letter.attempts == "1"
    assert letter.first_failure and letter.last_failure

    shown = cli(pipeline, "dlq", "show", "notifications", "--json")
    assert shown.returncode == 0, shown.stderr
    assert order_id in shown.stdout and "OrderNotFound" in shown.stdout
    listed = cli(pipeline, "dlq", "ls", "--json")
    assert '"notifications-dlq"' in listed.stdout

    # The order turns up (as it would after a fix); the redrive completes it.
    real = sample_order("single", 2)
    real["orderId"] = order_id
    store = pipeline.rt.store
    store.create_order(parse_order(real))
    path = [S.RECEIVED, S.VALIDATED, S.AUTHORIZING, S.RESERVING, S.RESERVED, S.SHIPPING,
            S.SHIPPED]
    for old, new in pairwise(path):
        assert store.transition(order_id, new, expected=[old])
    redriven = cli(pipeline, "dlq", "redrive", "notifications", "--order", order_id)
    assert redriven.returncode == 0, redriven.stderr
    assert "1 message(s) sent back" in redriven.stdout
    view: dict[str, Any] = wait_until(
        lambda: (v := get_order(order_id))["status"] == "COMPLETED" and v, timeout=30,
        message="the redriven notification")
    assert len(view["notifications"]) >= 1
    again = cli(pipeline, "dlq", "redrive", "notifications", "--order", order_id)
    assert "0 message(s) sent back" in again.stdout  # idempotent: nothing left to send
    assert not [x for x in letters(pipeline, "notifications") if x.order_id == order_id]


def test_dlq_commands_refuse_unclear_requests(pipeline: Pipeline) -> None:
    assert cli(pipeline, "dlq", "purge", "notifications").returncode == 2  # no --yes
    assert cli(pipeline, "dlq", "redrive", "notifications").returncode == 2  # no selector
    unknown = cli(pipeline, "dlq", "show", "nope")
    assert unknown.returncode == 2 and "unknown queue" in unknown.stderr


def test_a_redriven_fifo_dead_letter_that_fails_again_is_dead_lettered_again(
        pipeline: Pipeline) -> None:
    """Regression: the second dead letter reused the first one's deduplication id
    within SQS's 5-minute window, SQS dropped it, and the message was gone."""
    ghost = f"ghost-{uuid.uuid4().hex[:8]}"
    app.signature(Task.APPLY_LINE.value, args=(ghost, "SKU-BOOK", 1, "reserve")).apply_async(
        queue="inventory.fifo", MessageGroupId="SKU-BOOK", MessageDeduplicationId=ghost)

    def mine() -> list[dlq.DeadLetter]:
        return [x for x in letters(pipeline, "inventory.fifo") if x.order_id == ghost]

    first = wait_until(mine, timeout=30, message="the first dead letter")
    assert first[0].reason.startswith("InvalidTaskArguments")
    redriven = cli(pipeline, "dlq", "redrive", "inventory.fifo", "--order", ghost)
    assert redriven.returncode == 0, redriven.stderr
    assert "no such order" in redriven.stdout
    again = wait_until(lambda: [x for x in mine() if x.message_id != first[0].message_id],
                       timeout=30, message="the second dead letter (not dropped)")
    assert again[0].reason.startswith("InvalidTaskArguments")
    cli(pipeline, "dlq", "redrive", "inventory.fifo", "--order", ghost)  # ... and again
    wait_until(lambda: [x for x in mine() if x.message_id not in
                        {first[0].message_id, again[0].message_id}], timeout=30,
               message="the third dead letter")
    assert pipeline.rt.store.reservations(ghost) == []
