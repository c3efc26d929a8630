"""`stormd import orders`, the fast way: rows checked by hand, written by the driver.

A pydantic model per row, dicts per row and SQLAlchemy's per-row parameter handling cost
several times SQLite's own insert. Here an order in the plain, common shape (known
camelCase keys, exact JSON types, decimal strings, ISO times with a zone, every value
plainly inside the event limits) becomes the driver's tuples straight away; anything else
goes through `OrderRow`, the event's model, which either accepts it (and the same tuples
are built from the model) or names the problem in the words the event path uses. Both
paths store identical values and accept exactly what the event path accepts.
"""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal
from operator import itemgetter
from typing import Any

from pydantic import Field
from sqlalchemy.ext.asyncio import AsyncSession

from stormd.handlers.shop.orders import _keep_status, _mark_codes_redeemed, _status_from_history
from stormd.schema.db.multirow import DriverUpsert
from stormd.schema.db.pg_copy import CopyUpsert
from stormd.schema.shop.customers import Customer
from stormd.schema.shop.orders import Order, OrderItem, OrderStatusChange
from stormd.schema.wire.events import (
    MAX_AHEAD,
    MAX_ITEMS,
    MAX_LIST,
    MAX_QUANTITY,
    STORE_PATTERN,
    OrderCreated,
    ZonedTime,
)

StoreIdField = Field(default=None, min_length=1, max_length=64, pattern=STORE_PATTERN)


class OrderRow(OrderCreated):
    store_id: str | None = StoreIdField
    occurred_at: ZonedTime


ORDER_KEYS = frozenset({"storeId", "orderId", "customerId", "cartId", "status", "total",
                        "items", "promotionCodes", "occurredAt"})
ITEM_KEYS = frozenset({"productId", "name", "category", "quantity", "unitPrice", "imageUrl"})
STATUSES = frozenset({"PENDING", "PAID", "SHIPPED", "DELIVERED", "CANCELLED", "REFUNDED"})
MONEY = re.compile(r"\d{1,12}(?:\.\d{1,2})?").fullmatch  # inside the money limit
STORE = re.compile(r"[A-Za-z0-9_-]{1,64}").fullmatch
MAX_WHOLE = 999_999_999_999
WHEN = re.compile(
    r"\d{4}-\d\d-\d\dT\d\d:[0-5]\d:[0-5]\d(?:\.\d{1,6})?(?:Z|[+-]\d\d:\d\d)").fullmatch

TABLES = (Order.__tablename__, OrderItem.__tablename__, OrderStatusChange.__tablename__)
ORDER_ID = itemgetter(1)  # the order id in the head, item and history tuples

AMOUNTS_KEPT = 100_000  # distinct money strings remembered (a few MB at most)

# The columns each statement binds, in the order the tuples below carry them.
HEAD_COLUMNS = ("store_id", "order_id", "customer_id", "cart_id", "status", "total",
                "currency", "promotion_codes", "occurred_at", "status_changed_at")
CURRENCY = Order.__table__.c.currency.default.arg
ITEM_COLUMNS = ("store_id", "order_id", "line_no", "product_id", "name", "category",
                "quantity", "unit_price")
HISTORY_COLUMNS = ("store_id", "order_id", "status", "occurred_at")

# (store, orderId, customerId, cartId, status, total, codes, at, items, redeemed), values
# encoded; items are (productId, name, category, quantity, unitPrice); redeemed is None or
# (the promotion codes, the aware time) for marking stormd's codes redeemed.
Parsed = tuple[Any, ...]


