"""Statements built once: the order reads, an INSERT per table, a transition per shape.

SQLAlchemy caches the compiled SQL of a statement, but a statement built inline
is constructed and has its cache key computed on every call, which cost more
Python than SQLite spent running it (issue #16's profile: ~40 % of a step's
CPU). A statement built once memoizes its cache key; its values travel as
bound parameters.
"""

from __future__ import annotations

from functools import cache
from importlib import import_module
from typing import Any

from sqlalchemy import (
    BindParameter,
    Connection,
    Insert,
    Table,
    Update,
    bindparam,
    insert,
    select,
    update,
)
from sqlalchemy.exc import IntegrityError

from pipeline.store import schema as t

# and the reads below, used by the store
__all__ = ["insert_all_once", "insert_into", "insert_once", "transition"]


@cache
def insert_into(table: Table) -> Insert:
    """INSERT INTO table; execute it with a dict of column values."""
    return insert(table)


@cache
def _insert_or_skip(table: Table, dialect: str, *, returning: bool = True) -> Insert:
    # The engine's own dialect, loaded already: importing PostgreSQL's in a SQLite
    # process cost each pool process ~17 ms of CPU in its first orders.
    on = import_module(f"sqlalchemy.dialects.{dialect}").insert(table)
    skip: Insert = on.on_conflict_do_nothing()
    # RETURNING, not rowcount: SQLAlchemy reports -1 for an INSERT on psycopg
    return skip.returning(*table.primary_key.columns) if returning else skip


def insert_once(conn: Connection, table: Table, values: dict[str, Any]) -> bool:
    """Insert unless a row with the same unique key exists; True if inserted.

    One INSERT ... ON CONFLICT DO NOTHING on SQLite and PostgreSQL: a savepoint
    around a plain INSERT cost three statements, and its IntegrityError also
    hid NOT NULL and foreign-key violations, which now raise."""
    dialect = conn.dialect.name
    if dialect in ("sqlite", "postgresql"):
        return conn.execute(_insert_or_skip(table, dialect), values).first() is not None
    try:
        with conn.begin_nested():
            conn.execute(insert_into(table), values)
        return True
    except IntegrityError:
        return False


def insert_all_once(conn: Connection, table: Table, rows: list[dict[str, Any]]) -> None:
    """`insert_once` for several rows in one statement (an executemany); which of them
    existed already is not reported."""
    dialect = conn.dialect.name
    if dialect not in ("sqlite", "postgresql"):
        for row in rows:
            insert_once(conn, table, row)
    elif rows:
        conn.execute(_insert_or_skip(table, dialect, returning=False), rows)


@cache
def transition(allowed: tuple[str, ...], *, outcome: bool, reasons: bool, terminal: bool,
               compensating_from: bool, unless_cancel_requested: bool,
               returning: bool = False) -> Update:
    """The compare-and-set that moves an order, for one shape of change.

    Parameters: order_id, to, at, and (when the shape has them) new_outcome and
    new_reasons (bound names must differ from the table's column names).
    `returning`: the moved row comes back (a claim reads the order it took)."""
    c = t.orders.c
    values: dict[str, Any] = {"status": bindparam("to", type_=c.status.type),
                              "updated_at": bindparam("at", type_=c.updated_at.type)}
    if outcome:
        values["outcome"] = bindparam("new_outcome", type_=c.outcome.type)
    if reasons:
        values["reasons"] = bindparam("new_reasons", type_=c.reasons.type)
    if terminal:
        values["terminal_at"] = bindparam("at", type_=c.terminal_at.type)
    if compensating_from:
        values["compensating_from"] = c.status  # SET reads the old value
    conditions = [c.id == bindparam("order_id"), c.status.in_(allowed)]
    if unless_cancel_requested:
        conditions.append(c.cancel_requested.is_(None))
    moved = update(t.orders).where(*conditions).values(values)
    return moved.returning(*t.orders.c) if returning else moved


# The reads every step runs (bound parameter: order_id).
ORDER: BindParameter[str] = bindparam("order_id")
ORDER_ROW = select(t.orders).where(t.orders.c.id == ORDER)
ORDER_STATUS = select(t.orders.c.status).where(t.orders.c.id == ORDER)
STATE_ORDER = select(t.orders.c.status, t.orders.c.outcome, t.orders.c.compensating_from,
                     t.orders.c.priority).where(t.orders.c.id == ORDER)
STATE_LINES = select(t.order_lines.c.sku, t.order_lines.c.quantity).where(
    t.order_lines.c.order_id == ORDER).order_by(t.order_lines.c.sku)
STATE_RESERVATIONS = select(t.reservations.c.sku, t.reservations.c.state).where(
    t.reservations.c.order_id == ORDER)
STATE_UPDATES = select(t.stock_updates.c.update_id, t.stock_updates.c.applied_at).where(
    t.stock_updates.c.ref == ORDER)
STATE_DONE = select(t.steps.c.step).distinct().where(
    t.steps.c.order_id == ORDER, t.steps.c.outcome.in_(("ok", "repeated")))
STATE_PAYMENTS = select(t.payments.c.kind, t.payments.c.amount).where(
    t.payments.c.order_id == ORDER).order_by(t.payments.c.id)
PAYMENTS = select(t.payments).where(t.payments.c.order_id == ORDER).order_by(t.payments.c.id)
BREAKER = select(t.circuit_breakers).where(t.circuit_breakers.c.name == bindparam("name"))
ORDER_LINES = select(t.order_lines).where(t.order_lines.c.order_id == ORDER).order_by(
    t.order_lines.c.sku)
CATALOG = select(t.products).where(t.products.c.sku.in_(bindparam("skus", expanding=True)))
