"""SQLite bulk import: a table's secondary indexes built once after the load, not row by row.

An order's row lands in its table's indexes at random places (buyer, cart, product keys
are in no particular order), and at a million orders most of those B-tree pages are no
longer in the page cache: inserting into the non-unique indexes cost about a quarter of
SQLite's time. Dropped in the import's own transaction and created again from their stored
SQL after the last row, they are built by one sort instead (1,000,000 orders, raw sqlite3:
16.7 -> 13.2 CPU-s). The rebuild reads the whole table, so it is done only when the file
brings at least as many rows as the table already holds; the unique indexes stay, as the
upserts rely on them. DDL is transactional in SQLite: a failed import rolls the drop back
with everything else, and readers (WAL) keep their indexes all along.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from sqlalchemy.ext.asyncio import AsyncConnection

# Below this many rows for a table the rebuild saves less than it costs to re-plan every
# other connection's statements after the schema change.
DEFER_MIN_ROWS = 50_000
SORT_CACHE_KIB = 8_192


@dataclass
class DeferredIndexes:
    """The secondary indexes dropped for this import, with the SQL that builds them."""

    dropped: list[tuple[str, str]] = field(default_factory=list)  # (name, CREATE INDEX …)

    async def drop(self, conn: AsyncConnection, expected: dict[str, int]) -> None:
        """Drop the non-unique indexes of each table that `expected` (rows the file is
        estimated to bring, by table name) will at least double."""
        raw = (await conn.get_raw_connection()).driver_connection
        if not raw.in_transaction:  # the driver begins only before DML; DDL must be inside
            await conn.exec_driver_sql("BEGIN")
        for table, rows in expected.items():
            if rows < DEFER_MIN_ROWS:
                continue
            held = (await conn.exec_driver_sql(f"SELECT max(rowid) FROM {table}")).scalar()
            if rows < (held or 0):
                continue
            indexes = (await conn.exec_driver_sql(
                "SELECT name, sql FROM sqlite_master WHERE type = 'index' AND tbl_name = ? "
                "AND sql IS NOT NULL AND sql NOT LIKE 'CREATE UNIQUE %' ORDER BY name",
                (table,))).all()
            for name, sql in indexes:
                await conn.exec_driver_sql(f'DROP INDEX "{name}"')
                self.dropped.append((name, sql))

    async def rebuild(self, conn: AsyncConnection) -> None:
        """Create the dropped indexes again. SQLite's sorter holds as much as the page cache
        before it spills to a temporary file, so the cache shrinks to SORT_CACHE_KIB for
        the builds (the rows are written by then) and its size comes back after."""
        if not self.dropped:
            return
        cache = (await conn.exec_driver_sql("PRAGMA cache_size")).scalar()
        await conn.exec_driver_sql(f"PRAGMA cache_size=-{SORT_CACHE_KIB}")
        while self.dropped:
            _, sql = self.dropped.pop(0)
            await conn.exec_driver_sql(sql)
        await conn.exec_driver_sql(f"PRAGMA cache_size={int(cache)}")
