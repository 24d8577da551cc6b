"""Celery's threads pool with a slot semaphore, as prefork has.

Stock, the threads pool hands every received task to its executor at once,
so a task waiting for a free thread sits in the executor's queue, out of the
worker's reach: `celery control revoke` (or Flower's revoke) cannot stop it,
and a warm shutdown runs it. Here a task is submitted only when a thread is
free; until then it waits in the worker, where Celery checks the revoked set
before running it (celery/worker/worker.py: _process_task_sem). The slot is
given back on the event loop's thread (kombu's Hub.call_soon is thread-safe).

Selected with ``env CELERY_CUSTOM_WORKER_POOL=pipeline.worker.pool:ThreadPool
celery worker -P custom`` (Celery's hook for out-of-tree pools).
"""

from __future__ import annotations

from concurrent.futures import Future
from typing import Any

import celery
from celery.concurrency import thread
from kombu.asynchronous import get_event_loop

__all__ = ["ThreadPool"]

# What this overrides (on_apply, and Celery's semaphore in front of a pool that
# says uses_semaphore) was read from celery 5.7: a different release fails here.
CELERY_SERIES = "5.7."
if not celery.__version__.startswith(CELERY_SERIES) or not callable(
        getattr(thread.TaskPool, "on_apply", None)):
    raise ImportError(f"pipeline.worker.pool was written for celery {CELERY_SERIES}x "
                      f"(TaskPool.on_apply), found {celery.__version__}")


class ThreadPool(thread.TaskPool):
    uses_semaphore = True  # Celery then puts its LaxBoundedSemaphore in front of us

    def on_apply(self, *args: Any, **kwargs: Any) -> Any:
        result = super().on_apply(*args, **kwargs)
        slots = self.options.get("semaphore")
        if slots is not None:
            hub = get_event_loop()

            def give_back(_: Future[Any]) -> None:
                if hub is not None:
                    hub.call_soon(slots.release)
                else:
                    slots.release()

            result.f.add_done_callback(give_back)
        return result
