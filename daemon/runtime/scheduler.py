"""The durable-timer firing loop: claims due `timers` rows and runs their handlers.

Several stormd processes share the table: a process claims due rows with a lease
(`claimed_by`, `claimed_until`) in one UPDATE … RETURNING, so a row is fired by one of
them; a crashed process's lease simply expires and another picks the row up. Each fired
timer runs in its own SAVEPOINT of one batch transaction and its row is deleted with it, so
a fire happens once; a failing one keeps its row and is retried after a backoff. A kind's
reactions (handlers/kernel/registry.py) run after its state handler, each in a SAVEPOINT
of its own once anything failed: a reaction that fails (not for the database's sake,
handlers/kernel/failures.py) is recorded and dropped, and its timer counts as fired.

Between claim and fire an event may reschedule or cancel a claimed timer (a cart updated
again), and a lease may run out while its claimer is slow (a long pause, a huge batch). So
the firing transaction first locks its rows and keeps only those still claimed by this
process (a stale claim would fire the old payload): on PostgreSQL the row locks (FOR
UPDATE) hold off other claimers, whose claim skips locked rows, until the fire commits and
deletes them; on SQLite the write lock does the same. A timer whose claim was taken over
is left to its new claimer, a rescheduled one to its new due time.

The loop sleeps until the next due time (at most `poll` seconds) and is woken early by
`wake()`: the runtime calls it after a group commit that scheduled a timer due within
`poll` (`Effects.earliest_timer`).
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable
from datetime import timedelta
from typing import Any

from sqlalchemy import and_, delete, func, or_, select, update

from stormd.config.clock import Clock
from stormd.config.settings import Settings
from stormd.daemon.runtime.batching import describe
from stormd.daemon.runtime.loops import SupervisedLoop
from stormd.handlers.kernel.context import HandlerContext, TimerFired
from stormd.handlers.kernel.effects import Effects
from stormd.handlers.kernel.failures import record_timer_failure, retried
from stormd.handlers.kernel.registry import HandlerRegistry
from stormd.schema.db.inlist import in_values
from stormd.schema.db.write_lock import write_session
from stormd.schema.metrics import TIMERS_FIRED
from stormd.schema.runtime.timers import Timer

log = logging.getLogger(__name__)
LEASE = timedelta(seconds=60)
RETRY_AFTER = timedelta(seconds=30)
COALESCE = 0.05  # seconds; wake-ups closer together than this share one pass
# Claimed timers a firing transaction takes. It holds SQLite's write lock (the events
# arriving meanwhile wait for it) and runs on the event loop's thread (`write_session`);
# each transaction has a fixed cost (~20 ms for cart abandonments: reach, templates,
# codes, products). 100,000 carts abandoned in one minute (benchmarks/carts.py, loop):
# 44.6 s in chunks of 100, 33.9 s of 1,000, 25.9 s of 2,000 (~0.5 s a chunk), 21.8 s of
# 5,000 (~1 s). Timers that come due a few at a time fire in small transactions anyway.
FIRE_CHUNK = 2000


class TimerLoop(SupervisedLoop):
    name = "timers"

    def __init__(self, sessionmaker: Any, settings: Settings, clock: Clock,
                 registry: HandlerRegistry, *, batch: int = 200, poll: float = 1.0,
                 owner: str | None = None, batch_claim: int = 5000,
                 after_commit: Callable[[list[Effects]], None] | None = None):
        super().__init__(poll)
        self.coalesce = min(COALESCE, poll)
        self.sessionmaker = sessionmaker
        self.settings = settings
        self.clock = clock
        self.registry = registry
        # Told what a firing transaction scheduled or staged (a step's next timer, its
        # events out), once it committed.
        self.after_commit = after_commit
        self.batch = batch
        # Due timers of batch-handled kinds (registry.on_timer_batch) claimed at once: their
        # handlers are set-based, so thousands fit well inside the lease.
        self.batch_claim = batch_claim
        self.owner = owner or f"stormd-{uuid.uuid4().hex[:12]}"

    async def run_pass(self) -> float:
        """Fire what is due; then sleep until the next due time (at most `poll`)."""
        if await self.fire_due() >= self.batch:
            return 0
        try:
            return max(min(self.poll, await self._seconds_to_next()), 0.001)
        except Exception:
            return self.poll

    async def _seconds_to_next(self) -> float:
        async with self.sessionmaker() as session:
            nxt = (await session.execute(select(func.min(Timer.due_at)))).scalar()
        if nxt is None:
            return self.poll
        return max((nxt - self.clock.now()).total_seconds(), 0.0)

    async def _claim(self) -> list[Timer]:
        now = self.clock.now()
        free = or_(Timer.claimed_until.is_(None), Timer.claimed_until < now)
        async with self.sessionmaker() as session:  # a plain read first: no write lock
            if (await session.execute(  # taken (on SQLite) when nothing is due
                select(Timer.id).where(Timer.due_at <= now, free).limit(1)
            )).first() is None:
                return []
        async with write_session(self.sessionmaker) as session:
            due = and_(Timer.due_at <= now, free)
            order = (Timer.priority.desc(), Timer.due_at)
            batch_kinds = self.registry.set_based_timer_kinds()
            # One UPDATE … WHERE id IN (top-N per class) RETURNING: no id list round trip.
            # Batch-handled kinds and the others are limited separately, so a flood of
            # one never starves the other.
            picks = [Timer.id.in_(select(Timer.id).where(due, Timer.kind.not_in(batch_kinds))
                                  .order_by(*order).limit(self.batch)
                                  .with_for_update(skip_locked=True))]
            if batch_kinds:
                picks.append(Timer.id.in_(select(Timer.id).where(due, Timer.kind.in_(batch_kinds))
                                          .order_by(*order).limit(self.batch_claim)
                                          .with_for_update(skip_locked=True)))
            rows = (await session.execute(
                update(Timer).where(or_(*picks), free)
                .values(claimed_by=self.owner, claimed_until=now + LEASE)
                .returning(Timer.id, Timer.store_id, Timer.key, Timer.kind, Timer.due_at,
                           Timer.payload, Timer.priority)
                .execution_options(synchronize_session=False)
            )).all()
            return sorted(rows, key=lambda r: (-r.priority, r.due_at))  # highest first

    async def fire_due(self) -> int:
        """Fire every due timer once (one claimed batch); returns how many were claimed."""
        claimed = await self._claim()
        for start in range(0, len(claimed), FIRE_CHUNK):  # highest priority first
            await self.fire(claimed[start:start + FIRE_CHUNK])
        return len(claimed)

    async def fire(self, claimed: list) -> None:
        """Fire claimed rows in one transaction: those still ours, locked first."""
        failed: list[int] = []
        effects = Effects()
        async with write_session(self.sessionmaker) as session:
            ours = set((await session.scalars(
                select(Timer.id).where(in_values(Timer.id, [r.id for r in claimed]),
                                       Timer.claimed_by == self.owner).with_for_update()
            )).all())
            if len(ours) < len(claimed):  # rescheduled or cancelled by an event since the
                # claim (the usual case: a cart updated again), or a run-out lease taken over
                log.debug("timers: %d claimed timer(s) changed hands before firing; not fired",
                          len(claimed) - len(ours))
                claimed = [r for r in claimed if r.id in ours]
            set_based = set(self.registry.set_based_timer_kinds())
            singles = [r for r in claimed if r.kind not in set_based]
            for (store_id, kind), rows in _batch_groups(claimed, set_based).items():
                if not await self._fire_batch(session, store_id, kind, rows, effects):
                    singles.extend(rows)  # the batch failed: one by one, to isolate the bad one
            for row in singles:
                fired = TimerFired(store_id=row.store_id, key=row.key, kind=row.kind,
                                   due_at=row.due_at, payload=row.payload or {})
                ctx = self._context(session, row.store_id, effects.child())
                try:
                    async with session.begin_nested():
                        await self.registry.dispatch_timer_state(ctx, row.kind, [fired])
                        for reaction in self.registry.timer_reactions(row.kind):
                            await self._react(session, ctx, reaction, [fired])
                        # A handler that rescheduled its own key reset claimed_by: keep it.
                        await session.execute(
                            delete(Timer).where(Timer.id == row.id, Timer.claimed_by == self.owner)
                            .execution_options(synchronize_session=False)
                        )
                    effects.merge(ctx.effects)
                    TIMERS_FIRED.labels(row.kind, "fired").inc()
                except Exception as exc:
                    failed.append(row.id)
                    TIMERS_FIRED.labels(row.kind, "failed").inc()
                    log.warning("timer %s (%s) failed: %s; retrying in %s",
                                row.key, row.kind, describe(exc), RETRY_AFTER)
            if failed:
                await session.execute(
                    update(Timer).where(and_(in_values(Timer.id, failed), Timer.claimed_by == self.owner))
                    .values(claimed_until=self.clock.now() + RETRY_AFTER)
                    .execution_options(synchronize_session=False)
                )
        if self.after_commit is not None:
            self.after_commit([effects])

    async def _react(self, session: Any, ctx: HandlerContext, reaction: Any,
                     fired: list[TimerFired]) -> None:
        """One reaction to fired timers in a SAVEPOINT of its own (the careful way)."""
        inner = ctx.savepoint()
        try:
            async with session.begin_nested():
                await reaction.handler(inner, fired)
        except Exception as exc:
            if retried(exc):
                raise
            await record_timer_failure(ctx, reaction.label, fired, exc)
            return
        ctx.effects.merge(inner.effects)

    def _context(self, session: Any, store_id: str, effects: Effects) -> HandlerContext:
        return HandlerContext(session=session, settings=self.settings, clock=self.clock,
                              store_id=store_id, effects=effects, registry=self.registry)

    async def _fire_batch(self, session, store_id: str, kind: str, rows: list,
                          effects: Effects) -> bool:
        """Fire one store's due timers of a set-based kind (`registry.on_timer_batch`) in
        one savepoint: set-based handlers do thousands per second where one call per timer
        does tens. False (nothing kept) if the handler raised."""
        ctx = self._context(session, store_id, effects.child())
        fired = [TimerFired(store_id=r.store_id, key=r.key, kind=r.kind, due_at=r.due_at,
                            payload=r.payload or {}) for r in rows]
        try:
            async with session.begin_nested():
                await self.registry.dispatch_timers(ctx, fired)
                await session.execute(
                    delete(Timer).where(in_values(Timer.id, [r.id for r in rows]),
                                        Timer.claimed_by == self.owner)
                    .execution_options(synchronize_session=False)
                )
        except Exception as exc:
            log.warning("timer batch of %d %s failed: %s; firing them one by one",
                        len(rows), kind, describe(exc))
            return False
        effects.merge(ctx.effects)
        TIMERS_FIRED.labels(kind, "fired").inc(len(rows))
        return True


def _batch_groups(claimed: list, set_based: set[str]) -> dict[tuple[str, str], list]:
    """Claimed rows of set-based kinds by (store, kind), in claim (priority) order."""
    groups: dict[tuple[str, str], list] = {}
    for row in claimed:
        if row.kind in set_based:
            groups.setdefault((row.store_id, row.kind), []).append(row)
    return groups
