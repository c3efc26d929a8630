"""Durable timers: schedule and cancel rows of `timers` inside the caller's transaction.

The firing loop (which claims due rows and hands them to handlers) lives beside these in
the daemon runtime; handlers only ever schedule and cancel.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import delete
from sqlalchemy.ext.asyncio import AsyncSession

from stormd.schema.timers import Timer
from stormd.schema.upsert import insert_for


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
    stmt = insert_for(session, Timer).values(
        store_id=store_id, key=key, kind=kind, due_at=due_at, payload=payload,
        priority=priority, created_at=now, claimed_by=None, claimed_until=None,
    )
    stmt = stmt.on_conflict_do_update(
        index_elements=["store_id", "key"],
        set_={
            "kind": stmt.excluded.kind, "due_at": stmt.excluded.due_at,
            "payload": stmt.excluded.payload, "priority": stmt.excluded.priority,
            "created_at": stmt.excluded.created_at, "claimed_by": None, "claimed_until": None,
        },
    )
    await session.execute(stmt)


async def cancel_timer(session: AsyncSession, *, store_id: str, key: str) -> None:
    await session.execute(delete(Timer).where(Timer.store_id == store_id, Timer.key == key))
