"""Running a callback on a worker's event loop (kombu's Hub) soon, really soon.

kombu's ``Hub.call_soon`` from the loop's own thread queues the callback for
the loop's *next* turn, which starts only when the current poll returns: with
nothing else happening that is up to a second (measured: a FIFO product fell
from ~200 to 1.5 updates/s when its deletes waited like that). A zero-delay
timer fires before the loop polls again. From any other thread (a threads
pool) ``call_soon`` is right: it is thread-safe and wakes the loop.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

from kombu.asynchronous.hub import Hub

__all__ = ["on_loop_thread", "run_soon"]

# kombu 5.7's Hub records the thread running its loop in `_loop_thread`. Checked
# here, at import, so that a kombu without it fails loudly instead of silently
# falling back to call_soon and its one-second stall.
if "_loop_thread" not in Hub.__init__.__code__.co_names:
    raise ImportError("kombu's Hub no longer sets _loop_thread: re-check "
                      "pipeline.sqs.eventloop before upgrading kombu")


def on_loop_thread(hub: Any) -> bool:
    return bool(threading.get_ident() == hub._loop_thread)


def run_soon(hub: Any, callback: Callable[..., Any], *args: Any) -> None:
    if on_loop_thread(hub):
        hub.call_later(0, callback, *args)
    else:
        hub.call_soon(callback, *args)
