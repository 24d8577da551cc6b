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

No process forks while one of its threads is inside a SQLite transaction
(`FORK_GUARD`): SQLite keeps each file's locks in process memory, shared by the
process's connections, and a fork copies that memory without the locks
themselves, so a child forked during its parent's write found the write lock
"held" in its own process for good (every write: 'database is locked'). A
worker's main process writes from threads (consumer liveness) while prefork
forks replacements for killed pool processes.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from pathlib import Path
from typing import Any

import sqlalchemy
from sqlalchemy import Connection, Engine, event

log = logging.getLogger("pipeline.store")
SQLITE_BUSY_TIMEOUT_MS = 15_000
# PostgreSQL sessions wait as long for a row lock as SQLite's writers for the file;
# a statement or an open, idle transaction (a wedged process still holding its row
# locks) is cut off after a minute. Each ends in an error the retry policy calls
# transient (pipeline.retry), so a step waits in bounded attempts, visibly, never
# for good inside one delivery.
POSTGRES_LOCK_TIMEOUT_MS = SQLITE_BUSY_TIMEOUT_MS
POSTGRES_STATEMENT_TIMEOUT_MS = 60_000
POSTGRES_IDLE_IN_TRANSACTION_TIMEOUT_MS = 60_000
POSTGRES_CONNECT_TIMEOUT_S = 10


class ForkGuard:
    """Forks wait for this process's SQLite transactions to end; transactions begun
    meanwhile wait for the fork. Transactions of different threads do not wait for
    each other here."""

    WAIT_S = SQLITE_BUSY_TIMEOUT_MS / 1000 * 2  # a transaction can wait that long to begin

    def __init__(self) -> None:
        self._reset()

    def _reset(self) -> None:
        self._cond = threading.Condition()
        self._open: dict[int, int] = {}  # id(driver connection) -> thread in it
        self.forking = False

    def enter(self, connection: Any) -> None:
        key = id(connection)
        with self._cond:
            if key in self._open:
                return
            while self.forking:
                self._cond.wait()
            self._open[key] = threading.get_ident()

    def leave(self, connection: Any) -> None:
        with self._cond:
            if self._open.pop(id(connection), None) is not None and not self._open:
                self._cond.notify_all()

    def before_fork(self) -> None:
        self._cond.acquire()  # held through the fork: no transaction begins meanwhile
        self.forking = True
        me = threading.get_ident()
        deadline = time.monotonic() + self.WAIT_S
        while any(thread != me for thread in self._open.values()):
            left = deadline - time.monotonic()
            if left <= 0:
                log.warning("forking with %d SQLite transaction(s) still open after %.0f s; "
                            "the child may find the database locked", len(self._open),
                            self.WAIT_S)
                break
            self._cond.wait(left)

    def after_fork_in_parent(self) -> None:
        self.forking = False
        self._cond.notify_all()
        self._cond.release()

    def after_fork_in_child(self) -> None:
        self._reset()  # the parent's threads, and their transactions, are not here


FORK_GUARD = ForkGuard()
_fork_hooks = threading.Lock()
_fork_hooks_installed = False


def _guard_forks() -> None:
    """Hook FORK_GUARD into os.fork, once per process, when it first opens SQLite."""
    global _fork_hooks_installed
    with _fork_hooks:
        if not _fork_hooks_installed:
            os.register_at_fork(before=FORK_GUARD.before_fork,
                                after_in_parent=FORK_GUARD.after_fork_in_parent,
                                after_in_child=FORK_GUARD.after_fork_in_child)
            _fork_hooks_installed = True


def reading(engine: Engine) -> Connection:
    """A connection for reads only (use as a context manager; never commit on it)."""
    connection = engine.connect()
    if engine.dialect.name == "sqlite":
        # a deferred snapshot, begun before SQLAlchemy's own begin (which finds it open,
        # see _begin_immediate); closing the connection rolls it back
        driver: Any = connection.connection.driver_connection
        FORK_GUARD.enter(driver)
        driver.execute("BEGIN")
    return connection


def _begin_immediate(dbapi_connection: Any) -> None:
    """SQLite's write transaction: the write lock up front (see create_db_engine)."""
    driver = dbapi_connection.driver_connection
    if not driver.in_transaction:  # a reading() connection began its snapshot already
        FORK_GUARD.enter(driver)
        driver.execute("BEGIN IMMEDIATE")


def _guarded_end(end: Any) -> Any:
    """The dialect's commit, rollback or close, then the transaction is over."""
    def ended(dbapi_connection: Any) -> None:
        try:
            end(dbapi_connection)
        finally:
            FORK_GUARD.leave(getattr(dbapi_connection, "driver_connection", dbapi_connection))

    return ended


def ping(engine: Engine) -> None:
    """One round trip: opens the pool's first connection (pipeline.worker.warmup)."""
    with reading(engine) as connection:
        connection.execute(sqlalchemy.text("SELECT 1"))


def create_db_engine(url: str, *, lock_timeout_ms: int = POSTGRES_LOCK_TIMEOUT_MS) -> Engine:
    """An engine for `url`; `lock_timeout_ms` bounds PostgreSQL's row-lock waits (0: none)."""
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
        _guard_forks()
        dialect: Any = engine.dialect
        dialect.do_begin = _begin_immediate
        dialect.do_commit = _guarded_end(dialect.do_commit)
        dialect.do_rollback = _guarded_end(dialect.do_rollback)
        dialect.do_close = _guarded_end(dialect.do_close)
        return engine
    return sqlalchemy.create_engine(
        url, pool_pre_ping=True, pool_size=5, max_overflow=5,
        connect_args=_postgres_session(url, lock_timeout_ms))


def _postgres_session(url: str, lock_timeout_ms: int) -> dict[str, Any]:
    """libpq connection arguments: bounded waits, then whatever the URL's own `options`
    say (a later `-c` wins, so a URL can still set any of them)."""
    waits = (f"-c lock_timeout={lock_timeout_ms} "
             f"-c statement_timeout={POSTGRES_STATEMENT_TIMEOUT_MS} "
             f"-c idle_in_transaction_session_timeout={POSTGRES_IDLE_IN_TRANSACTION_TIMEOUT_MS}")
    own = sqlalchemy.engine.make_url(url).query.get("options")
    if isinstance(own, tuple):
        own = " ".join(own)
    return {"connect_timeout": POSTGRES_CONNECT_TIMEOUT_S,
            "options": f"{waits} {own}" if own else waits}


def create_schema(engine: Engine) -> None:
    """Bring the schema up to date through its migrations (idempotent)."""
    from pipeline.store.migrate import upgrade

    upgrade(engine)
