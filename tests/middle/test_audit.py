"""`pipeline audit` finds what the pipeline of commit 04b8e07 got wrong while its own
audit said clean (tests/data/legacy.db, built by tests/data/build_legacy_db.py)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from pipeline.ops.audit import audit, order_violations
from pipeline.store import Store, create_db_engine, create_schema
from pipeline.store.books import order_book_pages
from pipeline.store.migrate import current_revision, head_revision
from pipeline.testing import run_cli
from tests.middle.conftest import Harness

LEGACY = Path(__file__).resolve().parents[1] / "data" / "legacy.db"


def legacy_copy(tmp_path: Path) -> str:
    copy = tmp_path / "legacy.db"
    shutil.copyfile(LEGACY, copy)
    return f"sqlite:///{copy}"


def test_the_audit_names_every_wrong_order_of_the_legacy_database(tmp_path: Path) -> None:
    store = Store(create_db_engine(legacy_copy(tmp_path)))
    create_schema(store.engine)  # stamps the create_all database, then upgrades it
    assert current_revision(store.engine) == head_revision()
    report = audit(store)
    assert not report.clean
    orders = report.orders
    assert any("never voided" in p for p in orders["legacy-oos-not-voided"])
    assert any("'not charged'" in p for p in orders["legacy-oos-not-voided"])
    assert any("not refunded" in p for p in orders["legacy-refused-not-refunded"])
    assert any("money is taken" in p for p in orders["legacy-cancel-captured"])
    assert any("live shipment" in p for p in orders["legacy-cancel-untracked-parcel"])
    assert any("r-lost:SKU-MUG:restock" in v and "DEAD_LETTERED" in v
               for v in report.violations)


def test_pipeline_audit_lists_each_violating_order_and_exits_1(tmp_path: Path) -> None:
    url = legacy_copy(tmp_path)
    create_schema(create_db_engine(url))
    done = run_cli({"PIPELINE_DATABASE_URL": url}, "audit")
    assert done.returncode == 1, done.stdout + done.stderr
    for order_id in ("legacy-oos-not-voided", "legacy-refused-not-refunded",
                     "legacy-cancel-captured", "legacy-cancel-untracked-parcel"):
        assert f"order {order_id}:" in done.stdout


def test_pipeline_audit_exits_0_on_orders_that_ended_right(harness: Harness) -> None:
    completed = harness.submit()
    refused = harness.submit(postal_code="00000")
    harness.drain()
    assert [harness.store.status(o).value for o in (completed, refused)] == [
        "COMPLETED", "SHIPPING_FAILED"]
    done = run_cli({"PIPELINE_DATABASE_URL": str(harness.store.engine.url)}, "audit", "--json")
    assert done.returncode == 0, done.stdout
    assert json.loads(done.stdout)["clean"] is True


def test_the_audit_reads_a_page_of_orders_at_a_time_and_finds_the_same(
        tmp_path: Path) -> None:
    """A whole store read at once held every ledger row in memory and ran statements
    as long as the store (every gateway and carrier effect, even for one order)."""
    store = Store(create_db_engine(legacy_copy(tmp_path)))
    create_schema(store.engine)
    whole = audit(store, page=10_000)
    orders = sum(whole.orders_by_status.values())
    assert orders >= 4  # several pages below, the last one short
    pages = list(order_book_pages(store.engine, None, page=3))
    assert [len(books) for books in pages] == [3] * (orders // 3) + (
        [orders % 3] if orders % 3 else [])
    read = [order_id for books in pages for order_id in books]
    assert read == sorted(set(read))  # each order once, in id order
    for page in (1, 2, 3):
        assert audit(store, page=page).as_dict() == whole.as_dict()
    # The same books, whichever page an order is read in.
    single = {o: b for books in order_book_pages(store.engine, None, page=10_000)
              for o, b in books.items()}
    assert {o: b for books in pages for o, b in books.items()} == single
    # Asked for by id: only those orders, their effects included, in pages.
    wrong = sorted(whole.orders)
    by_id = list(order_book_pages(store.engine, [*wrong, wrong[0]], page=2))
    assert [o for books in by_id for o in books] == wrong
    assert all(books[o].gateway == single[o].gateway and
               books[o].carrier == single[o].carrier for books in by_id for o in books)
    assert any(single[o].gateway for o in wrong)  # effects were read, not left out
    assert order_violations(store, wrong, page=1) == whole.orders
