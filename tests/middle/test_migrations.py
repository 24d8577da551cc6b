"""Alembic migrations on SQLite and PostgreSQL: an empty database and one at the
previous revision both reach the head, and the head is exactly the schema the code
declares (a migration forgotten for a schema change fails here)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import Engine, inspect, text

from pipeline.store import create_db_engine
from pipeline.store.migrate import current_revision, head_revision, upgrade
from pipeline.store.schema import metadata
from pipeline.testing import postgres_database, postgres_reachable
from tests.fixtures import POSTGRES_ADMIN_URL


@pytest.fixture(params=["sqlite", "postgresql"])
def empty_engine(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Engine]:
    if request.param == "sqlite":
        engine = create_db_engine(f"sqlite:///{tmp_path / 'empty.db'}")
        yield engine
        engine.dispose()
        return
    why = postgres_reachable(POSTGRES_ADMIN_URL)
    if why:
        pytest.skip(f"PostgreSQL not reachable ({why})")
    with postgres_database(POSTGRES_ADMIN_URL) as url:
        engine = create_db_engine(url)
        yield engine
        engine.dispose()


def differences(engine: Engine) -> list[object]:
    with engine.connect() as conn:
        found = compare_metadata(MigrationContext.configure(conn), metadata)
    # alembic's own bookkeeping table is not part of the declared schema
    return [d for d in found if "alembic_version" not in repr(d)]


def test_an_empty_database_is_upgraded_to_exactly_the_declared_schema(
        empty_engine: Engine) -> None:
    assert current_revision(empty_engine) is None
    upgrade(empty_engine)
    assert current_revision(empty_engine) == head_revision()
    assert differences(empty_engine) == []
    upgrade(empty_engine)  # a second upgrade is a no-op
    assert current_revision(empty_engine) == head_revision()


def test_a_database_at_the_previous_revision_keeps_its_rows_through_the_upgrade(
        empty_engine: Engine) -> None:
    upgrade(empty_engine, "0002")
    assert current_revision(empty_engine) == "0002"
    assert "consumers" not in inspect(empty_engine).get_table_names()
    with empty_engine.begin() as conn:
        conn.execute(text("INSERT INTO products (sku, name, price, currency) "
                          "VALUES ('SKU-M', 'SKU-M', 5, 'USD')"))
        conn.execute(text("INSERT INTO stock (sku, available, reserved, shipped) "
                          "VALUES ('SKU-M', 7, 2, 1)"))
    upgrade(empty_engine)
    assert current_revision(empty_engine) == head_revision()
    assert "consumers" in inspect(empty_engine).get_table_names()
    with empty_engine.connect() as conn:
        row = conn.execute(text(
            "SELECT available, reserved FROM stock WHERE sku = 'SKU-M'")).one()
    assert tuple(row) == (7, 2)
    assert differences(empty_engine) == []
