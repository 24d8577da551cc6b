"""A pipeline run as a team would run it on AWS, watched by its tools: every process
exports OpenTelemetry spans to a real OTLP/HTTP receiver (pipeline.dev.otlp), and
`pipeline doctor` checks the deployment, healthy and then broken.

Its own prefix, SQLite database and lanes; the producer is the CLI (a process of
its own, like a user's), so this test process never turns tracing on, and never
uses its Celery app (which keeps the rest of the suite's queue prefix).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import uuid
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest

from config.settings import PROJECT_ROOT
from config.topology import Task
from pipeline import get_order
from pipeline.dev.demo import CATALOG, sample_order
from pipeline.dev.otlp import ExportedSpan, SpanReceiver, receiving, render_tree
from pipeline.dev.procfile import ProcessGroup
from pipeline.domain import parse_order
from pipeline.runtime import Runtime, get_runtime
from pipeline.sqs.emulator import Emulator
from pipeline.sqs.provision import provision
from pipeline.store import create_schema
from pipeline.testing import restore_environment, run_cli, stock_catalog, wait_until, worker_lanes
from tests.fixtures import ARTIFACTS, _apply_env

pytestmark = pytest.mark.integration
TIMEOUT = 90
TRACE_FILE = ARTIFACTS / "compensated-order-trace.txt"  # rendered for the README


@dataclass
class Observed:
    receiver: SpanReceiver
    env: dict[str, str]  # the pipeline's settings
    traced: dict[str, str]  # ... and the OTEL_* variables of its processes
    lanes: ProcessGroup

    @property
    def rt(self) -> Runtime:
        return get_runtime()


@pytest.fixture(scope="module")
def observed(emulator: Emulator, tmp_path_factory: pytest.TempPathFactory,
             ) -> Iterator[Observed]:
    tmp = tmp_path_factory.mktemp("observed")
    env = {"PIPELINE_SQS_ENDPOINT_URL": emulator.endpoint,
           "PIPELINE_QUEUE_PREFIX": f"o{uuid.uuid4().hex[:6]}-",
           "PIPELINE_DATABASE_URL": f"sqlite:///{tmp / 'pipeline.db'}",
           "PIPELINE_WAIT_TIME_SECONDS": "2", "PIPELINE_SIMULATION_SEED": "7",
           # Some inventory attempts fail transiently: in-place retries happen.
           "PIPELINE_INVENTORY_TRANSIENT_ERROR_RATE": "0.1",
           # An order whose first message was never sent is re-driven within ~20 s.
           "PIPELINE_RECONCILE_INTERVAL_S": "2", "PIPELINE_VISIBILITY_CAP_S": "5",
           "PIPELINE_RECONCILE_SLACK_S": "0"}
    saved = {k: os.environ.get(k) for k in env}
    with receiving() as receiver:
        try:
            _apply_env(env)
            rt = get_runtime()
            provision(rt.settings, rt.aws_client("sqs"), rt.aws_client("sns"))
            create_schema(rt.store.engine)
            stock_catalog(rt.store, times=10)
            traced = {**env, **receiver.env(OTEL_SERVICE_NAME="order-pipeline")}
            with worker_lanes(traced, ARTIFACTS / "logs-observed") as lanes:
                _wait_for_lanes(env)
                yield Observed(receiver, env, traced, lanes)
        finally:
            restore_environment(saved)


def _wait_for_lanes(env: dict[str, str]) -> None:
    # In a process of its own: this process's Celery app keeps the broker settings
    # (the queue prefix) it first read, which are the rest of the suite's.
    done = subprocess.run(
        [sys.executable, "-c", "from pipeline.dev.demo import wait_for_lanes; wait_for_lanes(120)"],
        cwd=PROJECT_ROOT, env={**os.environ, **env}, capture_output=True, text=True,
        timeout=180)
    assert done.returncode == 0, done.stderr[-3000:]


def submit(observed: Observed, document: dict[str, Any]) -> str:
    done = run_cli(observed.traced, "submit", "-", stdin=json.dumps(document))
    assert done.returncode == 0, done.stderr
    return done.stdout.strip()


def finished(order_id: str) -> dict[str, Any]:
    return wait_until(lambda: (view := get_order(order_id))["terminal"] and view,
                      timeout=TIMEOUT, message=f"order {order_id} to finish")


def run(task: Task) -> str:
    return f"run/{task.value}"


def trace_of(observed: Observed, order_id: str, *, ends_with: list[Task],
             root: str = "order.submit") -> list[ExportedSpan]:
    """Every span of the order's trace, once the consumer spans of `ends_with` arrived
    and every consumer span's chain of parents up to `root`. Each process exports in
    its own batches, so a step's span can land before the producer span (another
    process's) that it hangs from."""
    def ready() -> list[ExportedSpan] | None:
        spans = observed.receiver.of_order(order_id)
        names = {s.name for s in spans}
        return spans if all(run(task) in names for task in ends_with) else None

    spans = wait_until(ready, timeout=TIMEOUT, interval=0.5,
                       message=f"the spans of order {order_id}")
    (trace_id,) = {s.trace_id for s in spans}

    def whole() -> list[ExportedSpan] | None:
        trace = [s for s in observed.receiver.spans() if s.trace_id == trace_id]
        return None if _orphaned(trace, root) else trace

    return wait_until(whole, timeout=TIMEOUT, interval=0.5,
                      message=f"every step span of order {order_id} to hang from {root!r}")


