"""The re-scoring loop: takes the customers group commits queued
(handlers/scoring/rescore_queue.py) and re-scores them
(handlers/scoring/segments.py `rescore_customers`: RFM, lifecycle, segment moves,
`customer.segmented` out, segment-entry automations).

Woken after a commit that queued customers, it waits `COALESCE` for more to join, then
re-scores up to `batch` of them in one transaction holding the write lock (on SQLite run
inline, like a group commit: `schema/db/write_lock.py`), and goes again at once while the
queue is not empty. So a storefront's busy minute costs a few re-scorings a second
instead of one per group commit, and segments still move within a second of the event.
Each store's customers are re-scored in a SAVEPOINT of their own: one store's failure
(logged, counted as a `rescoring` reaction failure; its customers wait for their next
event or the nightly run) never fails another store's pass.
It also polls, for customers another process queued or a crash left behind (a plain
read first: an idle poll does not take the write lock).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from stormd.config.clock import Clock
from stormd.config.settings import Settings
from stormd.daemon.runtime.loops import SupervisedLoop
from stormd.handlers.kernel.context import HandlerContext
from stormd.handlers.kernel.effects import Effects
from stormd.handlers.kernel.failures import retried
from stormd.handlers.kernel.registry import HandlerRegistry
from stormd.handlers.scoring.rescore_queue import any_queued, take_queued
from stormd.handlers.scoring.segments import rescore_customers
from stormd.schema.db.write_lock import write_session
from stormd.schema.metrics import REACTION_FAILURES

log = logging.getLogger(__name__)
COALESCE = 0.2  # seconds a wake-up waits for more customers to share the pass
FINAL_PASSES = 5  # at stop


class RescoreLoop(SupervisedLoop):
    name = "rescoring"
    coalesce = COALESCE

    def __init__(self, sessionmaker: Any, settings: Settings, clock: Clock,
                 registry: HandlerRegistry, *, batch: int = 1000, poll: float = 1.0,
                 after_commit: Callable[[list[Effects]], None] | None = None):
        super().__init__(poll)
        self.sessionmaker = sessionmaker
        self.settings = settings
        self.clock = clock
        self.registry = registry  # segment-entry automations react to the moves
        self.after_commit = after_commit
        self.batch = batch  # customers a pass: bounds how long it holds the write lock

    async def run_pass(self) -> float:
        return 0 if await self.rescore_queued() >= self.batch else self.poll

    async def stop(self) -> None:
        """Re-score what is queued (a few passes at most: shutdown has a grace period),
        then stop; what is left waits in the queue for the next start."""
        await super().stop()
        try:
            for _ in range(FINAL_PASSES):
                if await self.rescore_queued() < self.batch:
                    break
        except Exception as exc:
            log.warning("rescoring: final pass failed (%s); the queue is kept", exc)

    async def rescore_queued(self) -> int:
        """Re-score one batch of queued customers; returns how many were taken."""
        async with self.sessionmaker() as session:
            if not await any_queued(session):
                return 0
        effects = Effects()
        async with write_session(self.sessionmaker) as session:
            taken = await take_queued(session, self.batch)
            for store_id, customer_ids in taken.items():
                ctx = HandlerContext(session=session, settings=self.settings, clock=self.clock,
                                     store_id=store_id, effects=effects.child(),
                                     registry=self.registry)
                try:
                    async with session.begin_nested():
                        await rescore_customers(ctx, customer_ids)
                except Exception as exc:
                    if retried(exc):
                        raise
                    REACTION_FAILURES.labels("rescoring").inc(len(customer_ids))
                    log.warning("rescoring: store %s failed (%s: %s); its %d customers wait "
                                "for their next event or the nightly run", store_id,
                                type(exc).__name__, str(exc).splitlines()[0] if str(exc) else "",
                                len(customer_ids))
                    continue
                effects.merge(ctx.effects)
        if self.after_commit is not None:
            self.after_commit([effects])
        return sum(map(len, taken.values()))
