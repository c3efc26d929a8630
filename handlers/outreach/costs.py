"""What a send will cost and earn, and the guard that refuses a send not worth it.

Unit costs are what the provider that would carry a message charges for it: its own
estimate (`stormd_estimate_cost`, its rate card: an SMS gateway's rate per billed segment,
Meta's per marketing template; plugins/delivery/prices.py). An SMS costs the store's
SmsProvider rate per billed segment when it has one (the first active provider of
`[channels] sms`). A provider without a rate card of its own (the outbox) is priced at
`campaigns.message_cost.<channel>` (SMS per segment), the list price it records.

Expected revenue:
    expected revenue = average order value x conversion rate x reach
with the store's own average completed order (else `campaigns.default_order_value`,
2500 BDT) and conversion rate: the store's own, measured on its past campaigns once they
reached `campaigns.own_conversion_min_recipients` recipients
(handlers/campaigns/results.py), else `campaigns.expected_conversion_rate` (3.8 %).
A send is refused below the store's minimum ROI (Store.min_roi, default 10:1) or above
its budget (the campaign's own, and what is left of Store.monthly_budget this month),
unless forced. Actual ROI after a send lives in `handlers.campaigns.results`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, time
from decimal import ROUND_HALF_UP, Decimal
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from stormd.config.settings import Settings
from stormd.plugins import sms_segments
from stormd.plugins.delivery.prices import RateCards
from stormd.schema.marketing.messages import Message, SmsProvider
from stormd.schema.shop.orders import COMPLETED_STATUSES, Order

CENT = Decimal("0.01")
NOT_BILLED = ("cancelled", "failed")


def money(value: Decimal | float) -> Decimal:
    return Decimal(value).quantize(CENT, rounding=ROUND_HALF_UP)


@dataclass
class UnitCosts:
    """What one message costs per channel, in the store's currency: the carrying
    provider's estimate, else the list price (`per_channel`, an SMS per segment)."""

    per_channel: dict[str, Decimal]
    store_id: str = ""
    cards: RateCards | None = None
    sms_rate: Decimal | None = None  # the store's own SmsProvider rate per segment

    async def cost(self, channel: str, body: str, *, marketing: bool = True,
                   locale: str = "bn", data: dict[str, Any] | None = None
                   ) -> tuple[int | None, Decimal]:
        """(SMS segments or None, cost) of one message with this body."""
        parts = sms_segments(body) if channel == "sms" else None
        if parts is not None and self.sms_rate is not None:
            return parts, self.sms_rate * parts
        if self.cards is not None:
            price = await self.cards.estimate(self.store_id, channel, body,
                                              marketing=marketing, locale=locale, data=data)
            if price is not None:
                return parts, price
        return parts, self.per_channel[channel] * (parts or 1)


async def unit_costs(session: AsyncSession, settings: Settings, store_id: str) -> UnitCosts:
    costs = settings.campaigns.message_cost
    per = {"email": costs.email, "sms": costs.sms, "whatsapp": costs.whatsapp, "push": costs.push}
    rows = (await session.execute(
        select(SmsProvider.provider, SmsProvider.rate_per_sms)
        .where(SmsProvider.store_id == store_id, SmsProvider.is_active.is_(True))
    )).all()
    sms_rate = None
    if rows:
        rates = dict(rows)
        order = settings.channels.providers("sms")
        chosen = next((p for p in order if p in rates), min(rates, key=lambda p: rates[p]))
        sms_rate = per["sms"] = Decimal(rates[chosen])
    return UnitCosts(per, store_id, RateCards(settings), sms_rate)


async def average_order_value(session: AsyncSession, settings: Settings, store_id: str) -> Decimal:
    """The store's average completed order, or the configured default with no history."""
    avg = (await session.execute(
        select(func.avg(Order.total))
        .where(Order.store_id == store_id, Order.status.in_(COMPLETED_STATUSES))
    )).scalar()
    return money(avg) if avg is not None else money(settings.campaigns.default_order_value)


