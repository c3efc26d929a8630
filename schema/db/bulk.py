"""INSERT … RETURNING for thousands of rows at once, cheaply on SQLite.

SQLAlchemy's "insertmanyvalues" does the same job generically, but renames and
bind-processes every parameter of every row (~100 µs a row): more than the insert itself.
On SQLite this builds one multi-row VALUES statement per chunk, its values made by
`DriverRows` (each column's own bind processor: UTC times, JSON, money; each distinct
time once), and hands it to the driver. Other databases keep SQLAlchemy's path. Results
are identical either way (the tests run both databases).
"""

from __future__ import annotations

import functools
from itertools import chain
from typing import Any

from sqlalchemy import Table, insert
from sqlalchemy.ext.asyncio import AsyncSession

from stormd.schema.db.executemany import DriverRows
from stormd.schema.db.upsert import insert_for

# SQLite (3.32+) allows 32,766 bound parameters in one statement.
MAX_PARAMS = 32_000
SLOW_PATH_CHUNK = 5000


async def insert_returning(
    session: AsyncSession, table: Table, rows: list[dict[str, Any]],
    returning: tuple[str, ...], *, unique: str | None = None,
) -> list[tuple[Any, ...]]:
    """Insert `rows` (dicts of the same columns) and return `returning` of each row
    inserted, in no particular order; with `unique`, rows whose key exists are skipped."""
    if not rows:
        return []
    conn = await session.connection()
    dialect = conn.dialect
    if dialect.name != "sqlite":
        stmt = insert(table)
        if unique is not None:
            stmt = insert_for(session, table).on_conflict_do_nothing(index_elements=[unique])
        stmt = stmt.returning(*(table.c[c] for c in returning))
        out: list[tuple[Any, ...]] = []
        for i in range(0, len(rows), SLOW_PATH_CHUNK):
            out.extend(tuple(r) for r in (await conn.execute(stmt, rows[i:i + SLOW_PATH_CHUNK])).all())
        return out
    await session.flush()  # the driver path bypasses autoflush
    columns = tuple(rows[0])
    prefix, suffix, values = _sqlite_parts(dialect, table, columns, returning, unique)
    width = len(columns)
    per_chunk = max(1, MAX_PARAMS // width)
    group = "(" + ",".join("?" * width) + ")"
    out = []
    raw = await conn.get_raw_connection()
    driver = raw.driver_connection
    for i in range(0, len(rows), per_chunk):
        chunk = rows[i:i + per_chunk]
        params = list(chain.from_iterable(values.params(chunk)))
        sql = prefix + ",".join([group] * len(chunk)) + suffix
        cursor = await driver.execute(sql, params)
        try:
            fetched = await cursor.fetchall()
        finally:
            await cursor.close()
        out.extend(_results(fetched, returning, table, dialect))
    return out


@functools.lru_cache(maxsize=64)
def _sqlite_parts(dialect, table: Table, columns: tuple[str, ...], returning: tuple[str, ...],
                  unique: str | None) -> tuple[str, str, DriverRows]:
    quote = dialect.identifier_preparer.quote
    prefix = (f"INSERT INTO {quote(table.name)} ({', '.join(quote(c) for c in columns)}) "
              "VALUES ")
    suffix = f" ON CONFLICT ({quote(unique)}) DO NOTHING" if unique else ""
    suffix += f" RETURNING {', '.join(quote(c) for c in returning)}"
    # dialect_impl: SQLite's own DATETIME text format, so rows compare equal to others.
    processors = [table.c[c].type.dialect_impl(dialect).bind_processor(dialect) for c in columns]
    return prefix, suffix, DriverRows(None, columns, processors)


def _results(fetched: list[Any], returning: tuple[str, ...], table: Table, dialect
             ) -> list[tuple[Any, ...]]:
    processors = [table.c[c].type.dialect_impl(dialect).result_processor(dialect, None)
                  for c in returning]
    if not any(processors):
        return [tuple(r) for r in fetched]
    return [tuple(p(v) if p else v for p, v in zip(processors, r)) for r in fetched]
