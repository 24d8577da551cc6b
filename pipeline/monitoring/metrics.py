"""What an operator watches: queues, dead letters, steps, breakers, stuck products.

One snapshot feeds both the Prometheus endpoint (`pipeline metrics`) and the
terminal table (`pipeline monitor`). Sources, and what each costs:
* queues: one GetQueueAttributes per queue (depth, in flight, delayed); the
  oldest message's age comes from CloudWatch's ApproximateAgeOfOldestMessage
  on AWS (one GetMetricData for all queues) and from the emulator's own
  endpoint locally (fauxqs has no CloudWatch);
* steps: the most recent step rows of the order store (by primary key, so
  the cost does not grow with history): runs and retries per step and
  outcome, latency quantiles, and the rate over the last minute;
* circuit breakers, per-product FIFO updates in flight, orders by status:
  the store.
Task events per worker are Flower's own /metrics (from the same events).
"""

from __future__ import annotations

import json
import time
import urllib.request
from collections import Counter, defaultdict
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, timedelta
from statistics import quantiles
from typing import Any

from config.topology import QUEUES
from pipeline.runtime import Runtime
from pipeline.store import operations, outbox

__all__ = ["QueueStats", "Snapshot", "StepStats", "snapshot"]

RECENT_STEPS = 5000
BREAKER_STATES = {"CLOSED": 0, "HALF_OPEN": 1, "OPEN": 2}


@dataclass(frozen=True)
class QueueStats:
    queue: str  # topology name, without prefix
    dead_letter: bool
    depth: int
    in_flight: int
    delayed: int
    oldest_age_s: float | None


@dataclass(frozen=True)
class StepStats:
    step: str  # apply_line's "reserve:SKU" counts as "reserve"
    runs: dict[str, int]  # outcome -> count, among the recent rows
    p50_s: float | None
    p95_s: float | None
    per_second: float  # runs started in the last minute / 60


@dataclass
class Snapshot:
    taken_at: str
    queues: list[QueueStats]
    steps: list[StepStats]
    breakers: list[dict[str, Any]]
    products_in_flight: list[dict[str, Any]]
    orders_by_status: dict[str, int]
    outbox_parked: int = 0  # events SNS refuses for good (see pipeline.ops.relay)
    consumers: list[dict[str, Any]] = field(default_factory=list)  # last receive per queue
    notes: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def snapshot(rt: Runtime) -> Snapshot:
    notes: list[str] = []
    queues = _queue_stats(rt, notes)
    store = rt.store
    return Snapshot(
        taken_at=datetime.now(UTC).isoformat(), queues=queues, steps=_step_stats(rt),
        breakers=[{"name": name, "state": b.state.value, "failures": b.failures}
                  for name, b in store.breakers().items()],
        products_in_flight=[p.as_json() for p in store.in_flight()],
        orders_by_status=store.count_by_status(), outbox_parked=outbox.parked(store.engine),
        consumers=[c.as_json() for c in store.consumer_ages()],
        notes=notes)


def _queue_stats(rt: Runtime, notes: list[str]) -> list[QueueStats]:
    prefix = rt.settings.queue_prefix
    names = [(spec.name, False) for spec in QUEUES] + [(spec.dlq_name, True) for spec in QUEUES]
    oldest = _oldest_ages(rt, [prefix + name for name, _ in names], notes)
    stats = []
    for name, dead in names:
        url = rt.sqs.get_queue_url(QueueName=prefix + name)["QueueUrl"]
        attrs = rt.sqs.get_queue_attributes(QueueUrl=url, AttributeNames=[
            "ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible",
            "ApproximateNumberOfMessagesDelayed"])["Attributes"]
        stats.append(QueueStats(
            name, dead, int(attrs["ApproximateNumberOfMessages"]),
            int(attrs["ApproximateNumberOfMessagesNotVisible"]),
            int(attrs.get("ApproximateNumberOfMessagesDelayed", 0)),
            oldest.get(prefix + name, 0.0) if oldest is not None else None))
    return stats


def _oldest_ages(rt: Runtime, names: list[str], notes: list[str]) -> dict[str, float] | None:
    endpoint = rt.settings.sqs_endpoint_url
    try:
        if endpoint is not None:  # the emulator's own figure (fauxqs has no CloudWatch)
            with urllib.request.urlopen(endpoint + "/_pipeline/oldest", timeout=5) as reply:
                ages: dict[str, float] = json.loads(reply.read())
            return ages
        return _cloudwatch_oldest(rt, names)
    except Exception as error:  # a missing figure must not hide the others
        notes.append(f"oldest message age unavailable: {type(error).__name__}: {error}")
        return None


def _cloudwatch_oldest(rt: Runtime, names: list[str]) -> dict[str, float]:
    cloudwatch = rt.aws_client("cloudwatch")
    end = datetime.now(UTC)
    queries = [{"Id": f"q{n}", "Label": name, "ReturnData": True, "MetricStat": {
        "Metric": {"Namespace": "AWS/SQS", "MetricName": "ApproximateAgeOfOldestMessage",
                   "Dimensions": [{"Name": "QueueName", "Value": name}]},
        "Period": 60, "Stat": "Maximum"}} for n, name in enumerate(names)]
    result: dict[str, float] = {}
    for start in range(0, len(queries), 500):
        reply = cloudwatch.get_metric_data(MetricDataQueries=queries[start:start + 500],
                                           StartTime=end - timedelta(minutes=5), EndTime=end)
        for series in reply["MetricDataResults"]:
            if series["Values"]:
                result[series["Label"]] = float(series["Values"][0])
    return result


