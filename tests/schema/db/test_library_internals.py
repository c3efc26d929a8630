"""The private parts of SQLAlchemy and aiosqlite that schema/db/ builds on, one test each.

pyproject.toml bounds both libraries above the releases these tests passed on. Before a
bound is raised, run this file against the new release: a failure names the library, its
version, the part that changed and the stormd module to adapt.
"""

from __future__ import annotations

import inspect
import sqlite3
import threading
from collections.abc import AsyncIterator, Iterator
from contextlib import contextmanager
from functools import partial
from importlib.metadata import version

import aiosqlite
import pytest
from sqlalchemy import Column, Integer, MetaData, String, Table, select, text

from stormd.schema.db.engine import make_engine
from stormd.schema.db.inlist import in_values
from stormd.schema.db.sqlite_driver import OneHopConnection, OneHopCursor, _BufferedCursor

SHIM = "schema/db/sqlite_driver.py"


@contextmanager
def relied_on(dist: str, what: str, module: str, use: str, remedy: str) -> Iterator[None]:
    """Any failure inside becomes one message naming the library release, the part, and
    the stormd module relying on it."""
    try:
        yield
    except Exception as exc:
        pytest.fail(f"{dist} {version(dist)} no longer has {what}, which {module} {use}: "
                    f"check {remedy} against this release ({type(exc).__name__}: {exc})",
                    pytrace=False)


def params(fn) -> list[str]:
    return list(inspect.signature(fn).parameters)


@pytest.fixture
async def raw_adapter(tmp_path) -> AsyncIterator:
    """The DB-API adapter of a pooled connection of an engine on the one-hop driver.
    Opening it needs the aiosqlite parts checked below: if it fails, so does one of them."""
    engine = make_engine(f"sqlite+aiosqlite:///{tmp_path / 'internals.db'}")
    async with engine.connect() as conn:
        yield conn, (await conn.get_raw_connection()).dbapi_connection
    await engine.dispose()


# SQLAlchemy: the aiosqlite adapter classes the one-hop driver subclasses.

DBAPI = partial(relied_on, "SQLAlchemy", "AsyncAdapt_aiosqlite_dbapi(aiosqlite, sqlite) with "
                ".aiosqlite and .connect(*arg, **kw)", SHIM, "subclasses as OneHopDBAPI",
                "the driver shim")
CONNECTION = partial(relied_on, "SQLAlchemy", "AsyncAdapt_aiosqlite_connection(dbapi, "
                     "connection) with ._connection, ._cursor_cls, commit() and rollback()",
                     SHIM, "subclasses as OneHopConnection", "the driver shim")
CURSOR = partial(relied_on, "SQLAlchemy", "AsyncAdapt_aiosqlite_cursor with "
                 "_make_new_cursor(connection), _aenter_cursor(cursor), "
                 "_awaitable_cursor_close and ._adapt_connection", SHIM,
                 "overrides to buffer a statement's rows in one hop", "the driver shim")
CURSOR_USE = partial(relied_on, "SQLAlchemy", "an adapter cursor that needs only execute, "
                     "executemany, fetchall, close, description, rowcount, lastrowid and "
                     "arraysize of the driver's cursor", SHIM,
                     "hands a buffered cursor with just those", "the driver shim")


def test_sqlalchemy_aiosqlite_dbapi_adapter():
    with DBAPI():
        from sqlalchemy.dialects.sqlite.aiosqlite import AsyncAdapt_aiosqlite_dbapi

        assert params(AsyncAdapt_aiosqlite_dbapi.__init__) == ["self", "aiosqlite", "sqlite"]
        assert AsyncAdapt_aiosqlite_dbapi(aiosqlite, sqlite3).aiosqlite is aiosqlite
        assert params(AsyncAdapt_aiosqlite_dbapi.connect) == ["self", "arg", "kw"]


async def test_sqlalchemy_aiosqlite_connection_adapter(raw_adapter):
    with CONNECTION():
        from sqlalchemy.dialects.sqlite.aiosqlite import AsyncAdapt_aiosqlite_connection

        assert params(AsyncAdapt_aiosqlite_connection.__init__) == [
            "self", "dbapi", "connection"]
        assert isinstance(AsyncAdapt_aiosqlite_connection._cursor_cls, type)
        assert callable(AsyncAdapt_aiosqlite_connection.commit)
        assert callable(AsyncAdapt_aiosqlite_connection.rollback)
        _, adapter = raw_adapter
        assert isinstance(adapter, OneHopConnection)
        assert isinstance(adapter._connection, aiosqlite.Connection)
        assert isinstance(adapter.cursor(), OneHopCursor)  # made from _cursor_cls


