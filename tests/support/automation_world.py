"""A store on a real database, driven the way the daemon drives handlers: events through
the registry's reactions, due timers fired one by one or in one batch, segment changes
dispatched, and rows read back (the automation tests share it)."""

from __future__ import annotations

import json
from datetime import datetime

from campaign_data import STORE
from sqlalchemy import select

from stormd.handlers.kernel.context import HandlerContext, JobContext, TimerFired
from stormd.handlers.wiring import build_registry
from stormd.schema.runtime.timers import Timer
from stormd.schema.wire.events import parse_event


class World:
    """One store (campaign_data.STORE) with the daemon's registry."""

    def __init__(self, sessionmaker, settings, clock):
        self.sessionmaker, self.settings, self.clock = sessionmaker, settings, clock
        self.registry = build_registry()
        self.n = 0

    def context(self, session) -> HandlerContext:
        return HandlerContext(session, self.settings, self.clock, STORE, registry=self.registry)

    def job(self) -> JobContext:
        """What a cron job, a request or a command-line run is given (the registry too)."""
        return JobContext(self.sessionmaker, self.settings, self.clock, self.registry)

    async def segment_change(self, segment: str, entered: list[str], exited: list[str]):
        await self.run(self.registry.dispatch_segment_change, segment, entered, exited)

    async def run(self, fn, *args):
        async with self.sessionmaker() as s:
            result = await fn(self.context(s), *args)
            await s.commit()
            return result

    async def event(self, type_: str, data: dict, event_id: str | None = None,
                    occurred_at: datetime | None = None):
        self.n += 1
        body = {"id": event_id or f"evt{self.n}", "type": type_, "storeId": STORE,
                "occurredAt": (occurred_at or self.clock.now()).isoformat(), "data": data}
        event = parse_event(f"stormcom.events.{STORE}.{type_}", json.dumps(body).encode(),
                            "stormcom")
        await self.run(self.registry.dispatch_event, event)

    async def fire_due_timers(self, together: bool = False):
        """Fire the due timers one by one, or `together` in one batch as the timer loop
        hands a batch-handled kind."""
        async with self.sessionmaker() as s:
            due = (await s.scalars(select(Timer).where(Timer.due_at <= self.clock.now())
                                   .order_by(Timer.due_at, Timer.key))).all()
            fired = [TimerFired(t.store_id, t.key, t.kind, t.due_at, t.payload) for t in due]
            ctx = self.context(s)
            if together:
                await self.registry.dispatch_timers(ctx, fired)
            for t, f in zip(due, fired):
                if not together:
                    await self.registry.dispatch_timers(ctx, [f])
                await s.delete(t)
            await s.commit()
            return len(due)

    async def rows(self, model, **where):
        async with self.sessionmaker() as s:
            query = select(model)
            for k, v in where.items():
                query = query.where(getattr(model, k) == v)
            return list((await s.scalars(query)).all())


