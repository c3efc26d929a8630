"""The KPIs per store (docs/metrics.md lists them), computed from the rows stormd keeps,
for any period and as a series of periods.

Each family of figures is a `KpiSource` (handlers/reporting/figures.py), listed in
`SOURCES`: given the stores and the periods, it returns each store's figures for each
period; a new area adds its own family there. `compute_kpis` merges them for one period
(all time by default: `stormd kpis` and the Prometheus gauges), `kpi_series` for the
buckets of a series (the API's `/kpis?bucket=`). A figure counts what happened in the
period: carts abandoned in it (and whether they were recovered), messages queued in it,
engagement and executions that occurred in it.

Rates are `None` when their denominator is zero (no data is not a 0 % rate).
"""

from __future__ import annotations

from collections.abc import Iterable
from decimal import Decimal
from typing import Any

from sqlalchemy import case, distinct, func, select, union
from sqlalchemy.ext.asyncio import AsyncSession

from stormd.handlers.carts.recovery import TRIGGER as CART_TRIGGER
from stormd.handlers.kernel.context import JobContext
from stormd.handlers.predictions.service import predicted_revenue
from stormd.handlers.reporting import campaign_kpis
from stormd.handlers.reporting.figures import (
    KpiSource,
    Period,
    Periods,
    SeriesFigures,
    rate,
)
from stormd.schema.marketing.automations import AutomationExecution
from stormd.schema.marketing.messages import EmailEvent, Message, SmsLog, WhatsAppMessage
from stormd.schema.shop.carts import CartAbandonmentEvent

REACHED = ("sent", "delivered", "read")  # Message statuses that left stormd
CENT = Decimal("0.01")


async def _grouped(session: AsyncSession, store_col, at_col, stores: list[str],
                   periods: Periods, *columns) -> dict[tuple[str, int], tuple]:
    """One query: (store, period index) -> the aggregate columns, over the rows of the
    stores whose `at_col` falls in the periods."""
    query = (select(store_col, periods.bucket(at_col).label("bucket"), *columns)
             .where(store_col.in_(stores), periods.span.holds(at_col))
             .group_by(store_col, "bucket"))
    return {(r[0], int(r[1])): tuple(r[2:]) for r in await session.execute(query)}


def _spread(stores: list[str], periods: Periods, figures) -> SeriesFigures:
    return {s: [figures(s, i) for i in range(len(periods))] for s in stores}


async def cart_recovery(session: AsyncSession, stores: list[str], periods: Periods
                        ) -> SeriesFigures:
    Ab = CartAbandonmentEvent
    carts = await _grouped(
        session, Ab.store_id, Ab.abandoned_at, stores, periods, func.count(),
        func.sum(case((Ab.status == "RECOVERED", 1), else_=0)),
        func.coalesce(func.sum(Ab.recovered_revenue), 0),
    )
    cost = await _grouped(session, Message.store_id, Message.created_at, stores, periods,
                          func.coalesce(func.sum(case((Message.trigger == CART_TRIGGER,
                                                       Message.cost), else_=0)), 0),
                          func.coalesce(func.sum(Message.cost), 0))

    def figures(store: str, i: int) -> dict[str, Any]:
        abandoned, recovered, revenue = carts.get((store, i), (0, 0, 0))
        recovery_cost, total_cost = cost.get((store, i), (0, 0))
        return {
            "abandoned_carts": int(abandoned), "recovered_carts": int(recovered or 0),
            "cart_recovery_rate": rate(recovered or 0, abandoned),
            "recovered_revenue": Decimal(revenue or 0).quantize(CENT),
            "cart_recovery_cost": Decimal(recovery_cost or 0).quantize(CENT),
            "messaging_cost": Decimal(total_cost or 0).quantize(CENT),
        }

    return _spread(stores, periods, figures)


