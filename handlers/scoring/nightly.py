"""The scoring run: RFM snapshot, lifecycle rows, then every segment's differential
refresh, per store, as of T; then the store's predictions (handlers/predictions/nightly.py)
and the segments that read them. Nightly on `rfm.schedule` (daemon timezone) and on demand
(`stormd rfm run`).
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from datetime import datetime

from stormd.handlers.kernel.context import JobContext
from stormd.handlers.kernel.failures import retried
from stormd.handlers.predictions.learned import learn_store
from stormd.handlers.predictions.nightly import PredictionReport, predict_store
from stormd.handlers.scoring.criteria import reads_predictions
from stormd.handlers.scoring.features import customer_aggregates, engagement, known_store_ids
from stormd.handlers.scoring.guardrails import check_drift, record_run
from stormd.handlers.scoring.lifecycle import upsert_buyers, upsert_prospects
from stormd.handlers.scoring.rfm import (
    insert_snapshot_rows,
    mark_failed,
    prune_snapshot_slice,
    record_bounds,
    runs_to_prune,
    score,
    start_run,
    verify_snapshot,
)
from stormd.handlers.scoring.segments import (
    Change,
    ensure_builtin_segments,
    forget_imports,
    list_segments,
    refresh_segment,
)
from stormd.handlers.scoring.segments import mark_failed as mark_segment_failed

log = logging.getLogger("stormd.rfm")
SLICE_ROWS = 50_000  # rows written per transaction


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
    failed: dict[str, str] = field(default_factory=dict)  # segment -> why its refresh failed
    drifted: list[str] = field(default_factory=list)
    stages: dict[str, float] = field(default_factory=dict)  # wall seconds per step
    cpu: dict[str, float] = field(default_factory=dict)  # process CPU seconds per step
    predictions: PredictionReport | None = None  # the step after the run, when it ran
    _cpu_mark: float = field(default_factory=time.process_time, repr=False)

    def stage(self, name: str, since: float) -> float:
        """Close step `name` begun at `since` (perf_counter); returns the next step's start."""
        now, cpu = time.perf_counter(), time.process_time()
        self.stages[name] = now - since
        self.cpu[name] = cpu - self._cpu_mark
        self._cpu_mark = cpu
        return now

    def to_json(self) -> dict:
        return {
            "store": self.store_id, "runId": self.run_id, "status": self.status,
            "asOf": self.as_of.isoformat(), "population": self.population, "rows": self.rows,
            "seconds": round(self.seconds, 3), "drifted": self.drifted,
            "stages": {k: round(v, 3) for k, v in self.stages.items()},
            "cpu": {k: round(v, 3) for k, v in self.cpu.items()},
            "segments": {slug: {"members": c.members, "entered": len(c.entered),
                                "exited": len(c.exited), "backfill": len(c.backfill),
                                "backfillReason": c.backfill_reason}
                         for slug, c in self.segments.items()},
            "predictions": self.predictions.to_json() if self.predictions else None,
            "failedSegments": self.failed,
        }


async def run_store(job: JobContext, store_id: str, as_of: datetime | None = None, *,
                    defer_predicted: bool = False) -> RunReport:
    """Score one store as of T (default now) and refresh its segments (with
    `defer_predicted`, not those reading predictions: `run_all_stores` refreshes them after
    the predictions step).

    Writes go in short transactions (slices of rows, then one per segment) so that event
    handling is never held up for long. What others see midway is sound: a run's bounds
    are used only once it is OK, a lifecycle row only moves forward in time (an event
    after T is never undone), and each segment's membership moves together with its
    events.
    """
    started = time.perf_counter()
    now = job.clock.now()
    as_of = as_of or now
    settings = job.settings
    run_id = None
    report = RunReport(store_id, 0, "RUNNING", as_of)
    try:
        mark = started
        async with job.sessionmaker() as session:
            await ensure_builtin_segments(session, store_id, now)
            run_id = report.run_id = await start_run(session, store_id, as_of,
                                                     settings.rfm.mode, now)
            await session.commit()
        async with job.sessionmaker() as session:
            agg = await customer_aggregates(session, store_id, as_of, settings.rfm.window_days)
            found = await engagement(session, store_id, as_of,
                                     settings.lifecycle.engagement_window_days)
        mark = report.stage("aggregate", mark)
        scores = score(agg, as_of, settings.rfm)
        mark = report.stage("score", mark)
        await _in_slices(job, len(agg), lambda s, rows: insert_snapshot_rows(
            s, run_id, store_id, as_of, agg.part(rows), scores.part(rows)))
        async with job.sessionmaker() as session:
            # The population is what the aggregate found, in the same read as the scores:
            # a separate count could see orders committed meanwhile and fail a sound run.
            status, rows = await verify_snapshot(session, run_id, store_id, len(agg), now)
            await record_bounds(session, run_id, scores.bounds)
            await session.commit()
        report.status, report.population, report.rows = status, len(agg), rows
        mark = report.stage("snapshot", mark)
        if status == "OK":
            await _in_slices(job, len(agg), lambda s, rows: upsert_buyers(
                s, store_id, as_of, agg.part(rows), scores.part(rows), settings.lifecycle,
                found))
            async with job.sessionmaker() as session:
                await upsert_prospects(session, store_id, as_of, agg.customer_ids,
                                       found=found)
                await session.commit()
            mark = report.stage("lifecycle", mark)
            await _refresh_segments(job, store_id, as_of, report,
                                     skip=reads_predictions if defer_predicted else None)
            mark = report.stage("segments", mark)
            await _prune_snapshots(job, store_id)
            mark = report.stage("prune", mark)
    except Exception as exc:
        await _record_crash(job, run_id, store_id, as_of, now, exc)
        record_run(store_id, "FAILED", time.perf_counter() - started, 0, 0)
        log.exception("rfm run %s for store %s crashed", run_id, store_id)
        raise
    report.seconds = time.perf_counter() - started
    record_run(store_id, report.status, report.seconds, report.population, report.rows)
    return report