def _step_stats(rt: Runtime) -> list[StepStats]:
    rows = operations.recent_steps(rt.store.engine, RECENT_STEPS)
    now = datetime.now(UTC)
    runs: dict[str, Counter[str]] = defaultdict(Counter)
    durations: dict[str, list[float]] = defaultdict(list)
    recent: Counter[str] = Counter()
    for step, outcome, started, finished in rows:
        name = str(step).split(":", 1)[0]
        runs[name][outcome or "running"] += 1
        started = started if started.tzinfo else started.replace(tzinfo=UTC)
        if (now - started).total_seconds() <= 60:
            recent[name] += 1
        if finished is not None:
            finished = finished if finished.tzinfo else finished.replace(tzinfo=UTC)
            durations[name].append((finished - started).total_seconds())
    stats = []
    for name in sorted(runs):
        values = sorted(durations[name])
        cuts = quantiles(values, n=20) if len(values) >= 2 else None
        stats.append(StepStats(name, dict(runs[name]),
                               round(cuts[9], 4) if cuts else None,
                               round(cuts[18], 4) if cuts else None,
                               round(recent[name] / 60, 3)))
    return stats


def prometheus_families(snap: Snapshot) -> list[Any]:
    """The snapshot as Prometheus metric families (prometheus_client)."""
    from prometheus_client.core import GaugeMetricFamily

    def gauge(name: str, doc: str, labels: list[str]) -> Any:
        return GaugeMetricFamily(f"pipeline_{name}", doc, labels=labels)

    depth = gauge("queue_messages", "Messages waiting (ApproximateNumberOfMessages)",
                  ["queue", "dead_letter"])
    flight = gauge("queue_in_flight", "Messages received, not yet deleted", ["queue"])
    delayed = gauge("queue_delayed", "Messages waiting out a delay", ["queue"])
    oldest = gauge("queue_oldest_message_age_seconds", "Age of the oldest message", ["queue"])
    dlq = gauge("dead_letters", "Messages in a dead-letter queue", ["queue"])
    for q in snap.queues:
        depth.add_metric([q.queue, str(q.dead_letter).lower()], q.depth)
        if q.dead_letter:
            dlq.add_metric([q.queue.removesuffix(".fifo").removesuffix("-dlq")], q.depth)
        flight.add_metric([q.queue], q.in_flight)
        delayed.add_metric([q.queue], q.delayed)
        if q.oldest_age_s is not None:
            oldest.add_metric([q.queue], q.oldest_age_s)
    runs = gauge("step_recent_runs", f"Runs per step and outcome among the last "
                 f"{RECENT_STEPS} steps (outcome 'retry' counts retries)", ["step", "outcome"])
    rate = gauge("step_runs_per_second", "Step runs started in the last minute / 60", ["step"])
    latency = gauge("step_duration_seconds", "Step duration among the last runs",
                    ["step", "quantile"])
    for s in snap.steps:
        for outcome, count in s.runs.items():
            runs.add_metric([s.step, outcome], count)
        rate.add_metric([s.step], s.per_second)
        for quantile, value in (("0.5", s.p50_s), ("0.95", s.p95_s)):
            if value is not None:
                latency.add_metric([s.step, quantile], value)
    breaker = gauge("circuit_breaker_state", "0 closed, 1 half-open, 2 open", ["breaker"])
    for b in snap.breakers:
        breaker.add_metric([b["name"]], BREAKER_STATES.get(b["state"], -1))
    product_age = gauge("product_oldest_update_age_seconds",
                        "Oldest FIFO stock update published and not applied", ["product"])
    product_count = gauge("product_updates_in_flight", "FIFO stock updates not applied",
                          ["product"])
    for p in snap.products_in_flight:
        product_age.add_metric([p["productId"]], p["oldestAgeSeconds"])
        product_count.add_metric([p["productId"]], p["inFlight"])
    orders = gauge("orders", "Orders by status", ["status"])
    for status, count in snap.orders_by_status.items():
        orders.add_metric([status], count)
    parked = gauge("outbox_parked_events", "Business events SNS refused for good "
                   "(parked with their reason, see the outbox table)", [])
    parked.add_metric([], snap.outbox_parked)
    receive_age = gauge("consumer_last_receive_age_seconds",
                        "Seconds since a worker last completed a receive on a queue",
                        ["lane", "queue", "host"])
    for c in snap.consumers:
        receive_age.add_metric([c["lane"], c["queue"], c["host"]], c["ageSeconds"])
    taken = gauge("snapshot_timestamp_seconds", "When these figures were read", [])
    taken.add_metric([], time.time())
    return [depth, flight, delayed, oldest, dlq, runs, rate, latency, breaker, product_age,
            product_count, orders, parked, receive_age, taken]
