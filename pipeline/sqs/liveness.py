"""Live consumers: a worker that has stopped receiving from a queue says so and exits.

Every completed ReceiveMessage of this process is stamped per queue (our
transport calls `received`). A watchdog thread in the worker's main process
writes the age of each of its queues' last receive to the store every
CHECK_EVERY_S (`pipeline metrics`: pipeline_consumer_last_receive_age_seconds,
`pipeline monitor`), and when one queue has not completed a receive for
STALLED_POLLS long-poll periods (plus the client's read timeout) it logs why
and exits non-zero, so its supervisor starts it again: a consumer that
silently stopped polling (after a broker restart, say) never leaves orders
waiting unseen.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
from collections.abc import Callable

__all__ = ["STALLED_POLLS", "ages", "holding", "received", "stalled", "start_watchdog"]

log = logging.getLogger("pipeline.liveness")
STALLED_POLLS = 4
CHECK_EVERY_S = 10.0
EXIT_CODE = 70  # EX_SOFTWARE: "restart me"
_last: dict[str, float] = {}
_started = time.monotonic()
_lock = threading.Lock()


def received(queue: str) -> None:
    with _lock:
        _last[queue] = time.monotonic()


def holding(queue: str) -> None:
    """The consumer is alive and chose not to receive (pipeline.worker.intake): no stall."""
    received(queue)


def ages(queues: list[str], now: float | None = None) -> dict[str, float]:
    """Seconds since each queue's last completed receive (since start if none yet)."""
    now = time.monotonic() if now is None else now
    with _lock:
        return {q: now - _last.get(q, _started) for q in queues}


MIN_STALL_S = 60.0  # a busy machine must not look like a dead consumer


def stalled(queue_ages: dict[str, float], wait_time_s: float, read_timeout_s: float) -> list[str]:
    limit = max(MIN_STALL_S, STALLED_POLLS * wait_time_s + read_timeout_s)
    return [q for q, age in queue_ages.items() if age > limit]


def start_watchdog(lane: str, queues: Callable[[], list[str]], *, wait_time_s: float,
                   read_timeout_s: float, report: Callable[[str, dict[str, float]], None],
                   exit_process: Callable[[int], None] = os._exit) -> threading.Thread:
    host = f"{socket.gethostname()}:{os.getpid()}"

    def watch() -> None:
        while True:
            time.sleep(CHECK_EVERY_S)
            current = ages(queues())
            try:
                report(host, current)
            except Exception as error:  # the store being down must not kill the consumer
                log.warning("could not record consumer liveness: %s", error)
            dead = stalled(current, wait_time_s, read_timeout_s)
            if dead:
                log.critical("lane %s: no receive from %s for %s s (more than %d long polls): "
                             "exiting so that the supervisor restarts this worker", lane,
                             ", ".join(dead), ", ".join(f"{current[q]:.0f}" for q in dead),
                             STALLED_POLLS)
                exit_process(EXIT_CODE)
                return  # os._exit does not return; a test's stand-in does

    thread = threading.Thread(target=watch, name="consumer-watchdog", daemon=True)
    thread.start()
    return thread
