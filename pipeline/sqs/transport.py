"""kombu's SQS transport with the project's guarantees added.

Selected by `broker_transport` in config.celery. Events and remote control
over SNS are in pipeline.sqs.broadcast; here:

* kombu files a FIFO publish that carries no MessageGroupId under the group
  "default" with a random deduplication id (celery#8352: retries and
  worker-lost redelivery do exactly that), which puts it behind later
  updates of its product and defeats deduplication. Here that is an error.
* A "redelivered" put is how kombu hands back a received message it will
  not run (a warm shutdown restoring what it prefetched, a requeue): kombu
  hides it for wait_time_seconds more; here it becomes visible at once, so
  SIGTERM leaves nothing invisible for the next worker to wait on.
* The intake queue is not polled while pipeline.worker.intake holds new orders back.
* Inside pipeline.sqs.batching.sends_batched, new messages go out in SendMessageBatch.
* A busy worker waits for several free prefetch slots before it receives
  (pipeline.sqs.prefetch), so a receive brings several messages.
* The hot calls go signed by hand (pipeline.sqs.signed): SQS sends, receives
  and batch deletes, and the SNS Publish of events and broadcasts.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from typing import Any

import kombu
from botocore.exceptions import (
    ClientError,
)
from kombu.transport import SQS, virtual
from vine import promise

from pipeline.errors import FifoGroupMissing
from pipeline.sqs import batching, liveness, prefetch, signed
from pipeline.sqs.acks import ACK_BATCH_WINDOW_S, BatchedAcks
from pipeline.sqs.broadcast import BroadcastChannel
from pipeline.sqs.clients import SignedClients
from pipeline.sqs.eventloop import run_soon
from pipeline.sqs.receive import SignedReceives
from pipeline.worker import intake

# Overrides below reach into kombu's SQS channel (_put, _on_messages_ready,
# _loop1, _schedule_queue, _get_from_sqs, _lookup, ...): checked against this release only.
KOMBU_SERIES = "5.7."
if not kombu.__version__.startswith(KOMBU_SERIES):
    raise ImportError(f"pipeline.sqs.transport was written for kombu {KOMBU_SERIES}x, "
                      f"found {kombu.__version__}: re-check its overrides before upgrading")

__all__ = ["Channel", "Transport"]

log = logging.getLogger("pipeline.sqs")
RECEIVE_FAILURE_PAUSE_S = 1.0


# botocore clients by process and settings: kombu builds one per channel, and each
# comes with a new boto3 Session that parses botocore's models again (~60 ms of
# CPU); a threads lane opened a channel per thread at its first publish (11 % of
# the payments lane's CPU in a burst of 600). botocore clients are thread-safe.
_clients: dict[tuple[Any, ...], Any] = {}
_clients_lock = threading.Lock()


class Channel(SignedClients, BatchedAcks, BroadcastChannel):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self._init_acks()
        self._putting = threading.local()  # .new: this thread is putting a new message
        # Queues whose next receive waits for free prefetch slots, with the timer
        # that ends the wait (pipeline.sqs.prefetch); touched on the loop's thread only.
        self._awaiting_slots: dict[str, Any] = {}
        self._slot_check_scheduled = False
        super().__init__(*args, **kwargs)

    def _put(self, queue: str, message: dict[str, Any], **kwargs: Any) -> None:
        properties = message.get("properties") or {}
        # A `redelivered` put only changes the visibility of the received
        # message, which keeps its group; every other put is a new message.
        if queue.endswith(".fifo") and not message.get("redelivered"):
            group = properties.get("MessageGroupId")
            dedup = properties.get("MessageDeduplicationId")
            if not group or group == "default" or not dedup:
                raise FifoGroupMissing(
                    f"refusing to publish to FIFO queue {queue!r} without a real "
                    f"MessageGroupId and MessageDeduplicationId (got {group!r}, {dedup!r}); "
                    "kombu would file it under group 'default' behind later updates")
        if message.get("redelivered"):
            receipt = properties.get("delivery_tag")
            if receipt:
                try:
                    self.sqs(queue=self.canonical_queue_name(queue)).change_message_visibility(
                        QueueUrl=self._new_queue(queue), ReceiptHandle=receipt,
                        VisibilityTimeout=0)
                except ClientError as error:
                    # Already visible again or gone (e.g. its visibility ran out
                    # during a broker outage): nothing left to hand back.
                    log.info("not handing back a message SQS no longer holds for us: %s",
                             error)
                return
        self._putting.new = True
        try:
            super()._put(queue, message, **kwargs)
        finally:
            self._putting.new = False

    def sqs(self, queue: str | None = None) -> Any:
        """kombu's client, its sends and batch deletes signed and sent by hand
        (pipeline.sqs.signed); while a new message is being put inside sends_batched,
        one that holds its SendMessage for the batch (pipeline.sqs.batching)."""
        client = self._signed(super().sqs(queue))
        return batching.capturing(client) if getattr(self._putting, "new", False) else client

    def asynsqs(self, queue: str | None = None) -> Any:
        """kombu's async receiving connection; over the hand-signed client, one that
        signs its receives by hand too (pipeline.sqs.receive)."""
        if self._asynsqs is None and not self.predefined_queues:
            client = self.sqs(queue=queue)
            if isinstance(client, signed.SignedCalls):
                attributes = self.get_message_attributes
                self._asynsqs: Any = SignedReceives(
                    client, region=self.region,
                    message_system_attribute_names=attributes.get(
                        "MessageSystemAttributeNames"),
                    message_attribute_names=attributes.get("MessageAttributeNames"))
        return super().asynsqs(queue)

    def _new_boto_client(self, service: Any, region: Any, access_key_id: Any,
                         secret_access_key: Any, session_token: Any = None,
                         config: Any = None) -> Any:
        """kombu's client for these settings, built once per process (see `_clients`)."""
        options = self.transport_options.get("client-config") or {}
        key = (os.getpid(), service, region, access_key_id, secret_access_key, session_token,
               self.endpoint_url, self.is_secure, repr(sorted(options.items())), repr(config))
        with _clients_lock:
            client = _clients.get(key)
            if client is None:
                client = _clients[key] = super()._new_boto_client(
                    service, region, access_key_id, secret_access_key, session_token, config)
        return client

    # --- nothing on a queue can kill a worker -----------------------------------
    def _prepare_json_payload(self, text: str) -> Any:
        """kombu catches only JSONDecodeError and TypeError here: a deeply nested
        body (10 kB of '[') raised RecursionError out of the consumer and killed
        the worker, every restart again. Any failure now means "not a kombu
        envelope": Celery's consumer sees no task and dead-letters it
        (pipeline.worker.consumer) with its raw body."""
        try:
            return super()._prepare_json_payload(text)
        except Exception as error:
            log.warning("undecodable message body (%s); handing it on as not a task",
                        type(error).__name__)
            return {}

    def _message_to_python(self, message: dict[str, Any], queue_name: str,
                           q_url: str) -> Any:
        try:
            return super()._message_to_python(message, queue_name, q_url)
        except Exception as error:  # bad base64, bad UTF-8, whatever comes next
            if self.connection is None:  # closed mid-batch: the guard drops the rest
                return {}
            log.warning("cannot read a message from %s (%s: %s); handing it on as not a "
                        "task", queue_name, type(error).__name__, str(error)[:200])
            if queue_name in self._noack_queues:
                self._delete_message(queue_name, message)
            return self._envelope_payload({}, "", message, q_url)

    def basic_consume(self, queue: str, no_ack: bool, *args: Any, **kwargs: Any) -> Any:
        """Every message reaches the consumer through a guard: whatever fails while
        kombu builds its Message or Celery dispatches it (a bad base64 body, an
        envelope without properties, any exception type) dead-letters that message
        with the reason, and the worker carries on."""
        result = super().basic_consume(queue, no_ack, *args, **kwargs)
        inner = self.connection._callbacks[queue]

        def guarded(raw_message: Any) -> Any:
            if self.connection is None:
                # A consumer that failed reset this channel while its batch was being
                # delivered: the rest come back after their visibility timeout.
                return None
            try:
                return inner(raw_message)
            except Exception as error:
                self._unreadable(queue, raw_message, error)
                return None

        self.connection._callbacks[queue] = guarded
        return result

    def _unreadable(self, queue: str, raw_message: Any, error: BaseException) -> None:
        from pipeline.ops.quarantine import garbage_reason, queue_name_of, send_to_dlq
        from pipeline.runtime import get_runtime

        try:
            properties = raw_message.get("properties") or {}
            info = properties.get("delivery_info") or {}
            sqs_message = info.get("sqs_message") or {}
        except AttributeError:
            properties, info, sqs_message = {}, {}, {}
        receipt, url = sqs_message.get("ReceiptHandle"), info.get("sqs_queue")
        name = queue_name_of(self.canonical_queue_name(queue), self.queue_name_prefix)
        log.error("dead-lettering an unreadable message from %s: %s: %s", queue,
                  type(error).__name__, str(error)[:300])
        try:
            if name is not None:  # a work queue: its DLQ, with the reason
                send_to_dlq(get_runtime(), name, str(sqs_message.get("Body") or ""),
                            garbage_reason("UnreadableMessage", error),
                            dead_id=f"garbage-{sqs_message.get('MessageId', '?')}")
            tag = properties.get("delivery_tag")
            if tag is not None and tag in self.qos._delivered:
                self.basic_ack(tag)
            elif receipt and url:
                self.sqs(queue=queue).delete_message(QueueUrl=url, ReceiptHandle=receipt)
        except Exception as failure:  # SQS is down: the message comes back, and so do we
            log.warning("could not dead-letter the unreadable message: %s", failure)

    # --- riding out broker outages -------------------------------------------
    def _on_messages_ready(self, queue: Any, qname: str, messages: Any) -> Any:
        if not isinstance(messages, dict):  # kombu's stand-in for a failed receive
            log.warning("receive from %s failed (SQS timed out or answered 5xx); polling "
                        "again in %ss", qname, RECEIVE_FAILURE_PAUSE_S)
            self.__dict__["_receive_failed"] = True
            return 0
        return super()._on_messages_ready(queue, qname, messages)

    # --- admission control: the intake queue waits while the lanes are full ---
    # The gate's count is one indexed COUNT on the event loop, at most every
    # RECHECK_S: cheaper than a thread hop, and a slow store only delays the poll.
    def _schedule_queue(self, queue: str) -> None:
        gate = intake.gate_for(queue)
        hub = self.hub
        if hub is not None and queue in self._active_queues:
            if gate is not None and not gate.admits():
                liveness.holding(queue)
                hub.call_later(gate.recheck_s, self._schedule_queue, queue)
                return
            if not queue.endswith(".fifo") and not self._worth_polling(queue):
                # pipeline.sqs.prefetch: the pool has work; the receive waits until acks
                # free enough slots (`_slots_freed`), MAX_FILL_WAIT_S at most. (It used
                # to re-check every 10 ms: 20 % of a busy orders lane's loop CPU.)
                if queue not in self._awaiting_slots:
                    self._awaiting_slots[queue] = hub.call_later(
                        prefetch.MAX_FILL_WAIT_S, self._fill_waited, queue)
                return
        super()._schedule_queue(queue)

    def _fill_waited(self, queue: str) -> None:
        if self._awaiting_slots.pop(queue, None) is not None:
            self._schedule_queue(queue)  # its last receive is MAX_FILL_WAIT_S old: it polls

    def _slots_freed(self) -> None:
        """An ack or a reject freed a prefetch slot (on any thread): a waiting receive
        may go now. One check per loop turn, however many acks came."""
        hub = getattr(self, "hub", None)
        if self._awaiting_slots and hub is not None and not self._slot_check_scheduled:
            self._slot_check_scheduled = True
            run_soon(hub, self._poll_filled)

    def _poll_filled(self) -> None:
        self._slot_check_scheduled = False
        for queue in list(self._awaiting_slots):
            if self._worth_polling(queue):
                self._awaiting_slots.pop(queue).cancel()
                self._schedule_queue(queue)

    def basic_reject(self, delivery_tag: str, requeue: bool = False) -> None:
        super().basic_reject(delivery_tag, requeue)
        self._slots_freed()

    def _worth_polling(self, queue: str) -> bool:
        qos = self.qos
        held = len(qos._delivered) - len(qos._dirty)
        return (prefetch.worth_polling(qos.prefetch_count or 0, held)
                or liveness.ages([queue])[queue] > prefetch.MAX_FILL_WAIT_S)

    def _loop1(self, queue: str, messages_fetched: Any = None) -> None:
        hub = self.hub
        if self.__dict__.pop("_receive_failed", False) and hub is not None:
            hub.call_later(RECEIVE_FAILURE_PAUSE_S, self._schedule_queue, queue)  # no spinning
            return
        if messages_fetched and hub is not None:
            # kombu schedules the next receive with call_soon from the loop's thread,
            # which waits for the current poll to return (see pipeline.sqs.eventloop).
            run_soon(hub, self._schedule_queue, queue)
            return
        super()._loop1(queue, messages_fetched)

    def basic_ack(self, delivery_tag: str, multiple: bool = False) -> None:
        """Queue the delete; the acks of a short window go out in one batch.

        kombu deletes each acked message with its own request (~0.75 ms of
        botocore CPU and one emulator/AWS request each). Acks made within
        ACK_BATCH_WINDOW_S (on the loop or by pool threads) are deleted together
        with DeleteMessageBatch. On a FIFO queue the delete is what unlocks the
        product's group, so it does not wait for the window (measured: it halved
        one product's rate): it goes out before the loop polls again, together
        with the other FIFO acks of the same loop turn. Pending deletes are
        flushed when the channel closes; a delete lost in a crash only means
        a redelivery, which every step absorbs.
        """
        try:
            info = self.qos.get(delivery_tag).delivery_info
            receipt = info["sqs_message"]["ReceiptHandle"]
            url = info["sqs_queue"]
        except KeyError:
            super().basic_ack(delivery_tag, multiple)
            return
        queue = self.canonical_queue_name(info["routing_key"]) if "routing_key" in info else None
        fifo = url.endswith(".fifo")  # the delete unlocks the product's group
        with self._ack_lock:
            self._acks[fifo].setdefault(url, (queue, []))[1].append(receipt)
            schedule = fifo not in self._ack_flush_scheduled
            self._ack_flush_scheduled.add(fifo)
        if schedule:
            hub = getattr(self, "hub", None)
            if hub is None:
                self.flush_acks()
            elif fifo:
                run_soon(hub, self._flush_acks_of, True)
            else:
                run_soon(hub, hub.call_later, ACK_BATCH_WINDOW_S, self._flush_acks_of, False)
        virtual.Channel.basic_ack(self, delivery_tag, multiple)
        self._slots_freed()

    def close(self) -> None:
        if any(self._acks.values()):
            self.flush_acks()
        self._close_signed()
        super().close()

    # --- no long poll left behind on shutdown -------------------------------
    def _get_from_sqs(self, queue_name: str, queue_url: str, connection: Any,
                      count: int = 1, callback: Any = None) -> Any:
        self.__dict__["_polls"] = self.__dict__.get("_polls", 0) + 1

        def answered(response: Any) -> Any:
            self.__dict__["_polls"] -= 1
            if isinstance(response, dict):  # kombu hands a failed receive on as a non-dict
                # queue_name is the SQS name already (prefix included)
                liveness.received(queue_name.removeprefix(self.queue_name_prefix))
            return callback(response) if callback is not None else response

        return super()._get_from_sqs(queue_name, queue_url, connection, count,
                                     callback=promise(answered))

    def basic_cancel(self, consumer_tag: str) -> Any:
        result = super().basic_cancel(consumer_tag)
        hub = getattr(self, "hub", None)
        deadline = time.monotonic() + self.wait_time_seconds + 2
        while hub is not None and self.__dict__.get("_polls") and time.monotonic() < deadline:
            hub.run_once()
        if self.__dict__.get("_polls"):
            log.warning("%d long poll(s) still open at shutdown; what they receive stays "
                        "invisible until its visibility timeout", self.__dict__["_polls"])
        return result


# The kombu methods Channel replaces: one renamed upstream would silently stop being
# called (the behaviour it fixes coming back), so a missing one fails the import.
KOMBU_OVERRIDES = ("_put", "asynsqs", "_new_boto_client", "_prepare_json_payload",
                   "_message_to_python", "_on_messages_ready", "_schedule_queue", "_loop1",
                   "_get_from_sqs", "basic_ack", "basic_cancel", "basic_consume", "basic_reject",
                   "close", "sqs")
if _gone := [name for name in KOMBU_OVERRIDES if not hasattr(SQS.Channel, name)]:
    raise ImportError(f"kombu's SQS Channel no longer has {', '.join(_gone)}: re-check "
                      "pipeline.sqs.transport before upgrading kombu")


class Transport(SQS.Transport):
    Channel = Channel
    # Fanout goes through SNS (kombu's `supports_fanout`); advertising it is
    # what lets Celery start the worker's remote-control step.
    implements = SQS.Transport.implements.extend(
        exchange_type=frozenset(["direct", "fanout"]))
