"""The inbox (`processed_events`) forgets events older than `nats.dedupe_horizon`.

Within JetStream's duplicate window (`nats.duplicate_window`) the stream itself drops a
repeat published with the same `Nats-Msg-Id`; after it, only the inbox row absorbs a
replay, so the horizon is longer than the window (the settings refuse anything else) and
by default matches how long the stream keeps events (`nats.stream_max_age`, 7 days). Rows
go in chunks, each its own short write transaction, so events keep flowing meanwhile.
"""

from __future__ import annotations

import asyncio
import logging
from datetime import datetime

from sqlalchemy import delete, select, tuple_
from sqlalchemy.ext.asyncio import AsyncSession

from stormd.handlers.kernel.context import JobContext
from stormd.schema.db.write_lock import write_session
from stormd.schema.runtime.inbox import ProcessedEvent

log = logging.getLogger(__name__)
CHUNK = 5000  # rows a transaction
SCHEDULE = "7 * * * *"  # hourly


async def prune_before(session: AsyncSession, cut: datetime, limit: int = CHUNK) -> int:
    """Delete up to `limit` inbox rows processed before `cut`; returns how many."""
    oldest = (select(ProcessedEvent.store_id, ProcessedEvent.event_id)
              .where(ProcessedEvent.processed_at < cut).limit(limit))
    result = await session.execute(delete(ProcessedEvent).where(
        tuple_(ProcessedEvent.store_id, ProcessedEvent.event_id).in_(oldest)))
    return result.rowcount or 0


async def prune_inbox(job: JobContext) -> int:
    """The cron job: every row past the horizon, a chunk at a time; returns how many."""
    cut = job.clock.now() - job.settings.nats.dedupe_horizon
    total = 0
    while True:
        async with write_session(job.sessionmaker) as session:
            n = await prune_before(session, cut)
        total += n
        if n < CHUNK:
            break
        await asyncio.sleep(0)  # group commits waiting for the write lock go first
    if total:
        log.info("inbox: forgot %d events processed before %s", total, cut.isoformat())
    return total
