"""Each Procfile lane consumes the queues it is declared for."""

from __future__ import annotations

import re
import uuid
from pathlib import Path

import pytest

from config.topology import QUEUES
from pipeline.app import app
from pipeline.keys import probe_key
from pipeline.store import operations
from pipeline.testing import WORKER_LANES, wait_until
from tests.fixtures import Pipeline

pytestmark = pytest.mark.integration

LANE_OF_QUEUE = {"orders": "orders@", "shipping": "orders@", "payments": "payments@",
                 "inventory.fifo": "inventory@", "notifications": "notifications@",
                 "priority": "priority@"}


def test_a_probe_on_every_queue_is_consumed_by_its_lane(pipeline: Pipeline) -> None:
    assert set(LANE_OF_QUEUE) == {spec.name for spec in QUEUES}
    token = uuid.uuid4().hex[:8]
    for spec in QUEUES:
        options = {"queue": spec.name}
        if spec.is_fifo:
            options |= {"MessageGroupId": "probe", "MessageDeduplicationId": token}
        app.signature("tasks.notification.lane_probe", args=(token,)).apply_async(**options)

    def consumers() -> dict[str, str]:
        keys = operations.claimed_like(pipeline.rt.store.engine, probe_key(token))
        found = {}
        for key in keys:
            _, _, queue, host = key.split(":", 3)
            found[queue] = host
        return found if len(found) == len(QUEUES) else {}

    found = wait_until(consumers, timeout=30, message="every queue's probe to be consumed")
    for queue, host in found.items():
        assert host.startswith(LANE_OF_QUEUE[queue]), (queue, host)


def test_every_pool_process_builds_its_clients_before_its_first_task(
        pipeline: Pipeline) -> None:
    """Regression: a fresh pool process built its boto3 session, broker channel and
    database connection inside its first task (300-370 ms), which set p95 at 10/s."""
    def processes_warmed(lane: str) -> set[int]:
        log = (pipeline.log_dir / f"{lane}.log").read_text(errors="replace")
        return {int(pid) for pid in re.findall(r"process (\d+) warmed in \d+ ms", log)}

    def pool_processes(lane: str) -> set[int]:
        """The processes that run the lane's tasks now (logs outlive earlier runs)."""
        worker = pipeline.lanes.live(lane).process.pid
        if "-P prefork" not in pipeline.lanes.live(lane).line.command:
            return {worker}
        return {int(pid) for task in Path(f"/proc/{worker}/task").glob("*/children")
                for pid in task.read_text().split()}

    def all_warmed(lane: str) -> bool:
        processes = pool_processes(lane)
        return bool(processes) and processes <= processes_warmed(lane)

    for lane in WORKER_LANES:
        wait_until(lambda lane=lane: all_warmed(lane),
                   timeout=30, message=f"every pool process of the {lane} lane to log "
                                       "that it is warmed")


def test_every_lane_finds_its_events_topic_before_it_consumes(
        pipeline: Pipeline) -> None:
    """Regression: a lane's first event flush (a heartbeat, with Flower off) built
    kombu's SNS client and found the topic on the consumer's loop, ~170 ms of CPU
    among the first orders. The worker process does it when it is ready."""
    def found(lane: str) -> bool:
        log = (pipeline.log_dir / f"{lane}.log").read_text(errors="replace")
        worker = pipeline.lanes.live(lane).process.pid
        return re.search(rf"process {worker} events topic found in \d+ ms", log) \
            is not None

    for lane in WORKER_LANES:
        wait_until(lambda lane=lane: found(lane), timeout=30,
                   message=f"the {lane} lane to log that it found its events topic")


def test_warming_the_events_leaves_the_topic_found_for_the_first_flush(
        pipeline: Pipeline) -> None:
    """What the lanes' log line above stands for: after warm_events, the dispatcher's
    channel knows the topic, so the first flush creates no client and looks up
    nothing. (Declaring the exchange, tried first, does not: on SQS it touches no SNS.)"""
    from types import SimpleNamespace

    from pipeline.worker.warmup import warm_events

    with app.connection_for_write() as connection:
        dispatcher = app.events.Dispatcher(connection, enabled=True)
        try:
            fanout = dispatcher.producer.channel.fanout
            assert dispatcher.exchange.name not in fanout._topic_arn_cache
            assert warm_events(SimpleNamespace(event_dispatcher=dispatcher)) is not None
            assert dispatcher.exchange.name in fanout._topic_arn_cache
        finally:
            dispatcher.close()


def test_every_lane_reports_a_recent_receive_on_each_of_its_queues(pipeline: Pipeline) -> None:
    """The consumer watchdog's figures (pipeline_consumer_last_receive_age_seconds):
    a live lane's last receive is never older than a few long polls. Regression: the
    receives were stamped under the wrong queue names and every lane was taken for
    stalled and stopped."""
    store = pipeline.rt.store

    def fresh() -> dict[str, float]:
        ages = {row.queue: row.age_s for row in store.consumer_ages()}
        return ages if set(LANE_OF_QUEUE) <= set(ages) and max(ages.values()) < 30 else {}

    ages = wait_until(fresh, timeout=60, interval=1, message="every queue's receive age")
    assert set(ages) >= set(LANE_OF_QUEUE)
    assert not pipeline.lanes.dead(), [r.line.name for r in pipeline.lanes.dead()]