def _orphaned(spans: list[ExportedSpan], root: str) -> bool:
    """Whether some consumer span has a span missing on its way up to `root`."""
    by_id = {s.span_id: s for s in spans}
    for node in (s for s in spans if s.kind == "CONSUMER"):
        while node.name != root:
            if node.parent_id not in by_id:
                return True
            node = by_id[node.parent_id]
    return False


def parent(spans: list[ExportedSpan], span: ExportedSpan) -> ExportedSpan:
    by_id = {s.span_id: s for s in spans}
    assert span.parent_id in by_id, f"{span.name}: its parent is not in the trace"
    return by_id[span.parent_id]


def assert_hops(spans: list[ExportedSpan], root: str) -> None:
    """Each step ran under the producer span that sent it, and every producer span
    hangs, through consumer spans, from the root (no orphan, no second trace)."""
    consumers = [s for s in spans if s.kind == "CONSUMER"]
    assert consumers
    for consumer in consumers:
        producer = parent(spans, consumer)
        assert (producer.kind, producer.name) == (
            "PRODUCER", consumer.name.replace("run/", "apply_async/")), consumer.name
        node = producer
        while node.name != root:
            node = parent(spans, node)
    (top,) = [s for s in spans if s.parent_id == "" or s.name == root]
    assert top.name == root


# --------------------------------------------------------------------- doctor
def doctor(observed: Observed) -> tuple[int, dict[str, Any]]:
    done = run_cli(observed.env, "doctor", "--json", "--ping-timeout", "5", timeout=120)
    return done.returncode, json.loads(done.stdout)


def test_doctor_passes_on_a_healthy_stack(observed: Observed) -> None:
    # Healthy once beat has swept and every lane's watchdog has reported.
    def healthy() -> dict[str, Any] | None:
        code, report = doctor(observed)
        return report if code == 0 else None

    report = wait_until(healthy, timeout=TIMEOUT, interval=1,
                        message="`pipeline doctor` to pass on the healthy stack")
    assert report["ok"] is True
    assert [c["name"] for c in report["checks"]] == [
        "settings", "endpoint", "database", "queues", "dead letters", "lanes", "consumers",
        "beat", "outbox"]
    assert all(c["ok"] is True and c["fix"] == "" for c in report["checks"])