class Encoder:
    """Values as the driver takes them, the same as SQLAlchemy's bind processing of the
    model's columns would make them (SQLite: money as REAL, times as UTC text)."""

    def __init__(self, dialect, now: datetime | None = None):
        self.sqlite = dialect.name == "sqlite"
        # The latest `occurredAt` the fast path takes, encoded as `when` encodes (UTC text
        # on SQLite, which compares as text): a later one goes to the model, which refuses.
        latest = (now or datetime.now(UTC)) + MAX_AHEAD
        self.latest = self.when(latest)
        self.money = float if self.sqlite else Decimal
        codes = Order.__table__.c.promotion_codes.type
        self.json = codes.dialect_impl(dialect).bind_processor(dialect) or (lambda v: v)

        self.hours: dict[str, str | None] = {}  # local hour and offset -> UTC text prefix
        self.amounts: dict[str, Any] = {}  # decimal string -> encoded amount

    def when(self, value: datetime) -> Any:
        utc = value.astimezone(UTC).replace(tzinfo=None)
        return utc.isoformat(" ", "microseconds") if self.sqlite else utc

    def when_text(self, at: str) -> Any:
        """`when` of a time in the WHEN shape, None if it is no real time. On SQLite the UTC
        text is spliced from the hour's (cached: rows come in time order) and the minutes
        and seconds as written; parsing and formatting every time costs more than the
        insert of the order."""
        if not self.sqlite:
            try:
                return self.when(datetime.fromisoformat(at))
            except (ValueError, OverflowError):
                return None
        if at[-1] == "Z":
            body, offset = at[:-1], "+00:00"
        else:
            body, offset = at[:-6], at[-6:]
        cut = 13 if offset[-2:] == "00" else 16  # whole-hour zones keep the minutes
        key = body[:cut] + offset
        head = self.hours.get(key, "")
        if head == "":
            try:
                head = self.when(datetime.fromisoformat(
                    body[:13] + (":00" if cut == 13 else body[13:16]) + offset))[:cut]
            except (ValueError, OverflowError):  # no such time: the model's words for it
                head = None
            self.hours[key] = head
        if head is None:
            return None
        rest = body[cut:]  # ':MM:SS[.f]' or ':SS[.f]'
        whole = 19 - cut
        if len(rest) == whole:
            return f"{head}{rest}.000000"
        return f"{head}{rest[:whole]}.{rest[whole + 1:]:0<6}"

    def amount(self, value: Any) -> Any:
        """A decimal string or a whole number, not negative, encoded; else None. Prices and
        totals repeat, so decimal strings are checked once (up to AMOUNTS_KEPT of them)."""
        if type(value) is str:
            out = self.amounts.get(value)
            if out is None and MONEY(value):
                out = self.money(value)
                if len(self.amounts) < AMOUNTS_KEPT:
                    self.amounts[value] = out
            return out
        if type(value) is int and 0 <= value <= MAX_WHOLE:
            return self.money(value)
        return None

    def fast(self, d: dict[str, Any]) -> Parsed | None:
        """The order's encoded values if `d` is in the plain shape, else None."""
        if not d.keys() <= ORDER_KEYS:
            return None
        get = d.get
        store, order_id, customer_id, cart_id, status, total, at, codes = (
            get("storeId"), get("orderId"), get("customerId"), get("cartId"), get("status"),
            get("total"), get("occurredAt"), get("promotionCodes"))
        if not (_id(order_id) and _id(customer_id)
                and type(status) is str and status in STATUSES
                and type(at) is str and WHEN(at) and at >= "1900"
                and (store is None or (type(store) is str and STORE(store)))
                and (cart_id is None or _id(cart_id))):
            return None
        money = self.amount
        total = money(total)
        if total is None:
            return None
        if codes is not None and (
                type(codes) is not list or len(codes) > MAX_LIST
                or not all(_id(c) and len(c) <= 64 for c in codes)):
            return None
        items = get("items")
        if type(items) is not list or len(items) > MAX_ITEMS:
            return None
        lines = []
        for item in items:
            if type(item) is not dict or not item.keys() <= ITEM_KEYS:
                return None
            get = item.get
            product_id, name, category, quantity, price = (
                get("productId"), get("name"), get("category"), get("quantity"),
                get("unitPrice"))
            image = get("imageUrl")
            if not (_id(product_id) and type(quantity) is int and 0 <= quantity <= MAX_QUANTITY
                    and (name is None or _text(name, 300))
                    and (category is None or _text(category, 120))
                    and (image is None or _text(image, 500))):
                return None
            price = money(price)
            if price is None:
                return None
            lines.append((product_id, name, category, quantity, price))
        when = self.when_text(at)
        if when is None or when > self.latest:
            return None
        return (store, order_id, customer_id, cart_id, status, total,
                None if codes is None else self.json(codes), when, lines,
                None if codes is None else (codes, datetime.fromisoformat(at)))

    def from_model(self, row: OrderRow) -> Parsed:
        money = self.money
        return (row.store_id, row.order_id, row.customer_id, row.cart_id, row.status,
                money(row.total),
                None if row.promotion_codes is None else self.json(row.promotion_codes),
                self.when(row.occurred_at),
                [(i.product_id, i.name, i.category, i.quantity, money(i.unit_price))
                 for i in row.items],
                None if row.promotion_codes is None else (row.promotion_codes, row.occurred_at))


