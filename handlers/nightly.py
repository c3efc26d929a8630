"""The scoring run: RFM snapshot, lifecycle rows, then every segment's differential
refresh, per store, as of T. Nightly on `rfm.schedule` (daemon timezone) and on demand
(`stormd rfm run`). One transaction per store: a store's segments move only together with
the snapshot that moved them.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from datetime import datetime

from stormd.handlers.context import JobContext
from stormd.handlers.features import known_store_ids
from stormd.handlers.guardrails import check_drift, record_run
from stormd.handlers.lifecycle import upsert_buyers, upsert_prospects
from stormd.handlers.registry import on_cron
from stormd.handlers.rfm import mark_failed, write_snapshot
from stormd.handlers.segments import Change, ensure_builtin_segments, list_segments, refresh_segment
from stormd.schema.rfm import RfmRun

log = logging.getLogger("stormd.rfm")


@dataclass
class RunReport:
    store_id: str
    run_id: int
    status: str
    as_of: datetime
    population: int = 0
    rows: int = 0
    seconds: float = 0.0
    segments: dict[str, Change] = field(default_factory=dict)
    drifted: list[str] = field(default_factory=list)
    stages: dict[str, float] = field(default_factory=dict)  # seconds per step

    def to_json(self) -> dict:
        return {
            "store": self.store_id, "runId": self.run_id, "status": self.status,
            "asOf": self.as_of.isoformat(), "population": self.population, "rows": self.rows,
            "seconds": round(self.seconds, 3), "drifted": self.drifted,
            "stages": {k: round(v, 3) for k, v in self.stages.items()},
            "segments": {slug: {"members": c.members, "entered": len(c.entered),
                                "exited": len(c.exited)} for slug, c in self.segments.items()},
        }


async def run_store(job: JobContext, store_id: str, as_of: datetime | None = None) -> RunReport:
    """Score one store as of T (default now) and refresh its segments."""
    started = time.perf_counter()
    now = job.clock.now()
    as_of = as_of or now
    settings = job.settings
    async with job.sessionmaker() as session:
        ctx = job.handler_context(session, store_id)
        try:
            await ensure_builtin_segments(session, store_id, now)
            snap = await write_snapshot(session, store_id, as_of, settings.rfm, now)
            report = RunReport(store_id, snap.run_id, snap.status, as_of, snap.population,
                               snap.rows)
            report.stages["snapshot"] = snap.seconds
            if snap.status == "OK":
                mark = time.perf_counter()
                await upsert_buyers(session, store_id, as_of, snap.aggregates, snap.scores,
                                    settings.lifecycle)
                await upsert_prospects(session, store_id, as_of, snap.aggregates.customer_ids)
                report.stages["lifecycle"] = time.perf_counter() - mark
                mark = time.perf_counter()
                for segment in await list_segments(session, store_id):
                    before = segment.member_count
                    change = await refresh_segment(ctx, segment, as_of)
                    report.segments[segment.slug] = change
                    if check_drift(store_id, segment.slug, before, change.members,
                                   settings.segments.drift_alert_percent):
                        report.drifted.append(segment.slug)
                report.stages["segments"] = time.perf_counter() - mark
            mark = time.perf_counter()
            await session.commit()
            report.stages["commit"] = time.perf_counter() - mark
        except Exception as exc:
            await session.rollback()
            run_id = await _record_crash(job, store_id, as_of, now, exc)
            record_run(store_id, "FAILED", time.perf_counter() - started, 0, 0)
            log.exception("rfm run %s for store %s crashed", run_id, store_id)
            raise
    report.seconds = time.perf_counter() - started
    record_run(store_id, report.status, report.seconds, report.population, report.rows)
    return report


async def _record_crash(job: JobContext, store_id: str, as_of: datetime, now: datetime,
                        exc: Exception) -> int:
    async with job.sessionmaker() as session:
        run = RfmRun(store_id=store_id, as_of=as_of, mode=job.settings.rfm.mode,
                     status="RUNNING", started_at=now)
        session.add(run)
        await session.flush()
        await mark_failed(session, run.id, f"{type(exc).__name__}: {exc}", now)
        await session.commit()
        return run.id


async def run_all_stores(job: JobContext, as_of: datetime | None = None,
                         store_id: str | None = None) -> list[RunReport]:
    """Every known store (or one), each in its own transaction; one store's failure does
    not stop the others."""
    if store_id is not None:
        stores = [store_id]
    else:
        async with job.sessionmaker() as session:
            stores = await known_store_ids(session)
    reports = []
    for store in stores:
        try:
            reports.append(await run_store(job, store, as_of))
        except Exception:  # logged and recorded as a FAILED run by run_store
            if store_id is not None:
                raise
    return reports


@on_cron("rfm", lambda settings: settings.rfm.schedule)
async def nightly_rfm(job: JobContext) -> None:
    for report in await run_all_stores(job):
        log.info("rfm run %s store %s: %s, %d scored in %.1fs", report.run_id, report.store_id,
                 report.status, report.population, report.seconds)