# --------------------------------------------------------------------- traces
def test_a_completed_order_is_one_trace_from_submit_to_notify(observed: Observed) -> None:
    order_id = submit(observed, sample_order("multi", 1))
    assert finished(order_id)["status"] == "COMPLETED"
    spans = trace_of(observed, order_id, ends_with=[Task.NOTIFY])
    assert {s.attributes.get("order.id") for s in spans} == {order_id}
    assert_hops(spans, "order.submit")
    names = [s.name for s in spans if s.kind == "CONSUMER"]
    for task in (Task.VALIDATE, Task.AUTHORIZE, Task.SHIP, Task.NOTIFY):
        assert run(task) in names
    assert names.count(run(Task.APPLY_LINE)) >= 3  # one per line (more if retried)
    # The lines are children of the payment step that fanned them out.
    for line in (s for s in spans if s.name == run(Task.APPLY_LINE)):
        assert parent(spans, parent(spans, line)).name == run(Task.AUTHORIZE)
    # The processes took part under their own roles; SQL and SQS calls are in the trace.
    roles = {s.role for s in spans}
    assert {"producer", "worker-orders", "worker-payments", "worker-inventory",
            "worker-notifications"} <= roles
    assert any(s.kind == "CLIENT" and s.attributes.get("db.system") for s in spans)


def test_a_compensated_order_keeps_its_trace_through_the_undo_steps(
        observed: Observed) -> None:
    observed.rt.store.set_stock("SKU-RARE", 0, price=CATALOG["SKU-RARE"][0])
    order_id = submit(observed, sample_order("out_of_stock", 2))
    assert finished(order_id)["status"] == "OUT_OF_STOCK"
    spans = trace_of(observed, order_id, ends_with=[Task.REVERSE_PAYMENT, Task.NOTIFY])
    assert {s.attributes.get("order.id") for s in spans} == {order_id}
    assert_hops(spans, "order.submit")
    lines = [s for s in spans if s.name == run(Task.APPLY_LINE)]
    assert len(lines) >= 3  # two reservations, then the release of the one that was made
    TRACE_FILE.write_text(render_tree(spans) + "\n")


def test_an_in_place_retry_is_another_run_under_the_same_producer_span(
        observed: Observed) -> None:
    # A retry changes the message's visibility and leaves it on the queue: the body,
    # and the trace context in its headers, come back unchanged.
    def retried() -> tuple[str, list[ExportedSpan]] | None:
        order_id = submit(observed, sample_order("multi", 5))
        assert finished(order_id)["status"] == "COMPLETED"
        spans = trace_of(observed, order_id, ends_with=[Task.NOTIFY])
        runs = Counter(s.parent_id for s in spans if s.name == run(Task.APPLY_LINE))
        return (order_id, spans) if max(runs.values()) >= 2 else None

    # each line's attempt fails with probability 0.1: orders until one retried
    order_id, spans = wait_until(retried, timeout=200, interval=0,
                                 message="an order with an in-place retry")
    assert {s.trace_id for s in spans} == {spans[0].trace_id}
    outcomes = [s["outcome"] for s in get_order(order_id)["timeline"]
                if s["step"].startswith("reserve:")]
    assert "retry" in outcomes


def test_an_outbox_event_carries_the_orders_trace_to_sns_subscribers(
        observed: Observed) -> None:
    rt = observed.rt
    sqs, sns = rt.aws_client("sqs"), rt.aws_client("sns")
    prefix = rt.settings.queue_prefix
    url = sqs.create_queue(QueueName=f"{prefix}subscriber-{uuid.uuid4().hex[:6]}")["QueueUrl"]
    arn = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"]
                                   )["Attributes"]["QueueArn"]
    topic = next(t["TopicArn"] for t in sns.list_topics()["Topics"]
                 if t["TopicArn"].endswith(f":{prefix}order-status"))
    sns.subscribe(TopicArn=topic, Protocol="sqs", Endpoint=arn,
                  Attributes={"RawMessageDelivery": "true"})
    order_id = submit(observed, sample_order("single", 3))
    assert finished(order_id)["status"] == "COMPLETED"

    def delivered() -> dict[str, str] | None:
        got = sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10,
                                  MessageAttributeNames=["All"], WaitTimeSeconds=1)
        for m in got.get("Messages", []):
            body = json.loads(m["Body"])
            if body.get("orderId") == order_id and body.get("status") == "COMPLETED":
                return {k: v["StringValue"] for k, v in m["MessageAttributes"].items()}
        return None

    attributes = wait_until(delivered, timeout=TIMEOUT, message="the COMPLETED event")
    _, trace_id, span_id, _ = attributes["traceparent"].split("-")
    spans = trace_of(observed, order_id, ends_with=[Task.NOTIFY])
    assert {s.trace_id for s in spans} == {trace_id}
    published = wait_until(lambda: [s for s in observed.receiver.spans()
                                    if s.span_id == span_id], timeout=TIMEOUT,
                           message="the relay's publish span")
    (publish,) = published
    assert (publish.kind, publish.name, publish.role) == (
        "PRODUCER", "publish order.status_changed", "relay")
    # ... a child of the step that recorded the event (notify ends the order).
    assert parent(spans, publish).name == run(Task.NOTIFY)


