"""Pure decisions: the retry table, the compensation plan, derived ids and their limits."""

from __future__ import annotations

import random
import sqlite3

import pytest
from hypothesis import given
from hypothesis import strategies as st
from sqlalchemy.exc import OperationalError

from pipeline.domain import OrderStatus, StockOp, StockUpdate
from pipeline.errors import CircuitOpen, GatewayUnavailable, InvalidTaskArguments
from pipeline.keys import MAX_SQS_ID, dead_letter_id, sqs_id, stock_update_id
from pipeline.retry import Crash, Defer, GiveUp, Retry, RetryPolicy, decide
from pipeline.workflow import OrderState, Undo, compensation_plan

S = OrderStatus
POLICY = RetryPolicy()
RNG = random.Random(1)


def operational(message: str) -> OperationalError:
    return OperationalError("SELECT 1", {}, sqlite3.OperationalError(message))


class PostgresError(Exception):
    """What psycopg raises, as far as the decision reads it: a SQLSTATE."""

    def __init__(self, sqlstate: str) -> None:
        super().__init__(f"SQLSTATE {sqlstate}")
        self.sqlstate = sqlstate


def postgres(sqlstate: str) -> OperationalError:
    return OperationalError("UPDATE stock", {}, PostgresError(sqlstate))


@pytest.mark.parametrize(("error", "attempt", "can_defer", "expected"), [
    (InvalidTaskArguments("forged"), 1, True, GiveUp),
    (GatewayUnavailable("503"), 1, True, Retry),
    (GatewayUnavailable("503"), 2, True, GiveUp),  # max_attempts 2
    (CircuitOpen("gateway", 3.0), 1, True, Defer),
    (CircuitOpen("gateway", 3.0), 1, False, Retry),  # FIFO: no per-message delay
    (CircuitOpen("gateway", 3.0), 2, False, GiveUp),
    (operational("database is locked"), 1, True, Retry),
    (operational("no such table: orders"), 1, True, Crash),  # a bug, not weather
    (postgres("55P03"), 1, False, Retry),  # lock_timeout: another session holds the row
    (postgres("25P03"), 1, True, Retry),  # our idle transaction was ended
    (postgres("40P01"), 1, True, Retry),  # deadlock
    (postgres("57014"), 1, True, Retry),  # statement_timeout
    (postgres("55000"), 1, True, Crash),  # object not in prerequisite state: not weather
    (postgres("42P01"), 1, True, Crash),  # undefined table: a bug
    (ValueError("a bug"), 1, True, Crash),
    (RecursionError("deep"), 1, True, Crash),
])
def test_the_retry_decision_table(error: BaseException, attempt: int, can_defer: bool,
                                  expected: type) -> None:
    decision = decide(error, attempt=attempt, max_attempts=2, policy=POLICY, rng=RNG,
                      can_defer=can_defer)
    assert isinstance(decision, expected), decision


def test_an_open_breaker_is_never_retried_sooner_than_it_reopens() -> None:
    decision = decide(CircuitOpen("gateway", 7.2), attempt=1, max_attempts=5, policy=POLICY,
                      rng=RNG, can_defer=False)
    assert isinstance(decision, Retry) and decision.delay_s >= 8


def state(came_from: OrderStatus | None, outcome: OrderStatus) -> OrderState:
    return OrderState("o", S.COMPENSATING, outcome, came_from, False, (("A", 1),))


@pytest.mark.parametrize(("came_from", "outcome", "plan"), [
    (S.RECEIVED, S.REJECTED, ()),
    (S.VALIDATED, S.CANCELLED, ()),
    (S.AUTHORIZING, S.PAYMENT_DECLINED, ()),
    (S.AUTHORIZING, S.FAILED, (Undo.REVERSE_PAYMENT,)),  # a lost response may have landed
    (S.AUTHORIZING, S.CANCELLED, (Undo.REVERSE_PAYMENT,)),
    (S.RESERVING, S.OUT_OF_STOCK, (Undo.RELEASE_LINES, Undo.REVERSE_PAYMENT)),
    (S.RESERVED, S.CANCELLED, (Undo.RELEASE_LINES, Undo.REVERSE_PAYMENT)),
    (S.SHIPPING, S.SHIPPING_FAILED, (Undo.RELEASE_LINES, Undo.REVERSE_PAYMENT)),
    (S.SHIPPING, S.FAILED, (Undo.CANCEL_SHIPMENT, Undo.RELEASE_LINES, Undo.REVERSE_PAYMENT)),
    (None, S.FAILED, (Undo.RELEASE_LINES, Undo.REVERSE_PAYMENT)),  # from an older release
])
def test_compensation_undoes_what_was_done_newest_first(
        came_from: OrderStatus | None, outcome: OrderStatus, plan: tuple[Undo, ...]) -> None:
    assert compensation_plan(state(came_from, outcome)) == plan


ids = st.text(alphabet="abcXYZ019_.-", min_size=1, max_size=64)


@given(ref=ids, sku=ids, op=st.sampled_from(list(StockOp)))
def test_every_stock_update_id_is_a_valid_sqs_id_and_distinct(ref: str, sku: str,
                                                              op: StockOp) -> None:
    update_id = StockUpdate(ref, sku, 1, op).update_id
    assert len(update_id) <= MAX_SQS_ID
    assert sqs_id(update_id) == update_id
    other = stock_update_id(ref + "x", sku, op.value)
    assert other != update_id


def test_the_longest_ids_an_order_may_have_still_fit_aws_limits() -> None:
    long_id = stock_update_id("o" * 64, "p" * 64, "reserve")  # 137 characters readable
    assert len(long_id) == MAX_SQS_ID
    assert long_id != stock_update_id("o" * 64, "p" * 63 + "q", "reserve")
    with pytest.raises(ValueError):
        sqs_id("x" * 129)
    with pytest.raises(ValueError):
        sqs_id("has space")


def test_each_dead_lettering_of_a_new_message_gets_its_own_id() -> None:
    """A redriven message is a new SQS message: failing again is never dropped as a repeat."""
    first, again = dead_letter_id("m-1"), dead_letter_id("m-2")
    assert first != again and dead_letter_id("m-1") == first
