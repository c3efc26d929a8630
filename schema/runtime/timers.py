"""Durable timers: "fire `kind` for `key` at `due_at`", kept in the database so that a
restart neither loses nor repeats a delayed step."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import Index, String
from sqlalchemy.orm import Mapped, mapped_column

from stormd.schema.base import Base, BigId


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
