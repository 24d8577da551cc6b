"""A process forked while its parent writes to SQLite can still write.

SQLite keeps each database file's locks in process memory, shared by every
connection of the process, and a fork copies that memory but not the locks
themselves. A child forked while a thread of its parent held the write lock
(a worker's main process records consumer liveness from a thread; prefork
replaces killed pool processes by forking) found the lock "held" in its own
process for good: every write failed 'database is locked', and the orders
waiting behind its product's line stayed RESERVING (make chaos, SQLite).
"""

from __future__ import annotations

import os
import threading
from pathlib import Path

import pytest
from sqlalchemy import text

from pipeline.store import create_db_engine
from pipeline.store.db import FORK_GUARD
from pipeline.testing import wait_until


def child_can_write(path: Path) -> bool:
    """In the child: a fresh engine on the same file writes one row (1 s busy timeout)."""
    import sqlite3

    try:
        conn = sqlite3.connect(path, timeout=1, isolation_level=None)
        conn.execute("BEGIN IMMEDIATE")
        conn.execute("INSERT INTO t VALUES ('child')")
        conn.execute("COMMIT")
        return True
    except sqlite3.OperationalError:
        return False


@pytest.mark.skipif(not hasattr(os, "fork"), reason="fork")
def test_a_fork_waits_for_the_parents_write_and_the_child_can_write(tmp_path: Path) -> None:
    path = tmp_path / "fork.db"
    engine = create_db_engine(f"sqlite:///{path}")
    with engine.begin() as conn:
        conn.execute(text("CREATE TABLE t (v TEXT)"))
    inside, done = threading.Event(), threading.Event()

    def write_slowly() -> None:
        with engine.begin() as conn:
            conn.execute(text("INSERT INTO t VALUES ('parent')"))
            inside.set()
            # held until the fork below is waiting for it (or for 10 s without the guard)
            wait_until(lambda: FORK_GUARD.forking, timeout=10, message="a fork to wait")
        done.set()

    writer = threading.Thread(target=write_slowly, daemon=True)
    writer.start()
    inside.wait(10)
    pid = os.fork()
    if pid == 0:  # the child: report and leave at once, running no pytest teardown
        os._exit(0 if child_can_write(path) else 1)
    _, status = os.waitpid(pid, 0)
    writer.join(15)
    engine.dispose()
    assert os.waitstatus_to_exitcode(status) == 0, "the child could not write"
    assert done.is_set()
