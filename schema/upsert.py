"""INSERT … ON CONFLICT for whichever database the session talks to."""

from __future__ import annotations

from typing import Any, Callable, Iterable, Iterator, Sequence

from sqlalchemy import Table
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncSession


def insert_for(session: AsyncSession | Any, table: Any):
    """A dialect `insert()` offering `on_conflict_do_update` / `on_conflict_do_nothing`."""
    bind = session.bind if hasattr(session, "bind") else session
    name = bind.dialect.name
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
        groups.setdefault(tuple(sorted(row)), []).append(row)
    if not groups:
        return
    conn = await session.connection()
    for columns, group in groups.items():
        stmt = insert_for(session, table)
        changes = [c for c in columns if c not in keys]
        if update and changes:
            values = set_(stmt, columns) if set_ else {c: stmt.excluded[c] for c in changes}
            stmt = stmt.on_conflict_do_update(index_elements=list(keys), set_=values)
        else:
            stmt = stmt.on_conflict_do_nothing(index_elements=list(keys))
        for batch in _batches(group, BATCH_ROWS):
            await conn.execute(stmt, batch)
