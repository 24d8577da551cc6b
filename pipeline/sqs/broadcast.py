"""Events and remote control on SQS: fanout through SNS, replies straight to their queue.

Stock Celery on SQS sends no event anyone receives and answers no `inspect`
(the virtual transport keeps exchange bindings in each process's memory).
With kombu 5.7's SNS fanout and these changes, both work:

* exchanges named in the transport option ``fanout_exchanges`` (Celery's
  event exchange, a "topic" exchange) are declared as fanout, so an event is
  one SNS publish that reaches every monitor's queue;
* a remote-control reply goes straight to the client's reply queue
  (``<oid>.reply.celery.pidbox``): the binding that would route it exists
  only in the client process. A reply whose queue is gone is dropped, never
  allowed to create the queue again;
* messages of no-ack queues (events, pidbox, replies) are deleted in one
  DeleteMessageBatch per receive with the blocking client; kombu deletes them
  one by one through its async client, which crashes in a consumer without an
  event loop (Flower's receiver, `celery inspect`);
* a broadcast command received after its ``expires`` header (plus a grace
  for clock skew) is dropped: a worker's mailbox outlives the worker on SQS,
  and a restarted worker must not run a stale `shutdown` or `pool_restart`;
* reply queues are polled with a short wait (a long poll made every Flower
  page wait the full wait_time_seconds) and kept for the process's life: AWS
  refuses to re-create a queue name for 60 s after deleting it;
* transient queues (pipeline.sqs.transient) get minimal retention and a lease.
"""

from __future__ import annotations

import atexit
import json
import logging
import os
import socket
import threading
import time
from dataclasses import dataclass
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError
from kombu.transport import SQS
from kombu.transport.SQS.exceptions import DoesNotExistQueueException

from config.topology import EVENT_QUEUE_PREFIX, PIDBOX_EXCHANGE
from pipeline.sqs.sns import topic_arns
from pipeline.sqs.transient import (
    TRANSIENT_RETENTION_S,
    Lease,
    TransientKind,
    fit_queue_name,
    transient_kind,
)

__all__ = ["BroadcastChannel", "transient_registry"]

log = logging.getLogger("pipeline.sqs.broadcast")
REPLY_WAIT_S = 1
BROADCAST_GRACE_S = 10.0  # allowance for clock skew and delivery between hosts
DEFAULT_LEASE_S = 180.0


@dataclass
class _Owned:
    url: str
    name: str  # the AMQP-style name kombu uses
    kind: str
    channel: Any
    # Taken while the channel is open: at exit its connection may be gone.
    sqs: Any = None
    sns: Any = None
    topics: tuple[str, ...] = ()


class _TransientRegistry:
    """The transient queues this process uses: their leases are renewed while it
    lives, and they are deleted when it exits cleanly -- mailboxes excepted: a
    restarted worker reuses its mailbox's name, and AWS refuses to re-create a
    name for 60 s after a delete. Every lease period the renewing thread also
    runs the janitor, so any live process cleans up after dead ones."""

    def __init__(self, lease_s: float) -> None:
        self._lock = threading.Lock()
        self._owned: dict[str, _Owned] = {}
        self._thread: threading.Thread | None = None
        self._pid = os.getpid()
        self.closed = False
        self.lease = Lease(lease_s)
        self.owner = f"{socket.gethostname()}:{os.getpid()}"
        atexit.register(self.release_all)

    def add(self, entry: _Owned) -> None:
        with self._lock:
            if os.getpid() != self._pid:  # a forked child owns nothing of its parent's
                self._owned.clear()
                self._thread, self._pid = None, os.getpid()
                self.owner = f"{socket.gethostname()}:{os.getpid()}"
            if entry.url in self._owned:
                return
            self._owned[entry.url] = entry
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(target=self._renew_forever,
                                                name="transient-lease", daemon=True)
                self._thread.start()
        self._renew(entry)

    def _renew(self, entry: _Owned) -> None:
        try:
            entry.sqs.tag_queue(
                QueueUrl=entry.url, Tags=self.lease.tags(self.owner))
        except Exception as error:  # the next renewal tries again
            log.warning("could not renew the lease of %s: %s", entry.url, error)

    def _renew_forever(self) -> None:
        """Nothing may end this thread: a process whose leases stop being renewed has
        its live queues deleted by other processes' janitors once they run out."""
        last_sweep = 0.0
        while not self.closed:
            time.sleep(self.lease.renew_every_s)
            with self._lock:
                owned = list(self._owned.values())
            for entry in owned:
                self._renew(entry)
            if owned and time.monotonic() - last_sweep >= self.lease.duration_s:
                last_sweep = time.monotonic()
                self._sweep(owned)

    @staticmethod
    def _sweep(owned: list[_Owned]) -> None:
        # Through a channel still open: a closed one (kombu sets its connection to
        # None) cannot read its transport options, and an entry outlives its channel.
        sweeper = next((e.channel for e in owned if e.channel.connection is not None), None)
        if sweeper is None:
            return
        try:
            sweeper.sweep_transient()
        except Exception as error:  # e.g. closed since: next period
            log.warning("janitor sweep failed: %s", error)

    def release_all(self) -> None:
        """Delete what this process created, except mailboxes (their lease runs out)."""
        if os.getpid() != self._pid:
            return
        with self._lock:
            self.closed = True
            owned, self._owned = list(self._owned.values()), {}
        for entry in owned:
            if entry.kind == TransientKind.MAILBOX:
                continue
            try:
                entry.channel.delete_transient(entry)
            except Exception as error:  # at exit: the janitor gets what is left
                log.info("left %s for the janitor: %s", entry.url, error)