def test_a_reconciler_redrive_continues_the_stored_trace(observed: Observed) -> None:
    # Stored, never published (a crash between the two): only the reconciler moves it.
    trace_id, span_id = uuid.uuid4().hex, uuid.uuid4().hex[:16]
    order = parse_order(sample_order("single", 4))
    observed.rt.store.create_order(order, trace_context=f"00-{trace_id}-{span_id}-01")
    assert finished(order.order_id)["status"] == "COMPLETED"
    # The stored parent is no span anyone exported: the redrive is the root here.
    spans = trace_of(observed, order.order_id, ends_with=[Task.NOTIFY],
                     root="reconcile.redrive")
    assert {s.trace_id for s in spans} == {trace_id}
    redrives = [s for s in spans if s.name == "reconcile.redrive"]
    assert redrives and all(s.parent_id == span_id for s in redrives)
    assert {s.role for s in redrives} == {"worker-orders"}  # the sweep runs on its lane
    consumers = [s for s in spans if s.kind == "CONSUMER"]
    assert {run(Task.VALIDATE), run(Task.NOTIFY)} <= {s.name for s in consumers}


# ------------------------------------------------------------- doctor, broken
def test_doctor_names_a_missing_queue_a_dead_lane_and_dead_letters(
        observed: Observed) -> None:
    rt = observed.rt
    sqs = rt.aws_client("sqs")
    prefix = rt.settings.queue_prefix
    sqs.delete_queue(QueueUrl=sqs.get_queue_url(QueueName=f"{prefix}shipping-dlq")["QueueUrl"])
    sqs.send_message(QueueUrl=sqs.get_queue_url(QueueName=f"{prefix}orders-dlq")["QueueUrl"],
                     MessageBody="{}")
    observed.lanes.stop_one(observed.lanes.live("notifications"), sig=signal.SIGKILL)

    def broken() -> dict[str, Any] | None:
        code, report = doctor(observed)
        failed = {c["name"] for c in report["checks"] if c["ok"] is False}
        return report if code == 1 and {"queues", "dead letters", "lanes"} <= failed else None

    report = wait_until(broken, timeout=TIMEOUT, interval=1,
                        message="`pipeline doctor` to report the three faults")
    checks = {c["name"]: c for c in report["checks"]}
    assert f"{prefix}shipping-dlq: missing" in checks["queues"]["detail"]
    assert checks["queues"]["fix"].startswith("run `pipeline provision`")
    assert checks["dead letters"]["detail"] == "orders-dlq: 1"
    assert "pipeline dlq show" in checks["dead letters"]["fix"]
    assert "no worker of notifications answered" in checks["lanes"]["detail"]
    assert checks["settings"]["ok"] and checks["endpoint"]["ok"] and checks["database"]["ok"]


def test_doctor_without_an_endpoint_says_so_and_runs_nothing_that_needs_it() -> None:
    env = {"PIPELINE_SQS_ENDPOINT_URL": "http://127.0.0.1:9", "PIPELINE_CONNECT_TIMEOUT_S": "1",
           "PIPELINE_DATABASE_URL": "sqlite:///:memory:"}
    done = subprocess.run([sys.executable, "-m", "pipeline", "doctor", "--json"],
                          cwd=PROJECT_ROOT, capture_output=True, text=True, timeout=120,
                          env={**os.environ, **env})
    assert done.returncode == 1, done.stderr
    checks = {c["name"]: c for c in json.loads(done.stdout)["checks"]}
    assert checks["endpoint"]["ok"] is False and "pipeline sqs" in checks["endpoint"]["fix"]
    assert checks["queues"]["ok"] is None and checks["lanes"]["ok"] is None

