"""The nightly predictions step, after each store's RFM run: fit the store, store the fit
and every customer's predictions with it, keep the predicted-VIP segment's cut-off, and
learn the store's product neighbours.

Per customer (horizons in days): expected purchases in 30/90/365 days, P(alive), the
churn probability (no purchase within `predictions.churn_horizon_days`, 90) and predicted
value over 90/365 days (discounted at `predictions.annual_discount` a year, none by
default). `customer_predictions` keeps each customer's latest row (written in committed
slices, like the RFM snapshot); `clv_fits` keeps every fit with its parameters,
log-likelihoods, convergence and independence check. A store too small or too young gets
its "not enough history" reason stored and no numbers: its prediction rows go, so the
criteria fields read NULL and match nobody.
"""

from __future__ import annotations

import logging
import math
import time
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from typing import Any

import numpy as np
from sqlalchemy import delete, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from stormd.handlers.kernel.context import JobContext
from stormd.handlers.predictions import clv
from stormd.handlers.predictions.store_fit import StoreFit, fit_history, read_history
from stormd.schema.db.columnar import cents_to_decimal, epoch_us, write_columns
from stormd.schema.db.upsert import insert_for
from stormd.schema.marketing.predictions import ClvFit, CustomerPrediction
from stormd.schema.marketing.segments import CustomerSegment

log = logging.getLogger("stormd.predictions")
SLICE_ROWS = 50_000
PURCHASE_DAYS = (30, 90, 365)
CLV_DAYS = (90, 365)
# The segment whose entry earns the VIP reward when `automations.vip_by = "predicted_clv"`:
# the store's top `automations.vip_top_percent` % by predicted 365-day value.
VIP_PREDICTED = "vip-predicted"
CP = CustomerPrediction.__table__


@dataclass
class PredictionReport:
    store_id: str
    fit_id: int = 0
    status: str = "RUNNING"
    reason: str | None = None
    customers: int = 0
    repeat_buyers: int = 0
    predicted: dict[int, Decimal | None] = field(default_factory=dict)  # days -> revenue
    warnings: list[str] = field(default_factory=list)
    stages: dict[str, float] = field(default_factory=dict)
    seconds: float = 0.0
    products_learned: int | None = None

    def to_json(self) -> dict[str, Any]:
        return {"fitId": self.fit_id, "status": self.status, "reason": self.reason,
                "customers": self.customers, "repeatBuyers": self.repeat_buyers,
                "predictedRevenue": {f"{d}d": None if v is None else str(v)
                                     for d, v in self.predicted.items()},
                "warnings": self.warnings, "productsLearned": self.products_learned,
                "stages": {k: round(v, 3) for k, v in self.stages.items()},
                "seconds": round(self.seconds, 3)}


def _fit_columns(fit: StoreFit) -> dict[str, Any]:
    s = fit.history.summary
    out: dict[str, Any] = {"customers": s.customers, "repeat_buyers": s.repeat_buyers,
                           "history_days": s.history_days, "reason": fit.reason}
    bg, gg = fit.bgnbd, fit.gamma_gamma
    if bg is not None:
        out.update(r=bg.r, alpha=bg.alpha, a=bg.a, b=bg.b, log_likelihood=bg.log_likelihood,
                   warnings=fit.warnings, convergence={"bgnbd": _said(bg.convergence)})
    if gg is not None:
        out.update(p=gg.p, q=gg.q, gamma=gg.gamma, gg_customers=gg.customers,
                   gg_log_likelihood=gg.log_likelihood, correlation=gg.correlation)
        out["convergence"]["gammaGamma"] = _said(gg.convergence)
    return out


def _said(c: clv.Convergence) -> dict[str, Any]:
    return {"converged": c.success, "iterations": c.iterations, "message": c.message}


def _cents(values: np.ndarray) -> np.ndarray:
    """Predicted value as integer cents (a value the model cannot give, which a sound fit
    never yields, becomes 0 rather than a number that is not one)."""
    finite = np.isfinite(values)
    return np.round(np.where(finite, values, 0.0) * 100.0).astype(np.int64)