async def _in_slices(job: JobContext, n: int, write) -> None:
    """`write(session, rows)` for consecutive slices of n rows, each committed on its own."""
    for start in range(0, n, SLICE_ROWS):
        async with job.sessionmaker() as session:
            await write(session, slice(start, start + SLICE_ROWS))
            await session.commit()


async def _prune_snapshots(job: JobContext, store_id: str) -> None:
    """Keep snapshot rows of the store's `rfm.keep_runs` latest runs, in short slices."""
    async with job.sessionmaker() as session:
        old_runs = await runs_to_prune(session, store_id, job.settings.rfm.keep_runs)
    for run_id in old_runs:
        while True:
            async with job.sessionmaker() as session:
                gone = await prune_snapshot_slice(session, store_id, run_id, SLICE_ROWS)
                await session.commit()
            if gone < SLICE_ROWS:
                break


async def _refresh_segments(job: JobContext, store_id: str, as_of: datetime,
                            report: RunReport, skip=None, only=None) -> None:
    """Refresh the store's segments (those whose criteria `only` accepts, bar those `skip`
    accepts), each in its own transaction: one that fails is marked FAILED with the
    reason (its last membership kept) and the others go on."""
    async with job.sessionmaker() as session:
        segments = await list_segments(session, store_id)
    for segment in segments:
        if (skip and skip(segment.criteria)) or (only and not only(segment.criteria)):
            continue
        before = segment.member_count  # the refresh updates the object to the new count
        try:
            async with job.sessionmaker() as session:
                change = await refresh_segment(job.handler_context(session, store_id),
                                               segment, as_of)
                await session.commit()
        except Exception as exc:
            if retried(exc):
                raise
            reason = f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"
            log.error("segment %s of store %s failed to refresh, marked FAILED: %s",
                      segment.slug, store_id, reason)
            async with job.sessionmaker() as session:
                await mark_segment_failed(session, segment.id, reason, job.clock.now())
                await session.commit()
            report.failed[segment.slug] = reason[:500]
            continue
        report.segments[segment.slug] = change
        if check_drift(store_id, segment.slug, before, change.members,
                       job.settings.segments.drift_alert_percent):
            report.drifted.append(segment.slug)
    async with job.sessionmaker() as session:
        await forget_imports(session, store_id)
        await session.commit()


async def _record_crash(job: JobContext, run_id: int | None, store_id: str, as_of: datetime,
                        now: datetime, exc: Exception) -> None:
    async with job.sessionmaker() as session:
        if run_id is None:
            run_id = await start_run(session, store_id, as_of, job.settings.rfm.mode, now)
        await mark_failed(session, run_id, f"{type(exc).__name__}: {exc}", now)
        await session.commit()


async def run_all_stores(job: JobContext, as_of: datetime | None = None,
                         store_id: str | None = None) -> list[RunReport]:
    """Every known store (or one), each in its own transaction; one store's failure does
    not stop the others."""
    if store_id is not None:
        stores = [store_id]
    else:
        async with job.sessionmaker() as session:
            stores = await known_store_ids(session)
    predicting = job.settings.predictions.enabled
    reports = []
    for store in stores:
        try:
            report = await run_store(job, store, as_of, defer_predicted=predicting)
        except Exception:  # logged and recorded as a FAILED run by run_store
            if store_id is not None:
                raise
            continue
        if predicting and report.status == "OK":
            await _predict(job, report)
        reports.append(report)
    return reports


async def _predict(job: JobContext, report: RunReport) -> None:
    """The predictions step after an OK run: fit and store, refresh the segments that read
    predictions, learn the product neighbours. A failure here is logged and recorded on
    the fit; the run itself stays OK and the deferred segments are still refreshed."""
    store_id, as_of = report.store_id, report.as_of
    started = time.perf_counter()
    try:
        report.predictions = await predict_store(job, store_id, as_of, report.run_id)
    except Exception as exc:
        log.exception("predictions for store %s failed", store_id)
        report.predictions = PredictionReport(store_id, status="FAILED",
                                              reason=f"{type(exc).__name__}: {exc}"[:500])
    await _refresh_segments(job, store_id, as_of, report, only=reads_predictions)
    if job.settings.predictions.learned_recommendations:
        try:
            report.predictions.products_learned = await learn_store(job, store_id, as_of)
        except Exception:
            log.exception("learned recommendations for store %s failed", store_id)
    report.predictions.seconds = time.perf_counter() - started


async def nightly_rfm(job: JobContext) -> None:
    for report in await run_all_stores(job):
        log.info("rfm run %s store %s: %s, %d scored in %.1fs", report.run_id, report.store_id,
                 report.status, report.population, report.seconds)
        if report.predictions:
            p = report.predictions
            log.info("predictions store %s: %s%s in %.1fs", report.store_id, p.status,
                     f" ({p.reason})" if p.reason else "", p.seconds)
