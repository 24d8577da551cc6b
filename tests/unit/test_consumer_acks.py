"""An ack made on the worker's event loop goes out before the loop polls again.

Regression: Celery defers acks with the hub's call_soon; made inside a timer on
the loop's thread (a solo pool runs its task there) it waited for the next poll,
up to a second, and a solo inventory.fifo lane applied ~6 updates/s (make bench).
"""

from __future__ import annotations

import socket
import threading
from typing import Any

from kombu.asynchronous.hub import Hub

from pipeline.worker.consumer import Consumer


def consumer_on(hub: Hub) -> Consumer:
    """A consumer with only its hub: call_soon_ack needs nothing else."""
    consumer = Consumer.__new__(Consumer)
    consumer.hub = hub
    return consumer


def one_turn(hub: Hub) -> None:
    """One turn of the hub's loop: ready callbacks, due timers, then its poll."""
    loop = hub.create_loop()
    next(loop)


def acked_during_a_timer(call_soon_ack: Any) -> list[str]:
    hub = Hub()
    done: list[str] = []
    consumer = consumer_on(hub)
    hub.call_later(0, lambda: call_soon_ack(consumer, done.append, "acked"))
    # A worker's hub always watches sockets (Celery acks at once on a hub without
    # any). This one is readable already, so the turn's poll returns at once.
    ours, theirs = socket.socketpair()
    hub.add_reader(ours, ours.recv, 1)
    theirs.send(b"x")
    try:
        one_turn(hub)
        return list(done)  # closing the hub runs what it still has ready
    finally:
        hub.close()
        ours.close()
        theirs.close()


def test_an_ack_made_in_a_timer_on_the_loop_runs_in_the_same_turn() -> None:
    assert acked_during_a_timer(Consumer.call_soon_ack) == ["acked"]


def test_celerys_own_call_soon_ack_waits_for_the_next_poll() -> None:
    """What the override fixes; if Celery changes this, the override can go."""
    from celery.worker.consumer import Consumer as CeleryConsumer

    assert acked_during_a_timer(CeleryConsumer.call_soon_ack) == []


def test_an_ack_from_another_thread_wakes_the_loop_as_before() -> None:
    hub = Hub()
    hub._loop_thread = -1  # not this thread
    done: list[str] = []
    consumer_on(hub).call_soon_ack(done.append, "acked")
    assert done == [] and len(hub._ready) == 1
    for callback in hub._pop_ready():
        callback()
    assert done == ["acked"]
    assert threading.get_ident() != hub._loop_thread
