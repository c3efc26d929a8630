"""After a send: what a campaign or an automation earned, what it cost, and per variant.

An order is attributed to a sender when it is completed and either redeemed a code the
sender issued, or was placed by one of its recipients within `carts.attribution_window`
(default 7 days) after the message was queued. Revenue counts each order once. ROI is
attributed revenue / actual message cost (the cost on the delivery log, failed and
withdrawn messages excluded); net = revenue - cost.

Uplift compares the conversion of recipients with the holdout's (same window, from when
the holdout row was logged), with the two-proportion z-test of `handlers.campaigns.ab_testing`.
An automation with A/B variants (handlers/automations/workflows.py) is reported per variant
the same way.

The store's own conversion rate, which the cost preview uses instead of
`campaigns.expected_conversion_rate` once it is measured on enough recipients
(`campaigns.own_conversion_min_recipients`, 500): recipients of its past campaigns whose
attribution window has closed (one per campaign and customer, held-out, withdrawn and
failed messages left out), and of them those who placed a completed order within the
window after their message.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

from sqlalchemy import String, and_, cast, distinct, func, or_, select, true, union
from sqlalchemy.ext.asyncio import AsyncSession

from stormd.config.settings import Settings
from stormd.handlers.campaigns.ab_testing import VariantResult, pick_winner, two_proportion_z_test
from stormd.handlers.outreach.costs import CENT, money
from stormd.handlers.scoring.features import dialect_of, sql_epoch_us
from stormd.schema.marketing.messages import EmailEvent, Message
from stormd.schema.shop.orders import COMPLETED_STATUSES, Order
from stormd.schema.shop.promotions import DiscountCode

HOLDOUT = "holdout"
NOT_SENT = ("cancelled", "failed")


def in_window(session: AsyncSession, window: timedelta):
    """SQL: the order came from the message's customer within `window` after it."""
    d = dialect_of(session)
    window_us = int(window.total_seconds() * 1_000_000)
    order_us, message_us = sql_epoch_us(Order.occurred_at, d), sql_epoch_us(Message.created_at, d)
    return and_(Order.store_id == Message.store_id, Order.customer_id == Message.customer_id,
                Order.status.in_(COMPLETED_STATUSES), order_us >= message_us,
                order_us <= message_us + window_us)


def delivered(messages):
    return and_(messages, or_(Message.variant.is_(None), Message.variant != HOLDOUT),
                Message.status.not_in(NOT_SENT))


async def attributed_orders(session: AsyncSession, window: timedelta, store_id: str,
                            messages: Any, codes: Any) -> tuple[int, Decimal]:
    """(orders, revenue) attributed to the messages (SQL filter on Message) and codes (SQL
    filter on DiscountCode) of one sender; each order counted once."""
    by_window = (select(Order.order_id).join(Message, in_window(session, window))
                 .where(Message.store_id == store_id, delivered(messages)))
    by_code = (select(Order.order_id).join(DiscountCode, and_(
                   DiscountCode.store_id == Order.store_id, DiscountCode.order_id == Order.order_id))
               .where(Order.store_id == store_id, Order.status.in_(COMPLETED_STATUSES), codes))
    ids = union(by_window, by_code).subquery()
    orders, revenue = (await session.execute(
        select(func.count(), func.coalesce(func.sum(Order.total), 0))
        .where(Order.store_id == store_id, Order.order_id.in_(select(ids.c.order_id)))
    )).one()
    return int(orders), money(revenue or 0)


async def attribution(session: AsyncSession, settings: Settings, store_id: str,
                      messages: Any, codes: Any) -> dict[str, Any]:
    """Orders, revenue, cost, net and ROI of one sender."""
    orders, revenue = await attributed_orders(session, settings.carts.attribution_window,
                                              store_id, messages, codes)
    cost = money((await session.execute(
        select(func.coalesce(func.sum(Message.cost), 0))
        .where(Message.store_id == store_id, delivered(messages))
    )).scalar() or 0)
    return {"orders": orders, "revenue": str(revenue), "cost": str(cost),
            "net": str(revenue - cost),
            "roi": None if cost == 0 else str((revenue / cost).quantize(CENT))}


