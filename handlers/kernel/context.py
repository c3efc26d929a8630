"""What a handler is given: the open transaction, settings, clock, the registry of
reactions, and the `Effects` of its transaction.

Handlers decide; they never commit, publish or send. Every effect (rows, timers, events
out, queued messages) is written through the session, so the runtime commits them
together and acks the NATS message only afterwards; what the runtime must do after the
commit is noted on `effects`.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any

from sqlalchemy.ext.asyncio import AsyncSession

from stormd.config.clock import Clock
from stormd.config.settings import Settings
from stormd.handlers.kernel.effects import DeferredWork, Effects
from stormd.schema.runtime.timers import cancel_timers, schedule_timers
from stormd.schema.wire.envelope import OutEvent, out_events, stage_events

if TYPE_CHECKING:
    from stormd.handlers.kernel.registry import HandlerRegistry


@dataclass
class HandlerContext:
    session: AsyncSession
    settings: Settings
    clock: Clock
    store_id: str
    effects: Effects = field(default_factory=Effects)
    # The reactions handlers may trigger in turn (segment-entry automations after a
    # refresh); None where nothing reacts (a test driving one handler).
    registry: HandlerRegistry | None = None

    def now(self) -> datetime:
        return self.clock.now()

    def savepoint(self) -> HandlerContext:
        """This context for work inside a SAVEPOINT (merge its effects after it commits)."""
        return HandlerContext(self.session, self.settings, self.clock, self.store_id,
                              self.effects.child(), self.registry)

    def for_store(self, store_id: str) -> HandlerContext:
        """The same transaction and effects, acting for another store."""
        return HandlerContext(self.session, self.settings, self.clock, store_id,
                              self.effects, self.registry)

    async def schedule(self, key: str, kind: str, due_at: datetime,
                       payload: dict[str, Any] | None = None, priority: int = 0) -> None:
        """Fire the `kind` timer handler for `key` at `due_at` (replacing an earlier one)."""
        await self.schedule_many([{"key": key, "kind": kind, "due_at": due_at,
                                   "payload": payload, "priority": priority}])

    async def schedule_many(self, timers: list[dict[str, Any]]) -> None:
        """Many `schedule`s in one statement: dicts with key, kind, due_at and optionally
        payload and priority (set-based handlers schedule thousands at once)."""
        due = await schedule_timers(self.session, store_id=self.store_id, now=self.now(),
                                    timers=timers)
        if due is not None:
            self.effects.timers_scheduled(due)

    async def cancel(self, *keys: str) -> None:
        await cancel_timers(self.session, store_id=self.store_id, keys=list(keys))

    async def emit(self, type_: str, data: dict[str, Any]) -> str:
        """Publish an event out once this transaction commits; returns its id."""
        event = OutEvent(self.store_id, type_, data, self.now())
        await self.emit_events([event])
        return event.id

    async def emit_many(self, type_: str, data: Iterable[dict[str, Any]]) -> None:
        """One event out of `type_` per item of `data`, staged in one write."""
        await self.emit_events(out_events(self.store_id, type_, self.now(), data))

    async def emit_events(self, events: list[OutEvent]) -> None:
        self.effects.events_out += await stage_events(
            self.session, self.settings.nats.subject_prefix, events)

    def defer(self, work: DeferredWork, items: Iterable[str]) -> bool:
        """Put `work(ctx, items)` off to the end of the group-commit batch (once per store
        for everything put off); False when this transaction does not defer (a single
        dispatch, a timer, a careful rerun's savepoint): the caller then does it now."""
        return self.effects.defer(work, self.store_id, items)

    def remembered(self, name: str) -> dict[Any, Any]:
        """Facts this transaction has learned under `name` (see kernel/effects.py)."""
        return self.effects.remembered(name)


@dataclass(frozen=True)
class TimerFired:
    """A due timer handed to its handler."""

    store_id: str
    key: str
    kind: str
    due_at: datetime
    payload: dict[str, Any]


@dataclass
class JobContext:
    """What a cron job or a request handler is given: it opens its own transactions."""

    sessionmaker: Any  # async_sessionmaker[AsyncSession]
    settings: Settings
    clock: Clock
    registry: HandlerRegistry | None = None

    def handler_context(self, session: AsyncSession, store_id: str,
                        effects: Effects | None = None) -> HandlerContext:
        return HandlerContext(session=session, settings=self.settings, clock=self.clock,
                              store_id=store_id, effects=effects or Effects(),
                              registry=self.registry)
