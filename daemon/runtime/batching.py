"""Group commit: the handlers of many events share one transaction, and their NATS messages
are acked only after it commits.

The fast path runs a whole batch in one transaction: one multi-row inbox insert
(`processed_events`, ON CONFLICT DO NOTHING) tells which events are new, then the new
events' handlers run set-based. Events are given in groups, one group per actor, and run
in runs of one store and one event type (`runs`): the type of the first group's next
event takes the next event of every group whose next event is of that store and type. So
no run holds two events of one key, a key's events run in order, and the run count per
batch stays near the number of distinct types (a quarter fewer runs than taking the k-th
event of every group in turn). A set-based handler (`registry.on_event_batch`) gets each
run in one call, the others event by event. Events of different keys are
not ordered between them (as with actors running in parallel): handlers decide by the
events' own times (`occurredAt`), never by arrival order.

If any handler raises, the transaction is rolled back and the batch runs again carefully,
event by event, each in its own SAVEPOINT, so a failing event leaves no trace while the
others commit (the event known to have failed in a state handler is not run again; when a
batch call failed, the careful run finds out which event it was). In the careful run an
event's state handlers run first, then each of its reactions in a SAVEPOINT of its own: a
reaction's failure never undoes the state (handlers/kernel/failures.py says which failures
retry the event and which drop the reaction, recorded as a FAILED automation execution).
The fast path pays nothing for this: no savepoint per reaction unless something failed.
After a failure the rest of that group is skipped (not run), so one key's events stay in
order. A transaction that fails by itself (a flush at commit, another process claiming an
id first) gets the same careful rerun; one the database could not take at all (locked
past busy_timeout, connection lost) leaves every event BLOCKED: retried with backoff,
never counted towards the dead-letter limit.
"""

from __future__ import annotations

import enum
import logging
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC
from typing import Any

from sqlalchemy import delete, insert, select
from sqlalchemy.exc import DBAPIError, InterfaceError, OperationalError
from sqlalchemy.ext.asyncio import AsyncSession

from stormd.config.clock import Clock
from stormd.config.settings import Settings
from stormd.handlers.kernel.context import HandlerContext
from stormd.handlers.kernel.effects import Effects
from stormd.handlers.kernel.failures import record_event_failure, retried
from stormd.handlers.kernel.registry import HandlerRegistry, ReactionFailed
from stormd.schema.db.write_lock import write_session
from stormd.schema.metrics import BATCH_SIZE
from stormd.schema.runtime.inbox import ProcessedEvent
from stormd.schema.wire.events import Event

log = logging.getLogger(__name__)
# A batch stops taking new groups after this long: on SQLite it holds the one write lock,
# and the timer loop, cron and the delivery pipeline are waiting for it. The rest of the
# batch goes back to its actors (SKIPPED) and runs in the next one.
BATCH_TIME_BUDGET = 0.25
_SQLITE_INBOX_INSERT = (
    "INSERT INTO processed_events (store_id, event_id, type, processed_at) "
    "VALUES (?, ?, ?, ?) ON CONFLICT (store_id, event_id) DO NOTHING"
)
Key = tuple[str, str]  # an event's (store, id): ids are unique within a store


class Outcome(enum.Enum):
    PROCESSED = "processed"
    DUPLICATE = "duplicate"
    FAILED = "failed"
    SKIPPED = "skipped"  # not run (behind a failed event of its actor, or out of time): retried
    # The database could not take the batch (locked past busy_timeout, unreachable): retried
    # with the actor's backoff, not counted as an attempt (the event did nothing wrong).
    BLOCKED = "blocked"


@dataclass(eq=False)
class Delivery:
    """One event on its way through the runtime, with the NATS messages that carried it (a
    redelivery of an event still in flight joins the first and is acked with it)."""

    event: Event
    msgs: list[Any] = field(default_factory=list)
    received: float = field(default_factory=time.monotonic)
    attempts: int = 0
    priority: int = 0
    error: str | None = None  # what failed, in full, for the log
    reason: str | None = None  # the same in fixed words, for the dead-letter header

    @property
    def key(self) -> Key:
        return (self.event.store_id, self.event.id)


class _SeenBefore(Exception):
    """Some events of the batch are in the inbox already (the optimistic claim fell short)."""


