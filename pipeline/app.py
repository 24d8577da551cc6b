"""The Celery app. Configuration is read from settings when Celery first needs it.

Run a worker with ``celery -A pipeline.app worker -Q ...`` (see Procfile).
"""

from __future__ import annotations

from typing import Any

from celery import Celery
from celery.signals import worker_init, worker_process_init

from config.celery import celery_config
from config.settings import load_settings

TASK_MODULES = [
    "tasks.validation",
    "tasks.payment",
    "tasks.inventory",
    "tasks.shipping",
    "tasks.notification",
]

app = Celery("pipeline", include=TASK_MODULES)


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
def _check_topology(**_: Any) -> None:
    # Fail at start, with the fix in the message, rather than let kombu
    # create an unprovisioned queue with default attributes.
    from pipeline.sqs.provision import require_provisioned

    require_provisioned(load_settings())


@worker_process_init.connect
def _fresh_resources_after_fork(**_: Any) -> None:
    from pipeline.runtime import reset_runtime

    reset_runtime(close=False)
