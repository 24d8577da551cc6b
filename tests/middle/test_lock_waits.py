"""A step that waits on a row lock gives up the wait and is retried; it never waits forever.

On PostgreSQL a transaction left open by anyone (an operator's psql session, a wedged
process) held its row locks with no bound: a step needing one of those rows waited
inside its delivery for good, its message kept invisible by the visibility keeper and
its pool slot taken, and each re-drive of the order joined the queue behind it. The
engine now gives every session a lock timeout (like SQLite's busy timeout), a statement
timeout and an idle-in-transaction timeout; a lock wait that runs out is a transient
error, so the step is retried in place with backoff and the order goes on once the
lock is gone.
"""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor, wait
from decimal import Decimal
from typing import Any, TypeVar

from sqlalchemy import create_engine, text

from config.topology import Task
from pipeline.domain import OrderStatus
from pipeline.ops.audit import audit
from pipeline.store import Store, create_db_engine, create_schema
from pipeline.store.migrate import UPGRADE_LOCK_ID, current_revision, head_revision, upgrade
from pipeline.testing import run_cli, wait_until
from tests.middle.conftest import Harness

T = TypeVar("T")
HANG_DETECTOR_S = 120  # no answer by then: the step is waiting on the lock for good


def in_thread(call: Callable[[], T]) -> Future[T]:
    """`call` on a thread of its own: the test holds the lock meanwhile."""
    pool = ThreadPoolExecutor(1)
    try:
        return pool.submit(call)
    finally:
        pool.shutdown(wait=False)  # the thread runs on; the test waits on the future


def test_a_step_waiting_on_a_locked_row_is_retried_and_the_order_completes(
        postgres_url: str) -> None:
    store = Store(create_db_engine(postgres_url, lock_timeout_ms=300))
    create_schema(store.engine)
    harness = Harness(store)
    order_id = harness.submit(lines=[("A", 2)])
    harness.run_until(order_id, OrderStatus.RESERVING)
    sku = f"{harness.tag}-A"

    blocker = create_engine(postgres_url)
    held = blocker.connect()
    try:
        transaction = held.begin()  # left open, as by a forgotten psql session
        held.execute(text("SELECT available FROM stock WHERE sku = :sku FOR UPDATE"),
                     {"sku": sku})
        delivered = in_thread(lambda: harness.deliver(Task.APPLY_LINE))
        waited_for_good = not wait([delivered], HANG_DETECTOR_S).done
        transaction.rollback()
    finally:
        held.close()
        blocker.dispose()

    assert not waited_for_good, "the line waited on the locked stock row with no bound"
    assert delivered.result(HANG_DETECTOR_S) == "retry"
    assert store.status(order_id) is OrderStatus.RESERVING
    harness.drain()
    assert store.status(order_id) is OrderStatus.COMPLETED
    (level,) = [row for row in store.stock_levels() if row.sku == sku]
    assert (level.available, level.reserved, level.shipped) == (48, 0, 2)
    report = audit(store, order_ids=[order_id])
    assert report.clean, report.violations
    store.engine.dispose()


def test_sessions_are_given_bounded_waits_and_keep_the_urls_own_options(
        postgres_url: str) -> None:
    engine = create_db_engine(postgres_url + "?options=-c%20application_name%3Dmine")
    try:
        with engine.connect() as conn:
            shown = {name: conn.execute(text(f"SHOW {name}")).scalar_one() for name in (
                "lock_timeout", "statement_timeout", "idle_in_transaction_session_timeout",
                "application_name")}
    finally:
        engine.dispose()
    assert shown == {"lock_timeout": "15s", "statement_timeout": "1min",
                     "idle_in_transaction_session_timeout": "1min",
                     "application_name": "mine"}


def waiting_upgrades(engine: Any) -> int:
    """Sessions waiting over a second for an advisory lock (read outside any open
    transaction: pg_stat_activity is a snapshot within one)."""
    with engine.connect() as conn:
        return int(conn.execute(text(
            "SELECT count(*) FROM pg_locks l JOIN pg_stat_activity a USING (pid) "
            "WHERE l.locktype = 'advisory' AND NOT l.granted "
            "AND clock_timestamp() - a.query_start > interval '1 second'")).scalar_one())


def test_a_second_schema_upgrade_waits_for_the_first_past_the_lock_timeout(
        postgres_url: str) -> None:
    """Two `pipeline provision` runs at once: the second waits on the first's advisory
    lock for as long as the first's migrations take, not for a step's lock timeout."""
    engine = create_db_engine(postgres_url, lock_timeout_ms=200)
    first = create_engine(postgres_url)
    held = first.connect()
    try:
        transaction = held.begin()  # the first upgrader, mid-migration
        held.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": UPGRADE_LOCK_ID})
        upgraded = in_thread(lambda: upgrade(engine))
        # Waiting, and for five times the lock timeout (state, not a sleep: the
        # server's own clock on the waiting query).
        wait_until(lambda: upgraded.done() or waiting_upgrades(first),
                   timeout=HANG_DETECTOR_S, message="the second upgrade waiting on the first")
        waiting = not upgraded.done()
        transaction.rollback()
    finally:
        held.close()
        first.dispose()
    assert waiting, ("the second upgrade ended while the first held the lock: "
                     f"{upgraded.exception()}")
    assert upgraded.result(HANG_DETECTOR_S) is None
    assert current_revision(engine) == head_revision()
    engine.dispose()


def test_the_command_line_reports_a_lock_it_waited_out_and_changes_nothing(
        postgres_url: str) -> None:
    """An operator's `pipeline stock set` behind a locked row: a message saying what
    happened and to try again (exit 2, as every reported error), not a traceback."""
    store = Store(create_db_engine(postgres_url))
    create_schema(store.engine)
    store.set_stock("SKU-HELD", 5, price=Decimal("2.00"))
    blocker = create_engine(postgres_url)
    try:
        with blocker.begin() as held:
            held.execute(text("SELECT available FROM stock WHERE sku = 'SKU-HELD' FOR UPDATE"))
            done = run_cli({"PIPELINE_DATABASE_URL": postgres_url
                            + "?options=-c%20lock_timeout%3D300"},
                           "stock", "set", "SKU-HELD", "9", timeout=HANG_DETECTOR_S)
    finally:
        blocker.dispose()
    assert done.returncode == 2, done.stdout + done.stderr
    assert "Traceback" not in done.stderr, done.stderr
    assert "lock timeout" in done.stderr and "try again" in done.stderr, done.stderr
    (level,) = [row for row in store.stock_levels() if row.sku == "SKU-HELD"]
    assert level.available == 5
    store.engine.dispose()