class _HandlerFailed(Exception):
    """A handler raised; `delivery` is the event it failed on, None if a batch call over
    several events raised (the careful rerun finds out which)."""

    def __init__(self, delivery: Delivery | None, exc: BaseException, run: int = 1):
        self.delivery = delivery
        self.exc = exc
        self.run = run


def runs(groups: list[list[Delivery]]) -> Iterator[list[Delivery]]:
    """Runs of one store and one event type, each actor's events in order, no two of one
    actor in a run: the next run is of the store and type of the first unfinished group's
    next event, and takes the next event of every group whose next event matches."""
    pos = [0] * len(groups)
    live = [i for i, g in enumerate(groups) if g]
    while live:
        head = groups[live[0]][pos[live[0]]].event
        key = (head.store_id, head.type)
        run: list[Delivery] = []
        rest: list[int] = []
        for i in live:
            d = groups[i][pos[i]]
            if d.event.type == key[1] and d.event.store_id == key[0]:
                run.append(d)
                pos[i] += 1
            if pos[i] < len(groups[i]):
                rest.append(i)
        live = rest
        yield run


def unavailable(exc: BaseException) -> bool:
    """The database, not the events, failed the transaction: SQLite locked past its
    busy_timeout, a lost or refused connection, a serialization conflict."""
    if isinstance(exc, DBAPIError) and exc.connection_invalidated:
        return True
    return isinstance(exc, (OperationalError, InterfaceError, OSError, TimeoutError))


def describe(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}"


def reason_of(exc: BaseException) -> str:
    """An exception in fixed words, fit for a dead-letter header: its type, never its text
    (a database error's text holds the SQL and the customer's values)."""
    if isinstance(exc, DBAPIError):  # its DB-API class: the same words on both databases
        return f"database error ({type(exc).__name__})"
    return type(exc).__name__


def _failed(d: Delivery, exc: BaseException) -> None:
    d.error, d.reason = describe(exc), reason_of(exc)


