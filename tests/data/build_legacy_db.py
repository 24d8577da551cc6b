"""Build tests/data/legacy.db: what the pipeline of commit 04b8e07 left behind.

Run against that commit's code, not this one's (it uses its services as they
were, calling them in the orders the issue's adversarial runs observed):

    git worktree add /tmp/legacy 04b8e07
    PYTHONPATH=/tmp/legacy /tmp/legacy-venv-or-.venv/bin/python tests/data/build_legacy_db.py

The database then holds, with that code's own `pipeline audit` reporting it clean:
1. an OUT_OF_STOCK order whose authorization was never voided, its customer told
   "You have not been charged"; a SHIPPING_FAILED order captured and never
   refunded, its customer told "Your payment has been refunded" (a compensation
   that gave up, and the chain went on to notify);
2. a CANCELLED order with authorize, capture, void (cancel raced ship: reverse
   read the ledger before the capture landed), and a CANCELLED order with a
   shipment the carrier accepted but no shipments row;
3. a restock marked DEAD_LETTERED that was never applied (its second dead letter
   reused a deduplication id and SQS dropped it).
"""

from __future__ import annotations

import random
import sys
from decimal import Decimal
from itertools import pairwise
from pathlib import Path

from pipeline.dev.demo import CATALOG, sample_order
from pipeline.domain import OrderStatus as S
from pipeline.domain import parse_order
from pipeline.services import notification
from pipeline.services.simulators import Faults, SimulatedCarrier, SimulatedGateway
from pipeline.store import Store, create_db_engine, create_schema
from pipeline.store import stock as _stock  # noqa: F401 - checked in main()

OUT = Path(__file__).with_name("legacy.db")


def walk(store: Store, order_id: str, path: list[S]) -> None:
    for old, new in pairwise(path):
        assert store.transition(order_id, new, expected=[old]), (old, new)


def pay(store: Store, gateway: SimulatedGateway, order_id: str, kind: str,
        amount: Decimal) -> str:
    key = f"{order_id}:{kind}"
    if kind == "authorize":
        result = gateway.authorize(key, "tok_visa", amount, "USD")
    elif kind == "capture":
        result = gateway.capture(key, f"auth_{order_id}", amount)
    else:
        result = gateway.void(key, f"auth_{order_id}")
    with store.engine.begin() as conn:
        store.record_payment(conn, order_id=order_id, kind=kind, amount=amount, currency="USD",
                             gateway_ref=result["reference"], key=key)
    return str(result["reference"])


def main() -> None:
    if not hasattr(sys.modules["pipeline.store.stock"], "PublishedUpdate"):
        raise SystemExit("run with PYTHONPATH set to a checkout of commit 04b8e07")
    OUT.unlink(missing_ok=True)
    store = Store(create_db_engine(f"sqlite:///{OUT}"))
    create_schema(store.engine)
    for sku, (price, quantity) in CATALOG.items():
        store.set_stock(sku, quantity, price=price)
    gateway = SimulatedGateway(store.engine, Faults(), random.Random(1))
    carrier = SimulatedCarrier(store.engine, Faults(), random.Random(1))
    forward = [S.RECEIVED, S.VALIDATED, S.PAYMENT_AUTHORIZED, S.RESERVING]

    def order(kind: str, n: int, order_id: str) -> tuple[str, Decimal]:
        document = sample_order(kind, n)
        document["orderId"] = order_id
        parsed = parse_order(document)
        store.create_order(parsed)
        return parsed.order_id, parsed.total_amount

    # 1a. OUT_OF_STOCK: the void gave up, notify ran anyway.
    oid, total = order("single", 1, "legacy-oos-not-voided")
    walk(store, oid, forward)
    pay(store, gateway, oid, "authorize", total)
    store.transition(oid, S.COMPENSATING, expected=[S.RESERVING], outcome=S.OUT_OF_STOCK,
                     reasons=["SKU-BOOK: out of stock"])
    store.release_line(oid, "SKU-BOOK", sequence=None)
    notification.notify(store, oid)
    # 1b. SHIPPING_FAILED: the refund gave up, notify ran anyway.
    oid, total = order("single", 2, "legacy-refused-not-refunded")
    walk(store, oid, [*forward, S.RESERVED])
    pay(store, gateway, oid, "authorize", total)
    pay(store, gateway, oid, "capture", total)
    store.transition(oid, S.COMPENSATING, expected=[S.RESERVED], outcome=S.SHIPPING_FAILED,
                     reasons=["shipment refused"])
    notification.notify(store, oid)
    # 2a. Cancel raced ship: reverse read the ledger before the capture landed.
    oid, total = order("single", 3, "legacy-cancel-captured")
    walk(store, oid, [*forward, S.RESERVED])
    pay(store, gateway, oid, "authorize", total)
    store.transition(oid, S.COMPENSATING, expected=[S.RESERVED], outcome=S.CANCELLED,
                     reasons=["cancelled on request"])
    pay(store, gateway, oid, "capture", total)  # ship's capture, before its lost CAS
    pay(store, gateway, oid, "void", total)  # reverse chose void from its stale read
    notification.notify(store, oid)
    # 2b. Cancel raced ship: the carrier accepted, the CAS lost, no shipments row.
    oid, total = order("single", 4, "legacy-cancel-untracked-parcel")
    walk(store, oid, [*forward, S.RESERVED])
    pay(store, gateway, oid, "authorize", total)
    store.transition(oid, S.COMPENSATING, expected=[S.RESERVED], outcome=S.CANCELLED,
                     reasons=["cancelled on request"])
    carrier.create_shipment(f"{oid}:shipment", {"postalCode": "62701"}, 1)
    pay(store, gateway, oid, "void", total)
    notification.notify(store, oid)
    # 3. A restock dead-lettered, redriven, dropped: never applied.
    from pipeline.store.stock import PublishedUpdate

    store.record_published([PublishedUpdate("r-lost:SKU-MUG:restock", "SKU-MUG", "restock",
                                            "r-lost", 10)])
    store.mark_dead_lettered("r-lost:SKU-MUG:restock")
    store.engine.dispose()
    print(f"wrote {OUT}")


if __name__ == "__main__":
    main()
