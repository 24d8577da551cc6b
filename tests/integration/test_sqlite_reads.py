"""On SQLite, reads never queue behind writes (regression: every read took the
write lock with BEGIN IMMEDIATE, so each worker's reads waited for every other
worker's writes)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import event, func, insert, select

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


def test_a_write_still_takes_the_lock_up_front(tmp_path: Path) -> None:
    """Writers keep BEGIN IMMEDIATE, so two writers never deadlock upgrading a read lock."""
    engine = create_db_engine(f"sqlite:///{tmp_path / 'writes.db'}")
    create_schema(engine)
    statements: list[str] = []

    def seen(_conn: Any, _cursor: Any, statement: str, *_: Any) -> None:
        statements.append(statement)

    event.listen(engine, "before_cursor_execute", seen)

    with engine.begin() as writer:
        writer.execute(select(1))
    with reading(engine) as reader:
        reader.execute(select(1))
    assert [statements[0], statements[2]] == ["BEGIN IMMEDIATE", "BEGIN"], statements
    engine.dispose()
