"""The demo's predicted-value section: the store's latest fit (BG/NBD and Gamma-Gamma),
its predicted revenue, the customers a `churn.probability >= 0.7` segment would hold, and
one customer's predictions as the customer API shows them; or, when the store could not
be fitted, the reason."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from stormd.daemon.demo.section import Section
from stormd.handlers.predictions.service import customer_predictions, fit_summary, latest_fit
from stormd.handlers.scoring.segments import preview
from stormd.schema.marketing.predictions import CustomerPrediction

CHURN_SEGMENT = {"churn.probability": {"gte": 0.7}}
STORE = "dhaka_bazar"  # the demo's store (daemon/demo/day.py)


def _money(value: Any) -> str:
    return f"BDT {Decimal(value or 0):,.2f}"


async def report_predictions(session: AsyncSession, player: Any) -> Section:
    fit = await latest_fit(session, STORE)
    if fit is None or fit.status != "OK":
        return Section("predictions", "Predicted value (BG/NBD, Gamma-Gamma)",
                       [fit_summary(fit)], {"status": fit.status if fit else None,
                                            "reason": fit_summary(fit)})
    churn, _ = await preview(session, STORE, CHURN_SEGMENT, player.clock.now(), sample=0)
    top = await session.scalar(
        select(CustomerPrediction.customer_id).where(CustomerPrediction.store_id == STORE)
        .order_by(CustomerPrediction.clv_365d.desc(), CustomerPrediction.customer_id).limit(1))
    example = await customer_predictions(session, STORE, top) if top else None
    data = {"status": fit.status, "asOf": fit.as_of.isoformat(), "customers": fit.customers,
            "repeatBuyers": fit.repeat_buyers,
            "bgnbd": {"r": fit.r, "alpha": fit.alpha, "a": fit.a, "b": fit.b,
                      "logLikelihood": fit.log_likelihood},
            "gammaGamma": {"p": fit.p, "q": fit.q, "gamma": fit.gamma,
                           "customers": fit.gg_customers, "correlation": fit.correlation},
            "predictedRevenue": {"90d": str(fit.predicted_90d), "365d": str(fit.predicted_365d)},
            "churnSegment": {"criteria": CHURN_SEGMENT, "members": churn},
            "example": {"customerId": top, **(example or {})}, "warnings": fit.warnings}
    lines = [
        f"{fit_summary(fit)}; BG/NBD r {fit.r:.3f}, alpha {fit.alpha:.1f} days, a {fit.a:.3f}, "
        f"b {fit.b:.3f} (log-likelihood {fit.log_likelihood:,.1f})",
        (f"Gamma-Gamma p {fit.p:.2f}, q {fit.q:.2f}, gamma {fit.gamma:,.1f} on "
         f"{fit.gg_customers} repeat buyers; frequency-spend correlation {fit.correlation:+.2f}"
         if fit.p is not None else "no Gamma-Gamma fit (no predicted value)"),
        f"predicted revenue: next 90 days {_money(fit.predicted_90d)}, next 365 days "
        f"{_money(fit.predicted_365d)}",
        f"segment {{\"churn.probability\": {{\"gte\": 0.7}}}}: {churn} customers "
        "(no purchase expected in the next 90 days with 70 % probability or more)",
    ]
    if example and example.get("available"):
        lines.append(f"most valuable: {top}, predicted {_money(example['predictedValue']['365d'])}"
                     f" in a year, {example['expectedPurchases']['90d']:.2f} purchases expected"
                     f" in 90 days, churn probability {example['churnProbability']:.2f}")
    lines += [f"warning: {w}" for w in fit.warnings or []]
    return Section("predictions", "Predicted value (BG/NBD, Gamma-Gamma)", lines, data)
