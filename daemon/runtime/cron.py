"""Cron jobs (`registry.on_cron`) on their schedules, in `daemon.timezone` (croniter).

Each slot runs once across all stormd processes: a process runs a job only after inserting
its `cron_runs` row (job, slot) — the others' inserts find it and skip. Slots missed while
no process was running are not replayed (like cron); the next one runs.

A running job renews its row's `heartbeat_at` every `HEARTBEAT`. A claim left unfinished
with no heartbeat for `LEASE` belongs to a process that died mid-job (SIGKILL, power): any
process takes the slot over and runs the job again (the jobs are idempotent per slot:
snapshots and executions are keyed), unless a later slot of that job has already been
claimed, in which case the dead slot is only marked abandoned.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

from croniter import croniter
from sqlalchemy import func, select, update

from stormd.config.clock import Clock
from stormd.config.settings import Settings
from stormd.daemon.runtime.batching import describe
from stormd.daemon.runtime.loops import SupervisedLoop
from stormd.handlers.kernel.context import JobContext
from stormd.handlers.kernel.registry import HandlerRegistry
from stormd.schema.db.upsert import insert_for
from stormd.schema.metrics import CRON_RUNS
from stormd.schema.runtime.cron import CronRun

log = logging.getLogger(__name__)

LEASE = timedelta(minutes=2)  # no heartbeat for this long: the claimer is dead
HEARTBEAT = 20.0  # seconds between renewals, well inside LEASE


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
        self.heartbeat = HEARTBEAT
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
        """Start every job whose slot has come, and take over slots whose claimer died;
        returns the jobs this process started."""
        now = self.clock.now()
        jobs = self.registry.cron_jobs()
        started = []
        for name, (schedule, job) in jobs.items():
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
                self._start(name, slot, job)
        for name, slot in await self._take_over_dead(now, set(jobs)):
            started.append(name)
            self._start(name, slot, jobs[name][1])
        return started

    def _start(self, name: str, slot: datetime, job) -> None:
        task = asyncio.create_task(self._execute(name, slot, job), name=f"cron-{name}")
        self._running.add(task)
        task.add_done_callback(self._running.discard)

    async def _claim(self, name: str, slot: datetime) -> bool:
        async with self.sessionmaker() as session, session.begin():
            now = self.clock.now()
            stmt = (insert_for(session, CronRun)
                    .values(job=name, slot=slot, claimed_by=self.owner, started_at=now,
                            heartbeat_at=now)
                    .on_conflict_do_nothing(index_elements=["job", "slot"])
                    .returning(CronRun.job))
            return (await session.execute(stmt)).first() is not None

    async def _take_over_dead(self, now: datetime, names: set[str]) -> list[tuple[str, datetime]]:
        """Claims unfinished with a stale heartbeat: the latest slot of a job is taken over
        (compare-and-set on the old claimer and heartbeat, so one process wins); an older
        one, already overtaken by a later slot, is closed as abandoned."""
        stale = now - LEASE
        beat = func.coalesce(CronRun.heartbeat_at, CronRun.started_at)
        taken = []
        async with self.sessionmaker() as session, session.begin():
            dead = (await session.execute(
                select(CronRun.job, CronRun.slot, CronRun.claimed_by, beat.label("beat"))
                .where(CronRun.finished_at.is_(None), beat < stale, CronRun.job.in_(names))
            )).all()
            if not dead:
                return []
            latest = dict((await session.execute(
                select(CronRun.job, func.max(CronRun.slot))
                .where(CronRun.job.in_({d.job for d in dead})).group_by(CronRun.job))).all())
            for d in dead:
                alive = (CronRun.job == d.job, CronRun.slot == d.slot,
                         CronRun.claimed_by == d.claimed_by, CronRun.finished_at.is_(None),
                         beat == d.beat)
                if d.slot != latest[d.job]:
                    await session.execute(update(CronRun).where(*alive).values(
                        finished_at=now, error=f"abandoned: {d.claimed_by} stopped "
                        f"mid-run and a later slot has been claimed since"))
                    continue
                won = (await session.execute(
                    update(CronRun).where(*alive)
                    .values(claimed_by=self.owner, started_at=now, heartbeat_at=now)
                    .returning(CronRun.job))).first()
                if won is not None:
                    log.warning("cron %s: slot %s was left unfinished by %s (no heartbeat "
                                "since %s); running it again", d.job, d.slot.isoformat(),
                                d.claimed_by, d.beat.isoformat())
                    taken.append((d.job, d.slot))
        return taken

    async def _heartbeat(self, name: str, slot: datetime) -> None:
        while True:
            await asyncio.sleep(self.heartbeat)
            try:
                async with self.sessionmaker() as session, session.begin():
                    await session.execute(
                        update(CronRun).where(CronRun.job == name, CronRun.slot == slot,
                                              CronRun.claimed_by == self.owner)
                        .values(heartbeat_at=self.clock.now()))
            except Exception as exc:  # a missed beat is retried; LEASE spans several
                log.warning("cron %s: heartbeat failed: %s", name, describe(exc))

    async def _execute(self, name: str, slot: datetime, job) -> None:
        log.info("cron %s: running slot %s", name, slot.isoformat())
        error = None
        beating = asyncio.create_task(self._heartbeat(name, slot), name=f"cron-{name}-beat")
        try:
            await job(JobContext(sessionmaker=self.sessionmaker, settings=self.settings,
                                 clock=self.clock, registry=self.registry))
            CRON_RUNS.labels(name, "ok").inc()
        except Exception as exc:
            error = describe(exc)[:1000]
            CRON_RUNS.labels(name, "failed").inc()
            log.error("cron %s (slot %s) failed: %s", name, slot.isoformat(), error)
        finally:
            beating.cancel()
        try:
            async with self.sessionmaker() as session, session.begin():
                await session.execute(  # not if another process took the slot over
                    update(CronRun).where(CronRun.job == name, CronRun.slot == slot,
                                          CronRun.claimed_by == self.owner)
                    .values(finished_at=self.clock.now(), error=error)
                )
        except Exception as exc:  # the slot stays claimed either way; only the record is lost
            log.warning("cron %s: could not record the end of slot %s: %s", name,
                        slot.isoformat(), describe(exc))

    async def wait_running(self) -> None:
        await asyncio.gather(*self._running, return_exceptions=True)
