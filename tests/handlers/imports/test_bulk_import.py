"""`stormd import`'s loader: CSV and JSON Lines, all or nothing, idempotent."""

from __future__ import annotations

import csv
import json
from datetime import UTC, datetime
from decimal import Decimal

import pytest
from sqlalchemy import func, select, text

from stormd.handlers.imports import bulk as bulk_import
from stormd.handlers.imports.bulk import ImportFailed, import_file
from stormd.schema import Customer, Order, OrderItem, OrderStatusChange, Product, Store
from stormd.schema.db import deferred_indexes as import_indexes
from stormd.schema.db import multirow

NOW = datetime(2026, 11, 24, 4, 0, tzinfo=UTC)


def order(i: int, **extra) -> dict:
    return {"storeId": "store_1", "orderId": f"o{i}", "customerId": f"c{i % 2}",
            "status": "DELIVERED", "total": "1100.50",
            "occurredAt": f"2026-10-0{i}T10:00:00+06:00",
            "items": [{"productId": "p1", "quantity": 2, "unitPrice": "550.25"}], **extra}


def write_jsonl(path, rows) -> None:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))


def write_csv(path, rows) -> None:
    """Orders as CSV: one column per field, `items` as JSON in its cell."""
    columns = ["storeId", "orderId", "customerId", "status", "total", "occurredAt", "items"]
    with path.open("w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(columns)
        for r in rows:
            writer.writerow([json.dumps(r[c]) if c == "items" else r[c] for c in columns])


async def count(sessionmaker, model) -> int:
    async with sessionmaker() as s:
        return await s.scalar(select(func.count()).select_from(model))


async def snapshot(sessionmaker) -> dict:
    tables = {}
    async with sessionmaker() as s:
        for model in (Store, Customer, Product, Order, OrderItem, OrderStatusChange):
            rows = (await s.execute(select(model.__table__))).all()
            tables[model.__tablename__] = sorted(map(tuple, rows), key=repr)
    return tables


async def test_orders_jsonl_loads_orders_items_history_and_buyers(sessionmaker, tmp_path):
    path = tmp_path / "orders.jsonl"
    write_jsonl(path, [order(1), order(2, status="PAID", promotionCodes=["EID"])])
    result = await import_file(sessionmaker, "orders", path, store=None, now=NOW)
    assert result.rows == 2 and result.rows_per_second > 0
    async with sessionmaker() as s:
        o = await s.get(Order, ("store_1", "o2"))
        assert (o.status, o.total, o.promotion_codes) == ("PAID", Decimal("1100.50"), ["EID"])
        assert o.occurred_at == datetime(2026, 10, 2, 4, 0, tzinfo=UTC)
        assert await s.get(Store, "store_1") is not None
    assert await count(sessionmaker, OrderItem) == 2
    assert await count(sessionmaker, OrderStatusChange) == 2
    assert await count(sessionmaker, Customer) == 2


async def test_customers_csv_with_dotted_consent_and_empty_cells(sessionmaker, tmp_path):
    path = tmp_path / "customers.csv"
    path.write_text(
        "customerId,email,phone,locale,birthday,consent.sms,consent.email,pushTokens\n"
        'c1,a@example.com,+8801711000001,en,1990-04-14,false,true,"[""t1""]"\n'
        "c2,,+8801711000002,,,true,,\n"
    )
    result = await import_file(sessionmaker, "customers", path, store="store_1", now=NOW)
    assert result.rows == 2
    async with sessionmaker() as s:
        c1 = await s.get(Customer, ("store_1", "c1"))
        c2 = await s.get(Customer, ("store_1", "c2"))
    assert (c1.email, c1.locale, c1.consent_sms, c1.consent_email, c1.push_tokens) == (
        "a@example.com", "en", False, True, ["t1"])
    assert (c2.email, c2.locale, c2.consent_sms, c2.consent_email) == (None, "bn", True, True)


async def test_products_csv(sessionmaker, tmp_path):
    path = tmp_path / "products.csv"
    path.write_text("storeId,productId,name,category,price,active\n"
                    "store_1,p1,Panjabi,Clothing,1450.50,true\n"
                    "store_1,p2,Old saree,Clothing,999,false\n")
    await import_file(sessionmaker, "products", path, store=None, now=NOW)
    async with sessionmaker() as s:
        p2 = await s.get(Product, ("store_1", "p2"))
    assert (p2.price, p2.active) == (Decimal("999.00"), False)


@pytest.mark.parametrize("fmt", ["jsonl", "csv"])
async def test_bad_row_names_its_line_and_leaves_nothing(sessionmaker, tmp_path, monkeypatch,
                                                          fmt):
    monkeypatch.setattr(bulk_import, "FLUSH_ROWS", 1)  # good rows are written before the bad
    rows = [order(1), order(2), order(3, total="lots")]
    path = tmp_path / f"orders.{fmt}"
    if fmt == "jsonl":
        write_jsonl(path, rows)
        bad_line = 3
    else:
        write_csv(path, rows)
        bad_line = 4  # the header is line 1
    with pytest.raises(ImportFailed) as failure:
        await import_file(sessionmaker, "orders", path, store=None, now=NOW)
    assert failure.value.line == bad_line
    assert "total" in failure.value.reason
    assert await count(sessionmaker, Order) == 0
    assert await count(sessionmaker, OrderItem) == 0
    assert await count(sessionmaker, Store) == 0


async def test_missing_field_and_invalid_json_are_named(sessionmaker, tmp_path):
    path = tmp_path / "orders.jsonl"
    row = order(1)
    del row["occurredAt"]
    write_jsonl(path, [row])
    with pytest.raises(ImportFailed, match="line 1: missing required field occurredAt"):
        await import_file(sessionmaker, "orders", path, store=None, now=NOW)
    path.write_text(json.dumps(order(1)) + "\n{not json\n")
    with pytest.raises(ImportFailed, match="line 2: "):
        await import_file(sessionmaker, "orders", path, store=None, now=NOW)


async def test_store_comes_from_the_row_or_the_option_and_must_agree(sessionmaker, tmp_path):
    path = tmp_path / "orders.jsonl"
    row = order(1)
    del row["storeId"]
    write_jsonl(path, [row])
    with pytest.raises(ImportFailed, match="line 1: missing storeId"):
        await import_file(sessionmaker, "orders", path, store=None, now=NOW)
    await import_file(sessionmaker, "orders", path, store="store_9", now=NOW)
    async with sessionmaker() as s:
        assert await s.get(Order, ("store_9", "o1")) is not None
    write_jsonl(path, [order(2)])
    with pytest.raises(ImportFailed, match="line 1: storeId 'store_1' is not --store 'store_9'"):
        await import_file(sessionmaker, "orders", path, store="store_9", now=NOW)


async def test_reimporting_the_same_files_changes_nothing(sessionmaker, tmp_path):
    orders = tmp_path / "orders.jsonl"
    write_jsonl(orders, [order(i) for i in range(1, 6)])
    customers = tmp_path / "customers.csv"
    customers.write_text("storeId,customerId,name,consent.sms\nstore_1,c1,Rahim,false\n")
    for _ in range(2):
        await import_file(sessionmaker, "customers", customers, store=None, now=NOW)
        await import_file(sessionmaker, "orders", orders, store=None, now=NOW)
        if _ == 0:
            first = await snapshot(sessionmaker)
    assert await snapshot(sessionmaker) == first
    assert len(first["orders"]) == 5 and len(first["order_status_history"]) == 5


async def test_unknown_file_type_is_refused(sessionmaker, tmp_path):
    path = tmp_path / "orders.xlsx"
    path.write_text("x")
    with pytest.raises(ValueError, match="use .csv or .jsonl"):
        await import_file(sessionmaker, "orders", path, store=None, now=NOW)


def varied(i: int, **extra) -> dict:
    """Orders in every shape the fast path takes: zones with and without minutes, UTC,
    fractions of a second, integer and decimal money, optional fields given or not."""
    zones = ["+06:00", "Z", "+05:30", "-09:30", "+00:00"]
    row = {"storeId": "store_1", "orderId": f"o{i}", "customerId": f"c{i % 3}",
           "status": ["PAID", "PENDING", "DELIVERED"][i % 3], "total": [1200, "99.5"][i % 2],
           "occurredAt": f"2026-03-{1 + i:02d}T23:{i:02d}:0{i % 10}"
                         f"{['', '.5', '.123456'][i % 3]}{zones[i % len(zones)]}",
           "items": [{"productId": f"p{k}", "quantity": k, "unitPrice": ["10.25", 7][k % 2],
                      **({"name": "Panjabi", "category": "Clothing"} if k == 1 else {})}
                     for k in range(1, 1 + i % 3)], **extra}
    if i % 2:
        row["cartId"] = f"cart{i}"
    if i % 4 == 1:
        row["promotionCodes"] = ["EID", "BOISHAKH"]
    return row


async def stored_orders(sessionmaker, store: str) -> list:
    """A store's orders, items and history as the database holds them, minus ids."""
    tables = []
    async with sessionmaker() as s:
        for model in (Order, OrderItem, OrderStatusChange):
            columns = [c for c in model.__table__.c if c.name not in ("id", "store_id")]
            rows = (await s.execute(select(*columns).where(model.store_id == store))).all()
            tables.append(sorted(map(tuple, rows), key=repr))
    return tables


@pytest.mark.parametrize("fmt", ["jsonl", "csv"])
async def test_fast_path_stores_what_the_event_model_stores(sessionmaker, tmp_path, fmt):
    """An unknown extra field sends a row through the pydantic model instead of the fast
    path; both must leave the same rows behind."""
    plain = [varied(i) for i in range(1, 16)]
    modelled = [varied(i, storeId="store_2", note="via the model") for i in range(1, 16)]
    for name, rows in (("plain", plain), ("modelled", modelled)):
        path = tmp_path / f"{name}.{fmt}"
        if fmt == "jsonl":
            write_jsonl(path, rows)
        else:
            columns = ["storeId", "orderId", "customerId", "cartId", "status", "total",
                       "occurredAt", "items", "promotionCodes", "note"]
            with path.open("w", newline="") as fh:
                writer = csv.writer(fh)
                writer.writerow(columns if name == "modelled" else columns[:-1])
                for r in rows:
                    writer.writerow([json.dumps(r[c]) if c in ("items", "promotionCodes")
                                     and c in r else r.get(c, "")
                                     for c in (columns if name == "modelled" else columns[:-1])])
        result = await import_file(sessionmaker, "orders", path, store=None, now=NOW)
        assert result.rows == 15
    fast, model = await stored_orders(sessionmaker, "store_1"), await stored_orders(
        sessionmaker, "store_2")
    assert fast == model
    assert len(fast[0]) == 15 and len(fast[1]) == sum(i % 3 for i in range(1, 16))
    async with sessionmaker() as s:
        o2 = await s.get(Order, ("store_1", "o2"))  # 2026-03-03T23:02:02.123456+05:30
        o3 = await s.get(Order, ("store_1", "o3"))  # 2026-03-04T23:03:03-09:30
    assert o2.occurred_at == datetime(2026, 3, 3, 17, 32, 2, 123456, tzinfo=UTC)
    assert (o2.total, o2.cart_id, o2.status) == (Decimal("1200.00"), None, "DELIVERED")
    assert o3.occurred_at == datetime(2026, 3, 5, 8, 33, 3, tzinfo=UTC)
    assert (o3.total, o3.cart_id, o3.status) == (Decimal("99.50"), "cart3", "PAID")


async def test_a_later_status_in_a_later_file_wins_an_earlier_one_does_not(sessionmaker,
                                                                             tmp_path):
    path = tmp_path / "orders.jsonl"
    write_jsonl(path, [order(1, status="PAID", occurredAt="2026-10-01T10:00:00+06:00")])
    await import_file(sessionmaker, "orders", path, store=None, now=NOW)
    write_jsonl(path, [order(1, status="DELIVERED", occurredAt="2026-10-03T10:00:00+06:00")])
    await import_file(sessionmaker, "orders", path, store=None, now=NOW)
    write_jsonl(path, [order(1, status="CANCELLED", occurredAt="2026-10-02T10:00:00+06:00")])
    await import_file(sessionmaker, "orders", path, store=None, now=NOW)
    async with sessionmaker() as s:
        o = await s.get(Order, ("store_1", "o1"))
    assert o.status == "DELIVERED"
    assert await count(sessionmaker, OrderStatusChange) == 3


@pytest.mark.parametrize("row, reason", [
    ({"occurredAt": "2026-10-01T10:00:00"}, "occurredAt: needs a time zone"),
    ({"occurredAt": "2026-02-30T10:00:00+06:00"}, "occurredAt: "),
    ({"status": "LOST"}, "status: Input should be "),
    ({"items": [{"productId": "p1", "quantity": -1, "unitPrice": "5"}]}, "items.0.quantity: "),
    ({"storeId": ""}, "storeId: String should have at least 1 character"),
])
async def test_rows_the_fast_path_refuses_are_named_by_the_model(sessionmaker, tmp_path, row,
                                                                 reason):
    path = tmp_path / "orders.jsonl"
    write_jsonl(path, [order(1), order(2, **row)])
    with pytest.raises(ImportFailed) as failure:
        await import_file(sessionmaker, "orders", path, store=None, now=NOW)
    assert str(failure.value).startswith(f"line 2: {reason}")
    assert await count(sessionmaker, Order) == 0


def _item(**kw) -> dict:
    return {"productId": "p1", "quantity": 1, "unitPrice": "5", **kw}


# Values the two databases used to store differently (or one refused): history cannot
# bring them in any more than an event can.
@pytest.mark.parametrize("row, reason", [
    ({"items": [_item(unitPrice="10.999")]}, "items.0.unitPrice: has more than 2 decimal "
                                             "places"),
    ({"items": [_item(unitPrice=10.999)]}, "items.0.unitPrice: has more than 2 decimal places"),
    ({"total": 1e30}, "total: Input should be less than or equal to 999999999999.99"),
    ({"total": "12345678901234567.89"}, "total: Input should be less than or equal to"),
    ({"total": 1000000000000}, "total: Input should be less than or equal to"),
    ({"orderId": "o" * 300}, "orderId: String should have at most 128 characters"),
    ({"customerId": "c\u0000"}, "customerId: contains a control character"),
    ({"items": [_item(productId="p\n1")]}, "items.0.productId: contains a control character"),
    ({"items": [_item(quantity=10**30)]}, "items.0.quantity: "),
    ({"items": [_item(quantity=1_000_001)]}, "items.0.quantity: Input should be less than or "
                                             "equal to 1000000"),
    ({"items": [_item(name="a\u0000b")]}, "items.0.name: contains a NUL character"),
    ({"occurredAt": "9999-12-31T23:00:00-06:00"}, "occurredAt is more than 1 hour after the "
                                                  "import"),
    ({"occurredAt": "2026-11-24T05:01:00+00:00"}, "occurredAt is more than 1 hour after the "
                                                  "import"),
    ({"occurredAt": "0001-01-01T00:00:00+06:00"}, "occurredAt: is before 1900"),
    ({"storeId": "store 1"}, "storeId: is not one subject token"),
    ({"promotionCodes": ["x" * 65]}, "promotionCodes.0: String should have at most 64"),
])
async def test_import_rows_keep_the_event_limits(sessionmaker, tmp_path, row, reason):
    path = tmp_path / "orders.jsonl"
    path.write_text(json.dumps(order(1)) + "\n" + json.dumps(order(2, **row)) + "\n")
    with pytest.raises(ImportFailed) as failure:
        await import_file(sessionmaker, "orders", path, store=None, now=NOW)
    assert str(failure.value).startswith(f"line 2: {reason}"), str(failure.value)
    assert await count(sessionmaker, Order) == 0


async def test_an_order_an_hour_ahead_of_the_import_is_taken(sessionmaker, tmp_path):
    path = tmp_path / "orders.jsonl"
    write_jsonl(path, [order(1, occurredAt="2026-11-24T05:00:00+00:00")])
    await import_file(sessionmaker, "orders", path, store=None, now=NOW)
    assert await count(sessionmaker, Order) == 1


@pytest.mark.parametrize("row, reason", [
    ({"createdAt": "2030-01-01T00:00:00+06:00"}, "createdAt is more than 1 hour after the import"),
    ({"createdAt": "2026-01-01T00:00:00"}, "createdAt: needs a time zone"),
    ({"birthday": "9999-01-01"}, "birthday: is not between 1900 and 2100"),
    ({"customerId": "c" * 129}, "customerId: String should have at most 128 characters"),
    ({"name": "n" * 201}, "name: String should have at most 200 characters"),
])
async def test_customer_rows_keep_the_event_limits(sessionmaker, tmp_path, row, reason):
    path = tmp_path / "customers.jsonl"
    write_jsonl(path, [{"customerId": "c1"}, {"customerId": "c2", **row}])
    with pytest.raises(ImportFailed) as failure:
        await import_file(sessionmaker, "customers", path, store="store_1", now=NOW)
    assert str(failure.value).startswith(f"line 2: {reason}"), str(failure.value)
    assert await count(sessionmaker, Customer) == 0


async def test_stores_first_seen_in_a_file_get_the_daemon_time_zone(sessionmaker, tmp_path):
    path = tmp_path / "customers.jsonl"
    write_jsonl(path, [{"customerId": "c1"}])
    await import_file(sessionmaker, "customers", path, store="store_utc", now=NOW,
                      timezone="UTC")
    async with sessionmaker() as s:
        assert (await s.get(Store, "store_utc")).timezone == "UTC"


async def test_many_batches_are_all_written(sessionmaker, tmp_path, monkeypatch):
    monkeypatch.setattr(bulk_import, "FLUSH_ROWS", 3)
    path = tmp_path / "orders.csv"
    write_csv(path, [order(i) for i in range(1, 10)] + [order(1)])
    assert (await import_file(sessionmaker, "orders", path, store=None, now=NOW)).rows == 10
    assert await count(sessionmaker, Order) == 9
    assert await count(sessionmaker, OrderItem) == 9
    assert await count(sessionmaker, Customer) == 2


async def test_big_batches_apply_rows_in_file_order_and_count_every_table(sessionmaker,
                                                                          tmp_path,
                                                                          monkeypatch):
    """250 orders are written 100 rows a statement; an order repeated later in the file
    lands in the same statement as its first row, and its later row still wins."""
    monkeypatch.setattr(multirow, "ROWS_PER_STATEMENT", 100)
    rows = [order(i % 9 + 1, orderId=f"o{i}", customerId=f"c{i % 40}") for i in range(250)]
    rows.append(order(1, orderId="o10", customerId="c10", total="9.99", status="REFUNDED",
                      occurredAt="2026-10-09T10:00:00+06:00",
                      items=[{"productId": "p9", "quantity": 1, "unitPrice": "9.99"}] * 2))
    path = tmp_path / "orders.jsonl"
    write_jsonl(path, rows)
    result = await import_file(sessionmaker, "orders", path, store=None, now=NOW)
    assert (result.rows, result.written) == (251, {
        "customers": 40, "orders": 251, "order_items": 252, "order_status_history": 251})
    assert result.written_per_second > result.rows_per_second
    async with sessionmaker() as s:
        o10 = await s.get(Order, ("store_1", "o10"))
        lines = (await s.execute(select(OrderItem.line_no, OrderItem.product_id)
                                 .where(OrderItem.order_id == "o10")
                                 .order_by(OrderItem.line_no))).all()
    assert (o10.total, o10.status) == (Decimal("9.99"), "REFUNDED")
    assert [tuple(line) for line in lines] == [(1, "p9"), (2, "p9")]
    assert await count(sessionmaker, Order) == 250
    assert await count(sessionmaker, OrderStatusChange) == 251
    first = await snapshot(sessionmaker)
    await import_file(sessionmaker, "orders", path, store=None, now=NOW)
    assert await snapshot(sessionmaker) == first


async def index_definitions(sessionmaker) -> list:
    """The secondary indexes of the order tables as the database defines them."""
    async with sessionmaker() as s:
        if s.bind.dialect.name == "sqlite":
            sql = ("SELECT name, sql FROM sqlite_master WHERE type = 'index' AND tbl_name IN "
                   "('orders', 'order_items', 'order_status_history') ORDER BY name")
        else:
            sql = ("SELECT indexname, indexdef FROM pg_indexes WHERE tablename IN "
                   "('orders', 'order_items', 'order_status_history') ORDER BY indexname")
        return [tuple(r) for r in (await s.execute(text(sql))).all()]


@pytest.mark.parametrize("fmt", ["jsonl", "csv"])
async def test_a_big_file_into_a_small_table_keeps_every_index(sessionmaker, tmp_path,
                                                               monkeypatch, fmt):
    """A file that at least doubles the tables has their secondary indexes built after its
    rows (SQLite); they are all there afterwards, the same as before, and a file that
    fails half way leaves them (and the rows) as they were."""
    monkeypatch.setattr(import_indexes, "DEFER_MIN_ROWS", 2)
    monkeypatch.setattr(bulk_import, "FLUSH_ROWS", 2)
    before = await index_definitions(sessionmaker)
    assert any("product_id" in sql for _, sql in before)
    path = tmp_path / f"orders.{fmt}"
    bad = [order(1), order(2), order(3), order(4, status="LOST")]
    (write_jsonl if fmt == "jsonl" else write_csv)(path, bad)
    with pytest.raises(ImportFailed, match="status"):
        await import_file(sessionmaker, "orders", path, store=None, now=NOW)
    assert await index_definitions(sessionmaker) == before
    assert await count(sessionmaker, Order) == 0
    (write_jsonl if fmt == "jsonl" else write_csv)(path, [order(i) for i in range(1, 6)])
    assert (await import_file(sessionmaker, "orders", path, store=None, now=NOW)).rows == 5
    assert await index_definitions(sessionmaker) == before
    async with sessionmaker() as s:
        by_buyer = (await s.execute(select(Order.order_id).where(
            Order.store_id == "store_1", Order.customer_id == "c1"))).scalars().all()
    assert sorted(by_buyer) == ["o1", "o3", "o5"]
