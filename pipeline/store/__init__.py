"""The order store: SQLAlchemy Core on SQLite (WAL) or PostgreSQL."""

from pipeline.store.db import create_db_engine, create_schema, reading
from pipeline.store.repository import Store
from pipeline.store.rows import LineRow, OrderRow, PaymentRow, ReservationRow, ShipmentRow

__all__ = ["LineRow", "OrderRow", "PaymentRow", "ReservationRow", "ShipmentRow", "Store",
           "create_db_engine", "create_schema", "reading"]
