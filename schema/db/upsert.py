"""INSERT … ON CONFLICT for whichever database the session talks to."""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import Any

from sqlalchemy import Table
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncSession

from stormd.schema.db.executemany import DriverRows


def insert_for(session: AsyncSession | Any, table: Any):
    """A dialect `insert()` offering `on_conflict_do_update` / `on_conflict_do_nothing`
    (for a session, a connection or engine, or a dialect)."""
    bind = session.bind if hasattr(session, "bind") else session
    name = bind.dialect.name if hasattr(bind, "dialect") else bind.name
    if name == "postgresql":
        return postgresql.insert(table)
    if name == "sqlite":
        return sqlite.insert(table)
    raise NotImplementedError(f"stormd supports SQLite and PostgreSQL, not {name}")


BATCH_ROWS = 5000


def _batches(rows: list[dict[str, Any]], size: int) -> Iterator[list[dict[str, Any]]]:
    for start in range(0, len(rows), size):
        yield rows[start:start + size]


async def upsert_rows(
    session: AsyncSession,
    table: Table,
    rows: Iterable[dict[str, Any]],
    keys: Sequence[str],
    *,
    update: bool = True,
    set_: Callable[[Any, tuple[str, ...]], dict[str, Any]] | None = None,
) -> None:
    """INSERT … ON CONFLICT (`keys`) DO UPDATE (or DO NOTHING) in executemany batches.

    Rows are grouped by the columns they carry, so a column a row leaves out keeps its
    stored value (or its default on insert) instead of being overwritten with NULL.
    `set_(stmt, columns)` may replace the default "take every given column" update.
    """
    groups: dict[tuple[str, ...], list[dict[str, Any]]] = {}
    for row in rows:
        groups.setdefault(tuple(row), []).append(row)  # rows built alike share a group
    if not groups:
        return
    conn = await session.connection()
    for columns, group in groups.items():
        stmt, driver = _upsert_statement(conn.dialect, table, columns, tuple(keys), update, set_)
        for batch in _batches(group, BATCH_ROWS):
            if driver is None:
                await conn.execute(stmt, batch)
            else:
                await conn.exec_driver_sql(driver.sql, driver.params(batch))


@functools.lru_cache(maxsize=512)
def _upsert_statement(dialect, table: Table, columns: tuple[str, ...], keys: tuple[str, ...],
                      update: bool, set_) -> tuple[Any, DriverRows | None]:
    """The upsert for one column set, built (and on SQLite compiled) once per process."""
    stmt = insert_for(dialect, table)
    changes = [c for c in columns if c not in keys]
    if update and changes:
        values = set_(stmt, columns) if set_ else {c: stmt.excluded[c] for c in changes}
        stmt = stmt.on_conflict_do_update(index_elements=list(keys), set_=values)
    else:
        stmt = stmt.on_conflict_do_nothing(index_elements=list(keys))
    return stmt, DriverRows.for_statement(dialect, stmt, columns, table)
