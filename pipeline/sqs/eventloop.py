"""Running a callback on a worker's event loop (kombu's Hub) soon, really soon.

kombu's ``Hub.call_soon`` from the loop's own thread queues the callback for
the loop's *next* turn, which starts only when the current poll returns: with
nothing else happening that is up to a second (measured: a FIFO product fell
from ~200 to 1.5 updates/s when its deletes waited like that). A zero-delay
timer fires before the loop polls again. From any other thread (a threads
pool) ``call_soon`` is right: it is thread-safe and wakes the loop.

Zero-delay timers need one more thing of kombu's loop: it fires at most ten
timers a turn and then polls for a second even when more are due (its
``fire_timers`` returns its one-second minimum once it stops early). A solo
FIFO lane, whose every ack, group hand-over and delete is such a timer, hit
that every few messages: one product at ~5 updates/s instead of ~500. So here a
turn that leaves timers due polls without blocking.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from time import monotonic
from typing import Any

from kombu.asynchronous.hub import Hub

__all__ = ["fire_timers", "on_loop_thread", "run_soon"]

# kombu 5.7's Hub records the thread running its loop in `_loop_thread`. Checked
# here, at import, so that a kombu without it fails loudly instead of silently
# falling back to call_soon and its one-second stall.
if "_loop_thread" not in Hub.__init__.__code__.co_names:
    raise ImportError("kombu's Hub no longer sets _loop_thread: re-check "
                      "pipeline.sqs.eventloop before upgrading kombu")


_kombu_fire_timers = Hub.fire_timers


def fire_timers(self: Hub, min_delay: float = 1, max_delay: float = 10,
                max_timers: int = 10, propagate: tuple[type[BaseException], ...] = ()) -> float:
    """kombu's, except that the poll after it does not block while timers are due."""
    delay: float = _kombu_fire_timers(self, min_delay, max_delay, max_timers, propagate)
    queue = self.timer._queue  # a heap of (eta, priority, entry), eta on monotonic()
    if queue and queue[0][0] <= monotonic():
        return 0
    return delay


Hub.fire_timers = fire_timers  # type: ignore[method-assign]  # create_loop binds it per loop


def on_loop_thread(hub: Any) -> bool:
    return bool(threading.get_ident() == hub._loop_thread)


def run_soon(hub: Any, callback: Callable[..., Any], *args: Any) -> None:
    if on_loop_thread(hub):
        hub.call_later(0, callback, *args)
    else:
        hub.call_soon(callback, *args)
