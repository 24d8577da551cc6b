"""The order store: SQLAlchemy Core on SQLite (WAL) or PostgreSQL."""

from pipeline.store.db import create_db_engine, create_schema, reading
from pipeline.store.repository import Store
from pipeline.store.rows import LineRow, OrderRow, PaymentRow

__all__ = ["LineRow", "OrderRow", "PaymentRow", "Store", "create_db_engine", "create_schema",
           "reading"]
