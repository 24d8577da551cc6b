"""Engines: SQLite in WAL mode with a busy timeout, or PostgreSQL via psycopg 3.

Writes use `engine.begin()`; reads use `reading(engine)`, which on SQLite
starts a plain (deferred) transaction: in WAL mode a reader sees a snapshot
and never waits for the writer, whereas BEGIN IMMEDIATE would queue every
read behind every write of every worker process.

The BEGINs are issued without SQLAlchemy's events: a "begin" listener on the
engine made every statement of every connection go through its event dispatch
(before/after execute, before/after cursor execute), 20 % of a transaction of
three statements here. The write BEGIN is the dialect's `do_begin`; a reading
connection has begun its snapshot already, which `do_begin` finds.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import sqlalchemy
from sqlalchemy import Connection, Engine, event

SQLITE_BUSY_TIMEOUT_MS = 15_000


def reading(engine: Engine) -> Connection:
    """A connection for reads only (use as a context manager; never commit on it)."""
    connection = engine.connect()
    if engine.dialect.name == "sqlite":
        # a deferred snapshot, begun before SQLAlchemy's own begin (which finds it open,
        # see _begin_immediate); closing the connection rolls it back
        driver: Any = connection.connection.driver_connection
        driver.execute("BEGIN")
    return connection


def _begin_immediate(dbapi_connection: Any) -> None:
    """SQLite's write transaction: the write lock up front (see create_db_engine)."""
    driver = dbapi_connection.driver_connection
    if not driver.in_transaction:  # a reading() connection began its snapshot already
        driver.execute("BEGIN IMMEDIATE")


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
            # The driver's own transaction handling off: the BEGINs are ours.
            dbapi_connection.isolation_level = None
            cursor = dbapi_connection.cursor()
            cursor.execute("PRAGMA journal_mode=WAL")
            cursor.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
            cursor.execute("PRAGMA synchronous=NORMAL")
            cursor.execute("PRAGMA foreign_keys=ON")
            cursor.close()

        # WAL lets readers run beside the one writer; IMMEDIATE transactions take the
        # write lock up front, so two workers never deadlock upgrading a read lock.
        engine.dialect.do_begin = _begin_immediate  # type: ignore[method-assign]
        return engine
    return sqlalchemy.create_engine(url, pool_pre_ping=True, pool_size=5, max_overflow=5)


def create_schema(engine: Engine) -> None:
    """Bring the schema up to date through its migrations (idempotent)."""
    from pipeline.store.migrate import upgrade

    upgrade(engine)
