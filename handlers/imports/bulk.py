"""`stormd import`: history from CSV or JSON Lines, through the same upserts as events.

A file is read as a stream and validated row by row with the event payload models, under
the same limits as events (ids, money, quantities, times no later than an hour after the
import; docs/events.md), so history cannot bring in what an event may not; rows are
written in executemany batches inside one transaction, so the first bad row rolls the
whole file back and is reported by line number. The upserts are idempotent, so importing
the same file again changes nothing. Stores first seen in a file get `timezone` (the
daemon's, `daemon.timezone`).

File format (one row an entity, fields as in the event `data`, camelCase):
  - `storeId` per row, or `--store` for the whole file;
  - orders also carry `occurredAt` (ISO 8601 with zone) and their latest `status`;
  - JSON Lines: one JSON object a line (blank lines are skipped);
  - CSV: a header row; nested fields as dotted columns (`consent.sms`); list fields
    (`items`, `pushTokens`, `promotionCodes`) as JSON in their cell; an empty cell means
    "not given".
"""

from __future__ import annotations

import asyncio
import gc
import sys
import time
from collections import defaultdict
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from sqlalchemy.ext.asyncio import AsyncConnection, AsyncSession, async_sessionmaker

from stormd.config.settings import DaemonSettings
from stormd.handlers.imports.orders import Batch, Encoder, OrderRow, OrderWriter, StoreIdField
from stormd.handlers.imports.sources import ImportFailed, open_source
from stormd.handlers.shop.customers import mark_imported, upsert_customers
from stormd.handlers.shop.products import upsert_products
from stormd.handlers.shop.stores import insert_stores
from stormd.schema.db.deferred_indexes import DeferredIndexes
from stormd.schema.shop.orders import Order, OrderItem
from stormd.schema.wire.events import CustomerUpserted, ProductUpserted, time_beyond_limit

__all__ = ["KINDS", "ImportFailed", "ImportResult", "import_file", "read_rows"]

FLUSH_ROWS = 20_000
SQLITE_CACHE_KIB = 65_536  # the import connection's page cache (see _import_session)
SWITCH_SECONDS = 0.0005  # the GIL's switch interval while a file loads (see _gc_paused)


DEFAULT_TIMEZONE = DaemonSettings.model_fields["timezone"].default


class CustomerRow(CustomerUpserted):
    store_id: str | None = StoreIdField


class ProductRow(ProductUpserted):
    store_id: str | None = StoreIdField


Writer = Callable[[AsyncSession, str, list[Any]], Awaitable[None]]


@dataclass(frozen=True)
class Kind:
    model: type
    writer: Writer | None  # None: orders, written by OrderWriter


KINDS: dict[str, Kind] = {
    "customers": Kind(CustomerRow, upsert_customers),
    "products": Kind(ProductRow, upsert_products),
    "orders": Kind(OrderRow, None),
}


@dataclass(frozen=True)
class ImportResult:
    kind: str
    rows: int  # rows of the file: orders, customers or products
    seconds: float
    written: dict[str, int]  # rows handed to each table (an order's items, history, buyer)

    @property
    def rows_per_second(self) -> float:
        return self.rows / self.seconds if self.seconds > 0 else float("inf")

    @property
    def written_per_second(self) -> float:
        total = sum(self.written.values())
        return total / self.seconds if self.seconds > 0 else float("inf")


def read_rows(path: Path, model: type, now: datetime | None = None
              ) -> Iterator[tuple[int, Any]]:
    """(line number, validated row) for each entity in the file, streamed; with `now`, a
    time later than an hour after it is refused as in an event."""
    source = open_source(path)
    for line_no, _, raw in source.records(parse=False):
        row = source.validate(model, raw, line_no)
        if now is not None:
            check_times(row, now, line_no)
        yield line_no, row


def check_times(row: Any, now: datetime, line_no: int) -> None:
    late = time_beyond_limit(row.occurred_at if isinstance(row, OrderRow) else None, row, now)
    if late is not None:
        raise ImportFailed(line_no, f"{late} is more than 1 hour after the import")


