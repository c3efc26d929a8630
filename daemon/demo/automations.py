"""The demo's "automations as a merchant means them" section: what the day's triggers did
where the rules matter.

- the VIP reward and the first fill: the store's imported history puts dozens of
  customers in `vip` at the first nightly run; that backfill rewards nobody (SKIPPED,
  "segment backfill"), while customers who become VIPs later are rewarded once each;
- cash on delivery: orders that go PENDING -> SHIPPED -> DELIVERED, never PAID, get their
  post-purchase upsell when delivered, and a paid order that is delivered too gets one;
- the first-order anniversary: the history has a few first orders exactly a year before
  the second day (`anniversary_orders`), thanked with a code that morning;
- the offer cooldown: codes held back because the customer had another within
  `limits.offer_cooldown`, whichever trigger would have given them.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import case, exists, func, select
from sqlalchemy.ext.asyncio import AsyncSession

from stormd.daemon.demo.section import Section
from stormd.schema.marketing.automations import AutomationExecution as Ex
from stormd.schema.shop.orders import OrderStatusChange

EVERY = 50  # every 50th shopper's first order was a year before the second day


def anniversary_orders(people: list[dict[str, Any]], second_day: datetime
                       ) -> list[dict[str, Any]]:
    """A first order for every EVERY-th shopper on the second day's date a year earlier
    (delivered, one line), so the anniversary automation has someone to thank."""
    at = second_day.replace(year=second_day.year - 1) - timedelta(hours=2)
    return [{"orderId": f"anniv-{p['customerId']}", "customerId": p["customerId"],
             "status": "DELIVERED", "total": "1200", "occurredAt": at.isoformat(),
             "items": [{"productId": "p001", "quantity": 1, "unitPrice": "1200"}]}
            for p in people[::EVERY]]


async def _executions(session: AsyncSession) -> dict[tuple[str, str, str], int]:
    rows = await session.execute(
        select(Ex.trigger, Ex.status, func.coalesce(Ex.error, ""), func.count())
        .group_by(Ex.trigger, Ex.status, Ex.error))
    return {(t, s, e): n for t, s, e, n in rows}


async def _post_purchase_by_payment(session: AsyncSession) -> dict[str, int]:
    """Post-purchase executions of orders never PAID (cash on delivery) and of paid ones."""
    h = OrderStatusChange
    kind = case((exists().where(h.store_id == Ex.store_id, h.order_id == Ex.subject_id,
                                h.status == "PAID"), "paid"), else_="cashOnDelivery")
    rows = await session.execute(select(kind, func.count())
                                 .where(Ex.trigger == "post_purchase").group_by(kind))
    return {"cashOnDelivery": 0, "paid": 0, **dict(rows.all())}


async def report_automation_rules(session: AsyncSession, player: Any) -> Section:
    """The demo store's figures (the demo's database holds that one store)."""
    runs = await _executions(session)

    def count(trigger: str, status: str | None = None, error: str | None = None) -> int:
        return sum(n for (t, s, e), n in runs.items() if t == trigger
                   and (status is None or s == status) and (error is None or e == error))

    backfill = count("vip", "SKIPPED", "segment backfill")
    rewarded = count("vip", "COMPLETED")
    held = sum(n for (_, s, e), n in runs.items() if s == "SKIPPED" and e == "offer cooldown")
    by_payment = await _post_purchase_by_payment(session)
    anniversary = count("anniversary", "COMPLETED")
    data = {"vip": {"backfillSkipped": backfill, "rewarded": rewarded,
                    "otherwise": count("vip") - backfill - rewarded},
            "postPurchase": by_payment, "anniversaryThanked": anniversary,
            "anniversarySkipped": count("anniversary", "SKIPPED"),
            "offerCooldownHeldBack": held}
    return Section("automationRules", "Automations: backfill, cash on delivery, offers", [
        f"VIP: the first fill found {backfill} VIPs in the imported history and rewarded "
        f"none of them (segment backfill); {rewarded} customers who became VIPs since were "
        "rewarded once each",
        f"post-purchase: {by_payment['cashOnDelivery']} cash-on-delivery orders (never PAID) "
        f"got their upsell when delivered; {by_payment['paid']} paid orders, one each",
        f"anniversary: {anniversary} customers thanked on their first order's anniversary"
        + (f" ({data['anniversarySkipped']} skipped: " + ", ".join(
            f"{e} {n}" for (t, st, e), n in sorted(runs.items())
            if t == "anniversary" and st == "SKIPPED") + ")"
           if data["anniversarySkipped"] else ""),
        f"offer cooldown: {held} codes held back (another offer within the cooldown)",
    ], data)
