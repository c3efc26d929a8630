"""`stormd import`: history from CSV or JSON Lines, through the same upserts as events.

A file is read as a stream and validated row by row with the event payload models; rows
are written in executemany batches inside one transaction, so the first bad row rolls the
whole file back and is reported by line number. The upserts are idempotent, so importing
the same file again changes nothing.

File format (one row an entity, fields as in the event `data`, camelCase):
  - `storeId` per row, or `--store` for the whole file;
  - orders also carry `occurredAt` (ISO 8601 with zone) and their latest `status`;
  - JSON Lines: one JSON object a line (blank lines are skipped);
  - CSV: a header row; nested fields as dotted columns (`consent.sms`); list fields
    (`items`, `pushTokens`, `promotionCodes`) as JSON in their cell; an empty cell means
    "not given".
"""

from __future__ import annotations

import csv
import gc
import json
import time
from collections import defaultdict
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from pydantic import Field, ValidationError, field_validator
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from stormd.handlers.customers import upsert_customers
from stormd.handlers.events import CustomerUpserted, OrderCreated, ProductUpserted, _first_error
from stormd.handlers.orders import upsert_orders
from stormd.handlers.products import upsert_products
from stormd.handlers.stores import ensure_stores

FLUSH_ROWS = 20_000
JSON_COLUMNS = frozenset({"items", "pushTokens", "promotionCodes"})


class ImportFailed(Exception):
    """A row that cannot be imported; nothing of its file was kept."""

    def __init__(self, line: int, reason: str):
        super().__init__(f"line {line}: {reason}")
        self.line = line
        self.reason = reason


StoreIdField = Field(default=None, min_length=1, max_length=64)


class CustomerRow(CustomerUpserted):
    store_id: str | None = StoreIdField


class ProductRow(ProductUpserted):
    store_id: str | None = StoreIdField


class OrderRow(OrderCreated):
    store_id: str | None = StoreIdField
    occurred_at: datetime

    @field_validator("occurred_at")
    @classmethod
    def _aware(cls, value: datetime) -> datetime:
        if value.tzinfo is None:
            raise ValueError("occurredAt needs a time zone")
        return value


Writer = Callable[[AsyncSession, str, list[Any]], Awaitable[None]]


def _orders_writer() -> Writer:
    known: dict[str, set[str]] = defaultdict(set)  # buyers already written, per store

    async def write(session: AsyncSession, store: str, rows: list[OrderRow]) -> None:
        await upsert_orders(session, store, [(r, r.occurred_at) for r in rows], known[store])

    return write


@dataclass(frozen=True)
class Kind:
    model: type
    writer: Callable[[], Writer]  # a fresh writer per file


KINDS: dict[str, Kind] = {
    "customers": Kind(CustomerRow, lambda: upsert_customers),
    "products": Kind(ProductRow, lambda: upsert_products),
    "orders": Kind(OrderRow, _orders_writer),
}


@dataclass(frozen=True)
class ImportResult:
    kind: str
    rows: int
    seconds: float

    @property
    def rows_per_second(self) -> float:
        return self.rows / self.seconds if self.seconds > 0 else float("inf")


def _nested(row: dict[str, str], line: int) -> dict[str, Any]:
    """A CSV row as the event data it stands for: dotted columns nested, JSON cells parsed,
    empty cells left out."""
    data: dict[str, Any] = {}
    for column, cell in row.items():
        if column is None:
            raise ImportFailed(line, "more cells than header columns")
        if cell is None or cell == "":
            continue
        if column in JSON_COLUMNS:
            try:
                cell = json.loads(cell)
            except ValueError as exc:
                raise ImportFailed(line, f"{column}: not JSON ({exc})") from None
        *parents, leaf = column.split(".")
        target = data
        for part in parents:
            target = target.setdefault(part, {})
            if not isinstance(target, dict):
                raise ImportFailed(line, f"column {column} clashes with column {part}")
        target[leaf] = cell
    return data


def read_rows(path: Path, model: type) -> Iterator[tuple[int, Any]]:
    """(line number, validated row) for each entity in the file, streamed."""
    suffix = path.suffix.lower()
    if suffix == ".jsonl":
        with path.open("rb") as fh:
            for line_no, line in enumerate(fh, 1):
                if not line.strip():
                    continue
                try:
                    yield line_no, model.model_validate_json(line)
                except ValidationError as exc:
                    raise ImportFailed(line_no, _first_error(exc, "")) from None
    elif suffix == ".csv":
        with path.open(newline="", encoding="utf-8-sig") as fh:
            reader = csv.DictReader(fh)
            for row in reader:
                line_no = reader.line_num
                try:
                    yield line_no, model.model_validate(_nested(row, line_no))
                except ValidationError as exc:
                    raise ImportFailed(line_no, _first_error(exc, "")) from None
    else:
        raise ValueError(f"{path}: unknown file type {suffix or '(none)'}; use .csv or .jsonl")


async def import_file(sessionmaker: async_sessionmaker[AsyncSession], kind: str, path: Path,
                      *, store: str | None, now: datetime) -> ImportResult:
    """Load `path` as `kind` in one transaction; raises ImportFailed on the first bad row
    (after rolling back everything the file wrote)."""
    started = time.perf_counter()
    with _gc_paused():
        async with sessionmaker() as session:
            try:
                count = await _load(session, KINDS[kind], path, store, now)
                await session.commit()
            except BaseException:
                await session.rollback()
                raise
    return ImportResult(kind, count, time.perf_counter() - started)


@contextmanager
def _gc_paused() -> Iterator[None]:
    """Millions of short-lived row objects make the automatic cyclic GC rescan everything
    again and again; it pauses while a file loads and runs once a batch instead."""
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()


async def _load(session: AsyncSession, spec: Kind, path: Path, store: str | None,
                now: datetime) -> int:
    write = spec.writer()
    count = 0
    pending: dict[str, list[Any]] = defaultdict(list)
    stores: set[str] = set()
    for line_no, row in read_rows(path, spec.model):
        if store is not None and row.store_id not in (None, store):
            raise ImportFailed(line_no, f"storeId {row.store_id!r} is not --store {store!r}")
        row_store = row.store_id or store
        if row_store is None:
            raise ImportFailed(line_no, "missing storeId (or give --store)")
        pending[row_store].append(row)
        count += 1
        if count % FLUSH_ROWS == 0:
            await _flush(session, write, pending, stores)
            gc.collect(1)  # the batch's few cycles, while they are young and cheap to find
    await _flush(session, write, pending, stores)
    await ensure_stores(session, stores, now)
    return count


async def _flush(session: AsyncSession, write: Writer, pending: dict[str, list[Any]],
                 stores: set[str]) -> None:
    for store_id, rows in pending.items():
        stores.add(store_id)
        await write(session, store_id, rows)
    pending.clear()
