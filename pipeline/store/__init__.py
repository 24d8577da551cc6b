"""The order store: SQLAlchemy Core on SQLite (WAL) or PostgreSQL."""

from pipeline.store.db import create_db_engine, create_schema, reading
from pipeline.store.repository import Store
from pipeline.store.rows import (
    ConsumerAge,
    LineRow,
    MovementRow,
    NotificationRow,
    OrderRow,
    OrderSummary,
    PaymentRow,
    ProductInFlight,
    ProductRow,
    ReservationRow,
    ShipmentRow,
    StepRow,
    StockLevelRow,
    StockUpdateRow,
)

__all__ = [
    "ConsumerAge", "LineRow", "MovementRow", "NotificationRow", "OrderRow", "OrderSummary",
    "PaymentRow", "ProductInFlight", "ProductRow", "ReservationRow", "ShipmentRow", "StepRow",
    "StockLevelRow", "StockUpdateRow", "Store", "create_db_engine", "create_schema", "reading",
]
