"""Enqueue workflows from Python: submit_order(s), get_order and restock."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from functools import partial
from typing import Any

from pipeline import tracing
from pipeline.domain import Order, OrderStatus, parse_order
from pipeline.errors import BrokerUnavailable, InvalidOrder
from pipeline.runtime import get_runtime
from pipeline.store import ShipmentRow

log = logging.getLogger("pipeline.api")


def submit_order(order: Order | dict[str, Any]) -> str:
    """Store the order and start its workflow; returns the order id.

    Safe to call twice with the same document: an order that is still
    RECEIVED gets its workflow published again (the first publish may have
    failed), anything further along is left alone. A different document
    under an existing id raises OrderConflict. If SQS cannot be reached the
    order stays RECEIVED (visible in `pipeline orders --status RECEIVED`) and
    BrokerUnavailable is raised; submitting it again resumes it.
    """
    parsed = order if isinstance(order, Order) else parse_order(order)
    _submit(parsed)
    return parsed.order_id


def submit_orders(orders: Sequence[Order | dict[str, Any]]) -> list[str]:
    """submit_order for several orders, their first messages sent together
    (SendMessageBatch, ten to a request: pipeline.sqs.batching); returns the ids.

    For a producer with several orders in hand (an import, a web tier handing on
    what arrived in the last moment) it costs about half the CPU per order.
    Every document is checked first: an invalid one raises InvalidOrder, saying
    which, and nothing is stored. Then each order is stored and started as
    submit_order would; an OrderConflict stops at its order (those before it are
    stored and their messages sent). If SQS cannot be reached, every order is
    stored and RECEIVED, and BrokerUnavailable names them.
    """
    from pipeline.sqs.batching import sends_batched

    parsed = []
    for n, order in enumerate(orders, start=1):
        try:
            parsed.append(order if isinstance(order, Order) else parse_order(order))
        except InvalidOrder as error:
            raise InvalidOrder([f"order {n} of {len(orders)}: {problem}"
                                for problem in error.problems]) from error
    ids: list[str] = []
    unsent: list[str] = []  # stored and RECEIVED, their first message not sent
    failure: Exception | None = None
    sending = False
    try:
        with sends_batched():
            for order in parsed:
                ids.append(order.order_id)
                try:
                    if not _submit(order, publish=failure is None):
                        unsent.append(order.order_id)
                except BrokerUnavailable as error:  # store the rest, start none of them
                    failure = error.__cause__ if isinstance(error.__cause__, Exception) else error
                    unsent.append(order.order_id)
            sending = True  # what fails now is the held messages leaving
    except Exception as error:
        if not sending:
            raise
        raise _unpublished(", ".join(ids), error) from error
    if failure is not None:
        raise _unpublished(", ".join(unsent), failure) from failure
    return ids


def _submit(parsed: Order, *, publish: bool = True) -> bool:
    """Store the order and (`publish`) start it; False if it waits to be started."""
    from pipeline import steps

    rt = get_runtime()
    store = rt.store
    with tracing.submitted(parsed.order_id) as trace_context:
        created = store.create_order(parsed, trace_context=trace_context)
        if not created and store.status(parsed.order_id) is not OrderStatus.RECEIVED:
            return True
        if not publish:
            return False
        try:
            if created:  # RECEIVED: nothing to read back before its first step
                steps.start(rt.step_context(), parsed)
            else:  # submitted again: its workflow continues the first submission's trace
                with tracing.continued("order.resubmit", parsed.order_id,
                                       partial(store.trace_context, parsed.order_id)):
                    steps.advance(rt.step_context(), parsed.order_id)
        except Exception as error:  # kombu wraps botocore/pycurl errors variously
            raise _unpublished(parsed.order_id, error) from error
    return True


def _unpublished(order_ids: str, error: Exception) -> BrokerUnavailable:
    endpoint = get_runtime().settings.sqs_endpoint_url or "AWS SQS"
    what = ("order {} is stored but its workflow" if "," not in order_ids
            else "orders {} are stored but their workflows").format(order_ids)
    return BrokerUnavailable(
        f"{what} could not be published to {endpoint}: {type(error).__name__}: {error}. "
        "Submit again once SQS answers.")


def restock(sku: str, quantity: int, *, restock_id: str | None = None) -> str:
    """Add delivered stock through inventory.fifo, behind every earlier update of
    the product; returns the restock id. Repeating a restock id is a no-op."""
    import re
    import uuid

    from pipeline.domain import StockOp, StockUpdate
    from pipeline.keys import ID_PATTERN

    if not 1 <= quantity <= 1_000_000:
        raise ValueError(f"restock of {sku}: quantity must be 1-1000000, got {quantity}")
    restock_id = restock_id or f"restock-{uuid.uuid4().hex[:12]}"
    if not re.match(ID_PATTERN, restock_id) or len(restock_id) > 64:
        raise ValueError(f"restock id {restock_id[:80]!r}: use 1-64 of [A-Za-z0-9_.-]")
    rt = get_runtime()
    store = rt.store
    if sku not in store.catalog([sku]):
        raise ValueError(f"restock of {sku}: not in the catalog (add it with `pipeline stock set`)")
    update = StockUpdate(restock_id, sku, quantity, StockOp.RESTOCK)
    store.record_published([update])
    try:
        rt.publisher.stock_updates([update])
    except Exception as error:
        raise BrokerUnavailable(f"restock {restock_id} of {sku} could not be published: "
                                f"{type(error).__name__}: {error}") from error
    return restock_id


def cancel_order(order_id: str, *, reason: str = "cancelled on request") -> str:
    """Cancel an order that has not shipped; it ends CANCELLED through compensation
    (payment voided, stock released, customer told). Returns what happened: one
    of pipeline.services.cancellation.Cancellation's values. Safe to repeat."""
    from pipeline import steps
    from pipeline.services.cancellation import Cancellation, cancel

    rt = get_runtime()
    outcome = cancel(rt.store, order_id, reason[:500])
    if outcome is Cancellation.CANCELLED:
        with tracing.continued("order.cancel", order_id,
                               partial(rt.store.trace_context, order_id)):
            steps.advance(rt.step_context(), order_id)
    return outcome.value