async def variant_results(session: AsyncSession, settings: Settings, store_id: str,
                          campaign_id: str | None = None, *, trigger: str | None = None
                          ) -> dict[str | None, VariantResult]:
    """Sent, opened, clicked and converted per variant of a campaign (the holdout
    included, never sent) or of an automation `trigger`. `sent` counts messages handed to
    delivery (neither withdrawn nor failed); a recipient converts with a completed order
    within the attribution window."""
    sender = (Message.campaign_id == campaign_id if trigger is None
              else and_(Message.trigger == trigger, Message.campaign_id.is_(None)))
    mine = and_(Message.store_id == store_id, sender,
                or_(Message.variant == HOLDOUT, Message.status.not_in(NOT_SENT)))
    results: dict[str | None, VariantResult] = {}
    for variant, n in await session.execute(
            select(Message.variant, func.count()).where(mine).group_by(Message.variant)):
        results[variant] = VariantResult(name=variant or "all", sent=n)
    engaged = await session.execute(
        select(Message.variant, EmailEvent.type, func.count(distinct(EmailEvent.message_id)))
        .join(EmailEvent, and_(EmailEvent.store_id == Message.store_id,
                               EmailEvent.message_id == cast(Message.id, String)))
        .where(mine, EmailEvent.type.in_(("OPEN", "CLICK")))
        .group_by(Message.variant, EmailEvent.type))
    for variant, type_, n in engaged:
        if variant in results:
            setattr(results[variant], "opened" if type_ == "OPEN" else "clicked", n)
    converted = await session.execute(
        select(Message.variant, func.count(distinct(Message.customer_id)))
        .join(Order, in_window(session, settings.carts.attribution_window)).where(mine).group_by(Message.variant))
    for variant, n in converted:
        if variant in results:
            results[variant].converted = n
    return results


async def campaign_report(session: AsyncSession, settings: Settings, store_id: str,
                          campaign_id: str) -> dict[str, Any]:
    """ROI, variants with the winner rule, and uplift over the holdout."""
    report = await attribution(
        session, settings, store_id, Message.campaign_id == campaign_id,
        and_(DiscountCode.store_id == store_id, DiscountCode.campaign_id == campaign_id))
    variants = await variant_results(session, settings, store_id, campaign_id)
    held = variants.pop(HOLDOUT, None)
    report["variants"] = [v.as_dict() for v in variants.values()]
    named = [v for k, v in variants.items() if k is not None]
    if len(named) >= 2:
        report["abTest"] = pick_winner(named, "converted", settings.campaigns.ab_min_sample,
                                       settings.campaigns.ab_confidence)
    if held is not None and held.sent:
        sent = sum(v.sent for v in variants.values())
        conv = sum(v.converted for v in variants.values())
        report["holdout"] = held.as_dict()
        if sent:
            test = two_proportion_z_test(conv, sent, held.converted, held.sent)
            report["uplift"] = {
                "recipientConversion": round(conv / sent, 4),
                "holdoutConversion": round(held.converted / held.sent, 4),
                "uplift": round(conv / sent - held.converted / held.sent, 4),
                "z": round(test.z, 4), "pValue": round(test.p_value, 6)}
    return report


async def automation_report(session: AsyncSession, settings: Settings, store_id: str,
                            trigger: str) -> dict[str, Any]:
    """ROI of one automation trigger's messages and codes, and per A/B variant with the
    winner rule when it has variants."""
    report = await attribution(
        session, settings, store_id,
        and_(Message.trigger == trigger, Message.campaign_id.is_(None)),
        and_(DiscountCode.store_id == store_id, DiscountCode.trigger == trigger,
             DiscountCode.campaign_id.is_(None)))
    variants = await variant_results(session, settings, store_id, trigger=trigger)
    named = [v for k, v in variants.items() if k is not None]
    if named:
        report["variants"] = [v.as_dict() for v in named]
    if len(named) >= 2:
        report["abTest"] = pick_winner(named, "converted", settings.campaigns.ab_min_sample,
                                       settings.campaigns.ab_confidence)
    return {"trigger": trigger, **report}


async def conversion_rate(session: AsyncSession, settings: Settings, store_id: str,
                          now: datetime) -> tuple[float, str]:
    """(rate, "store") measured on the store's past campaigns once they have enough
    recipients, else (`campaigns.expected_conversion_rate`, "config")."""
    window = settings.carts.attribution_window
    mine = and_(Message.store_id == store_id, Message.campaign_id.is_not(None),
                Message.created_at <= now - window, delivered(true()))
    pairs = select(Message.campaign_id, Message.customer_id).where(mine).distinct().subquery()
    recipients = (await session.execute(select(func.count()).select_from(pairs))).scalar() or 0
    if recipients < settings.campaigns.own_conversion_min_recipients:
        return settings.campaigns.expected_conversion_rate, "config"
    won = (select(Message.campaign_id, Message.customer_id)
           .join(Order, in_window(session, window)).where(mine).distinct().subquery())
    converted = (await session.execute(select(func.count()).select_from(won))).scalar() or 0
    return round(converted / recipients, 4), "store"

