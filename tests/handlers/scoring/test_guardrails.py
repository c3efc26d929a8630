"""Data-quality guardrails: an incomplete snapshot fails its run (and is never used to
re-score), and a segment moving more than segments.drift_alert_percent raises an alert."""

from __future__ import annotations

import logging

from prometheus_client import REGISTRY
from shop_history import DAY, STORE, T, scoring_fixture, status
from sqlalchemy import delete, select

from stormd.handlers.kernel.context import JobContext
from stormd.handlers.scoring.guardrails import record_run
from stormd.handlers.scoring.nightly import run_store
from stormd.handlers.scoring.rfm import latest_ok_run, verify_snapshot
from stormd.schema.marketing.rfm import CustomerRFMSnapshot, RfmRun


def _metric(name, **labels) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


async def test_snapshot_missing_a_row_fails_its_run(sessionmaker, clock, settings_factory,
                                                    caplog):
    async with sessionmaker() as session:
        await scoring_fixture(session)
        await session.commit()
    clock.set(T)
    report = await run_store(JobContext(sessionmaker, settings_factory(), clock), STORE)
    assert report.status == "OK"
    async with sessionmaker() as session:
        await session.execute(delete(CustomerRFMSnapshot).where(
            CustomerRFMSnapshot.run_id == report.run_id, CustomerRFMSnapshot.customer_id == "c3"))
        assert await verify_snapshot(session, report.run_id, STORE, 6, T) == ("FAILED", 5)
        await session.commit()
        run = await session.scalar(select(RfmRun).where(RfmRun.id == report.run_id))
        assert run.status == "FAILED" and run.error == "snapshot has 5 rows, population is 6"
        assert await latest_ok_run(session, STORE) is None  # never used to re-score
    failed = _metric("stormd_rfm_runs_total", store="guard_store", status="failed")
    with caplog.at_level(logging.ERROR, logger="stormd.guardrails"):
        record_run("guard_store", "FAILED", 1.0, 6, 5)
    assert _metric("stormd_rfm_runs_total", store="guard_store", status="failed") == failed + 1
    assert "rfm run FAILED for store guard_store: snapshot has 5 rows" in caplog.text


async def test_segment_moving_more_than_the_limit_in_a_day_raises_a_drift_alert(
        sessionmaker, clock, settings_factory, caplog):
    settings = settings_factory(segments={"drift_alert_percent": 20})
    async with sessionmaker() as session:
        await scoring_fixture(session)
        await session.commit()
    clock.set(T)
    job = JobContext(sessionmaker, settings, clock)
    await run_store(job, STORE)
    async with sessionmaker() as session:  # c1's orders are refunded
        await status(session, "o1", "REFUNDED", T + DAY / 2)
        await status(session, "o2", "REFUNDED", T + DAY / 2)
        await session.commit()
    before = _metric("stormd_segment_drift_alerts_total", store=STORE, segment="at-risk")
    clock.set(T + DAY)
    with caplog.at_level(logging.WARNING, logger="stormd.guardrails"):
        report = await run_store(job, STORE, T)
    # Re-scored without c1: vip {c1} -> {c2, c6}, loyal {c2, c6} -> {c3}, at-risk {c3} -> {},
    # hibernating unchanged.
    assert report.drifted == ["vip", "loyal", "at-risk"]
    assert {s: c.members for s, c in report.segments.items()} == {
        "vip": 2, "loyal": 1, "at-risk": 0, "hibernating": 2}
    assert _metric("stormd_segment_drift_alerts_total", store=STORE,
                   segment="at-risk") == before + 1
    assert "segment drift: store_1/at-risk moved 100.0% (1 -> 0 members), limit 20.0%" \
        in caplog.text
    assert _metric("stormd_segment_members", store=STORE, segment="at-risk") == 0
