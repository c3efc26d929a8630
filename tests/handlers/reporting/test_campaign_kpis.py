"""Campaign KPIs in `stormd kpis`: win-back rate, uplift over holdout, attribution, ROI."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal

from campaign_data import NOON, STORE, add_customers, add_segment, add_store, customer_row
from sqlalchemy import select, update

from stormd.handlers.campaigns.campaigns import create_campaign, fan_out, schedule_campaign
from stormd.handlers.reporting.kpis import compute_kpis
from stormd.schema.marketing.messages import Message
from stormd.schema.shop.orders import Order
from stormd.schema.shop.promotions import DiscountCode

IDS = [f"k{i:03d}" for i in range(100)]


async def test_campaign_and_win_back_kpis(sessionmaker, settings_factory):
    settings = settings_factory()
    async with sessionmaker() as s:
        await add_store(s)
        await add_customers(s, [customer_row(c) for c in IDS])
        await add_segment(s, "all", IDS)
        c = await create_campaign(s, STORE, {"name": "Boishakh", "channels": ["email"],
                                             "segments": ["all"], "template": "pohela_boishakh",
                                             "discountPercent": 25, "holdoutPercent": 30}, NOON)
        await schedule_campaign(s, settings, STORE, c.id, NOON, force=True)
        for i, cid in enumerate(("w1", "w2", "w3", "w4")):  # four win-back recipients
            s.add(Message(store_id=STORE, customer_id=cid, channel="sms", trigger="win_back",
                          idempotency_key=f"wb{i}", status="sent", not_before=NOON, body="x",
                          cost=Decimal(1), marketing=True, created_at=NOON, updated_at=NOON))
        await s.commit()
    await fan_out(sessionmaker, settings, STORE, c.id, NOON)
    async with sessionmaker() as s:
        msgs = (await s.scalars(select(Message).where(Message.campaign_id == c.id))).all()
        sent = [m for m in msgs if m.variant != "holdout"]
        held = [m for m in msgs if m.variant == "holdout"]
        buyers = [(m.customer_id, Decimal(1000)) for m in sent[:10]] + [
            (held[0].customer_id, Decimal(1000)), ("w1", Decimal(500)), ("w2", Decimal(500))]
        for n, (cid, total) in enumerate(buyers):
            s.add(Order(store_id=STORE, order_id=f"o{n}", customer_id=cid, status="PAID",
                        total=total, occurred_at=NOON + timedelta(days=3)))
        s.add(Order(store_id=STORE, order_id="late", customer_id="w3", status="PAID",
                    total=Decimal(500), occurred_at=NOON + timedelta(days=20)))
        await s.execute(update(DiscountCode).where(
            DiscountCode.code == sent[0].data["discountCode"]).values(order_id="o0"))
        await s.commit()
        [row] = await compute_kpis(s, STORE)
    assert row["churn_winback_rate"] == 0.5  # w1, w2 within 14 days; w3 too late; w4 none
    assert row["segment_conversion_uplift"] == round(10 / len(sent) - 1 / len(held), 4)
    assert row["promotion_attribution"] == Decimal("1000.00")
    assert row["campaign_roi"] == round(10_000 / (0.10 * len(sent)), 4)
