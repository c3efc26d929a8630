"""Write transactions that hold the database's write lock from their first statement.

SQLite has one write lock. A transaction that reads before it writes starts deferred; if
another connection commits in between, its first write fails at once ("database is
locked": busy_timeout does not apply to a stale snapshot). The daemon's writers (group
commits, timer fires, re-scoring, the delivery pipeline's claims and records) therefore
take the lock first.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from stormd.schema.db.sqlite_driver import inline


async def lock_for_write(session: AsyncSession) -> None:
    """On SQLite, take the write lock first (BEGIN IMMEDIATE, waiting up to busy_timeout
    on the driver's worker thread). No-op on PostgreSQL."""
    if session.bind.dialect.name == "sqlite":
        await session.execute(text("BEGIN IMMEDIATE"))


@asynccontextmanager
async def write_session(sessionmaker: Any) -> AsyncIterator[AsyncSession]:
    """A session in a transaction that holds the write lock from its start (committed at
    the end of the block, rolled back if it raises).

    On SQLite, once the lock is held, its statements and its commit run on the event
    loop's thread (`sqlite_driver.inline`): none can wait for a lock, and each hand-off
    to the driver's thread would let the loop run other work while the lock is held
    (under load a 54-timer fire held it 340 ms for ~60 ms of work). So a block must be
    bounded work: a batch of events, timers, customers or messages. The lock itself is
    taken on the loop's thread when it is free, else waited for on the worker thread."""
    session = sessionmaker()
    adapter = None
    try:
        async with session.begin():
            adapter = await inline(session)
            if adapter is None or not adapter.begin_immediate_now():
                if adapter is not None:
                    adapter.inline = False  # wait for the lock off the event loop
                await lock_for_write(session)
                if adapter is not None:
                    adapter.inline = True
            yield session
    finally:
        try:
            await session.close()  # the connection's reset on release runs inline too
        finally:
            if adapter is not None:
                adapter.inline = False
