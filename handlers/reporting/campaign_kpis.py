"""The campaign and automation KPIs, a family of reporting/kpis.py:

- churn_winback_rate: win-back recipients who placed a completed order within 14 days;
- segment_conversion_uplift: campaign recipients' conversion minus their holdouts'
  (pooled over the store's campaigns with a holdout), within the attribution window;
- promotion_attribution: revenue of completed orders that redeemed a campaign's codes;
- campaign_roi: revenue attributed to campaigns (codes, or recipients' orders within the
  attribution window) per unit of what their messages cost.

A period counts the messages queued in it (and the orders they brought, whenever those
came), the codes issued in it and, for promotion attribution, the orders placed in it.
Every figure is one grouped query for all stores and all periods of a series.

The KPI command has no configuration at hand, so the window is the documented default
(`carts.attribution_window`, 7 days); `stormd campaigns results` uses the configured one.
"""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal
from typing import Any

from sqlalchemy import and_, distinct, func, select, union
from sqlalchemy.ext.asyncio import AsyncSession

from stormd.config.settings import CartSettings
from stormd.handlers.campaigns.results import HOLDOUT, delivered, in_window
from stormd.handlers.reporting.figures import Periods, SeriesFigures, rate
from stormd.schema.marketing.messages import Message
from stormd.schema.shop.orders import COMPLETED_STATUSES, Order
from stormd.schema.shop.promotions import DiscountCode

WINBACK_WINDOW = timedelta(days=14)
NOT_SENT = ("cancelled", "failed")
Counts = dict[tuple[str, int], Any]


async def _by_bucket(session: AsyncSession, query) -> Counts:
    return {(r[0], int(r[1])): r[2] for r in await session.execute(query)}


async def _converted(session: AsyncSession, stores: list[str], periods: Periods, messages: Any,
                     window: timedelta) -> tuple[Counts, Counts]:
    """Per (store, period of the message): recipients, and recipients with a completed
    order within `window` after their message."""
    bucket = periods.bucket(Message.created_at).label("bucket")
    where = (Message.store_id.in_(stores), periods.span.holds(Message.created_at), messages)
    recipients = await _by_bucket(session, select(
        Message.store_id, bucket, func.count(distinct(Message.customer_id)))
        .where(*where).group_by(Message.store_id, "bucket"))
    converted = await _by_bucket(session, select(
        Message.store_id, bucket, func.count(distinct(Message.customer_id)))
        .join(Order, in_window(session, window)).where(*where)
        .group_by(Message.store_id, "bucket"))
    return recipients, converted


async def campaign_kpis(session: AsyncSession, stores: list[str], periods: Periods
                        ) -> SeriesFigures:
    window = CartSettings().attribution_window
    sent = Message.status.not_in(NOT_SENT)
    wb = await _converted(session, stores, periods, and_(Message.trigger == "win_back", sent),
                          WINBACK_WINDOW)
    with_holdout = select(Message.campaign_id).where(Message.store_id.in_(stores),
                                                     Message.variant == HOLDOUT)
    treated = await _converted(session, stores, periods, and_(
        Message.campaign_id.is_not(None), Message.variant.is_distinct_from(HOLDOUT), sent,
        Message.campaign_id.in_(with_holdout)), window)
    held = await _converted(session, stores, periods, Message.variant == HOLDOUT, window)

    campaign_code = and_(DiscountCode.store_id == Order.store_id,
                         DiscountCode.order_id == Order.order_id,
                         DiscountCode.campaign_id.is_not(None))
    completed = Order.status.in_(COMPLETED_STATUSES)
    by_code = await _by_bucket(session, select(
        Order.store_id, periods.bucket(Order.occurred_at).label("bucket"),
        func.coalesce(func.sum(Order.total), 0))
        .where(Order.store_id.in_(stores), completed, periods.span.holds(Order.occurred_at),
               select(DiscountCode.id).where(campaign_code).exists())
        .group_by(Order.store_id, "bucket"))

    # Orders attributed to campaigns, each once a period: by a recipient within the window
    # of a message queued in it, or by a campaign code issued in it.
    by_window = (select(Message.store_id.label("store"), Order.order_id.label("order_id"),
                        Order.total.label("total"),
                        periods.bucket(Message.created_at).label("bucket"))
                 .join(Order, in_window(session, window))
                 .where(Message.store_id.in_(stores), periods.span.holds(Message.created_at),
                        delivered(Message.campaign_id.is_not(None))))
    by_campaign_code = (select(Order.store_id.label("store"), Order.order_id.label("order_id"),
                               Order.total.label("total"),
                               periods.bucket(DiscountCode.created_at).label("bucket"))
                        .join(DiscountCode, campaign_code)
                        .where(Order.store_id.in_(stores), completed,
                               periods.span.holds(DiscountCode.created_at)))
    attributed = union(by_window, by_campaign_code).subquery()
    revenue = await _by_bucket(session, select(
        attributed.c.store, attributed.c.bucket, func.coalesce(func.sum(attributed.c.total), 0))
        .group_by(attributed.c.store, attributed.c.bucket))
    cost = await _by_bucket(session, select(
        Message.store_id, periods.bucket(Message.created_at).label("bucket"),
        func.coalesce(func.sum(Message.cost), 0))
        .where(Message.store_id.in_(stores), Message.campaign_id.is_not(None), sent,
               periods.span.holds(Message.created_at))
        .group_by(Message.store_id, "bucket"))

    def figures(store: str, i: int) -> dict[str, Any]:
        key = (store, i)
        uplift = None
        t_n, t_c = treated[0].get(key, 0), treated[1].get(key, 0)
        h_n, h_c = held[0].get(key, 0), held[1].get(key, 0)
        if t_n and h_n:
            uplift = round(t_c / t_n - h_c / h_n, 4)
        return {
            "churn_winback_rate": rate(wb[1].get(key, 0), wb[0].get(key, 0)),
            "segment_conversion_uplift": uplift,
            "promotion_attribution": Decimal(by_code.get(key, 0) or 0).quantize(Decimal("0.01")),
            "campaign_roi": rate(Decimal(revenue.get(key, 0) or 0), Decimal(cost.get(key, 0) or 0)),
        }

    return {s: [figures(s, i) for i in range(len(periods))] for s in stores}
