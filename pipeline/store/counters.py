"""Counting what a piece of work costs the database: transactions and statements.

The bench and the middle tier attach a SqlCounter to an engine to report (and pin)
how many transactions and statements each step runs. Transactions count commits
and rollbacks of write and read transactions alike; SAVEPOINTs are statements.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import Engine, event

__all__ = ["SqlCounter"]


@dataclass
class SqlCounter:
    """Transactions and statements on one engine, by label (see `labelled`)."""

    engine: Engine
    label: str = "-"
    transactions: Counter[str] = field(default_factory=Counter)
    statements: Counter[str] = field(default_factory=Counter)

    def __enter__(self) -> SqlCounter:
        event.listen(self.engine, "commit", self._transaction)
        event.listen(self.engine, "rollback", self._transaction)
        event.listen(self.engine, "before_cursor_execute", self._statement)
        return self

    def __exit__(self, *_exc: object) -> None:
        event.remove(self.engine, "commit", self._transaction)
        event.remove(self.engine, "rollback", self._transaction)
        event.remove(self.engine, "before_cursor_execute", self._statement)

    @contextmanager
    def labelled(self, label: str) -> Iterator[None]:
        previous, self.label = self.label, label
        try:
            yield
        finally:
            self.label = previous

    def _transaction(self, _conn: Any) -> None:
        self.transactions[self.label] += 1

    def _statement(self, _conn: Any, _cursor: Any, statement: str, *_rest: Any) -> None:
        if statement.startswith(("BEGIN", "COMMIT", "ROLLBACK")):
            return  # the transaction itself, counted above
        self.statements[self.label] += 1
