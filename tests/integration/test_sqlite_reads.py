"""On SQLite, reads never queue behind writes (regression: every read took the
write lock with BEGIN IMMEDIATE, so each worker's reads waited for every other
worker's writes)."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest
from sqlalchemy import func, insert, select

from pipeline.store import create_db_engine, create_schema, reading
from pipeline.store import schema as t

pytestmark = pytest.mark.integration


def test_a_read_proceeds_while_another_connection_holds_the_write_lock(tmp_path: Path) -> None:
    engine = create_db_engine(f"sqlite:///{tmp_path / 'reads.db'}")
    create_schema(engine)
    with engine.begin() as writer:  # BEGIN IMMEDIATE: holds the write lock until the end
        writer.execute(insert(t.circuit_breakers).values(
            name="probe", state="CLOSED", failures=0))
        # Before the fix this waited out the 15 s busy timeout, then raised
        # "database is locked".
        with reading(engine) as reader:
            rows = reader.execute(select(func.count()).select_from(t.circuit_breakers))
            assert rows.scalar_one() == 0  # a snapshot: the uncommitted row is not seen
    with reading(engine) as reader:
        assert reader.execute(
            select(func.count()).select_from(t.circuit_breakers)).scalar_one() == 1
    engine.dispose()


def _write_lock_free(path: Path) -> bool:
    """Whether another connection can take the write lock right now."""
    probe = sqlite3.connect(str(path), timeout=0, isolation_level=None)
    try:
        probe.execute("BEGIN IMMEDIATE")
        probe.execute("ROLLBACK")
        return True
    except sqlite3.OperationalError as error:
        assert "locked" in str(error), error
        return False
    finally:
        probe.close()


def test_a_write_still_takes_the_lock_up_front(tmp_path: Path) -> None:
    """Writers keep BEGIN IMMEDIATE, so two writers never deadlock upgrading a read
    lock: a write transaction that has only read so far already holds the lock, a
    reading() snapshot never does."""
    path = tmp_path / "writes.db"
    engine = create_db_engine(f"sqlite:///{path}")
    create_schema(engine)
    with engine.begin() as writer:
        writer.execute(select(1))
        assert not _write_lock_free(path)
    with reading(engine) as reader:
        reader.execute(select(1))
        assert _write_lock_free(path)
    assert _write_lock_free(path)  # both ended with their connections
    engine.dispose()


def test_statements_pay_no_event_dispatch(tmp_path: Path) -> None:
    """The BEGINs are issued without connection events: one listener on the engine
    sent every statement through SQLAlchemy's event dispatch (20 % of a three-statement
    transaction, measured)."""
    engine = create_db_engine(f"sqlite:///{tmp_path / 'events.db'}")
    listened = {name: len(getattr(engine.dispatch, name)) for name in (
        "begin", "commit", "rollback", "before_execute", "after_execute",
        "before_cursor_execute", "after_cursor_execute")}
    assert listened == dict.fromkeys(listened, 0)
    engine.dispose()