async def engagement(session: AsyncSession, stores: list[str], periods: Periods
                     ) -> SeriesFigures:
    def messages_with(type_: str):
        return func.count(distinct(case((EmailEvent.type == type_, EmailEvent.message_id))))

    email = await _grouped(session, EmailEvent.store_id, EmailEvent.occurred_at, stores, periods,
                           messages_with("SENT"), messages_with("OPEN"), messages_with("CLICK"))
    sms = await _grouped(session, SmsLog.store_id, SmsLog.created_at, stores, periods,
                         func.sum(case((SmsLog.status.in_(("SENT", "DELIVERED", "FAILED")), 1),
                                       else_=0)),
                         func.sum(case((SmsLog.status == "DELIVERED", 1), else_=0)))
    wa = await _grouped(session, WhatsAppMessage.store_id, WhatsAppMessage.created_at, stores,
                        periods, func.sum(case((WhatsAppMessage.status != "QUEUED", 1), else_=0)),
                        func.sum(case((WhatsAppMessage.status == "READ", 1), else_=0)))
    sent = await _grouped(session, Message.store_id, Message.created_at, stores, periods,
                          func.sum(case((Message.status.in_(REACHED), 1), else_=0)))

    def figures(store: str, i: int) -> dict[str, Any]:
        e_sent, e_open, e_click = email.get((store, i), (0, 0, 0))
        s_sent, s_delivered = sms.get((store, i), (0, 0))
        w_sent, w_read = wa.get((store, i), (0, 0))
        return {
            "messages_sent": int(sent.get((store, i), (0,))[0] or 0),
            "emails_sent": int(e_sent), "email_open_rate": rate(e_open, e_sent),
            "email_click_rate": rate(e_click, e_sent),
            "sms_delivery_rate": rate(s_delivered or 0, s_sent or 0),
            "whatsapp_read_rate": rate(w_read or 0, w_sent or 0),
        }

    return _spread(stores, periods, figures)


async def automations(session: AsyncSession, stores: list[str], periods: Periods
                      ) -> SeriesFigures:
    Ex = AutomationExecution
    rows = await _grouped(session, Ex.store_id, Ex.created_at, stores, periods, func.count(),
                          func.sum(case((Ex.status == "COMPLETED", 1), else_=0)))

    def figures(store: str, i: int) -> dict[str, Any]:
        total, completed = rows.get((store, i), (0, 0))
        return {"automation_executions": int(total),
                "automation_success_rate": rate(completed or 0, total)}

    return _spread(stores, periods, figures)


# The KPI families, computed in this order (a later family's keys win).
async def predictions(session: AsyncSession, stores: list[str], periods: Periods
                      ) -> SeriesFigures:
    """The latest fit's predicted revenue: a forecast from now, so it belongs with the last
    period (the others have none)."""
    figures = await predicted_revenue(session, stores)
    return {s: [{} for _ in periods.items[1:]] + [figures.get(s, {})] for s in stores}


SOURCES: tuple[KpiSource, ...] = (cart_recovery, engagement, automations,
                                  campaign_kpis.campaign_kpis, predictions)


async def known_stores(session: AsyncSession) -> list[str]:
    """Every store with something to report."""
    from stormd.schema.shop.stores import Store

    query = union(select(Store.id), select(CartAbandonmentEvent.store_id),
                  select(Message.store_id), select(AutomationExecution.store_id))
    return sorted(s for s in (await session.scalars(select(query.subquery().c[0]))).all() if s)


async def kpi_series(session: AsyncSession, stores: Iterable[str], periods: Periods,
                     sources: tuple[KpiSource, ...] = SOURCES) -> SeriesFigures:
    """Each store's KPIs for each period: store -> [figures of period 0, 1, ...]."""
    stores = list(stores)
    out: SeriesFigures = {s: [{} for _ in periods.items] for s in stores}
    if not stores:
        return out
    for source in sources:
        for store, series in (await source(session, stores, periods)).items():
            for row, figures in zip(out[store], series):
                row.update(figures)
    return out


async def compute_kpis(session: AsyncSession, store_id: str | None = None,
                       period: Period | None = None) -> list[dict[str, Any]]:
    """One row per store for one period (all time by default): {"store": id, <figures>}."""
    stores = [store_id] if store_id else await known_stores(session)
    series = await kpi_series(session, stores, Periods.whole(period))
    return [{"store": s, **series[s][0]} for s in stores]


def publish_gauges(rows: list[dict[str, Any]]) -> None:
    """Copy computed KPIs into the Prometheus gauges (label: store only)."""
    from stormd.schema.metrics import KPI

    for row in rows:
        for name, value in row.items():
            if name != "store" and value is not None and not isinstance(value, str):
                KPI.labels(row["store"], name).set(float(value))


async def refresh_kpi_gauges(job: JobContext) -> None:
    """Every five minutes: recompute the KPIs for /metrics."""
    async with job.sessionmaker() as session:
        publish_gauges(await compute_kpis(session))
