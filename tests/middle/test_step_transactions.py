"""One transaction per step: a step's change commits with its timeline row.

The fresh-clone run of 6b73607 failed once because the notify step ended the
order (COMPLETED) in one transaction and wrote its timeline row in the next: a
reader between the two saw a finished order whose timeline had no `notify`.
Here a watcher looks at the database from another connection before every
transaction any step begins, so it sees each committed state the steps pass
through, and asserts that no status is ever ahead of the timeline row of the
step that set it (nor such a row ahead of its status). The second test pins
what a step costs the database (pipeline.store.counters), so a change that
splits a step's transaction again, or adds reads, shows up here.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from typing import Any

import pytest
from sqlalchemy import event

from pipeline import steps
from pipeline.domain import OrderStatus
from pipeline.services.simulators import DECLINED_TOKEN, UNDELIVERABLE_POSTCODE
from pipeline.store.counters import SqlCounter
from tests.middle.conftest import Harness

S = OrderStatus
TERMINAL = tuple(s.value for s in OrderStatus if s.terminal)
# The status a step sets, and the timeline row that must commit with it.
SET_BY = {S.VALIDATED.value: "validate", S.RESERVING.value: "authorize_payment",
          S.SHIPPED.value: "ship", **{status: "notify" for status in TERMINAL}}


def _ahead(db: sqlite3.Connection) -> list[str]:
    """Orders whose status has no committed row of the step that set it, and notify
    rows whose order has not ended."""
    problems = []
    for order_id, status in db.execute("SELECT id, status FROM orders"):
        step = SET_BY.get(status)
        if step and not db.execute(
                "SELECT 1 FROM steps WHERE order_id = ? AND step = ? AND outcome = 'ok'",
                (order_id, step)).fetchone():
            problems.append(f"{order_id} is {status} without a committed {step} row")
    marks = ",".join("?" * len(TERMINAL))
    for (order_id,) in db.execute(
            "SELECT s.order_id FROM steps s JOIN orders o ON o.id = s.order_id WHERE "
            f"s.step = 'notify' AND s.outcome = 'ok' AND o.status NOT IN ({marks})", TERMINAL):
        problems.append(f"{order_id} has a notify row but has not ended")
    return problems


@pytest.fixture
def watched(harness: Harness) -> Iterator[list[str]]:
    """Every problem seen by a check before each transaction begins."""
    db = sqlite3.connect(str(harness.store.engine.url.database))
    seen: list[str] = []
    checks = [0]

    def check(_conn: Any) -> None:
        checks[0] += 1
        seen.extend(p for p in _ahead(db) if p not in seen)

    event.listen(harness.store.engine, "begin", check)
    yield seen
    event.remove(harness.store.engine, "begin", check)
    seen.extend(_ahead(db))
    db.close()
    assert checks[0] > 50, f"the watcher ran only {checks[0]} times"


def test_no_status_is_ever_ahead_of_the_step_row_that_set_it(harness: Harness,
                                                             watched: list[str]) -> None:
    orders = {
        harness.submit(lines=[("A", 1), ("B", 1)]): S.COMPLETED,
        harness.submit(postal_code="ABCDE"): S.REJECTED,
        harness.submit(token=DECLINED_TOKEN): S.PAYMENT_DECLINED,
        harness.submit(lines=[("A", 1), ("B", 5)]): S.OUT_OF_STOCK,
        harness.submit(postal_code=UNDELIVERABLE_POSTCODE): S.SHIPPING_FAILED,
    }
    harness.drain()
    assert {o: harness.store.status(o) for o in orders} == orders
    assert watched == []


# Transactions / statements one delivery of each step may cost, for an order of two
# lines that completes (SQLite, reads and the simulated gateway's and carrier's own
# books included). Before one transaction per step: 49 / 135 per order; before
# insert_once was one INSERT ... ON CONFLICT DO NOTHING (not a savepoint round it):
# authorize 21, ship 29, notify 14 statements; before claims read the order with
# their compare-and-set (UPDATE ... RETURNING) and a line decided the fan-in in its
# own transaction: validate (3, 5), authorize (6, 15), reserve (4, 17), ship (9, 25),
# notify (2, 12).
BUDGET = {"validate": (2, 5), "authorize_payment": (4, 13), "reserve": (2, 9),
          "ship": (6, 20), "notify": (1, 5)}


def test_each_step_stays_within_its_transaction_budget(harness: Harness) -> None:
    with SqlCounter(harness.store.engine) as counter:
        order_id = harness.submit(lines=[("A", 1), ("B", 1)])
        deliveries: dict[str, int] = {}
        while harness.broker.deliverable():
            message = harness.next_message()
            step = steps.step_name(message.task, message.args).split(":")[0]
            deliveries[step] = deliveries.get(step, 0) + 1
            with counter.labelled(step):
                harness.broker.deliver(message, harness.context)
    assert harness.store.status(order_id) is S.COMPLETED
    assert deliveries == {step: 2 if step == "reserve" else 1 for step in BUDGET}
    spent = {step: (counter.transactions[step], counter.statements[step]) for step in BUDGET}
    over = {step: (spent[step], (budget[0] * deliveries[step], budget[1] * deliveries[step]))
            for step, budget in BUDGET.items()
            if spent[step][0] > budget[0] * deliveries[step]
            or spent[step][1] > budget[1] * deliveries[step]}
    assert over == {}, f"(spent, budget) per step: {over}"
