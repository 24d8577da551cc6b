"""The catalog and stock levels: products, prices, what is available, and each
product's movements; an administrator's corrections (`set_stock`)."""

from __future__ import annotations

from collections.abc import Iterable
from decimal import Decimal

from sqlalchemy import Connection, Engine, insert, select, update

from pipeline.store import prepared
from pipeline.store import schema as t
from pipeline.store.clock import now
from pipeline.store.db import reading
from pipeline.store.rows import MovementRow, ProductRow, StockLevelRow

__all__ = ["Catalog"]


class Catalog:
    engine: Engine

    def set_stock(self, sku: str, quantity: int, *, price: Decimal | None = None,
                  name: str | None = None, currency: str = "USD") -> dict[str, int]:
        """Set a product's available stock (adding the product when unknown).

        An administrative correction, applied at once; deliveries that must
        keep their place behind reservations go through `restock` instead.
        """
        if quantity < 0:
            raise ValueError("stock quantity must be >= 0")
        with self.engine.begin() as conn:
            product = conn.execute(select(t.products).where(t.products.c.sku == sku)).first()
            if product is None:
                if price is None:
                    raise ValueError(f"{sku} is not in the catalog yet: give it a --price")
                conn.execute(insert(t.products).values(
                    sku=sku, name=name or sku, price=price, currency=currency))
                conn.execute(insert(t.stock).values(sku=sku, available=0, reserved=0, shipped=0))
            elif price is not None:
                conn.execute(update(t.products).where(t.products.c.sku == sku).values(price=price))
            current = conn.execute(select(t.stock.c.available).where(t.stock.c.sku == sku)
                                   ).scalar_one()
            delta = quantity - current
            if delta:
                conn.execute(update(t.stock).where(t.stock.c.sku == sku)
                             .values(available=t.stock.c.available + delta))
                conn.execute(insert(t.stock_movements).values(
                    sku=sku, kind="adjust", delta_available=delta, delta_reserved=0,
                    delta_shipped=0, applied_at=now()))
            row = conn.execute(select(t.stock).where(t.stock.c.sku == sku)).mappings().one()
        return {k: row[k] for k in ("available", "reserved", "shipped")}

    def catalog(self, skus: Iterable[str], *,
                conn: Connection | None = None) -> dict[str, ProductRow]:
        if conn is None:
            with reading(self.engine) as own:
                return self.catalog(skus, conn=own)
        rows = conn.execute(prepared.CATALOG, {"skus": list(skus)})
        return {r["sku"]: ProductRow.of(r) for r in rows.mappings()}

    def stock_levels(self) -> list[StockLevelRow]:
        query = (select(t.products.c.sku, t.products.c.price, t.stock.c.available,
                        t.stock.c.reserved, t.stock.c.shipped)
                 .join(t.stock, t.stock.c.sku == t.products.c.sku).order_by(t.products.c.sku))
        with reading(self.engine) as conn:
            return [StockLevelRow.of(r) for r in conn.execute(query).mappings()]

    def stock_history(self, sku: str) -> list[MovementRow]:
        with reading(self.engine) as conn:
            rows = conn.execute(select(t.stock_movements).where(t.stock_movements.c.sku == sku)
                                .order_by(t.stock_movements.c.id)).mappings().all()
        return [MovementRow.of(r) for r in rows]
