"""The Celery app. Configuration is read from settings when Celery first needs it.

Run a worker with ``celery -A pipeline.app worker -Q ...`` (see Procfile).
"""

from __future__ import annotations

import logging
from typing import Any

from celery import Celery
from celery.signals import (
    beat_init,
    before_task_publish,
    worker_init,
    worker_process_init,
    worker_process_shutdown,
    worker_ready,
)

from config.celery import celery_config
from config.settings import load_settings

TASK_MODULES = [
    "tasks.validation",
    "tasks.payment",
    "tasks.inventory",
    "tasks.shipping",
    "tasks.notification",
    "tasks.revocation",  # a revoked order step cancels its order
    "tasks.maintenance",  # the reconciler, run by Celery beat
]

# Events are batched (pipeline.monitoring.events), through Celery's own extension point.
app = Celery("pipeline", include=TASK_MODULES, events="pipeline.monitoring.events:Events")


class _LazyConfig:
    """Celery reads this on first use: that is process start, not import."""

    def __init__(self) -> None:
        self._values: dict[str, Any] | None = None

    def _load(self) -> dict[str, Any]:
        if self._values is None:
            self._values = celery_config(load_settings())
        return self._values

    def __dir__(self) -> list[str]:
        return list(self._load())

    def __getattr__(self, name: str) -> Any:
        values = self._load()
        if name in values:
            return values[name]
        raise AttributeError(name)


app.config_from_object(_LazyConfig())


@worker_init.connect
def _start_tracing(sender: Any = None, **_: Any) -> None:
    # Before the pool forks and before any engine exists (pipeline.tracing).
    from pipeline import tracing

    lane = str(getattr(sender, "hostname", "") or "worker").split("@", 1)[0]
    tracing.start(f"worker-{lane}")


@beat_init.connect
def _start_tracing_in_beat(**_: Any) -> None:
    from pipeline import tracing

    tracing.start("beat")


@worker_process_shutdown.connect
def _flush_spans(**_: Any) -> None:
    from pipeline import tracing

    tracing.flush()


# Celery's INFO line per task received (the consumer) and per task succeeded (the
# tracer): both decide once, when they are built, whether INFO is on.
TASK_LINE_LOGGERS = ("celery.worker.strategy", "celery.app.trace")


@worker_init.connect
def _quiet_task_lines(**_: Any) -> None:
    # Before the pool forks: its processes build their tracers with these levels.
    if not load_settings().task_log:
        for name in TASK_LINE_LOGGERS:
            logging.getLogger(name).setLevel(logging.WARNING)


@worker_init.connect
def _check_topology(**_: Any) -> None:
    # Fail at start, with the fix in the message, rather than let kombu
    # create an unprovisioned queue with default attributes.
    from pipeline.monitoring.janitor import sweep_with_settings
    from pipeline.sqs.provision import require_provisioned

    settings = load_settings()
    require_provisioned(settings)
    if settings.events:  # clean up after monitors and workers that died
        sweep_with_settings(settings)


@before_task_publish.connect
def _redact_argument_reprs(headers: dict[str, Any] | None = None, **_: Any) -> None:
    # What Flower shows of a task's arguments never carries a secret.
    from pipeline.monitoring.redaction import redact_headers

    if headers is not None:
        redact_headers(headers)


@worker_process_init.connect
def _fresh_resources_after_fork(**_: Any) -> None:
    from pipeline.runtime import reset_runtime

    reset_runtime(close=False)
    from pipeline.worker.warmup import warm_in_background

    warm_in_background(app)


@worker_ready.connect
def _warm_in_process_pool(sender: Any = None, **_: Any) -> None:
    # Threads and solo pools run tasks in this process; prefork children warm
    # themselves after the fork (above).
    from celery.concurrency.prefork import TaskPool as PreforkPool

    from pipeline.worker.warmup import warm_in_background

    if not isinstance(getattr(sender, "pool", None), PreforkPool):
        warm_in_background(app)


@worker_ready.connect
def _warm_events(sender: Any = None, **_: Any) -> None:
    # The sender is the Consumer; its event loop, which flushes events, starts next.
    from pipeline.worker.warmup import warm_events

    warm_events(sender)


@worker_ready.connect
def _watch_the_consumer(sender: Any = None, **_: Any) -> None:
    # A consumer that stopped receiving exits non-zero (pipeline.sqs.liveness).
    from pipeline.runtime import get_runtime
    from pipeline.sqs.liveness import start_watchdog

    settings = load_settings()
    lane = str(getattr(sender, "hostname", "") or "worker").split("@", 1)[0]

    def queues() -> list[str]:  # the sender is the worker's Consumer (celery/apps/worker.py)
        task_consumer = getattr(sender, "task_consumer", None)
        return [q.name for q in getattr(task_consumer, "queues", None) or []]

    start_watchdog(lane, queues, wait_time_s=settings.wait_time_seconds,
                   read_timeout_s=settings.wait_time_seconds + 10,
                   report=lambda host, ages: get_runtime().store.record_consumers(
                       host, lane, ages))
