"""Keep a received message invisible while its task runs, or while it waits to run.

A step that runs longer than its queue's visibility timeout would otherwise
be delivered again and run beside itself. One daemon thread per process
extends every registered message to a full visibility timeout each time half
of it has passed; a task registers when it starts and releases when it ends
(before a retry sets the visibility to its backoff). A FIFO message waiting
behind its product's running one in the group gate is held the same way
(tasks.fifo), so SQS never hands it to another worker while this one still
means to run it.
"""

from __future__ import annotations

import heapq
import itertools
import logging
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

log = logging.getLogger("pipeline.heartbeat")


@dataclass(order=True)
class _Entry:
    due: float
    token: int
    queue_url: str = field(compare=False)
    receipt: str = field(compare=False)
    visibility: int = field(compare=False)


class VisibilityKeeper:
    def __init__(self, client_factory: Callable[[], Any]) -> None:
        self._client_factory = client_factory
        self._client: Any = None
        self._heap: list[_Entry] = []
        self._live: set[int] = set()
        self._tokens = itertools.count()
        self._wake = threading.Condition()
        self._thread: threading.Thread | None = None

    def _ensure_thread(self) -> None:
        if self._thread is None or not self._thread.is_alive():
            self._thread = threading.Thread(target=self._run, name="visibility-keeper",
                                            daemon=True)
            self._thread.start()

    def hold(self, queue_url: str, receipt: str, visibility: int) -> int:
        """Keep a message invisible from now until release(token)."""
        token = next(self._tokens)
        entry = _Entry(time.monotonic() + visibility / 2, token, queue_url, receipt, visibility)
        with self._wake:
            self._live.add(token)
            heapq.heappush(self._heap, entry)
            self._ensure_thread()
            if self._heap[0] is entry:  # only an earlier deadline needs the thread awake
                self._wake.notify()
        return token

    def release(self, token: int) -> None:
        with self._wake:
            self._live.discard(token)

    @contextmanager
    def keep(self, queue_url: str, receipt: str, visibility: int) -> Iterator[None]:
        token = self.hold(queue_url, receipt, visibility)
        try:
            yield
        finally:
            self.release(token)

    def _run(self) -> None:
        while True:
            with self._wake:
                while self._heap and self._heap[0].token not in self._live:
                    heapq.heappop(self._heap)  # released
                timeout = (self._heap[0].due - time.monotonic()) if self._heap else None
                if timeout is None or timeout > 0:
                    self._wake.wait(timeout)
                    continue
                entry = heapq.heappop(self._heap)
            self._extend(entry)
            with self._wake:
                if entry.token in self._live:
                    entry.due = time.monotonic() + entry.visibility / 2
                    heapq.heappush(self._heap, entry)

    def _extend(self, entry: _Entry) -> None:
        try:
            if self._client is None:
                self._client = self._client_factory()
            self._client.change_message_visibility(
                QueueUrl=entry.queue_url, ReceiptHandle=entry.receipt,
                VisibilityTimeout=entry.visibility)
            log.info("still running: extended a message's visibility by %ss", entry.visibility)
        except Exception as error:  # the next beat tries again; a redelivery is absorbed
            log.warning("could not extend visibility: %s", error)
