"""After a send: attributed orders (codes and window), ROI net of cost, variants, uplift."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal

from campaign_data import NOON, STORE, add_customers, add_segment, add_store, customer_row
from sqlalchemy import select, update

from stormd.handlers.campaigns.campaigns import create_campaign, fan_out, schedule_campaign
from stormd.handlers.campaigns.results import automation_report, campaign_report
from stormd.schema.marketing.messages import EmailEvent, Message
from stormd.schema.shop.orders import Order
from stormd.schema.shop.promotions import DiscountCode

IDS = [f"c{i:03d}" for i in range(300)]


async def test_campaign_roi_variants_and_uplift(sessionmaker, settings_factory):
    settings = settings_factory(campaigns={"ab_min_sample": 50})
    async with sessionmaker() as s:
        await add_store(s)
        await add_customers(s, [customer_row(c) for c in IDS])
        await add_segment(s, "all-buyers", IDS)
        c = await create_campaign(s, STORE, {
            "name": "Puja", "channels": ["email"], "segments": ["all-buyers"],
            "holdoutPercent": 20, "discountPercent": 25,
            "variants": [{"name": "A", "template": "durga_puja"},
                         {"name": "B", "template": "pohela_boishakh"}]}, NOON)
        await schedule_campaign(s, settings, STORE, c.id, NOON, force=True)
        await s.commit()
    await fan_out(sessionmaker, settings, STORE, c.id, NOON)

    async with sessionmaker() as s:
        msgs = (await s.scalars(select(Message).where(Message.campaign_id == c.id))).all()
        by_variant: dict[str, list[Message]] = {}
        for m in msgs:
            by_variant.setdefault(m.variant, []).append(m)
        a, b, held = by_variant["A"], by_variant["B"], by_variant["holdout"]
        orders = []
        # A converts 30 recipients inside the 7-day window, B converts 3, the holdout 2
        for m in a[:30] + b[:3] + held[:2]:
            orders.append((m.customer_id, NOON + timedelta(days=2), Decimal(1000), "PAID"))
        orders.append((a[30].customer_id, NOON + timedelta(days=9), Decimal(5000), "PAID"))  # late
        orders.append((a[31].customer_id, NOON + timedelta(days=1), Decimal(7000), "CANCELLED"))
        for n, (cid, at, total, status) in enumerate(orders):
            s.add(Order(store_id=STORE, order_id=f"o{n}", customer_id=cid, status=status,
                        total=total, occurred_at=at))
        # a code from the campaign redeemed after the window still counts (attributed by code)
        late = a[30]
        await s.execute(update(DiscountCode).where(DiscountCode.code == late.data["discountCode"])
                        .values(order_id=f"o{len(orders) - 2}", redeemed_at=NOON + timedelta(days=9)))
        for m in a[:40]:
            s.add(EmailEvent(store_id=STORE, message_id=str(m.id), campaign_id=c.id, type="OPEN",
                             occurred_at=NOON + timedelta(hours=1)))
        s.add(EmailEvent(store_id=STORE, message_id=str(a[0].id), campaign_id=c.id, type="OPEN",
                         occurred_at=NOON + timedelta(hours=2)))  # opened twice: counted once
        await s.commit()
        report = await campaign_report(s, settings, STORE, c.id)

    sent = len(a) + len(b)
    assert report["orders"] == 34  # 33 in the window + 1 by code; not the cancelled one
    assert report["revenue"] == "38000.00"
    assert report["cost"] == f"{Decimal('0.10') * sent:.2f}"  # e-mail at 0.10, holdout free
    assert Decimal(report["roi"]) == (Decimal(38000) / (Decimal("0.10") * sent)).quantize(Decimal("0.01"))
    assert Decimal(report["net"]) == Decimal(38000) - Decimal("0.10") * sent
    variants = {v["variant"]: v for v in report["variants"]}
    assert variants["A"]["converted"] == 30 and variants["B"]["converted"] == 3
    assert variants["A"]["opened"] == 40 and variants["B"]["opened"] == 0
    assert report["abTest"]["winner"] == "A"
    assert report["holdout"]["sent"] == len(held) and report["holdout"]["converted"] == 2
    assert report["uplift"]["uplift"] == round(33 / sent - 2 / len(held), 4)


async def test_automation_roi_by_trigger(sessionmaker, settings_factory):
    settings = settings_factory()
    async with sessionmaker() as s:
        await add_store(s)
        s.add(Message(store_id=STORE, customer_id="c1", channel="sms", trigger="win_back",
                      idempotency_key="wb1", status="delivered", not_before=NOON, body="x",
                      cost=Decimal("2.00"), marketing=True, created_at=NOON, updated_at=NOON))
        s.add(Message(store_id=STORE, customer_id="c2", channel="sms", trigger="win_back",
                      idempotency_key="wb2", status="failed", not_before=NOON, body="x",
                      cost=Decimal("1.00"), marketing=True, created_at=NOON, updated_at=NOON))
        s.add(Order(store_id=STORE, order_id="o1", customer_id="c1", status="DELIVERED",
                    total=Decimal(2500), occurred_at=NOON + timedelta(days=3)))
        s.add(Order(store_id=STORE, order_id="o2", customer_id="c2", status="PAID",
                    total=Decimal(900), occurred_at=NOON + timedelta(days=3)))  # never reached
        await s.commit()
        report = await automation_report(s, settings, STORE, "win_back")
    assert report == {"trigger": "win_back", "orders": 1, "revenue": "2500.00", "cost": "2.00",
                      "net": "2498.00", "roi": "1250.00"}