async def spent_this_month(session: AsyncSession, store_id: str, now: datetime, tz: ZoneInfo
                           ) -> Decimal:
    """What the store's messages created this local calendar month cost."""
    local = now.astimezone(tz)
    start = datetime.combine(local.date().replace(day=1), time(0), tz)
    total = (await session.execute(
        select(func.coalesce(func.sum(Message.cost), 0))
        .where(Message.store_id == store_id, Message.created_at >= start,
               Message.status.not_in(NOT_BILLED))
    )).scalar()
    return money(total or 0)


class SendRefused(Exception):
    """The ROI guard said no; `reasons` name each failed check (override with force)."""

    def __init__(self, reasons: list[str]):
        self.reasons = reasons
        super().__init__("; ".join(reasons) + " (use force to send anyway)")


@dataclass
class CostPreview:
    """Before a send: who gets what on which channel, what it costs, what it may earn."""

    audience: int = 0
    holdout: int = 0
    unreachable: int = 0
    capped: int = 0
    deferred: int = 0
    offer_cooldown: int = 0  # left out: another offer within limits.offer_cooldown
    by_channel: dict[str, int] = field(default_factory=dict)
    sms_segments: int = 0
    cost_by_channel: dict[str, Decimal] = field(default_factory=dict)
    average_order_value: Decimal = Decimal(0)
    conversion_rate: float = 0.0
    conversion_source: str = "config"  # or "store": measured on the store's campaigns
    min_roi: Decimal = Decimal(10)
    budget_left: Decimal | None = None
    alerts: list[str] = field(default_factory=list)
    sampled: int | None = None  # recipients measured when the counts are scaled from a sample

    @property
    def reach(self) -> int:
        return sum(self.by_channel.values())

    @property
    def cost(self) -> Decimal:
        return money(sum(self.cost_by_channel.values(), Decimal(0)))

    @property
    def expected_revenue(self) -> Decimal:
        return money(self.average_order_value * Decimal(str(self.conversion_rate)) * self.reach)

    @property
    def expected_roi(self) -> Decimal | None:
        """Revenue per unit of cost (10 means 10:1); None when the send is free."""
        return None if self.cost == 0 else (self.expected_revenue / self.cost).quantize(CENT)

    def refusals(self) -> list[str]:
        reasons = []
        roi = self.expected_roi
        if roi is not None and roi < self.min_roi:
            reasons.append(f"expected ROI {roi}:1 is below the store's minimum {self.min_roi}:1")
        if self.budget_left is not None and self.cost > self.budget_left:
            reasons.append(f"cost {self.cost} is over the budget left ({self.budget_left})")
        return reasons

    def guard(self, force: bool = False) -> None:
        """Raise SendRefused unless the send is worth it (or forced)."""
        reasons = self.refusals()
        if reasons and not force:
            raise SendRefused(reasons)

    def as_dict(self) -> dict:
        return {
            "audience": self.audience, "holdout": self.holdout, "unreachable": self.unreachable,
            "capped": self.capped, "deferred": self.deferred,
            "offerCooldown": self.offer_cooldown, "reach": self.reach,
            "byChannel": dict(self.by_channel), "smsSegments": self.sms_segments,
            "costByChannel": {k: str(money(v)) for k, v in self.cost_by_channel.items()},
            "cost": str(self.cost), "averageOrderValue": str(self.average_order_value),
            "conversionRate": self.conversion_rate,
            "conversionSource": self.conversion_source,
            "expectedRevenue": str(self.expected_revenue),
            "expectedRoi": None if self.expected_roi is None else str(self.expected_roi),
            "minRoi": str(self.min_roi),
            "budgetLeft": None if self.budget_left is None else str(self.budget_left),
            "alerts": list(self.alerts), "refusals": self.refusals(),
            "sampled": self.sampled,
        }
