"""Segment definitions (criteria JSON) and their precomputed membership."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import Boolean, Index, Integer, String
from sqlalchemy.orm import Mapped, mapped_column

from stormd.schema.base import Base, BigId


class CustomerSegment(Base):
    __tablename__ = "customer_segments"

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    store_id: Mapped[str] = mapped_column(String(64))
    slug: Mapped[str] = mapped_column(String(64))
    name: Mapped[str] = mapped_column(String(200))
    criteria: Mapped[dict[str, Any]]
    builtin: Mapped[bool] = mapped_column(Boolean, default=False)
    member_count: Mapped[int] = mapped_column(Integer, default=0)
    created_at: Mapped[datetime]
    updated_at: Mapped[datetime]
    refreshed_at: Mapped[datetime | None]
    # The last full refresh (every customer evaluated) and the criteria it used: entries
    # before the first one, or under changed criteria, are a backfill (docs/segments.md).
    filled_at: Mapped[datetime | None]
    filled_criteria: Mapped[dict[str, Any] | None]
    # OK, or FAILED when its last refresh failed (`error` says why): a failed segment
    # keeps its last membership and never holds up another segment or store.
    status: Mapped[str] = mapped_column(String(16), default="OK", server_default="OK")
    error: Mapped[str | None] = mapped_column(String(500))
    failed_at: Mapped[datetime | None]

    __table_args__ = (Index(None, "store_id", "slug", unique=True),)


class CustomerSegmentMember(Base):
    __tablename__ = "customer_segment_members"

    store_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    segment_id: Mapped[int] = mapped_column(BigId, primary_key=True)
    customer_id: Mapped[str] = mapped_column(String(128), primary_key=True)
    entered_at: Mapped[datetime]

    __table_args__ = (Index(None, "store_id", "customer_id"),)


class RescoreQueue(Base):
    """Customers whose events since the last re-scoring may move their RFM scores and
    segments: a group commit queues them here (one insert a batch) and the re-scoring
    loop takes them in its own transactions, so the event path does not pay for it and
    a restart loses none."""

    __tablename__ = "rescore_queue"

    store_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    customer_id: Mapped[str] = mapped_column(String(128), primary_key=True)
    queued_at: Mapped[datetime]

    __table_args__ = (Index(None, "queued_at"),)
