"""The transient-queue registry's renewing thread must outlive any one channel.

Seen in a fresh-clone `make test` on a slow box: the thread swept through the
first registered channel, which a test had closed; kombu's closed channel raised
AttributeError ('NoneType' object has no attribute 'client'), the thread died,
and from then on no lease of the process was renewed -- so other processes'
janitors would delete its live event queues and mailboxes once the leases ran out.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from pipeline.sqs.broadcast import _Owned, _TransientRegistry
from pipeline.sqs.transient import TransientKind
from pipeline.testing import wait_until


class StandInChannel:
    """What the registry touches of a kombu channel: its connection (None once
    closed, as kombu sets it) and the sweep, which a closed channel cannot run."""

    def __init__(self, is_open: bool) -> None:
        self.connection: Any = object() if is_open else None
        self.swept = 0

    def sweep_transient(self) -> None:
        if self.connection is None:  # kombu: transport_options -> self.connection.client
            raise AttributeError("'NoneType' object has no attribute 'client'")
        self.swept += 1


class StandInSqs:
    def __init__(self) -> None:
        self.tagged: list[str] = []

    def tag_queue(self, QueueUrl: str, Tags: dict[str, str]) -> None:
        self.tagged.append(QueueUrl)


@pytest.fixture
def registry() -> Iterator[_TransientRegistry]:
    made = _TransientRegistry(lease_s=1.0)  # renewed every second, swept every second
    yield made
    made.closed = True
    made._owned.clear()  # nothing for its exit hook to delete


def test_a_closed_channel_does_not_end_the_renewals(registry: _TransientRegistry) -> None:
    sqs = StandInSqs()
    closed, still_open = StandInChannel(is_open=False), StandInChannel(is_open=True)
    registry.add(_Owned("http://sqs/q-closed", "celeryev.a", TransientKind.EVENTS, closed,
                        sqs=sqs))
    registry.add(_Owned("http://sqs/q-open", "celeryev.b", TransientKind.EVENTS, still_open,
                        sqs=sqs))
    wait_until(lambda: still_open.swept >= 2 and sqs.tagged.count("http://sqs/q-closed") >= 3,
               timeout=30, message="two sweeps through the open channel, leases renewed")
    assert registry._thread is not None and registry._thread.is_alive()
    assert closed.swept == 0
