"""Durable timers: schedule and cancel rows of `timers` inside the caller's transaction.

The firing loop (which claims due rows and hands them to handlers) lives beside these in
the daemon runtime; handlers only ever schedule and cancel.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from stormd.schema.db.prepared import delete_in
from stormd.schema.db.upsert import upsert_rows
from stormd.schema.runtime.timers import Timer

_EARLIEST = "stormd.earliest_timer"  # session.info: the nearest due time scheduled in it


def earliest_scheduled(info: dict[str, Any]) -> datetime | None:
    """The nearest due time a session (its `info`) scheduled, None if none: the runtime
    wakes the timer loop after a commit only when it must fire before its next poll."""
    return info.get(_EARLIEST)


async def schedule_timer(
    session: AsyncSession,
    *,
    store_id: str,
    key: str,
    kind: str,
    due_at: datetime,
    now: datetime,
    payload: dict[str, Any] | None = None,
    priority: int = 0,
) -> None:
    """Fire `kind` for `key` at `due_at`; scheduling the same key again replaces it."""
    await schedule_timers(session, store_id=store_id, now=now, timers=[
        {"key": key, "kind": kind, "due_at": due_at, "payload": payload, "priority": priority}
    ])


async def schedule_timers(
    session: AsyncSession, *, store_id: str, now: datetime, timers: list[dict[str, Any]]
) -> None:
    """Many `schedule_timer`s in one executemany: each dict has key, kind, due_at and
    optionally payload and priority. Set-based handlers (thousands of carts) use this."""
    if not timers:
        return
    due = min(t["due_at"] for t in timers)
    if session.info.get(_EARLIEST) is None or due < session.info[_EARLIEST]:
        session.info[_EARLIEST] = due
    # Every column given, so a replaced timer loses its old claim (claimed_by/until NULL);
    # upsert_rows: one compiled statement, rows to SQLite's driver executemany.
    await upsert_rows(session, Timer.__table__, [
        {"store_id": store_id, "key": t["key"], "kind": t["kind"], "due_at": t["due_at"],
         "payload": t.get("payload"), "priority": t.get("priority", 0), "created_at": now,
         "claimed_by": None, "claimed_until": None}
        for t in timers
    ], ["store_id", "key"])


async def cancel_timers(session: AsyncSession, *, store_id: str, keys: list[str]) -> None:
    """Cancel many timers by key (missing keys are fine)."""
    await delete_in(session, Timer.__table__, "key", store_id, keys)


async def cancel_timer(session: AsyncSession, *, store_id: str, key: str) -> None:
    await delete_in(session, Timer.__table__, "key", store_id, [key])
