"""aiosqlite with one thread hand-off a statement instead of four.

SQLAlchemy's aiosqlite adapter makes a cursor, executes, fetches and closes it, each an
`await` on aiosqlite's worker thread: four round trips (queue put, thread wake-up, GIL
hand-over, `call_soon_threadsafe`, an event-loop turn) for every statement. With the small
set-based statements of a group commit those round trips cost more CPU and wall time than
SQLite's own work. Here a buffered cursor does the whole life of the sqlite3 cursor in one
call on the same worker thread (the connection still never leaves it) and keeps the rows;
fetching and closing then take no hop. Server-side cursors (`stream()`) keep aiosqlite's
own, which fetches in chunks. A transaction holding the write lock can go further and run
on the event loop's thread (`inline`).

This is the one place that subclasses SQLAlchemy's aiosqlite adapter and reaches into
aiosqlite's connection (`_conn`, `_connection`, `_execute`, `_thread`): each of those is
checked by tests/schema/db/test_library_internals.py.
"""

from __future__ import annotations

import sqlite3
from typing import Any

import aiosqlite
import sqlalchemy
from sqlalchemy.ext.asyncio import AsyncSession

try:  # private parts: pyproject.toml bounds SQLAlchemy to releases that have them
    from sqlalchemy.dialects.sqlite.aiosqlite import (
        AsyncAdapt_aiosqlite_connection,
        AsyncAdapt_aiosqlite_cursor,
        AsyncAdapt_aiosqlite_dbapi,
    )
    from sqlalchemy.util.concurrency import await_
except ImportError as exc:
    raise ImportError(
        f"SQLAlchemy {sqlalchemy.__version__} lacks what schema/db/sqlite_driver.py "
        f"imports ({exc}): check the driver shim against this release "
        "(tests/schema/db/test_library_internals.py)") from exc


def _run(conn: aiosqlite.Connection, many: bool, sql: str, params: Any) -> tuple:
    """On the connection's worker thread: execute, fetch everything, close."""
    cursor = conn._conn.cursor()
    try:
        if many:
            cursor.executemany(sql, params)
        elif params is None:
            cursor.execute(sql)
        else:
            cursor.execute(sql, params)
        description = cursor.description
        rows = cursor.fetchall() if description else ()
        return description, rows, cursor.rowcount, cursor.lastrowid
    finally:
        cursor.close()


class _BufferedCursor:
    """What the adapter needs of an aiosqlite cursor, run in one hop a statement, or
    none while the connection is `inline`."""

    __slots__ = ("_adapter", "_conn", "_rows", "arraysize", "description", "lastrowid",
                 "rowcount")

    def __init__(self, adapter: OneHopConnection):
        self._adapter = adapter
        self._conn = adapter._connection
        self._rows: Any = ()
        self.arraysize = 1
        self.description = None
        self.rowcount = -1
        self.lastrowid = None

    async def execute(self, sql: str, params: Any = None) -> _BufferedCursor:
        return await self._call(False, sql, params)

    async def executemany(self, sql: str, params: Any) -> _BufferedCursor:
        return await self._call(True, sql, params)

    async def _call(self, many: bool, sql: str, params: Any) -> _BufferedCursor:
        if self._adapter.inline:
            result = _run(self._conn, many, sql, params)
        else:
            result = await self._conn._execute(_run, self._conn, many, sql, params)
        self.description, self._rows, self.rowcount, self.lastrowid = result
        return self

    async def fetchall(self) -> Any:
        rows, self._rows = self._rows, ()
        return rows

    def close(self) -> None:
        self._rows = ()


class OneHopCursor(AsyncAdapt_aiosqlite_cursor):
    __slots__ = ()
    _awaitable_cursor_close = False  # closing the buffered cursor takes no hop

    def _make_new_cursor(self, connection: aiosqlite.Connection) -> Any:
        return _BufferedCursor(self._adapt_connection)

    def _aenter_cursor(self, cursor: Any) -> Any:
        return cursor


class OneHopConnection(AsyncAdapt_aiosqlite_connection):
    __slots__ = ("inline",)
    _cursor_cls = OneHopCursor

    def __init__(self, dbapi: Any, connection: aiosqlite.Connection):
        super().__init__(dbapi, connection)
        self.inline = False  # statements run on the caller's thread (`inline`)

    def begin_immediate_now(self) -> bool:
        """BEGIN IMMEDIATE on the calling thread if the write lock is free at once; False
        (nothing begun) if another connection holds it: the caller then waits for it the
        usual way, on the worker thread."""
        conn = self._connection._conn
        (timeout,) = conn.execute("PRAGMA busy_timeout").fetchone()
        conn.execute("PRAGMA busy_timeout = 0")
        try:
            conn.execute("BEGIN IMMEDIATE")
            return True
        except sqlite3.OperationalError as exc:
            if "locked" in str(exc) or "busy" in str(exc):
                return False
            raise
        finally:
            conn.execute(f"PRAGMA busy_timeout = {int(timeout)}")

    def commit(self) -> None:
        if self.inline:
            self._connection._conn.commit()
        else:
            super().commit()

    def rollback(self) -> None:
        if self.inline:
            if self._connection._connection is not None:
                self._connection._conn.rollback()
        else:
            super().rollback()


class OneHopDBAPI(AsyncAdapt_aiosqlite_dbapi):
    """The aiosqlite DB-API adapter, handing out one-hop connections (`module=` of the
    engine)."""

    def connect(self, *arg: Any, **kw: Any) -> OneHopConnection:
        connection = self.aiosqlite.connect(*arg, **kw)
        connection._thread.daemon = True
        return OneHopConnection(self, await_(connection))


def one_hop_dbapi() -> OneHopDBAPI:
    return OneHopDBAPI(aiosqlite, sqlite3)


async def inline(session: AsyncSession) -> OneHopConnection | None:
    """Switch the session's SQLite connection to running its statements, COMMIT and
    ROLLBACK on the calling thread, with no hand-off at all; returns the connection, whose
    `inline` the caller sets back to False once the session is closed. None (nothing
    changed) on other databases.

    Only for a transaction that holds SQLite's write lock already (BEGIN IMMEDIATE) and
    whose statements are each small, as a group commit's set-based ones are: none of them
    can wait for a lock, so they block the event loop only for SQLite's own work, which is
    less than the hand-offs cost. A hand-off waits for the worker thread to get the GIL,
    and meanwhile the event loop runs intake and the other loops: under load a batch's
    forty statements took three times their CPU time in wall time. The commit does not
    sync in WAL mode (synchronous=NORMAL); only a checkpoint, every ~4 MB of WAL, does."""
    if session.bind.dialect.name != "sqlite":
        return None
    raw = await (await session.connection()).get_raw_connection()
    adapter = raw.dbapi_connection
    if not isinstance(adapter, OneHopConnection):
        return None
    adapter.inline = True
    return adapter
