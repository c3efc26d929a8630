"""Reading the stored predictions: a customer's (for the customer API), a store's latest
fit, and the store's predicted revenue (a KPI family, `stormd kpis`)."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from stormd.schema.marketing.predictions import ClvFit, CustomerPrediction

FINISHED = ("OK", "NOT_ENOUGH_HISTORY", "FAILED")


async def latest_fit(session: AsyncSession, store_id: str) -> ClvFit | None:
    """The store's most recent finished fit (by as-of, then id), whatever its outcome."""
    return await session.scalar(
        select(ClvFit).where(ClvFit.store_id == store_id, ClvFit.status.in_(FINISHED))
        .order_by(ClvFit.as_of.desc(), ClvFit.id.desc()).limit(1))


def fit_summary(fit: ClvFit | None) -> str:
    """One line on the store's predictions: when and on how many, or why there are none."""
    if fit is None:
        return "not fitted yet (after the next scoring run)"
    if fit.status == "OK":
        return (f"fitted as of {fit.as_of:%Y-%m-%d %H:%M} UTC on {fit.customers:,} customers "
                f"({fit.repeat_buyers:,} repeat buyers)")
    return fit.reason or fit.status.lower()


def _money(value: Decimal | None) -> str | None:
    return None if value is None else str(Decimal(value).quantize(Decimal("0.01")))


async def customer_predictions(session: AsyncSession, store_id: str, customer_id: str
                               ) -> dict[str, Any]:
    """One customer's latest predictions, as the customer API shows them.

    `{"available": true, "asOf", "fitId", "pAlive", "churnProbability",
    "churnHorizonDays", "expectedPurchases": {"30d", "90d", "365d"},
    "predictedValue": {"90d", "365d"} (money as strings, null without a spend model),
    "annualDiscount"}`, or `{"available": false, "reason"}` when the store has no fit
    ("not enough history: …") or the customer has no completed order in it.
    """
    row = await session.scalar(select(CustomerPrediction).where(
        CustomerPrediction.store_id == store_id, CustomerPrediction.customer_id == customer_id))
    fit = await session.get(ClvFit, row.fit_id) if row is not None else None
    if row is None or fit is None:
        latest = await latest_fit(session, store_id)
        reason = (fit_summary(latest) if latest is None or latest.status != "OK"
                  else "no completed order in the store's latest fit")
        return {"available": False, "reason": reason}
    return {
        "available": True, "asOf": row.as_of.isoformat(), "fitId": row.fit_id,
        "pAlive": row.p_alive, "churnProbability": row.churn_probability,
        "churnHorizonDays": fit.churn_horizon_days,
        "expectedPurchases": {"30d": row.expected_30d, "90d": row.expected_90d,
                              "365d": row.expected_365d},
        "predictedValue": {"90d": _money(row.clv_90d), "365d": _money(row.clv_365d)},
        "annualDiscount": fit.annual_discount,
    }


async def predicted_revenue(session: AsyncSession, stores: list[str]) -> dict[str, dict]:
    """KPI family: each store's predicted revenue over 90 and 365 days (the sum of its
    customers' predicted value) from its latest fit, with a line saying what it rests on
    ("not enough history: …" and no figures when it could not be fitted)."""
    out: dict[str, dict[str, Any]] = {}
    for store in stores:
        fit = await latest_fit(session, store)
        ok = fit is not None and fit.status == "OK"
        out[store] = {
            "predicted_90d_revenue": fit.predicted_90d if ok else None,
            "predicted_365d_revenue": fit.predicted_365d if ok else None,
            "predictions": fit_summary(fit),
        }
    return out
