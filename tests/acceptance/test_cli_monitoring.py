"""Cancelling and watching from the CLI, as an operator would."""

from __future__ import annotations

import json
import urllib.request

import pytest

from pipeline.dev.demo import sample_order
from pipeline.dev.procfile import ProcLine
from pipeline.testing import free_port, wait_until
from tests.fixtures import Pipeline

pytestmark = [pytest.mark.acceptance, pytest.mark.parametrize("pipeline", ["sqlite"],
                                                                indirect=True)]



def status(pipeline: Pipeline, order_id: str) -> dict[str, object]:
    return dict(json.loads(pipeline.cli("status", order_id, "--json").stdout))


def test_cancel_stops_an_order_waiting_for_payment_and_leaves_a_finished_one_alone(
        pipeline: Pipeline) -> None:
    lanes = pipeline.lanes
    line = lanes.live("payments").line
    lanes.stop_one(lanes.live("payments"))  # its authorization waits in the queue
    try:
        waiting = pipeline.cli("submit", "-", stdin=json.dumps(sample_order("single", 800)))
        order_id = waiting.stdout.strip()
        wait_until(lambda: status(pipeline, order_id)["status"] == "VALIDATED", timeout=30,
                   message="validation")
        cancelled = pipeline.cli("cancel", order_id, "--reason", "customer asked")
        assert cancelled.returncode == 0, cancelled.stderr
        assert "cancelled" in cancelled.stdout
        again = pipeline.cli("cancel", order_id)
        assert again.returncode == 0 and "already_ending" in again.stdout
    finally:
        lanes.start(line)
    ended = wait_until(lambda: (v := status(pipeline, order_id))["terminal"] and v, timeout=60,
                       message="the cancelled order to end")
    assert ended["status"] == "CANCELLED" and ended["reasons"] == ["customer asked"]
    # The queued authorization ran after the cancel and found nothing to do.
    assert ended["payments"] == []

    shipped = pipeline.cli("submit", "-", stdin=json.dumps(sample_order("single", 801)))
    shipped_id = shipped.stdout.strip()
    wait_until(lambda: status(pipeline, shipped_id)["status"] == "COMPLETED", timeout=60,
               message="the other order")
    finished = pipeline.cli("cancel", shipped_id)
    assert finished.returncode == 0 and "already_ending" in finished.stdout
    assert status(pipeline, shipped_id)["status"] == "COMPLETED"
    missing = pipeline.cli("cancel", "no-such-order")
    assert missing.returncode == 2 and "no order with id" in missing.stderr


def test_monitor_and_metrics_show_queues_steps_and_dead_letter_queues(
        pipeline: Pipeline) -> None:
    done = pipeline.cli("submit", "-", stdin=json.dumps(sample_order("multi", 802)))
    order_id = done.stdout.strip()
    wait_until(lambda: status(pipeline, order_id)["terminal"], timeout=60, message="the order")
    shown = pipeline.cli("monitor", "--json")
    assert shown.returncode == 0, shown.stderr
    snap = json.loads(shown.stdout)
    queues = {q["queue"]: q for q in snap["queues"]}
    assert {"orders", "payments", "inventory.fifo", "orders-dlq", "inventory-dlq.fifo"} <= set(
        queues)
    assert all(q["oldest_age_s"] is not None for q in queues.values()), snap["notes"]
    steps = {s["step"] for s in snap["steps"]}
    assert {"validate", "authorize_payment", "reserve", "ship", "notify"} <= steps
    table = pipeline.cli("monitor", "--once")
    assert table.returncode == 0 and "inventory.fifo" in table.stdout

    port = free_port()
    server = pipeline.lanes.start_with(ProcLine("metrics", "pipeline metrics"),
                                       PIPELINE_METRICS_PORT=str(port))
    try:
        def scrape() -> str:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics",
                                            timeout=10) as reply:
                    return str(reply.read().decode())
            except OSError:
                return ""

        text = wait_until(scrape, timeout=30, message="the metrics endpoint")
    finally:
        pipeline.lanes.stop_one(server)
    for metric in ('pipeline_queue_messages{dead_letter="false",queue="orders"}',
                   'pipeline_dead_letters{queue="payments"}',
                   'pipeline_step_duration_seconds{quantile="0.95",step="validate"}',
                   'pipeline_queue_oldest_message_age_seconds{queue="inventory.fifo"}',
                   'pipeline_orders{status="COMPLETED"}'):
        assert metric in text, metric


def test_provision_alarms_on_the_emulator_says_what_it_would_create(pipeline: Pipeline) -> None:
    result = pipeline.cli("provision", "--alarms")
    assert result.returncode == 0, result.stderr
    assert "has no CloudWatch" in result.stderr
    assert "payments-dlq-not-empty" in result.stderr
