"""The KPIs per store (docs/metrics.md lists them), computed from the rows stormd keeps.

Each family of figures is a `KpiSource`: an async function given the session and the
stores, returning `{store: {name: value}}`, so a new area (campaigns: attribution, ROI,
uplift) adds its own family, listed in `SOURCES`. `compute_kpis` merges them; the
`stormd kpis` command prints them and a cron job copies them into Prometheus gauges.

Rates are `None` when their denominator is zero (no data is not a 0 % rate).
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from sqlalchemy import case, distinct, func, select, union
from sqlalchemy.ext.asyncio import AsyncSession

from stormd.handlers.carts.recovery import TRIGGER as CART_TRIGGER
from stormd.handlers.kernel.context import JobContext
from stormd.handlers.predictions.service import predicted_revenue
from stormd.handlers.reporting import campaign_kpis
from stormd.handlers.reporting.figures import Figures, KpiSource, rate
from stormd.schema.marketing.automations import AutomationExecution
from stormd.schema.marketing.messages import EmailEvent, Message, SmsLog, WhatsAppMessage
from stormd.schema.shop.carts import CartAbandonmentEvent

REACHED = ("sent", "delivered", "read")  # Message statuses that left stormd


async def _grouped(session: AsyncSession, store_col, stores: list[str], *columns) -> dict:
    """One GROUP BY store query: store -> tuple of the aggregate columns."""
    rows = await session.execute(
        select(store_col, *columns).where(store_col.in_(stores)).group_by(store_col)
    )
    return {r[0]: tuple(r[1:]) for r in rows}


async def cart_recovery(session: AsyncSession, stores: list[str]) -> Figures:
    Ab = CartAbandonmentEvent
    carts = await _grouped(
        session, Ab.store_id, stores, func.count(),
        func.sum(case((Ab.status == "RECOVERED", 1), else_=0)),
        func.coalesce(func.sum(Ab.recovered_revenue), 0),
    )
    cost = await _grouped(session, Message.store_id, stores,
                          func.coalesce(func.sum(case((Message.trigger == CART_TRIGGER,
                                                       Message.cost), else_=0)), 0),
                          func.coalesce(func.sum(Message.cost), 0))
    out: Figures = {}
    for store in stores:
        abandoned, recovered, revenue = carts.get(store, (0, 0, 0))
        recovery_cost, total_cost = cost.get(store, (0, 0))
        out[store] = {
            "abandoned_carts": int(abandoned), "recovered_carts": int(recovered or 0),
            "cart_recovery_rate": rate(recovered or 0, abandoned),
            "recovered_revenue": Decimal(revenue or 0).quantize(Decimal("0.01")),
            "cart_recovery_cost": Decimal(recovery_cost or 0).quantize(Decimal("0.01")),
            "messaging_cost": Decimal(total_cost or 0).quantize(Decimal("0.01")),
        }
    return out


async def engagement(session: AsyncSession, stores: list[str]) -> Figures:
    def messages_with(type_: str):
        return func.count(distinct(case((EmailEvent.type == type_, EmailEvent.message_id))))

    email = await _grouped(session, EmailEvent.store_id, stores,
                           messages_with("SENT"), messages_with("OPEN"), messages_with("CLICK"))
    sms = await _grouped(session, SmsLog.store_id, stores,
                         func.sum(case((SmsLog.status.in_(("SENT", "DELIVERED", "FAILED")), 1),
                                       else_=0)),
                         func.sum(case((SmsLog.status == "DELIVERED", 1), else_=0)))
    wa = await _grouped(session, WhatsAppMessage.store_id, stores,
                        func.sum(case((WhatsAppMessage.status != "QUEUED", 1), else_=0)),
                        func.sum(case((WhatsAppMessage.status == "READ", 1), else_=0)))
    sent = await _grouped(session, Message.store_id, stores,
                          func.sum(case((Message.status.in_(REACHED), 1), else_=0)))
    out: Figures = {}
    for store in stores:
        e_sent, e_open, e_click = email.get(store, (0, 0, 0))
        s_sent, s_delivered = sms.get(store, (0, 0))
        w_sent, w_read = wa.get(store, (0, 0))
        out[store] = {
            "messages_sent": int(sent.get(store, (0,))[0] or 0),
            "emails_sent": int(e_sent), "email_open_rate": rate(e_open, e_sent),
            "email_click_rate": rate(e_click, e_sent),
            "sms_delivery_rate": rate(s_delivered or 0, s_sent or 0),
            "whatsapp_read_rate": rate(w_read or 0, w_sent or 0),
        }
    return out


async def automations(session: AsyncSession, stores: list[str]) -> Figures:
    Ex = AutomationExecution
    rows = await _grouped(session, Ex.store_id, stores, func.count(),
                          func.sum(case((Ex.status == "COMPLETED", 1), else_=0)))
    out: Figures = {}
    for store in stores:
        total, completed = rows.get(store, (0, 0))
        out[store] = {"automation_executions": int(total),
                      "automation_success_rate": rate(completed or 0, total)}
    return out


# The KPI families, computed in this order (a later family's keys win).
SOURCES: tuple[KpiSource, ...] = (cart_recovery, engagement, automations,
                                  campaign_kpis.campaign_kpis, predicted_revenue)


async def known_stores(session: AsyncSession) -> list[str]:
    """Every store with something to report."""
    from stormd.schema.shop.stores import Store

    query = union(select(Store.id), select(CartAbandonmentEvent.store_id),
                  select(Message.store_id), select(AutomationExecution.store_id))
    return sorted(s for s in (await session.scalars(select(query.subquery().c[0]))).all() if s)


async def compute_kpis(session: AsyncSession, store_id: str | None = None) -> list[dict[str, Any]]:
    """One row per store: {"store": id, <every source's figures>}."""
    stores = [store_id] if store_id else await known_stores(session)
    rows: dict[str, dict[str, Any]] = {s: {"store": s} for s in stores}
    if not stores:
        return []
    for source in SOURCES:
        for store, figures in (await source(session, stores)).items():
            rows[store].update(figures)
    return [rows[s] for s in stores]


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

