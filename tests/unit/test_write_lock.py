"""SQLite's write lock: taken with short waits between tries, given up after the timeout,
and the connection's busy timeout kept for every other statement."""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy

from pipeline.store import db


def connect(path: Path) -> sqlite3.Connection:
    connection = sqlite3.connect(path, isolation_level=None, check_same_thread=False,
                                 timeout=db.SQLITE_BUSY_TIMEOUT_MS / 1000)
    connection.execute("PRAGMA journal_mode=WAL")
    connection.execute(f"PRAGMA busy_timeout={db.SQLITE_BUSY_TIMEOUT_MS}")
    return connection


@pytest.fixture
def pair(tmp_path: Path) -> Iterator[tuple[sqlite3.Connection, sqlite3.Connection]]:
    holder, waiter = connect(tmp_path / "db.sqlite"), connect(tmp_path / "db.sqlite")
    holder.execute("CREATE TABLE t (n INTEGER)")
    yield holder, waiter
    holder.close()
    waiter.close()


def busy_timeout(connection: sqlite3.Connection) -> int:
    return int(connection.execute("PRAGMA busy_timeout").fetchone()[0])


def test_the_lock_is_taken_once_the_writer_lets_go(
        pair: tuple[sqlite3.Connection, sqlite3.Connection],
        monkeypatch: pytest.MonkeyPatch) -> None:
    holder, waiter = pair
    holder.execute("BEGIN IMMEDIATE")
    holder.execute("INSERT INTO t VALUES (1)")
    waits: list[float] = []

    def wait(seconds: float) -> None:  # the holder commits during the waiter's third wait
        waits.append(seconds)
        if len(waits) == 3:
            holder.execute("COMMIT")

    monkeypatch.setattr(db.time, "sleep", wait)
    db.take_write_lock(waiter)

    assert waiter.in_transaction
    waiter.execute("INSERT INTO t VALUES (2)")
    waiter.execute("COMMIT")
    assert waits == list(db.WRITE_LOCK_WAITS_S[:3])
    assert busy_timeout(waiter) == db.SQLITE_BUSY_TIMEOUT_MS
    assert [n for (n,) in holder.execute("SELECT n FROM t ORDER BY n")] == [1, 2]


def test_the_waits_stay_short_however_long_the_writer_holds_on(
        pair: tuple[sqlite3.Connection, sqlite3.Connection],
        monkeypatch: pytest.MonkeyPatch) -> None:
    holder, waiter = pair
    holder.execute("BEGIN IMMEDIATE")
    waits: list[float] = []

    def wait(seconds: float) -> None:
        waits.append(seconds)
        if len(waits) == 40:
            holder.execute("COMMIT")

    monkeypatch.setattr(db.time, "sleep", wait)
    db.take_write_lock(waiter)
    waiter.execute("ROLLBACK")
    assert max(waits) == db.WRITE_LOCK_WAITS_S[-1]
    assert waits[len(db.WRITE_LOCK_WAITS_S):] == [db.WRITE_LOCK_WAITS_S[-1]] * (
        40 - len(db.WRITE_LOCK_WAITS_S))


def test_a_lock_never_let_go_is_given_up_after_the_timeout(
        pair: tuple[sqlite3.Connection, sqlite3.Connection]) -> None:
    holder, waiter = pair
    holder.execute("BEGIN IMMEDIATE")
    with pytest.raises(sqlite3.OperationalError, match="locked"):
        db.take_write_lock(waiter, timeout_s=0.05)
    assert not waiter.in_transaction
    assert busy_timeout(waiter) == db.SQLITE_BUSY_TIMEOUT_MS  # restored on failure too
    holder.execute("ROLLBACK")


def test_other_errors_are_not_retried(tmp_path: Path) -> None:
    connection = connect(tmp_path / "db.sqlite")
    connection.execute("BEGIN")
    with pytest.raises(sqlite3.OperationalError, match="within a transaction"):
        db.take_write_lock(connection)
    connection.execute("ROLLBACK")
    assert busy_timeout(connection) == db.SQLITE_BUSY_TIMEOUT_MS


def test_writers_of_an_engine_wait_for_each_other_and_lose_nothing(tmp_path: Path) -> None:
    """Through the engine as the store uses it: threads writing at once, every row kept."""
    engine = db.create_db_engine(f"sqlite:///{tmp_path / 'db.sqlite'}")
    with engine.begin() as conn:
        conn.execute(sqlalchemy.text("CREATE TABLE t (n INTEGER)"))

    def write(base: int) -> None:
        for n in range(50):
            with engine.begin() as conn:
                conn.execute(sqlalchemy.text("INSERT INTO t VALUES (:n)"), {"n": base + n})

    threads = [threading.Thread(target=write, args=(1000 * i,)) for i in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    with db.reading(engine) as conn:
        rows = conn.execute(sqlalchemy.text("SELECT count(DISTINCT n) FROM t")).scalar_one()
    assert rows == 200
    engine.dispose()
