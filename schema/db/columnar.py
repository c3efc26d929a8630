"""Bulk writes of column arrays: the scoring run's million-row snapshot, lifecycle and
membership writes without a Python dict per row.

Columns are given whole: numpy arrays, lists, or one value for every row. Timestamp
columns (UtcDateTime) take epoch microseconds (int64), or on SQLite the stored text as
read; money columns take integer cents, JSON columns serialized JSON text. On SQLite the statement is compiled once and the
rows go to the driver's executemany as tuples, with timestamps formatted vectorised in
exactly the text SQLAlchemy writes ('YYYY-MM-DD HH:MM:SS.ffffff', UTC); elsewhere the
rows become ordinary typed parameters for SQLAlchemy's executemany.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from itertools import repeat
from typing import Any

import numpy as np
from sqlalchemy import JSON, Numeric, Table
from sqlalchemy.ext.asyncio import AsyncSession

from stormd.schema.base import UtcDateTime
from stormd.schema.db.upsert import insert_for

BATCH = 50_000
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_NP_EPOCH = np.datetime64("1970-01-01T00:00:00", "us")


def epoch_us(when: datetime) -> int:
    """Exact microseconds since the epoch of an aware datetime."""
    return (when - EPOCH) // timedelta(microseconds=1)


def cents_to_decimal(cents: int) -> Decimal:
    """Exact integer cents (how aggregates are read back) as money."""
    return Decimal(int(cents)).scaleb(-2)


def _sqlite_values(kind: str, values: Any, n: int) -> Any:
    if not isinstance(values, (np.ndarray, list, tuple)):
        return repeat(_sqlite_scalar(kind, values), n)
    if kind == "time":
        if len(values) and isinstance(values[0], str):
            return values  # already the stored text
        if isinstance(values, list) and any(v is None for v in values):  # NULLs kept
            text = _sqlite_values(kind, np.array([v or 0 for v in values], np.int64), n)
            return [None if v is None else t for v, t in zip(values, text)]
        text = np.datetime_as_string(_NP_EPOCH + np.asarray(values, dtype="timedelta64[us]"),
                                     unit="us").tolist()
        return [s.replace("T", " ") for s in text]
    if kind == "money":
        return (np.asarray(values, dtype=np.int64) / 100).tolist()
    return values.tolist() if isinstance(values, np.ndarray) else values


def _sqlite_scalar(kind: str, value: Any) -> Any:
    if value is None:
        return None
    if kind == "time":
        return _sqlite_values("time", np.array([value], dtype=np.int64), 1)[0]
    if kind == "money":
        return int(value) / 100
    return value


def _generic_values(kind: str, values: Any, n: int) -> list[Any]:
    if not isinstance(values, (np.ndarray, list, tuple)):
        return [_generic_values(kind, [values], 1)[0]] * n if values is not None else [None] * n
    items = values.tolist() if isinstance(values, np.ndarray) else list(values)
    if kind == "time":
        return [None if v is None else EPOCH + timedelta(microseconds=v) for v in items]
    if kind == "money":
        return [None if v is None else cents_to_decimal(v) for v in items]
    if kind == "json":
        return [None if v is None else json.loads(v) for v in items]
    return items


def _kind(column: Any) -> str:
    if isinstance(column.type, UtcDateTime):
        return "time"
    if isinstance(column.type, Numeric):
        return "money"
    if isinstance(column.type, JSON):
        return "json"
    return "plain"


def _length(columns: dict[str, Any]) -> int:
    sizes = {len(v) for v in columns.values() if isinstance(v, (np.ndarray, list, tuple))}
    if len(sizes) != 1:
        raise ValueError(f"columns of different lengths: {sorted(sizes)}")
    return sizes.pop()


@functools.lru_cache(maxsize=256)
def _statement(dialect: Any, table: Table, names: tuple[str, ...], keys: tuple[str, ...],
               update: bool, keep_newer: str | None) -> tuple[Any, str | None, list[str]]:
    """The INSERT … ON CONFLICT for these columns, and on SQLite its SQL text and parameter
    order: compiled once per shape, since re-scoring writes a few rows many times a second."""
    stmt = insert_for(dialect, table)
    if update:
        stmt = stmt.on_conflict_do_update(
            index_elements=list(keys),
            set_={c: stmt.excluded[c] for c in names if c not in keys},
            where=(table.c[keep_newer] <= stmt.excluded[keep_newer]) if keep_newer else None)
    else:
        stmt = stmt.on_conflict_do_nothing(index_elements=list(keys))
    if dialect.name != "sqlite":
        return stmt, None, []
    compiled = stmt.compile(dialect=dialect, column_keys=list(names))
    return stmt, compiled.string, list(compiled.positiontup or ())


async def write_columns(session: AsyncSession, table: Table, columns: dict[str, Any],
                        keys: Sequence[str], *, update: bool, keep_newer: str | None = None
                        ) -> int:
    """INSERT the rows ON CONFLICT (`keys`) DO UPDATE (or NOTHING); returns the row count.
    With `keep_newer`, a stored row is only replaced by one at least as new in that column."""
    n = _length(columns)
    if n == 0:
        return 0
    names = list(columns)
    conn = await session.connection()
    stmt, sql, order = _statement(conn.dialect, table, tuple(names), tuple(keys), update,
                                  keep_newer)
    kinds = [_kind(table.c[name]) for name in names]
    sqlite = sql is not None
    for start in range(0, n, BATCH):
        part = {k: (v[start:start + BATCH] if isinstance(v, (np.ndarray, list, tuple)) else v)
                for k, v in columns.items()}
        size = min(BATCH, n - start)
        if sqlite:
            cols = {k: _sqlite_values(kind, part[k], size) for k, kind in zip(names, kinds)}
            await conn.exec_driver_sql(sql, list(zip(*(cols[k] for k in order))))
        else:
            cols = {k: _generic_values(kind, part[k], size) for k, kind in zip(names, kinds)}
            await conn.execute(stmt, [dict(zip(names, row)) for row in zip(*cols.values())])
    return n
