"""Rows handed to SQLite's driver as tuples: the one piece behind the SQLite bulk paths.

SQLAlchemy's generic per-row parameter handling costs more than SQLite's own insert. So
on SQLite a statement is compiled once per column set, and `DriverRows` turns row dicts
into the driver's tuples, with each parameter's own bind processing (UTC times, JSON,
money). `upsert_rows`, `insert_returning` and `execute_rows` (the delivery pipeline's
outcome batches) all use it. Other databases, and statements whose parameters the rows
do not all carry (a computed default), take SQLAlchemy's path: the rows written are the
same either way (tests run SQLite and PostgreSQL).
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from operator import itemgetter
from typing import Any

from sqlalchemy import Table
from sqlalchemy.ext.asyncio import AsyncSession


class DriverRows:
    """Row dicts to driver tuples in `names` order; a name no row carries takes its value
    from `defaults`. `sql` is the statement they are bound to (None when the caller builds
    its own SQL around them)."""

    def __init__(self, sql: str | None, names: Sequence[str], processors: Sequence[Any],
                 defaults: dict[str, Any] | None = None):
        self.sql = sql
        self.names = list(names)
        self.defaults = defaults or {}
        self.processors = [(i, p) for i, p in enumerate(processors) if p is not None]

    @classmethod
    def for_statement(cls, dialect, stmt: Any, columns: tuple[str, ...],
                      table: Table | None = None) -> DriverRows | None:
        """`stmt` compiled for rows carrying `columns`, or None (SQLAlchemy's path): not
        SQLite, or it binds a parameter the rows do not carry that is not a scalar default
        of a column of `table`."""
        if dialect.name != "sqlite":
            return None
        compiled = stmt.compile(dialect=dialect, column_keys=list(columns))
        names = list(compiled.positiontup or ())
        if not names:
            return None
        defaults = {}
        for name in names:
            if name not in columns:
                column = table.c[name] if table is not None and name in table.c else None
                default = column.default if column is not None else None
                if default is None or not default.is_scalar:
                    return None  # a computed default: leave it to SQLAlchemy
                defaults[name] = default.arg
        # dialect_impl: SQLite's own DATETIME processor (fixed 'YYYY-MM-DD HH:MM:SS.ffffff'
        # text), so rows from this path compare equal to rows written by SQLAlchemy.
        processors = [compiled.binds[n].type.dialect_impl(dialect).bind_processor(dialect)
                      for n in names]
        return cls(compiled.string, names, processors, defaults)

    def params(self, rows: Sequence[dict[str, Any]]) -> list[tuple[Any, ...]]:
        """The rows' tuples. Each distinct datetime is converted once per parameter: a
        batch's rows repeat its `now`, and UTC + text formatting is most of a row's cost."""
        names, defaults = self.names, self.defaults
        processors = [(i, p, {}) for i, p in self.processors]
        pairs = [(n, defaults.get(n)) for n in names]
        every = itemgetter(*names) if len(names) > 1 and not defaults else None
        out = []
        for row in rows:
            if every is not None:
                values = list(every(row))
            elif defaults:
                values = [row.get(n, d) for n, d in pairs]
            else:
                values = [row[n] for n in names]
            for i, process, seen in processors:
                value = values[i]
                if value is None:
                    continue
                if type(value) is datetime:
                    converted = seen.get(value)
                    if converted is None:
                        converted = seen[value] = process(value)
                    values[i] = converted
                else:
                    values[i] = process(value)
            out.append(tuple(values))
        return out


_plans: dict[tuple[Any, str, tuple[str, ...]], DriverRows | None] = {}


async def execute_rows(session: AsyncSession, stmt: Any, key: str,
                       rows: list[dict[str, Any]]) -> None:
    """`session.execute(stmt, rows)`; `key` names the statement (one per call site)."""
    if not rows:
        return
    conn = await session.connection()
    columns = tuple(rows[0])
    cache_key = (conn.dialect, key, columns)
    if cache_key not in _plans:
        _plans[cache_key] = DriverRows.for_statement(conn.dialect, stmt, columns)
    plan = _plans[cache_key]
    if plan is None or any(tuple(r) != columns for r in rows):
        await conn.execute(stmt, rows)
        return
    await conn.exec_driver_sql(plan.sql, plan.params(rows))