class GroupCommitter:
    def __init__(
        self, sessionmaker: Any, settings: Settings, clock: Clock, registry: HandlerRegistry,
        after_commit: Callable[[list[Effects]], None] | None = None,
    ):
        self.sessionmaker = sessionmaker
        self.settings = settings
        self.clock = clock
        self.registry = registry
        # Called after each batch with the effects of the transactions that committed it
        # (what they scheduled, staged or queued: the runtime wakes the loops that need it).
        self.after_commit = after_commit

    async def commit(self, groups: list[list[Delivery]]) -> dict[Delivery, Outcome]:
        """Apply the batch; every delivery gets an outcome (FAILED ones carry `.error`)."""
        BATCH_SIZE.observe(sum(map(len, groups)))
        known_bad: Delivery | None = None
        committed: list[Effects] = []  # the effects of the transactions that committed it
        try:
            try:
                outcomes = await self._fast(groups, committed)
            except _SeenBefore:
                outcomes = await self._fast(groups, committed, optimistic=False)
        except _HandlerFailed as failed:
            # A reaction's failure is not the event's: the careful run keeps its state.
            known_bad = None if isinstance(failed.exc, ReactionFailed) else failed.delivery
            if known_bad is not None:
                _failed(known_bad, failed.exc)
                log.warning("handler failed for %s %s (attempt %d): %s", known_bad.event.type,
                            known_bad.event.id, known_bad.attempts + 1, known_bad.error)
            else:
                log.warning("a handler failed on a run of %d events (%s); rerunning "
                            "them one by one", failed.run, describe(failed.exc))
            outcomes = None
        except Exception as exc:  # the transaction itself failed
            if unavailable(exc):
                return self._all(groups, Outcome.BLOCKED, exc, "database unavailable")
            # A flush at commit that one event's rows break, or another process claiming an
            # id first: the careful rerun finds the event (or the duplicate).
            log.warning("batch of %d events failed to commit (%s); rerunning them one by one",
                        sum(map(len, groups)), describe(exc))
            outcomes = None
        if outcomes is None:
            try:
                outcomes = await self._careful(groups, known_bad, committed)
            except Exception as exc:
                if unavailable(exc):
                    return self._all(groups, Outcome.BLOCKED, exc, "database unavailable")
                return self._all(groups, Outcome.FAILED, exc, "commit failed")
        if self.after_commit is not None:
            self.after_commit(committed)
        return outcomes

    @staticmethod
    def _all(groups: list[list[Delivery]], outcome: Outcome, exc: BaseException, what: str
             ) -> dict[Delivery, Outcome]:
        error, reason = f"{what}: {describe(exc)}", f"{what}: {reason_of(exc)}"
        log.warning("batch of %d events not committed (%s): %s", sum(map(len, groups)),
                    outcome.value, error)
        outcomes = {}
        for group in groups:
            for d in group:
                d.error, d.reason = error, reason
                outcomes[d] = outcome
        return outcomes

    def _context(self, session: AsyncSession, store_id: str, effects: Effects
                 ) -> HandlerContext:
        return HandlerContext(session=session, settings=self.settings, clock=self.clock,
                              store_id=store_id, effects=effects, registry=self.registry)

    async def _claim(self, session: AsyncSession, deliveries: list[Delivery],
                     optimistic: bool = False) -> set[Key]:
        """Insert inbox rows for the events not seen before; returns their (store, id) keys
        (the rest are duplicates).

        Optimistic (SQLite, the first statement of a batch): one driver-level executemany
        of INSERT … ON CONFLICT DO NOTHING; when its row count says every row went in (the
        usual case) that is the answer, with no read at all; otherwise `_SeenBefore` rolls
        the batch back to be rerun the careful way. Otherwise, and on PostgreSQL: SELECT …
        IN for the (store, id) keys already there, then a plain INSERT of the rest. A concurrent process that claimed an id first
        makes that INSERT fail (unique violation, or SQLite's write lock), the batch is
        retried and the retry finds the id: effects are applied by one process only."""
        now = self.clock.now()
        if optimistic and session.bind.dialect.name == "sqlite" and len(deliveries) > 1:
            stamp = now.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S.%f")
            conn = await session.connection()
            result = await conn.exec_driver_sql(_SQLITE_INBOX_INSERT, [
                (d.event.store_id, d.event.id, d.event.type, stamp) for d in deliveries])
            if result.rowcount != len(deliveries):
                raise _SeenBefore  # roll back, and rerun the batch finding out which
            return {d.key for d in deliveries}
        seen = await _seen(session, [d.key for d in deliveries])
        rows = [{"event_id": d.event.id, "store_id": d.event.store_id, "type": d.event.type,
                 "processed_at": now} for d in deliveries if d.key not in seen]
        if rows:
            await session.execute(insert(ProcessedEvent), rows)
        return {(r["store_id"], r["event_id"]) for r in rows}

    async def _fast(self, groups: list[list[Delivery]], committed: list[Effects],
                    optimistic: bool = True) -> dict[Delivery, Outcome]:
        outcomes: dict[Delivery, Outcome] = {}
        effects = Effects.deferring()  # re-scoring once for the batch, at its end
        async with write_session(self.sessionmaker) as session:
            new = await self._claim(session, [d for g in groups for d in g], optimistic)
            deadline = time.monotonic() + BATCH_TIME_BUDGET
            for run in runs(groups):
                fresh = []
                for d in run:
                    if d.key in new:
                        fresh.append(d)
                    else:
                        outcomes[d] = Outcome.DUPLICATE
                if fresh and not await self._run(session, fresh, outcomes, deadline, effects):
                    rest = [d for g in groups for d in g if d not in outcomes]
                    await self._put_back(session, [rest], new, outcomes)
                    break
            await self._run_deferred(session, outcomes, effects)
        committed.append(effects)
        return outcomes

    async def _run_deferred(self, session: AsyncSession, outcomes: dict[Delivery, Outcome],
                            effects: Effects) -> None:
        """The work handlers put off to the end of the batch (`HandlerContext.defer`); if
        it fails, the careful rerun does it event by event."""
        try:
            await self.registry.run_deferred(self._context(session, "", effects))
        except Exception as exc:
            raise _HandlerFailed(None, exc, len(outcomes)) from exc

    async def _run(self, session: AsyncSession, run: list[Delivery],
                   outcomes: dict[Delivery, Outcome], deadline: float, effects: Effects
                   ) -> bool:
        """Dispatch one run (one store, one type); False when out of time before it ended
        (at least one event of the batch always runs)."""
        ctx = self._context(session, run[0].event.store_id, effects)
        if len(run) > 1 and self.registry.batched(run[0].event.type):
            if outcomes and time.monotonic() > deadline:
                return False
            try:
                await self.registry.dispatch_events(ctx, [d.event for d in run])
            except Exception as exc:
                raise _HandlerFailed(None, exc, len(run)) from exc
            for d in run:
                outcomes[d] = Outcome.PROCESSED
            return True
        for d in run:
            if outcomes and time.monotonic() > deadline:
                return False
            try:
                await self.registry.dispatch_event(ctx, d.event)
            except Exception as exc:
                raise _HandlerFailed(d, exc) from exc
            outcomes[d] = Outcome.PROCESSED
        return True

    async def _careful(
        self, groups: list[list[Delivery]], known_bad: Delivery | None,
        committed: list[Effects],
    ) -> dict[Delivery, Outcome]:
        """Rerun the batch, each event in a SAVEPOINT; the event that failed the fast path
        is not run again in this attempt."""
        outcomes: dict[Delivery, Outcome] = {}
        effects = Effects()  # no deferring: each event's savepoint does its own work
        async with write_session(self.sessionmaker) as session:
            deadline = time.monotonic() + BATCH_TIME_BUDGET
            for n, group in enumerate(groups):
                if n and time.monotonic() > deadline:
                    await self._put_back(session, groups[n:], set(), outcomes)
                    break
                failed = False
                for d in group:
                    if failed:
                        outcomes[d] = Outcome.SKIPPED
                        continue
                    if d is known_bad:
                        outcomes[d] = Outcome.FAILED
                    else:
                        outcomes[d] = await self._one_in_savepoint(session, d, effects)
                    failed = outcomes[d] is Outcome.FAILED
        committed.append(effects)
        return outcomes

    async def _put_back(self, session: AsyncSession, groups: list[list[Delivery]],
                        claimed: set[Key], outcomes: dict[Delivery, Outcome]) -> None:
        """The batch ran out of time: leave these groups for the next batch (unclaimed)."""
        rest = [d for g in groups for d in g]
        for d in rest:
            outcomes[d] = Outcome.SKIPPED
        keys = [d.key for d in rest if d.key in claimed]
        for store_id, ids in _by_store(keys).items():
            await session.execute(delete(ProcessedEvent).where(
                ProcessedEvent.store_id == store_id, ProcessedEvent.event_id.in_(ids)))

    async def _one_in_savepoint(self, session: AsyncSession, d: Delivery, effects: Effects
                                ) -> Outcome:
        ctx = self._context(session, d.event.store_id, effects.child())
        try:
            async with session.begin_nested():
                if not await self._claim(session, [d]):
                    return Outcome.DUPLICATE
                await self.registry.dispatch_state(ctx, [d.event])
                for reaction in self.registry.event_reactions(d.event.type):
                    await self._react(session, ctx, reaction, d)
            effects.merge(ctx.effects)
            return Outcome.PROCESSED
        except Exception as exc:
            _failed(d, exc)
            log.warning("handler failed for %s %s (attempt %d): %s",
                        d.event.type, d.event.id, d.attempts + 1, d.error)
            return Outcome.FAILED

    async def _react(self, session: AsyncSession, ctx: HandlerContext, reaction: Any,
                     d: Delivery) -> None:
        """One reaction to an event whose state is applied, in a SAVEPOINT of its own: a
        failure the database caused fails the event (retried); any other is recorded and
        the reaction dropped, the state kept."""
        inner = ctx.savepoint()
        try:
            async with session.begin_nested():
                await reaction.batch(inner, [d.event])
        except Exception as exc:
            if retried(exc):
                raise
            await record_event_failure(ctx, reaction.label, [d.event], exc)
            return
        ctx.effects.merge(inner.effects)

def _by_store(keys: list[Key]) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for store_id, event_id in keys:
        out.setdefault(store_id, []).append(event_id)
    return out


async def _seen(session: AsyncSession, keys: list[Key]) -> set[Key]:
    """The keys already in the inbox: one query per store of the batch (usually one)."""
    seen: set[Key] = set()
    for store_id, ids in _by_store(keys).items():
        seen.update((store_id, i) for i in (await session.execute(
            select(ProcessedEvent.event_id).where(ProcessedEvent.store_id == store_id,
                                                  ProcessedEvent.event_id.in_(ids))
        )).scalars())
    return seen

