"""The store's own resources over the HTTP API: settings (as `store.upserted` carries them),
one customer's picture, discount codes validated and redeemed exactly once (two concurrent
redemptions: one wins), SMS credits, KPIs for a period and per day, the stores a key sees."""

from __future__ import annotations

import asyncio
from datetime import timedelta
from decimal import Decimal

from api_helpers import problem_of
from campaign_data import NOON, STORE, add_customers, add_segment, add_store, customer_row

from stormd.schema.marketing.messages import SmsProvider
from stormd.schema.marketing.rfm import CustomerLifecycleMetrics
from stormd.schema.shop.carts import Cart, CartAbandonmentEvent
from stormd.schema.shop.promotions import DiscountCode

BASE = f"/api/v1/stores/{STORE}"


async def _shop(api):
    async with api.daemon.sessionmaker() as s:
        await add_store(s)
        await add_customers(s, [customer_row(f"c{i}") for i in range(3)])
        await add_segment(s, "vip", ["c0"])
        s.add(CustomerLifecycleMetrics(
            store_id=STORE, customer_id="c0", stage="ACTIVE", orders_count=4,
            orders_total=Decimal("4200.00"), recency_days=3, frequency=4,
            monetary=Decimal("4200.00"), r=5, f=5, m=4, composite=47, as_of=NOON))
        s.add(Cart(store_id=STORE, cart_id="cart1", customer_id="c0", status="ACTIVE",
                   total=Decimal("2000.00"), created_at=NOON, updated_at=NOON))
        s.add(DiscountCode(store_id=STORE, code="SAVE10-AAAA", customer_id="c0",
                           percent=Decimal(10), trigger="win_back", created_at=NOON,
                           expires_at=NOON + timedelta(days=3650)))
        s.add(DiscountCode(store_id=STORE, code="SAVE5-OLD", customer_id=None,
                           percent=Decimal(5), trigger="campaign", created_at=NOON,
                           expires_at=NOON - timedelta(days=1)))
        s.add(SmsProvider(store_id=STORE, provider="sslwireless", sender_id="DOKAN",
                          credit_balance=1200, rate_per_sms=Decimal("0.35"), updated_at=NOON))
        for day in range(3):
            s.add(CartAbandonmentEvent(store_id=STORE, cart_id=f"a{day}", customer_id="c1",
                                       cart_value=Decimal(900),
                                       abandoned_at=NOON - timedelta(days=day),
                                       status="RECOVERED" if day == 0 else "ENDED",
                                       recovered_revenue=Decimal(900) if day == 0 else None))
        await s.commit()
    return await api.store_client(STORE)


async def test_settings_customer_and_credits(api):
    a = await api()
    client = await _shop(a)
    got = await client.get(f"{BASE}/settings")
    assert got.json()["name"] == "Dokan" and got.json()["timezone"] == "Asia/Dhaka"
    bad = await client.patch(f"{BASE}/settings", json={"timezone": "Mars/Olympus"},
                             headers={"If-Match": got.headers["etag"]})
    assert "not a time zone" in problem_of(bad, 422)["detail"]
    changed = await client.patch(f"{BASE}/settings", headers={"If-Match": got.headers["etag"]},
                                 json={"name": "Dokan BD", "shopUrl": "https://dokan.example",
                                       "senderIds": {"sms": "DOKAN"}, "monthlyBudget": "50000",
                                       "minRoi": "8"})
    assert changed.status_code == 200, changed.text
    assert {k: changed.json()[k] for k in ("name", "shopUrl", "monthlyBudget", "minRoi")} == {
        "name": "Dokan BD", "shopUrl": "https://dokan.example", "monthlyBudget": "50000",
        "minRoi": "8"}
    problem_of(await client.patch(f"{BASE}/settings", json={"name": "x"},
                                  headers={"If-Match": got.headers["etag"]}), 412)

    picture = (await client.get(f"{BASE}/customers/c0")).json()
    assert picture["stage"] == "ACTIVE" and picture["rfm"]["composite"] == 47
    assert [m["slug"] for m in picture["segments"]] == ["vip"]
    assert picture["consent"]["sms"] is True and picture["predictedValue"] is None
    problem_of(await client.get(f"{BASE}/customers/nobody"), 404)

    credits = (await client.get(f"{BASE}/credits")).json()
    assert credits["totalSegments"] == 1200
    assert credits["accounts"][0]["provider"] == "sslwireless"
    assert (await client.get(f"{BASE}/credits/history")).json()["items"] == []


