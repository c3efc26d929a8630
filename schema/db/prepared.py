"""Statements built once and run with new values: the event path's frequent shapes.

Building a SQLAlchemy statement and deriving its cache key costs ~100 µs each time, and
an UPDATE or DELETE of an ORM entity adds the session's synchronization (~150 µs): both
more than SQLite takes to run the small statements of a group commit, which runs ~30 of
them for ten events. So the hot paths build each shape once (`functools.cache`), with
`b_`-prefixed bind parameters (names that no column has: an UPDATE would take a
parameter named like a column as a value to set), and run it as Core on the session's
connection.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from typing import Any

from sqlalchemy import Table, bindparam, delete, update
from sqlalchemy.ext.asyncio import AsyncSession

from stormd.schema.db.inlist import in_param

CHUNK = 5000  # values a list parameter carries at most


@functools.cache
def _delete_in(table: Table, column: str) -> Any:
    c = table.c
    return delete(table).where(c.store_id == bindparam("b_store"),
                               in_param(c[column], "b_values"))


async def delete_in(session: AsyncSession, table: Table, column: str, store_id: str,
                    values: Sequence[Any]) -> None:
    """DELETE FROM table WHERE store_id = store AND column IN values."""
    if not values:
        return
    conn = await session.connection()
    stmt = _delete_in(table, column)
    for i in range(0, len(values), CHUNK):
        await conn.execute(stmt, {"b_store": store_id, "b_values": list(values[i:i + CHUNK])})


@functools.cache
def _update_by_key(table: Table, keys: tuple[str, ...], columns: tuple[str, ...]) -> Any:
    c = table.c
    return (update(table).where(*(c[k] == bindparam(f"b_{k}") for k in keys))
            .values({col: bindparam(f"b_set_{col}", type_=c[col].type) for col in columns}))


async def update_by_key(session: AsyncSession, table: Table, keys: Sequence[str],
                        rows: Sequence[dict[str, Any]]) -> None:
    """UPDATE table SET … WHERE the key columns match, one row dict (its key columns and
    the values to set) at a time, as one executemany for each set of columns given."""
    groups: dict[tuple[str, ...], list[dict[str, Any]]] = {}
    for row in rows:
        groups.setdefault(tuple(row), []).append(row)
    if not groups:
        return
    conn = await session.connection()
    for columns, group in groups.items():
        sets = tuple(c for c in columns if c not in keys)
        stmt = _update_by_key(table, tuple(keys), sets)
        await conn.execute(stmt, [{**{f"b_{k}": row[k] for k in keys},
                                   **{f"b_set_{c}": row[c] for c in sets}} for row in group])