async def import_file(sessionmaker: async_sessionmaker[AsyncSession], kind: str, path: Path,
                      *, store: str | None, now: datetime, timezone: str = DEFAULT_TIMEZONE
                      ) -> ImportResult:
    """Load `path` as `kind` in one transaction; raises ImportFailed on the first bad row
    (after rolling back everything the file wrote). New stores get `timezone`."""
    started = time.perf_counter()
    open_source(path)  # an unknown file type is refused before the database is touched
    with _gc_paused():
        async with _import_session(sessionmaker) as session:
            try:
                stores: set[str] = set()
                customers: dict[str, set[str]] = defaultdict(set)  # whose history came in
                if kind == "orders":
                    count, written = await _load_orders(session, path, store, stores, now,
                                                        customers)
                else:
                    count = await _load(session, KINDS[kind], path, store, stores, now,
                                        customers)
                    written = {kind: count}
                await insert_stores(session, stores, now, timezone)
                for store_id, ids in customers.items():
                    await mark_imported(session, store_id, sorted(ids), now)
                await session.commit()
            except BaseException:
                await session.rollback()
                raise
    return ImportResult(kind, count, time.perf_counter() - started, written)


@contextmanager
def _gc_paused() -> Iterator[None]:
    """Millions of short-lived row objects make the automatic cyclic GC rescan everything
    again and again; it pauses while a file loads and runs once a batch instead. The GIL
    changes hands every SWITCH_SECONDS meanwhile: after each statement step the database
    driver's thread waits for the parsing thread to let go of it, up to the switch
    interval (5 ms by default), so its writes would otherwise crawl beside the parsing."""
    was_enabled, interval = gc.isenabled(), sys.getswitchinterval()
    gc.disable()
    sys.setswitchinterval(min(interval, SWITCH_SECONDS))
    try:
        yield
    finally:
        sys.setswitchinterval(interval)
        if was_enabled:
            gc.enable()


@asynccontextmanager
async def _import_session(sessionmaker: async_sessionmaker[AsyncSession]
                          ) -> AsyncIterator[AsyncSession]:
    """The import's session. On SQLite it has a connection of its own, with SQLITE_CACHE_KIB
    of page cache (SQLite's default is 2 MB: index pages stay in memory across batches
    instead of spilling to the WAL and being read back) and temporary files on disk (the
    sort that builds a deferred index spills to a file instead of growing the process: RSS
    stays flat with the table's size). Both are set before the import's transaction and
    given back after it, since SQLite refuses temp_store inside one and the pool reuses the
    connection."""
    engine = sessionmaker.kw.get("bind")
    if engine is None or engine.dialect.name != "sqlite":
        async with sessionmaker() as session:
            yield session
        return
    async with engine.connect() as conn:
        before = {name: (await conn.exec_driver_sql(f"PRAGMA {name}")).scalar()
                  for name in ("cache_size", "temp_store")}
        await _pragmas(conn, {"cache_size": -SQLITE_CACHE_KIB, "temp_store": 1})  # 1: FILE
        try:
            async with sessionmaker(bind=conn) as session:
                yield session
        finally:
            await _pragmas(conn, before)


async def _pragmas(conn: AsyncConnection, values: dict[str, Any]) -> None:
    for name, value in values.items():
        await conn.exec_driver_sql(f"PRAGMA {name}={int(value)}")
    await conn.commit()  # ends the transaction SQLAlchemy began: no SQLite one is open


def _row_store(row_store: str | None, store: str | None, line_no: int) -> str:
    if store is not None and row_store not in (None, store):
        raise ImportFailed(line_no, f"storeId {row_store!r} is not --store {store!r}")
    if row_store is None and store is None:
        raise ImportFailed(line_no, "missing storeId (or give --store)")
    return row_store or store


