"""Cron slots claimed: one row per (job, scheduled slot), so that with several stormd
processes each slot of a cron job runs once."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import String
from sqlalchemy.orm import Mapped, mapped_column

from stormd.schema.base import Base


class CronRun(Base):
    __tablename__ = "cron_runs"

    job: Mapped[str] = mapped_column(String(100), primary_key=True)
    slot: Mapped[datetime] = mapped_column(primary_key=True)  # the scheduled instant (UTC)
    claimed_by: Mapped[str] = mapped_column(String(64))
    started_at: Mapped[datetime]
    # Renewed while the job runs; a claim whose heartbeat has gone stale (its process was
    # killed) is taken over by another process, so a slot is never left half done.
    heartbeat_at: Mapped[datetime | None]
    finished_at: Mapped[datetime | None]
    error: Mapped[str | None] = mapped_column(String(1000))
