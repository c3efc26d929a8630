"""Durable timers: "fire `kind` for `key` at `due_at`", kept in the database so that a
restart neither loses nor repeats a delayed step.

Handlers schedule and cancel rows inside their own transaction (through their context,
which also tells the runtime when the nearest one is due); the firing loop in the daemon
claims due rows and hands them to their handlers.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import Index, String
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import Mapped, mapped_column

from stormd.schema.base import Base, BigId
from stormd.schema.db.prepared import delete_in
from stormd.schema.db.upsert import upsert_rows


class Timer(Base):
    __tablename__ = "timers"

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    store_id: Mapped[str] = mapped_column(String(64))
    key: Mapped[str] = mapped_column(String(200))  # unique: rescheduling replaces
    kind: Mapped[str] = mapped_column(String(64))
    due_at: Mapped[datetime]
    payload: Mapped[dict[str, Any] | None]
    priority: Mapped[int] = mapped_column(default=0)
    created_at: Mapped[datetime]
    claimed_by: Mapped[str | None] = mapped_column(String(64))
    claimed_until: Mapped[datetime | None]

    __table_args__ = (
        Index(None, "store_id", "key", unique=True),
        Index(None, "due_at"),
    )


async def schedule_timers(
    session: AsyncSession, *, store_id: str, now: datetime, timers: list[dict[str, Any]]
) -> datetime | None:
    """Fire each `kind` for its `key` at its `due_at` (dicts with key, kind, due_at and
    optionally payload and priority), in one executemany; scheduling a key again replaces
    its timer. Returns the nearest due time (None when given none)."""
    if not timers:
        return None
    # Every column given, so a replaced timer loses its old claim (claimed_by/until NULL);
    # upsert_rows: one compiled statement, rows to SQLite's driver executemany.
    await upsert_rows(session, Timer.__table__, [
        {"store_id": store_id, "key": t["key"], "kind": t["kind"], "due_at": t["due_at"],
         "payload": t.get("payload"), "priority": t.get("priority", 0), "created_at": now,
         "claimed_by": None, "claimed_until": None}
        for t in timers
    ], ["store_id", "key"])
    return min(t["due_at"] for t in timers)


async def cancel_timers(session: AsyncSession, *, store_id: str, keys: list[str]) -> None:
    """Cancel timers by key (missing keys are fine)."""
    await delete_in(session, Timer.__table__, "key", store_id, keys)
