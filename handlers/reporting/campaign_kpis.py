"""The campaign and automation KPIs, a family of reporting/kpis.py:

- churn_winback_rate: win-back recipients who placed a completed order within 14 days;
- segment_conversion_uplift: campaign recipients' conversion minus their holdouts'
  (pooled over the store's campaigns with a holdout), within the attribution window;
- promotion_attribution: revenue of completed orders that redeemed a campaign's codes;
- campaign_roi: revenue attributed to campaigns (codes, or recipients' orders within the
  attribution window) per unit of what their messages cost.

The KPI command has no configuration at hand, so the window is the documented default
(`carts.attribution_window`, 7 days); `stormd campaigns results` uses the configured one.
"""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal
from typing import Any

from sqlalchemy import and_, distinct, func, select
from sqlalchemy.ext.asyncio import AsyncSession

from stormd.config.settings import CartSettings
from stormd.handlers.campaigns.results import HOLDOUT, attributed_orders, in_window
from stormd.handlers.reporting.figures import Figures, Period, per_period, rate
from stormd.schema.marketing.messages import Message
from stormd.schema.shop.orders import COMPLETED_STATUSES, Order
from stormd.schema.shop.promotions import DiscountCode

WINBACK_WINDOW = timedelta(days=14)
NOT_SENT = ("cancelled", "failed")


async def _converted(session: AsyncSession, store_id: str, messages: Any, window: timedelta
                     ) -> tuple[int, int]:
    """(recipients, recipients with a completed order within `window` after the message)."""
    recipients = await session.scalar(
        select(func.count(distinct(Message.customer_id))).where(Message.store_id == store_id,
                                                                messages))
    converted = await session.scalar(
        select(func.count(distinct(Message.customer_id)))
        .join(Order, in_window(session, window)).where(Message.store_id == store_id, messages))
    return int(recipients or 0), int(converted or 0)


async def one_period(session: AsyncSession, stores: list[str], period: Period) -> Figures:
    """The family for the messages queued in `period` (and, for promotion attribution, the
    orders placed in it)."""
    window = CartSettings().attribution_window
    out: Figures = {}
    for store in stores:
        sent = and_(Message.status.not_in(NOT_SENT), period.holds(Message.created_at))
        wb = await _converted(session, store, and_(Message.trigger == "win_back", sent),
                              WINBACK_WINDOW)
        recipients = and_(Message.campaign_id.is_not(None), Message.variant.is_distinct_from(HOLDOUT),
                          sent, Message.campaign_id.in_(
                              select(Message.campaign_id).where(Message.store_id == store,
                                                                Message.variant == HOLDOUT)))
        treated = await _converted(session, store, recipients, window)
        held = await _converted(session, store, and_(Message.variant == HOLDOUT,
                                                     period.holds(Message.created_at)), window)
        uplift = None
        if treated[0] and held[0]:
            uplift = round(treated[1] / treated[0] - held[1] / held[0], 4)
        by_code = await session.scalar(
            select(func.coalesce(func.sum(Order.total), 0)).where(
                Order.store_id == store, Order.status.in_(COMPLETED_STATUSES),
                period.holds(Order.occurred_at), Order.order_id.in_(select(DiscountCode.order_id).where(
                    DiscountCode.store_id == store, DiscountCode.campaign_id.is_not(None)))))
        _, revenue = await attributed_orders(
            session, window, store,
            and_(Message.campaign_id.is_not(None), period.holds(Message.created_at)),
            and_(DiscountCode.store_id == store, DiscountCode.campaign_id.is_not(None),
                 period.holds(DiscountCode.created_at)))
        cost = await session.scalar(
            select(func.coalesce(func.sum(Message.cost), 0)).where(
                Message.store_id == store, Message.campaign_id.is_not(None),
                Message.status.not_in(NOT_SENT), period.holds(Message.created_at)))
        out[store] = {
            "churn_winback_rate": rate(wb[1], wb[0]),
            "segment_conversion_uplift": uplift,
            "promotion_attribution": Decimal(by_code or 0).quantize(Decimal("0.01")),
            "campaign_roi": rate(revenue, Decimal(cost or 0)),
        }
    return out


campaign_kpis = per_period(one_period)