async def _load(session: AsyncSession, spec: Kind, path: Path, store: str | None,
                stores: set[str], now: datetime, customers: dict[str, set[str]]) -> int:
    count = 0
    pending: dict[str, list[Any]] = defaultdict(list)
    for line_no, row in read_rows(path, spec.model, now):
        row_store = _row_store(row.store_id, store, line_no)
        pending[row_store].append(row)
        if spec.model is CustomerRow:
            customers[row_store].add(row.customer_id)
        count += 1
        if count % FLUSH_ROWS == 0:
            await _flush(session, spec.writer, pending, stores)
    await _flush(session, spec.writer, pending, stores)
    return count


async def _flush(session: AsyncSession, write: Writer, pending: dict[str, list[Any]],
                 stores: set[str]) -> None:
    for store_id, rows in pending.items():
        stores.add(store_id)
        await write(session, store_id, rows)
    pending.clear()
    gc.collect(1)  # the batch's few cycles, while they are young and cheap to find


async def _load_orders(session: AsyncSession, path: Path, store: str | None,
                       stores: set[str], now: datetime, customers: dict[str, set[str]]
                       ) -> tuple[int, dict[str, int]]:
    """Orders through the fast path; while one batch is written (SQLite works in its own
    thread), the next is read and checked. Returns the orders read and the rows written to
    each table; `customers` gets each store's buyers. On SQLite, a file estimated (from
    the first batch) to at least double a table has that table's secondary indexes built
    after the load (import_indexes)."""
    dialect = session.bind.dialect
    encoder, writer, source = Encoder(dialect, now), OrderWriter(dialect), open_source(path)
    fast, from_model, validate = encoder.fast, encoder.from_model, source.validate
    deferred = DeferredIndexes() if dialect.name == "sqlite" else None
    count = 0
    batches: dict[str, Batch] = defaultdict(Batch)
    writing: asyncio.Task | None = None
    try:
        for line_no, data, raw in source.records():
            parsed = fast(data) if data is not None else None
            if parsed is None:
                row = validate(OrderRow, raw, line_no)
                check_times(row, now, line_no)
                parsed = from_model(row)
            row_store = parsed[0]
            if row_store is None or (store is not None and row_store != store):
                row_store = _row_store(row_store, store, line_no)
            batches[row_store].add(row_store, parsed)
            count += 1
            if count % FLUSH_ROWS == 0:
                if writing is not None:
                    await writing
                elif deferred is not None:
                    await _defer_indexes(session, deferred, batches, count, source)
                writing = asyncio.ensure_future(_write_orders(session, writer, batches, stores))
                batches = defaultdict(Batch)
            elif count % 200 == 0:
                await asyncio.sleep(0)  # let the batch being written take its next step
        if writing is not None:
            await writing
        elif deferred is not None and count:
            await _defer_indexes(session, deferred, batches, count, source)
        writing = None
        await _write_orders(session, writer, batches, stores)
        if deferred is not None:
            await deferred.rebuild(await session.connection())
    finally:
        if writing is not None:  # a bad row: the batch in flight ends before the rollback
            await asyncio.gather(writing, return_exceptions=True)
    for store_id, buyers in writer.known.items():
        customers[store_id] |= buyers
    return count, dict(writer.written)


async def _defer_indexes(session: AsyncSession, deferred: DeferredIndexes,
                         batches: dict[str, Batch], count: int, source) -> None:
    """Before the first write: the rows the file will bring, estimated from the share of it
    read so far, decide which tables' secondary indexes wait for the end."""
    orders = count / max(source.share_read(), 1e-9)
    items = sum(len(b.items) for b in batches.values())
    await deferred.drop(await session.connection(), {
        Order.__tablename__: int(orders), OrderItem.__tablename__: int(orders * items / count)})


async def _write_orders(session: AsyncSession, writer: OrderWriter,
                        batches: dict[str, Batch], stores: set[str]) -> None:
    for store_id, batch in batches.items():
        stores.add(store_id)
        await writer.write(session, store_id, batch)
    gc.collect(1)
