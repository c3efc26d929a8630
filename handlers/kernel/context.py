"""What a handler is given: the open transaction, settings, clock, and its effects.

Handlers decide; they never commit, publish or send. Every effect (rows, timers, events
out, queued messages) goes through the session, so the runtime commits them together and
acks the NATS message only afterwards.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from stormd.config.clock import Clock
from stormd.config.settings import Settings
from stormd.schema.runtime.timer_rows import cancel_timer, schedule_timer
from stormd.schema.wire.envelope import stage_outbound_event


@dataclass
class HandlerContext:
    session: AsyncSession
    settings: Settings
    clock: Clock
    store_id: str

    def now(self) -> datetime:
        return self.clock.now()

    async def schedule(
        self, key: str, kind: str, due_at: datetime,
        payload: dict[str, Any] | None = None, priority: int = 0,
    ) -> None:
        """Fire the `kind` timer handler for `key` at `due_at` (replacing an earlier one)."""
        await schedule_timer(
            self.session, store_id=self.store_id, key=key, kind=kind, due_at=due_at,
            now=self.now(), payload=payload, priority=priority,
        )

    async def cancel(self, key: str) -> None:
        await cancel_timer(self.session, store_id=self.store_id, key=key)

    def emit(self, type_: str, data: dict[str, Any]) -> str:
        """Publish an event out (CONTRACT §4) once this transaction commits."""
        return stage_outbound_event(
            self.session, prefix=self.settings.nats.subject_prefix, store_id=self.store_id,
            type_=type_, data=data, now=self.now(),
        )


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
    """What a cron job or an API request handler is given: it opens its own transactions."""

    sessionmaker: Any  # async_sessionmaker[AsyncSession]
    settings: Settings
    clock: Clock

    def handler_context(self, session: AsyncSession, store_id: str) -> HandlerContext:
        return HandlerContext(session=session, settings=self.settings, clock=self.clock,
                              store_id=store_id)
