"""Build a worker process's clients before its first task, not during it.

Measured in the bench at 10 orders/s: the first task a fresh pool process ran
took 300-370 ms instead of 2-12 ms (a boto3 session loading the SQS model,
kombu's channel listing the queues, the database connection), so the first
~12 orders after a start took 0.5-1 s and set the run's p95. Warming runs in a
daemon thread: a prefork child must report itself alive within
worker_proc_alive_timeout, and during a broker outage these calls can block
for seconds. A failure here only means the first task builds what is missing.

A worker's main process publishes its events (heartbeats at least) over SNS:
the first flush built kombu's SNS client and looked up the topic, ~170 ms of
CPU per lane (py-spy at 30 orders/s), in the middle of the first orders.
`warm_events` does it before the consumer starts, on the thread that flushes.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from typing import Any

__all__ = ["warm_events", "warm_in_background", "warm_process"]

log = logging.getLogger("pipeline.warmup")


def warm_process(app: Any) -> float:
    """Build this process's runtime and one broker producer; returns seconds taken."""
    from pipeline.runtime import get_runtime
    from pipeline.store.db import ping

    started = time.monotonic()
    runtime = get_runtime()
    ping(runtime.store.engine)
    runtime.sqs  # noqa: B018 - building the client is the point
    runtime.step_context()  # the gateway, carrier, rules and publisher a step uses
    # The producer goes back to Celery's pool with its connection and channel
    # (queue URLs listed and cached), ready for the first task's publish.
    with app.producer_or_acquire() as producer:
        producer.channel  # noqa: B018
    return time.monotonic() - started


def warm_in_background(app: Any) -> threading.Thread:
    def run() -> None:
        try:
            took = warm_process(app)
        except Exception as error:  # the first task builds it for real, or fails clearly
            log.warning("process %d not warmed (%s: %s); its first task builds its "
                        "clients", os.getpid(), type(error).__name__, error)
            return
        log.info("process %d warmed in %.0f ms", os.getpid(), took * 1000)

    thread = threading.Thread(target=run, name="pipeline-warmup", daemon=True)
    thread.start()
    return thread


def warm_events(consumer: Any) -> float | None:
    """Build the SNS client and find the topic the consumer's events go to, now,
    as its first flush would; seconds taken, None if it sends no events. Run on
    the consumer's own thread: the dispatcher's channel is not shared."""
    dispatcher = getattr(consumer, "event_dispatcher", None)
    if dispatcher is None or not dispatcher.enabled or dispatcher.producer is None:
        return None
    started = time.monotonic()
    try:
        # kombu finds a fanout topic when a queue binds to it; a publisher's first
        # message does it otherwise (SnsFanout._get_or_create_topic, cached after).
        dispatcher.producer.channel.fanout._get_or_create_topic(dispatcher.exchange.name)
    except Exception as error:  # the first flush does it, as before
        log.warning("events topic not looked up at start (%s: %s); the first flush "
                    "does it", type(error).__name__, error)
        return None
    took = time.monotonic() - started
    log.info("process %d events topic found in %.0f ms", os.getpid(), took * 1000)
    return took
