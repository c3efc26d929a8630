"""Exactly-once bookkeeping: the processed-event inbox and the outbound event outbox."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import Index, PrimaryKeyConstraint, String
from sqlalchemy.orm import Mapped, mapped_column

from stormd.schema.base import Base, BigId


class ProcessedEvent(Base):
    """An event, by (store, envelope id), whose effects are committed; a second delivery
    finds it and stops. Ids are unique within a store only: the same id in two stores is
    two events. Rows older than `nats.dedupe_horizon` are pruned (by `processed_at`)."""

    __tablename__ = "processed_events"

    store_id: Mapped[str] = mapped_column(String(64))
    event_id: Mapped[str] = mapped_column(String(128))
    type: Mapped[str] = mapped_column(String(64))
    processed_at: Mapped[datetime]

    __table_args__ = (PrimaryKeyConstraint("store_id", "event_id"),
                      Index(None, "processed_at"))


class OutboundEvent(Base):
    """An event out (docs/events.md) written with the effects that caused it, published after
    commit and then deleted (transactional outbox)."""

    __tablename__ = "outbound_events"

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    event_id: Mapped[str] = mapped_column(String(64))
    subject: Mapped[str] = mapped_column(String(300))
    payload: Mapped[dict[str, Any]]
    created_at: Mapped[datetime]

    __table_args__ = (Index(None, "event_id", unique=True),)
