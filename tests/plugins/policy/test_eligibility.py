"""Consent, contact, DND, the daily cap and cooldowns, answered in batches on both databases."""

from datetime import UTC, datetime, timedelta
from decimal import Decimal
from zoneinfo import ZoneInfo

from sqlalchemy import select

from stormd.plugins.delivery.enqueue import MessageRequest, enqueue_message
from stormd.plugins.policy.eligibility import (
    any_channel_clause,
    fallback_order,
    load_reach,
    reachable_clause,
    recent_offer_holders,
    recently_triggered,
    sent_today,
)
from stormd.schema.shop.customers import Customer, DndNumber
from stormd.schema.shop.promotions import DiscountCode

DHAKA = ZoneInfo("Asia/Dhaka")
NOW = datetime(2026, 11, 24, 6, 0, tzinfo=UTC)  # 12:00 in Dhaka


def customer(cid, **kw):
    base = {"store_id": "s1", "customer_id": cid, "email": f"{cid}@x.bd",
            "phone": "+8801700000001", "locale": "en"}
    return Customer(**{**base, **kw})


async def test_reach_follows_consent_contact_and_dnd(sessionmaker):
    async with sessionmaker() as s:
        s.add_all([
            customer("all"),
            customer("no_wa", consent_whatsapp=False),
            customer("no_phone", phone=None),
            customer("dnd", phone="+8801999999999", consent_whatsapp=False),
            customer("nobody", email=None, phone=None),
            DndNumber(store_id="s1", phone="+8801999999999", added_at=NOW),
        ])
        await s.commit()
        reach = await load_reach(s, "s1", ["all", "no_wa", "no_phone", "dnd", "nobody", "ghost"])
    assert "ghost" not in reach
    assert reach["all"].pick("whatsapp") == "whatsapp"
    assert reach["no_wa"].pick("whatsapp") == "sms"
    assert reach["no_phone"].pick("whatsapp") == "email"
    assert reach["dnd"].pick("sms") == "email"
    assert reach["nobody"].pick("email") is None and reach["nobody"].channels() == []
    assert fallback_order("email") == ("email", "push", "whatsapp", "sms")

    async with sessionmaker() as s:
        sms_ok = set((await s.scalars(select(Customer.customer_id).where(
            Customer.store_id == "s1", reachable_clause("sms")))).all())
        anyone = set((await s.scalars(select(Customer.customer_id).where(
            Customer.store_id == "s1", any_channel_clause()))).all())
    assert sms_ok == {"all", "no_wa"}
    assert anyone == {"all", "no_wa", "no_phone", "dnd"}


async def _queue(s, cid, key, at, trigger="abandoned_cart", template="cart_reminder_1"):
    await enqueue_message(s, MessageRequest(
        store_id="s1", customer_id=cid, channel="sms", to_address="+8801700000001", body="hi",
        idempotency_key=key, trigger=trigger, template=template), at)


async def test_daily_cap_counts_the_local_day(sessionmaker):
    async with sessionmaker() as s:
        # 17:59 UTC is 23:59 in Dhaka on the 23rd: yesterday, does not count.
        await _queue(s, "a", "k0", datetime(2026, 11, 23, 17, 59, tzinfo=UTC))
        await _queue(s, "a", "k1", datetime(2026, 11, 23, 18, 1, tzinfo=UTC))
        await _queue(s, "a", "k2", NOW)
        await _queue(s, "b", "k3", NOW)
        await s.commit()
        counts = await sent_today(s, "s1", ["a", "b", "c"], NOW, DHAKA)
    assert counts == {"a": 2, "b": 1}


async def test_same_trigger_cooldown_and_offer_cooldown(sessionmaker):
    async with sessionmaker() as s:
        await _queue(s, "a", "k1", NOW - timedelta(hours=3))
        await _queue(s, "b", "k2", NOW - timedelta(hours=30))
        await _queue(s, "c", "k3", NOW - timedelta(hours=1), template="cart_reminder_2")
        for cid, cart, age in (("a", "cart_a", 1), ("b", None, 2), ("c", "other", 20)):
            s.add(DiscountCode(store_id="s1", code=f"C{cid}", customer_id=cid,
                               percent=Decimal(5), trigger="abandoned_cart", cart_id=cart,
                               created_at=NOW - timedelta(days=age)))
        await s.commit()
        since = NOW - timedelta(hours=24)
        hit = await recently_triggered(s, "s1", ["a", "b", "c"], "abandoned_cart", since,
                                       template="cart_reminder_1")
        any_step = await recently_triggered(s, "s1", ["a", "b", "c"], "abandoned_cart", since)
        held = await recent_offer_holders(s, "s1", ["a", "b", "c"], NOW - timedelta(days=14),
                                          own_cart={"a": "cart_a"})
    assert hit == {"a"}
    assert any_step == {"a", "c"}
    assert held == {"b"}  # a's code is for its own cart; c's is older than 14 days
