"""The predictions step after the nightly RFM run, on both databases: the fit and every
customer's predictions stored with the run, "not enough history" stored instead of
numbers, the predicted revenue KPI, the customer API's dict, and the triggers that read
predictions (win-back by churn probability, VIP by predicted value)."""

from __future__ import annotations

from datetime import timedelta

import numpy as np
import pytest
from clv_shop import T, clv_store
from sqlalchemy import func, select

from stormd.handlers.kernel.context import HandlerContext, JobContext
from stormd.handlers.predictions.nightly import VIP_PREDICTED
from stormd.handlers.predictions.service import customer_predictions
from stormd.handlers.predictions.store_fit import fit_store
from stormd.handlers.reporting.kpis import compute_kpis
from stormd.handlers.scoring.nightly import run_all_stores
from stormd.handlers.scoring.segments import get_segment, member_ids
from stormd.handlers.shop.customers import upsert_customers
from stormd.handlers.wiring import build_registry
from stormd.schema.marketing.automations import AutomationExecution
from stormd.schema.marketing.messages import Message
from stormd.schema.marketing.predictions import ClvFit, CustomerPrediction
from stormd.schema.marketing.rfm import CustomerLifecycleMetrics
from stormd.schema.wire.events import CustomerUpserted

STORE = "shop"


async def _run(sessionmaker, settings, clock, store=STORE, registry=None):
    clock.set(T)
    [report] = await run_all_stores(JobContext(sessionmaker, settings, clock, registry), T, store)
    return report


async def _predictions(sessionmaker, store=STORE) -> dict[str, CustomerPrediction]:
    async with sessionmaker() as session:
        rows = await session.scalars(select(CustomerPrediction)
                                     .where(CustomerPrediction.store_id == store))
        return {r.customer_id: r for r in rows}


async def test_the_nightly_run_stores_the_fit_and_every_customers_predictions(
        sessionmaker, settings_factory, clock):
    settings = settings_factory()
    async with sessionmaker() as session:
        ids = await clv_store(session, STORE)
        await upsert_customers(session, STORE, [CustomerUpserted(customer_id="prospect")], T)
        await session.commit()
    report = await _run(sessionmaker, settings, clock)
    p = report.predictions
    assert (report.status, p.status, p.reason) == ("OK", "OK", None)
    assert p.customers == report.population == len(ids) and p.repeat_buyers >= 200

    async with sessionmaker() as session:
        [fit] = (await session.scalars(select(ClvFit).where(ClvFit.store_id == STORE))).all()
        again = await fit_store(session, settings, STORE, T)  # what `stormd clv fit` says
    assert (fit.status, fit.rfm_run_id, fit.as_of, fit.unit) == ("OK", report.run_id, T, "days")
    assert fit.r == pytest.approx(again.bgnbd.r) and fit.b == pytest.approx(again.bgnbd.b)
    assert fit.log_likelihood == pytest.approx(again.bgnbd.log_likelihood)
    assert fit.gamma == pytest.approx(again.gamma_gamma.gamma)
    assert fit.correlation == pytest.approx(again.gamma_gamma.correlation)
    assert fit.convergence["bgnbd"]["converged"] and fit.convergence["gammaGamma"]["converged"]
    assert fit.warnings == [] and fit.reason is None

    rows = await _predictions(sessionmaker)
    assert set(rows) == set(ids)  # every buyer, and only buyers (not the prospect)
    churn = np.array([r.churn_probability for r in rows.values()])
    alive = np.array([r.p_alive for r in rows.values()])
    assert np.all((churn > 0) & (churn < 1)) and np.all((alive > 0) & (alive <= 1))
    assert 0.05 < np.mean(churn >= 0.7) < 0.95  # the probability separates customers
    for r in rows.values():
        assert r.fit_id == fit.id and r.as_of == T
        assert 0 <= r.expected_30d <= r.expected_90d <= r.expected_365d
        assert 0 <= r.clv_90d <= r.clv_365d
    assert sum(r.clv_90d for r in rows.values()) == fit.predicted_90d == p.predicted[90]
    assert sum(r.clv_365d for r in rows.values()) == fit.predicted_365d

    async with sessionmaker() as session:
        heavy = max(rows.values(), key=lambda r: r.expected_90d)
        shown = await customer_predictions(session, STORE, heavy.customer_id)
        assert shown["available"] and shown["fitId"] == fit.id
        assert shown["churnProbability"] == heavy.churn_probability
        assert shown["expectedPurchases"]["90d"] == heavy.expected_90d
        assert shown["predictedValue"]["365d"] == str(heavy.clv_365d)
        assert await customer_predictions(session, STORE, "prospect") == {
            "available": False, "reason": "no completed order in the store's latest fit"}
        [kpis] = await compute_kpis(session, STORE)
    assert kpis["predicted_365d_revenue"] == fit.predicted_365d
    assert kpis["predictions"].startswith(f"fitted as of 2026-11-24 04:00 UTC on {len(ids):,}")


