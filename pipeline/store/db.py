"""Engines: SQLite in WAL mode with a busy timeout, or PostgreSQL via psycopg 3.

Writes use `engine.begin()`; reads use `reading(engine)`, which on SQLite
starts a plain (deferred) transaction: in WAL mode a reader sees a snapshot
and never waits for the writer, whereas BEGIN IMMEDIATE would queue every
read behind every write of every worker process.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import sqlalchemy
from sqlalchemy import Connection, Engine, event

SQLITE_BUSY_TIMEOUT_MS = 15_000
READ_ONLY = "pipeline_read_only"  # execution option set by reading()


def reading(engine: Engine) -> Connection:
    """A connection for reads only (use as a context manager; never commit on it)."""
    return engine.connect().execution_options(**{READ_ONLY: True})


def ping(engine: Engine) -> None:
    """One round trip: opens the pool's first connection (pipeline.worker.warmup)."""
    with reading(engine) as connection:
        connection.execute(sqlalchemy.text("SELECT 1"))


def create_db_engine(url: str) -> Engine:
    # sqlalchemy.create_engine looked up at call time: tracing (pipeline.tracing) wraps it.
    if url.startswith("sqlite"):
        path = url.removeprefix("sqlite:///")
        if path and path != ":memory:":
            Path(path).parent.mkdir(parents=True, exist_ok=True)
        engine = sqlalchemy.create_engine(
            url, connect_args={"timeout": SQLITE_BUSY_TIMEOUT_MS / 1000})

        @event.listens_for(engine, "connect")
        def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
            # WAL lets readers run beside the one writer; IMMEDIATE transactions
            # (begin hook below) take the write lock up front, so two workers
            # never deadlock upgrading a read lock.
            dbapi_connection.isolation_level = None
            cursor = dbapi_connection.cursor()
            cursor.execute("PRAGMA journal_mode=WAL")
            cursor.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
            cursor.execute("PRAGMA synchronous=NORMAL")
            cursor.execute("PRAGMA foreign_keys=ON")
            cursor.close()

        @event.listens_for(engine, "begin")
        def _sqlite_begin(connection: Any) -> None:
            # Straight to the driver: through exec_driver_sql a BEGIN cost ~70 us of
            # SQLAlchemy's execution machinery, as much as the rest of an empty
            # transaction (and every step runs several).
            driver = connection.connection.driver_connection
            if connection.get_execution_options().get(READ_ONLY):
                driver.execute("BEGIN")  # a snapshot; takes no lock
            else:
                driver.execute("BEGIN IMMEDIATE")

        return engine
    return sqlalchemy.create_engine(url, pool_pre_ping=True, pool_size=5, max_overflow=5)


def create_schema(engine: Engine) -> None:
    """Bring the schema up to date through its migrations (idempotent)."""
    from pipeline.store.migrate import upgrade

    upgrade(engine)