async def test_discounts_validate_and_redeem_once(api):
    a = await api()
    client = await _shop(a)
    check = (await client.get(f"{BASE}/discounts/SAVE10-AAAA",
                              params={"customerId": "c0", "cartId": "cart1"})).json()
    assert check["valid"] is True and check["discountAmount"] == "200.00"
    other = (await client.get(f"{BASE}/discounts/SAVE10-AAAA",
                              params={"customerId": "c1"})).json()
    assert other["valid"] is False and "another customer" in other["reason"]
    expired = (await client.get(f"{BASE}/discounts/SAVE5-OLD")).json()
    assert expired["valid"] is False and "expired" in expired["reason"]
    problem_of(await client.get(f"{BASE}/discounts/NOPE"), 404)

    redeem = {"customerId": "c0", "orderId": "o1", "cartTotal": "2000.00"}
    replies = await asyncio.gather(*(
        client.post(f"{BASE}/discounts/SAVE10-AAAA/redeem", json={**redeem, "orderId": f"o{i}"})
        for i in range(2)))
    assert sorted(r.status_code for r in replies) == [200, 409]  # exactly one wins
    won = next(r for r in replies if r.status_code == 200).json()
    assert won["discountAmount"] == "200.00"
    lost = problem_of(next(r for r in replies if r.status_code == 409), 409)
    assert "already redeemed" in lost["detail"]
    after = (await client.get(f"{BASE}/discounts/SAVE10-AAAA")).json()
    assert after["orderId"] == won["orderId"] and after["valid"] is False


async def test_kpis_for_a_period_and_per_day(api):
    a = await api()
    client = await _shop(a)
    whole = (await client.get(f"{BASE}/kpis")).json()
    assert whole["kpis"]["abandoned_carts"] == 3 and whole["kpis"]["recovered_carts"] == 1
    start = (NOON - timedelta(days=1, hours=1)).isoformat()
    end = (NOON + timedelta(hours=1)).isoformat()
    period = (await client.get(f"{BASE}/kpis", params={"from": start, "to": end})).json()
    assert period["kpis"]["abandoned_carts"] == 2
    assert period["kpis"]["cart_recovery_rate"] == 0.5
    series = (await client.get(f"{BASE}/kpis", params={
        "from": (NOON - timedelta(days=6)).isoformat(), "to": end, "bucket": "day"})).json()
    days = [(p["start"][:10], p["kpis"]["abandoned_carts"]) for p in series["series"]]
    assert days[-3:] == [("2026-11-22", 1), ("2026-11-23", 1), ("2026-11-24", 1)]
    assert len(days) == 7 and series["timezone"] == "Asia/Dhaka"
    assert series["series"][0]["start"].endswith("+06:00")  # midnight in the store's zone
    year = await client.get(f"{BASE}/kpis", params={
        "from": (NOON - timedelta(days=500)).isoformat(), "to": end, "bucket": "day"})
    assert "more than 400" in problem_of(year, 422)["detail"]
    naive = await client.get(f"{BASE}/kpis", params={"from": "2026-11-01T00:00:00"})
    problem_of(naive, 422)


async def test_stores_a_key_sees(api):
    a = await api()
    await _shop(a)
    mine = a.client(await a.key(STORE))
    assert [s["id"] for s in (await mine.get("/api/v1/stores")).json()["items"]] == [STORE]
    await a.key("s2")
    operator = a.client(await a.key(None))
    assert [s["id"] for s in (await operator.get("/api/v1/stores")).json()["items"]] == [
        STORE, "s2"]