async def test_a_store_too_small_or_too_young_gets_the_reason_and_no_numbers(
        sessionmaker, settings_factory, clock):
    async with sessionmaker() as session:
        await clv_store(session, STORE)
        await clv_store(session, "tiny", customers=40)
        await session.commit()
    await _run(sessionmaker, settings_factory(), clock)
    assert len(await _predictions(sessionmaker)) > 500
    # The rule raised above the store: the next run stores the reason and its numbers go.
    strict = settings_factory(predictions={"min_repeat_buyers": 5000})
    report = await _run(sessionmaker, strict, clock)
    tiny = await _run(sessionmaker, strict, clock, store="tiny")
    for r in (report, tiny):
        assert r.status == "OK" and r.predictions.status == "NOT_ENOUGH_HISTORY"
        assert r.predictions.reason.startswith("not enough history: ")
        assert "(at least 5000 needed)" in r.predictions.reason
        assert await _predictions(sessionmaker, r.store_id) == {}
    async with sessionmaker() as session:
        latest = await session.scalar(select(ClvFit).where(ClvFit.store_id == "tiny"))
        assert (latest.status, latest.r, latest.predicted_365d) == ("NOT_ENOUGH_HISTORY",
                                                                    None, None)
        assert latest.reason == tiny.predictions.reason
        [kpis] = await compute_kpis(session, "tiny")
        assert kpis["predicted_365d_revenue"] is None
        assert kpis["predictions"] == tiny.predictions.reason
        shown = await customer_predictions(session, "tiny", "c0001")
        assert shown == {"available": False, "reason": tiny.predictions.reason}


async def test_win_back_by_churn_probability_or_by_days(sessionmaker, settings_factory, clock):
    from stormd.handlers.automations.triggers import run_win_back

    async with sessionmaker() as session:
        await clv_store(session, STORE)
        await session.commit()
    await _run(sessionmaker, settings_factory(), clock)
    rows = await _predictions(sessionmaker)
    async with sessionmaker() as session:
        lifecycle = {r.customer_id: r for r in await session.scalars(
            select(CustomerLifecycleMetrics).where(CustomerLifecycleMetrics.store_id == STORE))}
    active = {c for c, r in lifecycle.items() if r.stage == "ACTIVE"}
    by_churn = {c for c in active if rows[c].churn_probability >= 0.6}
    by_days = {c for c in active if lifecycle[c].last_order_at <= T - timedelta(days=45)}
    assert by_churn and by_days and by_churn != by_days

    async def win_back(settings) -> set[str]:
        async with sessionmaker() as session:
            ctx = HandlerContext(session, settings, clock, STORE)
            after, sent = await run_win_back(ctx)
            assert after == ""  # one page
            await session.rollback()  # each mode judged on the same store
        return {c for c, outcome in sent.items() if outcome == "queued"}

    assert await win_back(settings_factory()) == by_days  # the default: as before
    assert await win_back(settings_factory(automations={
        "win_back_by": "churn_probability", "win_back_churn_probability": 0.6})) == by_churn


@pytest.mark.parametrize("vip_by", ["rfm", "predicted_clv"])
async def test_vip_reward_by_rfm_or_by_predicted_value(sessionmaker, settings_factory, clock,
                                                       vip_by):
    # The run is the segments' first fill: a backfill, rewarded here because the VIP
    # trigger opts in (by default it rewards nobody: docs/segments.md).
    settings = settings_factory(automations={"vip_by": vip_by, "vip_top_percent": 10,
                                             "react_to_backfill": ["vip"]})
    async with sessionmaker() as session:
        await clv_store(session, STORE)
        await session.commit()
    await _run(sessionmaker, settings, clock, registry=build_registry())
    rows = await _predictions(sessionmaker)
    async with sessionmaker() as session:
        rewarded = set(await session.scalars(select(Message.customer_id).where(
            Message.store_id == STORE, Message.trigger == "vip")))
        vip = set(await member_ids(session, STORE, (await get_segment(session, STORE,
                                                                      "vip")).id))
        if vip_by == "rfm":
            assert rewarded == vip
            assert await session.scalar(select(func.count()).select_from(ClvFit)) == 1
            return
        top = await get_segment(session, STORE, VIP_PREDICTED)
        members = set(await member_ids(session, STORE, top.id))
    values = sorted((r.clv_365d for r in rows.values()), reverse=True)
    cutoff = values[int(np.ceil(len(values) * 0.10)) - 1]
    assert top.criteria == {"clv.predicted365d": {"gte": float(cutoff)}}
    assert members == {c for c, r in rows.items() if r.clv_365d >= cutoff}
    assert len(members) == pytest.approx(len(values) * 0.10, abs=2)
    assert rewarded == members and rewarded != vip  # the RFM segment earns nothing now
    async with sessionmaker() as session:
        executions = await session.scalar(select(func.count()).select_from(AutomationExecution)
                                          .where(AutomationExecution.trigger == "vip"))
    assert executions == len(members)