def get_order(order_id: str) -> dict[str, Any]:
    """The order's status, timeline, ledger, reservations, shipment and notifications."""
    store = get_runtime().store
    record = store.order(order_id)
    return {
        "orderId": record.id,
        "status": record.status.value,
        "terminal": record.status.terminal,
        "outcome": record.outcome.value if record.outcome else None,
        "reasons": list(record.reasons),
        "priority": record.priority,
        "totalAmount": str(record.total_amount),
        "currency": record.currency,
        "createdAt": record.created_at.isoformat(),
        "terminalAt": record.terminal_at.isoformat() if record.terminal_at else None,
        "timeline": [
            {"step": s.step, "attempt": s.attempt, "outcome": s.outcome,
             "startedAt": s.started_at.isoformat(),
             "finishedAt": s.finished_at.isoformat() if s.finished_at else None,
             "detail": s.detail, "worker": s.worker}
            for s in store.timeline(order_id)
        ],
        "payments": [
            {"kind": p.kind, "amount": str(p.amount), "currency": p.currency,
             "reference": p.gateway_ref, "at": p.created_at.isoformat()}
            for p in store.payment_entries(order_id)
        ],
        "reservations": [
            {"productId": r.sku, "quantity": r.quantity, "state": r.state,
             "reserveSequence": r.reserve_sequence, "releaseSequence": r.release_sequence}
            for r in store.reservations(order_id)
        ],
        "shipment": _shipment(store.shipment(order_id)),
        "notifications": [
            {"template": n.template, "channel": n.channel, "recipient": n.recipient,
             "body": n.body, "at": n.created_at.isoformat()}
            for n in store.notifications(order_id)
        ],
    }


def _shipment(row: ShipmentRow | None) -> dict[str, Any] | None:
    if row is None:
        return None
    return {"carrier": row.carrier, "trackingNumber": row.tracking_number,
            "at": row.created_at.isoformat()}
