"""RFM exactly as docs/scoring.md defines it: hand-computed scores with ties, the window, statuses,
orders after T, the thresholds mode, weights, and the run's own bookkeeping."""

from __future__ import annotations

from decimal import Decimal

import numpy as np
from shop_history import DAY, EXPECTED, STORE, T, order, scoring_fixture
from sqlalchemy import func, select

from stormd.handlers.kernel.context import JobContext
from stormd.handlers.scoring.features import customer_aggregates
from stormd.handlers.scoring.nightly import run_store
from stormd.handlers.scoring.rfm import (
    Bounds,
    bounded_scores,
    quintile_bounds,
    quintile_scores,
    score,
)
from stormd.schema.marketing.rfm import CustomerLifecycleMetrics, CustomerRFMSnapshot, RfmRun


async def _scored(sessionmaker, settings, clock, **run):
    async with sessionmaker() as session:
        await scoring_fixture(session)
        await session.commit()
    clock.set(T)
    return await run_store(JobContext(sessionmaker, settings, clock), STORE, **run)


async def _snapshot(sessionmaker, run_id):
    async with sessionmaker() as session:
        rows = await session.scalars(
            select(CustomerRFMSnapshot).where(CustomerRFMSnapshot.run_id == run_id))
        return {r.customer_id: (r.recency_days, r.frequency, r.monetary, r.r, r.f, r.m,
                                r.composite) for r in rows}


async def test_snapshot_matches_hand_computed_scores_with_ties(sessionmaker, clock,
                                                               settings_factory):
    report = await _scored(sessionmaker, settings_factory(), clock)
    assert report.status == "OK"
    assert (report.population, report.rows) == (6, 6)
    assert await _snapshot(sessionmaker, report.run_id) == EXPECTED


async def test_run_records_population_and_bounds_that_rescore_exactly(sessionmaker, clock,
                                                                      settings_factory):
    settings = settings_factory()
    report = await _scored(sessionmaker, settings, clock)
    async with sessionmaker() as session:
        run = await session.get(RfmRun, report.run_id)
        assert (run.status, run.population, run.rows, run.mode) == ("OK", 6, 6, "quintile")
        assert run.as_of == T and run.finished_at is not None
        agg = await customer_aggregates(session, STORE, T, 180)
    again = score(agg, T, settings.rfm, Bounds.from_json(run.cut_points))
    rescored = dict(zip(agg.customer_ids, again.composite.tolist()))
    assert rescored == {c: v[6] for c, v in EXPECTED.items()}


async def test_lifecycle_stages_and_order_counts(sessionmaker, clock, settings_factory):
    await _scored(sessionmaker, settings_factory(), clock)
    async with sessionmaker() as session:
        rows = {r.customer_id: r for r in await session.scalars(select(CustomerLifecycleMetrics))}
    assert {c: r.stage for c, r in rows.items()} == {
        "c1": "ACTIVE", "c2": "NEW", "c3": "ACTIVE", "c4": "CHURNED", "c6": "NEW",
        "c7": "CHURNED", "c5": "PROSPECT", "c8": "PROSPECT", "c9": "PROSPECT",
    }
    assert rows["c1"].orders_count == 2 and rows["c1"].orders_total == Decimal("300.00")
    assert rows["c4"].orders_count == 1 and rows["c4"].orders_total == Decimal("500.00")
    assert rows["c1"].composite == 39 and rows["c9"].composite is None
    assert rows["c5"].churn_risk == 0.0
    assert 0 < rows["c1"].churn_risk < rows["c3"].churn_risk < rows["c7"].churn_risk <= 1


async def test_as_of_in_the_past_ignores_later_orders(sessionmaker, clock, settings_factory):
    report = await _scored(sessionmaker, settings_factory(), clock, as_of=T - 30 * DAY)
    snap = await _snapshot(sessionmaker, report.run_id)
    # 30 days earlier only c3 (T-40d), c4 (T-200d) and c7 (T-180d) had completed orders.
    assert sorted(snap) == ["c3", "c4", "c7"]
    assert snap["c3"][:3] == (10, 1, Decimal("50.00"))
    assert snap["c7"][:3] == (150, 1, Decimal("1000.00"))


async def test_thresholds_mode_and_weights(sessionmaker, clock, settings_factory):
    settings = settings_factory(rfm={"mode": "thresholds", "weights": {"r": 1, "f": 1, "m": 1}})
    report = await _scored(sessionmaker, settings, clock)
    snap = await _snapshot(sessionmaker, report.run_id)
    # recency <= 180/90/45/14, frequency >= 1/2/4/8, monetary >= 1000/3000/8000/20000
    assert snap["c1"][3:] == (5, 3, 1, 9)
    assert snap["c3"][3:] == (4, 2, 1, 7)
    assert snap["c7"][3:] == (2, 1, 1, 4)
    assert snap["c4"][3:] == (1, 1, 1, 3)


def test_quintiles_share_scores_on_ties_and_span_one_to_five():
    values = np.array([7, 7, 7, 7])
    assert quintile_scores(values, True).tolist() == [1, 1, 1, 1]
    assert quintile_scores(np.array([5]), False).tolist() == [1]
    ten = np.arange(10)
    assert quintile_scores(ten, True).tolist() == [1, 1, 2, 2, 3, 3, 4, 4, 5, 5]
    assert quintile_scores(ten, False).tolist() == [5, 5, 4, 4, 3, 3, 2, 2, 1, 1]


def test_bounds_reproduce_quintile_scores_on_random_populations():
    rng = np.random.default_rng(5)
    for n in (1, 2, 3, 7, 50, 1001):
        for better in (True, False):
            values = rng.integers(0, 12, size=n)
            bounds = quintile_bounds(values, better)
            assert bounded_scores(values, bounds, better).tolist() == \
                quintile_scores(values, better).tolist()



async def test_nightly_cron_job_scores_every_store_on_its_schedule(sessionmaker, clock,
                                                                   settings_factory, registry):
    settings = settings_factory(rfm={"schedule": "30 3 * * *"})
    async with sessionmaker() as session:
        await scoring_fixture(session)
        await order(session, "x1", "z1", "10.00", T - DAY, store="store_2")
        await session.commit()
    clock.set(T)
    schedule, job = registry.cron_jobs()["rfm"]
    assert schedule(settings) == "30 3 * * *"
    await job(JobContext(sessionmaker, settings, clock))
    async with sessionmaker() as session:
        runs = (await session.execute(select(RfmRun.store_id, RfmRun.status, RfmRun.population)
                                      .order_by(RfmRun.store_id))).all()
    assert [tuple(r) for r in runs] == [("store_1", "OK", 6), ("store_2", "OK", 1)]


async def test_snapshot_rows_are_kept_for_the_latest_runs_only(sessionmaker, clock,
                                                                settings_factory):
    settings = settings_factory(rfm={"keep_runs": 2})
    await _scored(sessionmaker, settings, clock)
    job = JobContext(sessionmaker, settings, clock)
    await run_store(job, STORE, T)
    last = await run_store(job, STORE, T)
    async with sessionmaker() as session:
        per_run = dict((await session.execute(
            select(CustomerRFMSnapshot.run_id, func.count())
            .group_by(CustomerRFMSnapshot.run_id))).all())
        runs = list(await session.scalars(select(RfmRun.id).order_by(RfmRun.id)))
    assert len(runs) == 3 and per_run == {runs[1]: 6, runs[2]: 6}
    assert await _snapshot(sessionmaker, last.run_id) == EXPECTED
