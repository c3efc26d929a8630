"""executemany for the pipeline's outcome batches, cheaper on SQLite.

Recording a batch writes three rows a message (the `messages` update, its SmsLog /
WhatsApp / e-mail row, its `message.status` event). SQLAlchemy's generic per-row parameter
handling costs more than SQLite's own work for such rows, so on SQLite the statement is
compiled once per column set and rows go to the driver as tuples, with each parameter's
own bind processing (UTC times, JSON, money) applied, and each distinct datetime (a batch
repeats its `now`) converted once. Other databases, and any statement whose parameters
the rows do not all carry (a column default to fill in), take SQLAlchemy's path: the rows
written are the same either way (tests run SQLite and PostgreSQL).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

_compiled: dict[tuple[Any, str, tuple[str, ...]], tuple[str, list] | None] = {}


async def execute_rows(session: AsyncSession, stmt: Any, key: str,
                       rows: list[dict[str, Any]]) -> None:
    """`session.execute(stmt, rows)`; `key` names the statement (one per call site)."""
    if not rows:
        return
    conn = await session.connection()
    columns = tuple(rows[0])
    plan = _plan(conn.dialect, stmt, key, columns) if conn.dialect.name == "sqlite" else None
    if plan is None or any(tuple(r) != columns for r in rows):
        await conn.execute(stmt, rows)
        return
    sql, processors = plan
    seen: dict[datetime, Any] = {}
    params = []
    for row in rows:
        values = []
        for name, process in processors:
            value = row[name]
            if value is not None and process is not None:
                if type(value) is datetime:
                    converted = seen.get(value)
                    if converted is None:
                        converted = seen[value] = process(value)
                    value = converted
                else:
                    value = process(value)
            values.append(value)
        params.append(tuple(values))
    await conn.exec_driver_sql(sql, params)


def _plan(dialect, stmt, key: str, columns: tuple[str, ...]):
    cache_key = (dialect, key, columns)
    if cache_key not in _compiled:
        compiled = stmt.compile(dialect=dialect, column_keys=list(columns))
        names = list(compiled.positiontup or ())
        if not names or any(n not in columns for n in names):
            _compiled[cache_key] = None
        else:
            _compiled[cache_key] = (compiled.string, [
                (n, compiled.binds[n].type.dialect_impl(dialect).bind_processor(dialect))
                for n in names])
    return _compiled[cache_key]