def _id(value: Any) -> bool:
    """Plainly an id within the limits (printable, 1-128 characters); else the model
    judges it (it also takes printable-but-unusual characters this test leaves to it)."""
    return type(value) is str and 0 < len(value) <= 128 and value.isprintable()


def _text(value: Any, longest: int) -> bool:
    return type(value) is str and len(value) <= longest and "\x00" not in value


@dataclass
class Batch:
    """One store's orders waiting to be written, as driver tuples."""

    heads: list[tuple[Any, ...]] = field(default_factory=list)
    items: list[tuple[Any, ...]] = field(default_factory=list)
    history: list[tuple[Any, ...]] = field(default_factory=list)
    codes: list[tuple[str, str, datetime]] = field(default_factory=list)

    def add(self, store: str, p: Parsed) -> None:
        _, order_id, customer_id, cart_id, status, total, codes, at, lines, redeemed = p
        self.heads.append((store, order_id, customer_id, cart_id, status, total, CURRENCY,
                           codes, at, at))
        self.history.append((store, order_id, status, at))
        items = self.items
        for line_no, (product_id, name, category, quantity, price) in enumerate(lines, 1):
            items.append((store, order_id, line_no, product_id, name, category, quantity, price))
        if redeemed is not None:
            self.codes.extend((c, order_id, redeemed[1]) for c in redeemed[0])


class OrderWriter:
    """Writes batches of orders in the running transaction: buyers, orders, items and
    status history by the driver's executemany, then the status each order's history
    decides and the codes redeemed, set-based as the event path does."""

    def __init__(self, dialect):
        heads = DriverUpsert(dialect, Order.__table__, HEAD_COLUMNS,
                             ["store_id", "order_id"], True, _keep_status)
        items = DriverUpsert(dialect, OrderItem.__table__, ITEM_COLUMNS,
                             ["store_id", "order_id", "line_no"], True)
        history = DriverUpsert(dialect, OrderStatusChange.__table__, HISTORY_COLUMNS,
                               ["store_id", "order_id", "occurred_at", "status"], False)
        self.statements = (heads, items, history)
        self.copies = None
        if dialect.name == "postgresql":  # COPY, then one upsert per batch and table
            self.copies = (
                CopyUpsert(dialect, Order.__table__, HEAD_COLUMNS, ["store_id", "order_id"],
                           True, _keep_status),
                CopyUpsert(dialect, OrderItem.__table__, ITEM_COLUMNS,
                           ["store_id", "order_id", "line_no"], True),
                CopyUpsert(dialect, OrderStatusChange.__table__, HISTORY_COLUMNS,
                           ["store_id", "order_id", "occurred_at", "status"], False))
        self.buyers = DriverUpsert(dialect, Customer.__table__, ("store_id", "customer_id"),
                                   ["store_id", "customer_id"], False)
        if self.copies:
            defaulted = tuple(c.name for c in Customer.__table__.c if c.default is not None
                              and c.name not in ("store_id", "customer_id"))
            assert len(defaulted) == len(self.buyers.tail), defaulted
            self.buyer_copy = CopyUpsert(dialect, Customer.__table__,
                                         ("store_id", "customer_id", *defaulted),
                                         ["store_id", "customer_id"], False)
        self.known: dict[str, set[str]] = {}  # buyers already made known, per store
        self.written: Counter[str] = Counter()  # rows handed to each table

    async def write(self, session: AsyncSession, store: str, batch: Batch) -> None:
        if not batch.heads:
            return
        known = self.known.setdefault(store, set())
        buyers = {h[2] for h in batch.heads} - known
        known |= buyers
        conn = await session.connection()
        if buyers:  # known by id, stored profiles untouched (as ensure_customers does)
            rows = [(store, b) for b in sorted(buyers)]
            self.written[Customer.__tablename__] += len(rows)
            if self.copies:
                await self.buyer_copy.run(conn, [(*row, *self.buyers.tail) for row in rows])
            else:
                await self.buyers.run(conn, rows)
        for i, rows in enumerate((batch.heads, batch.items, batch.history)):
            if not rows:
                continue
            self.written[TABLES[i]] += len(rows)
            # Neighbouring keys: the indexes fill page by page. One store a batch, so the
            # order id is the key; the sort is stable, so an order's items stay in line
            # order and a later row of the same key still comes later.
            rows.sort(key=ORDER_ID)
            if self.copies:
                await self.copies[i].run(conn, rows)
            else:
                await self.statements[i].run(conn, rows)
        await _status_from_history(session, store, [h[1] for h in batch.heads])
        if batch.codes:
            await _mark_codes_redeemed(session, store, batch.codes)