_registry: _TransientRegistry | None = None
_registry_lock = threading.Lock()


def transient_registry(lease_s: float = DEFAULT_LEASE_S) -> _TransientRegistry:
    """This process's registry, made on first use (never at import)."""
    global _registry
    with _registry_lock:
        if _registry is None:
            _registry = _TransientRegistry(lease_s)
        return _registry


class BroadcastChannel(SQS.Channel):
    """kombu's SQS channel, made to carry events and remote control (see module doc)."""

    @property
    def _fanout_exchanges(self) -> frozenset[str]:
        return frozenset(self.transport_options.get("fanout_exchanges") or ())

    @property
    def _event_prefix(self) -> str:
        return str(self.transport_options.get("event_queue_prefix") or EVENT_QUEUE_PREFIX)

    def _kind(self, name: str) -> str | None:
        return transient_kind(name.removeprefix(self.queue_name_prefix),
                              event_prefix=self._event_prefix)

    def _registry(self) -> _TransientRegistry:
        return transient_registry(
            float(self.transport_options.get("transient_lease_s") or DEFAULT_LEASE_S))

    def canonical_queue_name(self, queue_name: str) -> str:
        return fit_queue_name(super().canonical_queue_name(queue_name))

    # --- fanout -----------------------------------------------------------------
    def exchange_declare(self, exchange: str | None = None, type: str = "direct",
                         *args: Any, **kwargs: Any) -> Any:
        if exchange in self._fanout_exchanges:
            type = "fanout"
        return super().exchange_declare(exchange, type, *args, **kwargs)

    def _fanout_topics(self) -> list[str]:
        from pipeline.monitoring.janitor import fanout_topics

        return fanout_topics(self.queue_name_prefix,
                             [*self._fanout_exchanges, PIDBOX_EXCHANGE])

    # --- replies ----------------------------------------------------------------
    def _lookup(self, exchange: str, routing_key: str, default: Any = None) -> list[str]:
        if exchange and exchange.startswith("reply.") and exchange.endswith(".pidbox"):
            queue = f"{routing_key}.{exchange}"
            try:
                self._resolve_queue_url(queue)
            except DoesNotExistQueueException:
                log.info("no reply queue %s any more: nobody waits for this reply", queue)
                return []
            return [queue]
        return list(super()._lookup(exchange, routing_key, default))

    def _put(self, queue: str, message: dict[str, Any], **kwargs: Any) -> None:
        try:
            super()._put(queue, message, **kwargs)
        except ClientError as error:
            if self._kind(queue) != TransientKind.REPLIES or "NonExistentQueue" not in str(error):
                raise
            # The client gave up and its queue is gone since we looked it up.
            self._queue_cache.pop(self.canonical_queue_name(queue), None)
            log.info("reply queue %s went away: nobody waits for this reply", queue)

    def after_reply_message_received(self, queue: str) -> None:
        """Keep the reply queue for the next call (see module doc); deleted at exit."""

    def _receive_message(self, queue: str, max_number_of_messages: int = 1,
                         wait_time_seconds: int | None = None) -> Any:
        if self._kind(queue) == TransientKind.REPLIES:
            wait_time_seconds = min(wait_time_seconds or 0, REPLY_WAIT_S)
        return super()._receive_message(queue, max_number_of_messages, wait_time_seconds)

    # --- transient queues ----------------------------------------------------------
    def _create_queue(self, queue_name: str, attributes: dict[str, str]) -> Any:
        kind = self._kind(queue_name)
        if kind is None:
            return super()._create_queue(queue_name, attributes)
        registry = self._registry()
        if registry.closed:  # exiting: a late consumer must not re-create what was removed
            raise ConnectionError(f"not creating {queue_name}: this process is exiting")
        attributes = {**attributes, "MessageRetentionPeriod": str(TRANSIENT_RETENTION_S),
                      "SqsManagedSseEnabled": "true"}
        return self.sqs(queue=queue_name).create_queue(
            QueueName=queue_name, Attributes=attributes,
            tags=registry.lease.tags(registry.owner))

    def basic_consume(self, queue: str, *args: Any, **kwargs: Any) -> Any:
        kind = self._kind(queue)
        if kind is not None:  # created now or earlier (a restarted worker's mailbox)
            sns = self.fanout.get_client() if kind == TransientKind.EVENTS else None
            self._registry().add(_Owned(self._new_queue(queue), queue, kind, self,
                                        sqs=self.sqs(queue=queue), sns=sns,
                                        topics=tuple(self._fanout_topics())))
        return super().basic_consume(queue, *args, **kwargs)

    def delete_transient(self, entry: _Owned) -> None:
        """Delete a transient queue and, for an event queue, its SNS subscription."""
        arn = entry.sqs.get_queue_attributes(QueueUrl=entry.url, AttributeNames=["QueueArn"]
                                             )["Attributes"]["QueueArn"]
        entry.sqs.delete_queue(QueueUrl=entry.url)
        if entry.kind != TransientKind.EVENTS:
            return
        sns = entry.sns
        for name, topic_arn in topic_arns(sns).items():
            if name not in entry.topics:
                continue
            for page in sns.get_paginator("list_subscriptions_by_topic").paginate(
                    TopicArn=topic_arn):
                for sub in page.get("Subscriptions", []):
                    if sub.get("Endpoint") == arn:
                        sns.unsubscribe(SubscriptionArn=sub["SubscriptionArn"])

    def sweep_transient(self) -> None:
        from pipeline.monitoring.janitor import sweep

        try:
            report = sweep(self.sqs(), self.fanout.get_client(), prefix=self.queue_name_prefix,
                           lease_s=self._registry().lease.duration_s,
                           topics=self._fanout_topics(), event_prefix=self._event_prefix)
            if report.queues_deleted or report.subscriptions_removed:
                log.info("janitor: removed %d queue(s), %d subscription(s)",
                         len(report.queues_deleted), len(report.subscriptions_removed))
        except (BotoCoreError, ClientError) as error:
            log.warning("janitor sweep failed: %s", error)

    # --- no-ack receipts: one batch delete; stale broadcasts dropped ------------------
    def _delete_message(self, queue_name: str, message: dict[str, Any]) -> None:
        self.__dict__.setdefault("_noack_receipts", {}).setdefault(queue_name, []).append(
            message["ReceiptHandle"])

    def _flush_noack_deletes(self) -> None:
        pending: dict[str, list[str]] = self.__dict__.pop("_noack_receipts", {})
        if pending and self.connection is None:
            # Closed while delivering (a consumer that failed resets its channel):
            # these come back after their visibility timeout and are deleted then.
            log.warning("channel closed with %d no-ack delete(s) pending",
                        sum(map(len, pending.values())))
            return
        for queue_name, receipts in pending.items():
            url = self._new_queue(queue_name)
            for start in range(0, len(receipts), 10):
                entries = [{"Id": str(n), "ReceiptHandle": r}
                           for n, r in enumerate(receipts[start:start + 10])]
                try:
                    self.sqs(queue=queue_name).delete_message_batch(QueueUrl=url,
                                                                    Entries=entries)
                except (BotoCoreError, ClientError) as error:
                    # At worst a monitor sees an event twice; its state is idempotent.
                    log.warning("could not delete %d no-ack message(s) from %s: %s",
                                len(entries), queue_name, error)

    def _drop_stale_broadcasts(self, queue_name: str, messages: list[dict[str, Any]]
                               ) -> list[dict[str, Any]]:
        if self._kind(queue_name) != TransientKind.MAILBOX:
            return messages
        fresh = []
        for message in messages:
            expires = _broadcast_expiry(self, message)
            if expires and time.time() > expires + BROADCAST_GRACE_S:
                log.warning("dropped a broadcast command %.0fs past its expiry",
                            time.time() - expires)
                self._delete_message(queue_name, message)
            else:
                fresh.append(message)
        return fresh

    def _on_messages_ready(self, queue: Any, qname: str, messages: Any) -> Any:
        if isinstance(messages, dict) and messages.get("Messages"):
            messages = {**messages, "Messages": self._drop_stale_broadcasts(
                qname, messages["Messages"])}
        try:
            return super()._on_messages_ready(queue, qname, messages)
        finally:
            self._flush_noack_deletes()

    def _messages_to_python(self, messages: list[dict[str, Any]], queue: str) -> Any:
        try:
            return super()._messages_to_python(self._drop_stale_broadcasts(queue, messages),
                                               queue)
        finally:
            self._flush_noack_deletes()


def _broadcast_expiry(channel: Any, message: dict[str, Any]) -> float | None:
    try:
        text = channel._decode_python_message_body(message["Body"])
        headers = json.loads(text).get("headers") or {}
        return float(headers.get("expires") or 0) or None
    except Exception:  # any body at all may arrive here; the mailbox decides on it later
        return None


# The kombu methods BroadcastChannel replaces (see pipeline.sqs.transport's list).
KOMBU_OVERRIDES = ("_create_queue", "_delete_message", "_lookup", "_messages_to_python",
                   "_on_messages_ready", "_put", "_receive_message",
                   "after_reply_message_received", "basic_consume", "canonical_queue_name",
                   "exchange_declare")
if _gone := [name for name in KOMBU_OVERRIDES if not hasattr(SQS.Channel, name)]:
    raise ImportError(f"kombu's SQS Channel no longer has {', '.join(_gone)}: re-check "
                      "pipeline.sqs.broadcast before upgrading kombu")