async def predict_store(job: JobContext, store_id: str, as_of: datetime,
                        rfm_run_id: int | None = None) -> PredictionReport:
    """Fit one store as of T and store the fit and its customers' predictions."""
    started = mark = time.perf_counter()
    settings = job.settings
    p = settings.predictions
    report = PredictionReport(store_id)

    def stage(name: str) -> None:
        nonlocal mark
        now = time.perf_counter()
        report.stages[name] = now - mark
        mark = now

    async with job.sessionmaker() as session:
        fit_row = ClvFit(store_id=store_id, rfm_run_id=rfm_run_id, as_of=as_of, unit="days",
                         status="RUNNING", annual_discount=p.annual_discount,
                         churn_horizon_days=p.churn_horizon_days, started_at=job.clock.now())
        session.add(fit_row)
        await session.flush()
        report.fit_id = fit_id = fit_row.id
        await session.commit()
    try:
        async with job.sessionmaker() as session:
            history = await read_history(session, settings, store_id, as_of)
        stage("read")
        fit = fit_history(store_id, as_of, "days", history, settings)
        stage("fit")
        s = history.summary
        report.customers, report.repeat_buyers = s.customers, s.repeat_buyers
        report.reason, report.warnings = fit.reason, fit.warnings
        values = _fit_columns(fit)
        if fit.reason:
            report.status = "NOT_ENOUGH_HISTORY"
            await _drop_stale(job, store_id, None, as_of)
            stage("write")
        else:
            spend = fit.gamma_gamma if fit.gamma_gamma and fit.gamma_gamma.q > 1 else None
            scores = clv.score(fit.bgnbd, spend, s, purchase_days=PURCHASE_DAYS,
                               clv_days=CLV_DAYS, annual_discount=p.annual_discount,
                               churn_days=(p.churn_horizon_days,))
            stage("score")
            cents = {d: _cents(v) for d, v in scores.clv.items()}
            await _write_predictions(job, store_id, fit_id, as_of, history.customer_ids,
                                     scores, cents, p.churn_horizon_days)
            await _drop_stale(job, store_id, fit_id, as_of)
            stage("write")
            report.status = "OK"
            report.predicted = {d: (cents_to_decimal(int(cents[d].sum())) if d in cents
                                    else None) for d in CLV_DAYS}
            values.update(predicted_90d=report.predicted[90], predicted_365d=report.predicted[365])
            if settings.automations.vip_by == "predicted_clv" and 365 in cents:
                async with job.sessionmaker() as session:
                    await keep_vip_cutoff(session, store_id, cents[365],
                                          settings.automations.vip_top_percent, job.clock.now())
                    await session.commit()
        report.seconds = time.perf_counter() - started
        async with job.sessionmaker() as session:
            await session.execute(update(ClvFit).where(ClvFit.id == fit_id).values(
                status=report.status, seconds=report.seconds, **values))
            await session.commit()
    except Exception as exc:
        report.status, report.reason = "FAILED", f"{type(exc).__name__}: {exc}"[:500]
        async with job.sessionmaker() as session:
            await session.execute(update(ClvFit).where(ClvFit.id == fit_id).values(
                status="FAILED", reason=report.reason, seconds=time.perf_counter() - started))
            await session.commit()
        raise
    return report


async def _write_predictions(job: JobContext, store_id: str, fit_id: int, as_of: datetime,
                             ids: list[str], scores: clv.Scores, cents: dict[int, np.ndarray],
                             churn_days: int) -> None:
    """One row per customer, upserted in committed slices; a row written by a fit as of a
    later T is kept."""
    when = epoch_us(as_of)
    for start in range(0, len(ids), SLICE_ROWS):
        part = slice(start, start + SLICE_ROWS)
        async with job.sessionmaker() as session:
            await write_columns(session, CP, {
                "store_id": store_id, "customer_id": ids[part], "fit_id": fit_id,
                "as_of": when, "p_alive": scores.p_alive[part],
                "churn_probability": scores.no_purchase[churn_days][part],
                "expected_30d": scores.expected[30][part],
                "expected_90d": scores.expected[90][part],
                "expected_365d": scores.expected[365][part],
                "clv_90d": cents[90][part] if 90 in cents else None,
                "clv_365d": cents[365][part] if 365 in cents else None,
            }, ["store_id", "customer_id"], update=True, keep_newer="as_of")
            await session.commit()


async def _drop_stale(job: JobContext, store_id: str, fit_id: int | None,
                      as_of: datetime) -> None:
    """Delete the store's prediction rows this fit did not write (customers no longer
    counted, or all of them when the store could not be fitted), unless newer."""
    while True:
        async with job.sessionmaker() as session:
            stale = select(CP.c.customer_id).where(CP.c.store_id == store_id,
                                                   CP.c.as_of <= as_of)
            if fit_id is not None:
                stale = stale.where(CP.c.fit_id != fit_id)
            gone = (await session.execute(delete(CP).where(
                CP.c.store_id == store_id,
                CP.c.customer_id.in_(stale.limit(SLICE_ROWS).scalar_subquery())))).rowcount
            await session.commit()
        if not gone or gone < SLICE_ROWS:
            return


async def keep_vip_cutoff(session: AsyncSession, store_id: str, clv_365_cents: np.ndarray,
                          top_percent: float, now: datetime) -> Decimal | None:
    """Set the predicted-VIP segment's criteria to the store's top `top_percent` % by
    predicted 365-day value (ties at the cut-off are in); the segment refresh that follows
    moves its members and the VIP reward greets those who entered."""
    n = int(clv_365_cents.size)
    if n == 0:
        return None
    k = max(1, math.ceil(n * top_percent / 100.0))
    cutoff_cents = int(np.partition(clv_365_cents, n - k)[n - k])
    cutoff = cents_to_decimal(max(cutoff_cents, 1))  # a value of nothing is never VIP
    criteria = {"clv.predicted365d": {"gte": float(cutoff)}}
    table = CustomerSegment.__table__
    stmt = insert_for(session, table).values(
        store_id=store_id, slug=VIP_PREDICTED, name=f"VIP by predicted value (top {top_percent:g} %)",
        criteria=criteria, builtin=True, member_count=0, created_at=now, updated_at=now)
    await session.execute(stmt.on_conflict_do_update(
        index_elements=["store_id", "slug"],
        set_={"criteria": stmt.excluded.criteria, "name": stmt.excluded.name,
              "updated_at": stmt.excluded.updated_at}))
    return cutoff