async def test_sqlalchemy_aiosqlite_cursor_hooks(raw_adapter):
    with CURSOR():
        from sqlalchemy.dialects.sqlite.aiosqlite import AsyncAdapt_aiosqlite_cursor

        assert params(AsyncAdapt_aiosqlite_cursor._make_new_cursor) == ["self", "connection"]
        assert params(AsyncAdapt_aiosqlite_cursor._aenter_cursor) == ["self", "cursor"]
        assert isinstance(AsyncAdapt_aiosqlite_cursor._awaitable_cursor_close, bool)
        _, adapter = raw_adapter
        cursor = adapter.cursor()
        assert cursor._adapt_connection is adapter
        assert isinstance(cursor._cursor, _BufferedCursor)  # the hooks ran


async def test_sqlalchemy_cursor_asks_only_what_the_buffered_cursor_has(raw_adapter):
    conn, _ = raw_adapter
    table = Table("t", MetaData(), Column("id", Integer, primary_key=True),
                  Column("name", String))
    with CURSOR_USE():
        await conn.execute(text("CREATE TABLE t (id INTEGER PRIMARY KEY, name TEXT)"))
        await conn.execute(table.insert(), [{"name": "a"}, {"name": "b"}])  # executemany
        assert (await conn.execute(table.insert().values(name="c"))).lastrowid == 3
        changed = await conn.execute(text("UPDATE t SET name = 'x' WHERE id < 3"))
        assert changed.rowcount == 2
        rows = (await conn.execute(select(table.c.name).order_by(table.c.id))).all()
        assert [r.name for r in rows] == ["x", "x", "c"]
        result = await conn.execute(select(table.c.id).order_by(table.c.id))
        assert result.fetchmany(2) == [(1,), (2,)] and result.fetchone() == (3,)
        await conn.rollback()


def test_sqlalchemy_await_():
    with relied_on("SQLAlchemy", "sqlalchemy.util.concurrency.await_(awaitable)", SHIM,
                   "calls to open a connection inside SQLAlchemy's greenlet",
                   "the driver shim"):
        from sqlalchemy.util.concurrency import await_

        assert len(params(await_)) == 1


def test_sqlalchemy_traverse_internals_key_the_statement_cache():
    """InValues declares `_traverse_internals`: the cache key must follow its column (two
    columns, two keys) and not its values (one compiled statement for every list)."""
    with relied_on("SQLAlchemy", "InternalTraversal.dp_clauseelement and cache keys "
                   "built from a construct's _traverse_internals", "schema/db/inlist.py",
                   "declares on InValues", "the IN-list construct"):
        from sqlalchemy.sql.visitors import InternalTraversal

        assert InternalTraversal.dp_clauseelement
        t = Table("t", MetaData(), Column("a", Integer), Column("b", Integer))

        def key(column, values):
            return select(t.c.a).where(in_values(column, values))._generate_cache_key()

        assert key(t.c.a, [1]) == key(t.c.a, [2, 3])
        assert key(t.c.a, [1]) != key(t.c.b, [1])


# aiosqlite: the connection's worker thread and the sqlite3 connection behind it.


async def test_aiosqlite_connection_thread_is_set_before_it_starts():
    with relied_on("aiosqlite", "Connection._thread (a threading.Thread not started "
                   "until the connection is awaited)", SHIM,
                   "marks as a daemon thread", "the driver shim"):
        pending = aiosqlite.connect(":memory:")
        assert isinstance(pending._thread, threading.Thread)
        assert not pending._thread.is_alive()
        pending._thread.daemon = True
        conn = await pending
        try:
            assert conn._thread.daemon and conn._thread.is_alive()
        finally:
            await conn.close()


async def test_aiosqlite_connection_conn_and_connection():
    with relied_on("aiosqlite", "Connection._conn and ._connection (the sqlite3 "
                   "connection; ._connection None once closed)", SHIM,
                   "runs statements, COMMIT and ROLLBACK on", "the driver shim"):
        conn = await aiosqlite.connect(":memory:", check_same_thread=False)
        try:
            assert isinstance(conn._conn, sqlite3.Connection)
            assert conn._connection is conn._conn
            assert conn._conn.execute("SELECT 41 + 1").fetchone() == (42,)  # inline use
        finally:
            await conn.close()
        assert conn._connection is None


async def test_aiosqlite_connection_execute_runs_on_the_worker_thread():
    with relied_on("aiosqlite", "Connection._execute(fn, *args) (runs fn on the "
                   "connection's worker thread, returns its result)", SHIM,
                   "calls for a statement's one hop", "the driver shim"):
        conn = await aiosqlite.connect(":memory:")
        try:
            assert await conn._execute(threading.get_ident) != threading.get_ident()
            assert await conn._execute(lambda c, sql: c.execute(sql).fetchall(),
                                       conn._conn, "SELECT 1") == [(1,)]
        finally:
            await conn.close()
