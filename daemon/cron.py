"""Cron jobs (`registry.on_cron`) on their schedules, in `daemon.timezone` (croniter).

Each slot runs once across all stormd processes: a process runs a job only after inserting
its `cron_runs` row (job, slot) — the others' inserts find it and skip. Slots missed while
no process was running are not replayed (like cron); the next one runs.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from datetime import UTC, datetime
from typing import Any

from croniter import croniter
from sqlalchemy import update

from stormd.config.settings import Settings
from stormd.daemon.batching import describe
from stormd.daemon.clock import Clock
from stormd.daemon.loops import SupervisedLoop
from stormd.daemon.metrics import CRON_RUNS
from stormd.handlers.context import JobContext
from stormd.handlers.registry import HandlerRegistry
from stormd.schema.cron import CronRun
from stormd.schema.upsert import insert_for

log = logging.getLogger(__name__)


def next_slot(expr: str, after: datetime, tz) -> datetime:
    """The first instant of `expr` (read in `tz`) strictly after `after`, in UTC."""
    return croniter(expr, after.astimezone(tz)).get_next(datetime).astimezone(UTC)


class CronLoop(SupervisedLoop):
    name = "cron"

    def __init__(self, sessionmaker: Any, settings: Settings, clock: Clock,
                 registry: HandlerRegistry, *, poll: float = 1.0, owner: str | None = None):
        super().__init__(poll)
        self.sessionmaker = sessionmaker
        self.settings = settings
        self.clock = clock
        self.registry = registry
        self.owner = owner or f"stormd-{uuid.uuid4().hex[:12]}"
        self._next: dict[str, datetime] = {}
        self._running: set[asyncio.Task] = set()

    async def stop(self) -> None:
        """Stop ticking, then let the jobs already started finish."""
        await super().stop()
        await asyncio.gather(*self._running, return_exceptions=True)

    async def run_pass(self) -> float:
        await self.tick()
        return self.poll

    async def tick(self) -> list[str]:
        """Start every job whose slot has come; returns the jobs this process claimed."""
        now = self.clock.now()
        started = []
        for name, (schedule, job) in self.registry.cron_jobs().items():
            expr = schedule(self.settings)
            slot = self._next.get(name)
            if slot is None:
                self._next[name] = next_slot(expr, now, self.settings.tz)
                continue
            if slot > now:
                continue
            self._next[name] = next_slot(expr, now, self.settings.tz)
            if await self._claim(name, slot):
                started.append(name)
                task = asyncio.create_task(self._execute(name, slot, job), name=f"cron-{name}")
                self._running.add(task)
                task.add_done_callback(self._running.discard)
        return started

    async def _claim(self, name: str, slot: datetime) -> bool:
        async with self.sessionmaker() as session, session.begin():
            stmt = (insert_for(session, CronRun)
                    .values(job=name, slot=slot, claimed_by=self.owner, started_at=self.clock.now())
                    .on_conflict_do_nothing(index_elements=["job", "slot"])
                    .returning(CronRun.job))
            return (await session.execute(stmt)).first() is not None

    async def _execute(self, name: str, slot: datetime, job) -> None:
        log.info("cron %s: running slot %s", name, slot.isoformat())
        error = None
        try:
            await job(JobContext(sessionmaker=self.sessionmaker, settings=self.settings,
                                 clock=self.clock))
            CRON_RUNS.labels(name, "ok").inc()
        except Exception as exc:
            error = describe(exc)[:1000]
            CRON_RUNS.labels(name, "failed").inc()
            log.error("cron %s (slot %s) failed: %s", name, slot.isoformat(), error)
        try:
            async with self.sessionmaker() as session, session.begin():
                await session.execute(
                    update(CronRun).where(CronRun.job == name, CronRun.slot == slot)
                    .values(finished_at=self.clock.now(), error=error)
                )
        except Exception as exc:  # the slot stays claimed either way; only the record is lost
            log.warning("cron %s: could not record the end of slot %s: %s", name,
                        slot.isoformat(), describe(exc))

    async def wait_running(self) -> None:
        await asyncio.gather(*self._running, return_exceptions=True)
