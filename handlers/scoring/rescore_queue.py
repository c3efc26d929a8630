"""The customers waiting to be re-scored, in the database.

Re-scoring (RFM against the last nightly bounds, lifecycle, every segment's criteria) is
the largest fixed cost of a group commit: ~5 statements and a quarter of a small batch's
CPU. A group commit only queues the customers its events concern (one insert a batch);
the re-scoring loop (daemon/runtime/rescoring.py) takes them a few hundred at a time, moments
later, in a transaction of its own: fewer, larger re-scorings, and events acked sooner.
The queue is a table, so a restart loses none; a customer queued twice is one row.
"""

from __future__ import annotations

import functools
from collections import defaultdict
from typing import Any

from sqlalchemy import delete, select, tuple_
from sqlalchemy.ext.asyncio import AsyncSession

from stormd.handlers.kernel.context import HandlerContext
from stormd.schema.db.upsert import upsert_rows
from stormd.schema.marketing.segments import RescoreQueue

QUEUE = RescoreQueue.__table__


async def queue_rescores(ctx: HandlerContext, customer_ids: list[str]) -> None:
    """Queue these customers of `ctx.store_id` for re-scoring (after this commit)."""
    if not customer_ids:
        return
    now = ctx.now()
    await upsert_rows(ctx.session, QUEUE, [
        {"store_id": ctx.store_id, "customer_id": c, "queued_at": now} for c in customer_ids
    ], ["store_id", "customer_id"], update=False)
    ctx.effects.rescores_queued += len(customer_ids)


async def any_queued(session: AsyncSession) -> bool:
    """Whether a customer waits: a plain read, so an idle poll does not take the write
    lock that re-scoring's transaction starts with."""
    return (await session.execute(select(QUEUE.c.customer_id).limit(1))).first() is not None


@functools.cache
def _take(limit: int) -> Any:
    q = QUEUE.c
    oldest = (select(q.store_id, q.customer_id).order_by(q.queued_at).limit(limit)
              .with_for_update(skip_locked=True))  # several processes: each takes its own
    return (delete(QUEUE).where(tuple_(q.store_id, q.customer_id).in_(oldest))
            .returning(q.store_id, q.customer_id))


async def take_queued(session: AsyncSession, limit: int) -> dict[str, list[str]]:
    """Remove up to `limit` of the longest-waiting customers from the queue (in the
    caller's transaction, which re-scores them): store -> customer ids."""
    taken: dict[str, list[str]] = defaultdict(list)
    for store_id, customer_id in await session.execute(_take(limit)):
        taken[store_id].append(customer_id)
    return dict(taken)
