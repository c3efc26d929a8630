"""The SQLite driver: one hand-off a statement gives the same results as aiosqlite's four;
a group commit's transaction runs on the event loop's thread and commits or rolls back
there; every other session keeps SQLite's work off the loop (a long query never stalls
it), also on the same pooled connection right after a group commit."""

from __future__ import annotations

import asyncio
import sqlite3
import threading
import time
from datetime import UTC, datetime

import pytest
from sqlalchemy import event, insert, select, text

from stormd.schema.db.engine import make_engine, make_sessionmaker
from stormd.schema.db.write_lock import write_session
from stormd.schema.migrate import upgrade_database
from stormd.schema.shop.stores import Store

AT = datetime(2026, 12, 1, tzinfo=UTC)
# Counts to ten million in SQLite: long enough (~0.5-2 s) to see a stalled event loop.
SLOW_QUERY = text("WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n "
                  "WHERE i < 10000000) SELECT count(*) FROM n")


@pytest.fixture
async def sqlite_engine(sqlite_url):
    await upgrade_database(sqlite_url)
    engine = make_engine(sqlite_url)
    # One pooled connection: the group commit and the next session share it.
    engine.sync_engine.pool._pool.maxsize = 1

    @event.listens_for(engine.sync_engine, "connect")
    def thread_id(dbapi_conn, _record):
        dbapi_conn.create_function("thread_id", 0, threading.get_ident)

    yield engine
    await engine.dispose()


async def test_rows_counts_and_ids_come_back_as_from_aiosqlite(sqlite_engine):
    sessionmaker = make_sessionmaker(sqlite_engine)
    async with sessionmaker() as session, session.begin():
        await session.execute(insert(Store), [{"id": f"s{i}", "created_at": AT}
                                              for i in range(5)])
        deleted = await session.execute(text("DELETE FROM stores WHERE id IN ('s3', 's4')"))
        assert deleted.rowcount == 2
        result = await session.execute(text(
            "INSERT INTO processed_events (event_id, store_id, type, processed_at) "
            "VALUES ('e1', 's0', 'cart.updated', '2026-12-01 00:00:00.000000')"))
        assert result.lastrowid == 1
    async with sessionmaker() as session:
        assert (await session.scalars(select(Store.id).order_by(Store.id))).all() == [
            "s0", "s1", "s2"]
        assert (await session.execute(select(Store.id).where(Store.id == "nope"))).all() == []
    async with sqlite_engine.connect() as conn:  # a server-side cursor (aiosqlite's own)
        streamed = await conn.stream(select(Store.id).order_by(Store.id))
        assert [row.id async for row in streamed] == ["s0", "s1", "s2"]


async def test_a_group_commit_runs_on_the_loop_thread_and_commits_there(sqlite_engine):
    sessionmaker = make_sessionmaker(sqlite_engine)
    loop_thread = threading.get_ident()
    async with write_session(sessionmaker) as session:
        assert await session.scalar(text("SELECT thread_id()")) == loop_thread
        await session.execute(insert(Store).values(id="kept", created_at=AT))
    with pytest.raises(ZeroDivisionError):
        async with write_session(sessionmaker) as session:
            await session.execute(insert(Store).values(id="rolled-back", created_at=AT))
            raise ZeroDivisionError
    async with sessionmaker() as session:
        assert await session.scalar(text("SELECT thread_id()")) != loop_thread
        assert (await session.scalars(select(Store.id))).all() == ["kept"]


async def test_after_a_group_commit_a_long_query_does_not_stall_the_event_loop(
        sqlite_engine):
    sessionmaker = make_sessionmaker(sqlite_engine)
    async with write_session(sessionmaker) as session:
        await session.execute(insert(Store).values(id="s", created_at=AT))
    ticks: list[float] = []

    async def tick():
        while True:
            ticks.append(time.monotonic())
            await asyncio.sleep(0.01)

    ticker = asyncio.create_task(tick())
    await asyncio.sleep(0.05)
    async with sessionmaker() as session:  # the same pooled connection as the commit's
        started = time.monotonic()
        assert await session.scalar(SLOW_QUERY) == 10_000_000
        took = time.monotonic() - started
    ticker.cancel()
    gaps = [b - a for a, b in zip(ticks, ticks[1:])]
    assert took > 0.2  # the query was long enough to show a stall
    assert max(gaps) < took / 2, (max(gaps), took)


async def test_a_group_commit_waits_for_a_held_write_lock_off_the_event_loop(
        sqlite_engine, sqlite_url):
    sessionmaker = make_sessionmaker(sqlite_engine)
    other = sqlite3.connect(sqlite_url.removeprefix("sqlite+aiosqlite:///"),
                            isolation_level=None)
    other.execute("BEGIN IMMEDIATE")  # another process's long write transaction
    committed = asyncio.Event()

    async def group_commit():
        async with write_session(sessionmaker) as session:
            await session.execute(insert(Store).values(id="after-wait", created_at=AT))
        committed.set()

    task = asyncio.create_task(group_commit())
    started = time.monotonic()
    for _ in range(30):  # the loop keeps running while the commit waits for the lock
        await asyncio.sleep(0.01)
    assert time.monotonic() - started < 2  # blocked, it would wait out busy_timeout (30 s)
    assert not committed.is_set()
    other.execute("COMMIT")
    other.close()
    await asyncio.wait_for(task, 10)
    async with sessionmaker() as session:
        assert (await session.scalars(select(Store.id))).all() == ["after-wait"]
