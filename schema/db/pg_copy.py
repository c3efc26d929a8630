"""PostgreSQL's bulk path for `stormd import`: COPY a batch into a staging table, then one
INSERT … SELECT … ON CONFLICT moves it into the real table.

executemany pays a round of protocol work per row; COPY streams the batch in binary, and
the upsert then runs once per batch inside the server. The staging table lives in the
import's transaction (ON COMMIT DROP); `_seq` keeps the file's order, so when an order
appears twice in a batch the later row wins, as it does on SQLite.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from sqlalchemy import Table, column, text
from sqlalchemy.dialects import postgresql
from sqlalchemy.ext.asyncio import AsyncConnection


def on_conflict(stmt, columns: tuple[str, ...], keys: list[str], update: bool, set_=None):
    """`stmt` (a dialect insert) upserting over `keys`: the other given columns updated (or
    `set_(stmt, columns)`), or nothing done; a stored currency is never overwritten."""
    if not update:
        return stmt.on_conflict_do_nothing(index_elements=keys)
    given = tuple(c for c in columns if c != "currency")
    values = set_(stmt, given) if set_ else {c: stmt.excluded[c] for c in given
                                             if c not in keys}
    return stmt.on_conflict_do_update(index_elements=keys, set_=values)


class CopyUpsert:
    """The upsert of `columns` into `table` (on conflict over `keys`: update the other
    columns, or `set_(stmt, columns)`, or nothing), fed by COPY."""

    def __init__(self, dialect, target: Table, columns: tuple[str, ...], keys: list[str],
                 update: bool, set_: Callable[[Any, tuple[str, ...]], dict] | None = None):
        self.columns = columns
        self.staging = f"stormd_import_{target.name}"
        names = ", ".join(columns)
        self.create = (f"CREATE TEMP TABLE {self.staging} ON COMMIT DROP AS "
                       f"SELECT {names}, 0::bigint AS _seq FROM {target.name} WITH NO DATA")
        on = ", ".join(keys)
        latest = text(f"SELECT DISTINCT ON ({on}) {names} FROM {self.staging} "
                      f"ORDER BY {on}, _seq DESC").columns(*(column(c) for c in columns))
        stmt = postgresql.insert(target).from_select(list(columns), latest)
        self.upsert = str(on_conflict(stmt, columns, keys, update, set_).compile(dialect=dialect))
        self.created = False

    async def run(self, conn: AsyncConnection, rows: Sequence[tuple[Any, ...]]) -> None:
        if not self.created:  # also opens the transaction before the raw COPY joins it
            await conn.exec_driver_sql(self.create)
            self.created = True
        else:
            await conn.exec_driver_sql(f"TRUNCATE {self.staging}")
        raw = (await conn.get_raw_connection()).driver_connection
        await raw.copy_records_to_table(
            self.staging, columns=[*self.columns, "_seq"],
            records=[(*row, seq) for seq, row in enumerate(rows)])
        await conn.exec_driver_sql(self.upsert)
