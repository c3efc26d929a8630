"""Costs from the configured providers' rate cards (their `stormd_estimate_cost`), cheapest
routing by what each message really costs (SMS by its billed segments), and the store's own
conversion rate once its past campaigns have enough recipients."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal

from campaign_data import NOON, STORE, add_customers, add_segment, add_store, customer_row
from sqlalchemy import insert, select

from stormd.handlers.campaigns.campaigns import (
    create_campaign,
    fan_out,
    preview_campaign,
    schedule_campaign,
)
from stormd.plugins import sms_segments
from stormd.plugins.delivery.enqueue import MessageRequest, enqueue_messages
from stormd.schema.marketing.messages import Message
from stormd.schema.shop.orders import Order

# WhatsApp through Meta (8.90 a marketing template), SMS through SSL Wireless (0.35 a
# segment), e-mail through the outbox (no rate card: the list price, 0.10).
PROVIDERS = {
    "channels": {"whatsapp": "meta", "sms": "sslwireless", "email": "outbox"},
    "providers": {"meta": {"access_token": "t", "phone_number_id": "1"},
                  "sslwireless": {"api_token": "t", "rate_per_segment": "0.35"}},
}


async def _store(sessionmaker, rows):
    async with sessionmaker() as s:
        await add_store(s)
        await add_customers(s, rows)
        await add_segment(s, "fans", [r["customer_id"] for r in rows])
        await s.commit()


async def test_the_preview_prices_each_channel_at_its_providers_rate(
        sessionmaker, settings_factory):
    settings = settings_factory(PROVIDERS)
    await _store(sessionmaker, [customer_row("c0"), customer_row("c1")])
    costs = {}
    async with sessionmaker() as s:
        for channel in ("whatsapp", "sms", "email"):
            c = await create_campaign(s, STORE, {
                "name": channel, "channels": [channel], "segments": ["fans"],
                "template": "win_back", "discountPercent": 10}, NOON)
            preview, samples = await preview_campaign(s, settings, c, NOON)
            costs[channel] = (preview.cost, preview.sms_segments, samples)
    assert costs["whatsapp"][0] == Decimal("17.80")  # 2 x Meta's marketing rate
    parts = costs["sms"][1]
    assert parts == sum(sms_segments(x["body"]) for x in costs["sms"][2])
    assert costs["sms"][0] == Decimal("0.35") * parts
    assert costs["email"][0] == Decimal("0.20")  # the outbox: the list price


async def test_cheapest_routing_orders_channels_by_what_the_message_costs_there(
        sessionmaker, settings_factory):
    settings = settings_factory(PROVIDERS, limits={"max_messages_per_customer_per_day": 9})
    await _store(sessionmaker, [
        customer_row("all"), customer_row("phone", email=None),
        customer_row("bn_phone", email=None, locale="bn")])
    short = {"name": "Short", "channels": ["whatsapp", "sms", "email"], "segments": ["fans"],
             "routing": "cheapest",
             "content": {ch: {"en": "Hello {{ name }}", "bn": "হ্যালো {{ name }}"}
                         for ch in ("whatsapp", "sms", "email")}}
    # A long Bengali text: 30 UCS-2 parts at 0.35 (10.50) cost more than one WhatsApp (8.90).
    long_bn = "নতুন জামদানি শাড়ি এসেছে, আজই দেখুন। " * 57
    assert sms_segments(long_bn) >= 26
    long = {**short, "name": "Long", "content": {
        "whatsapp": {"en": "Hello {{ name }}", "bn": "নতুন শাড়ি {{ name }}"},
        "sms": {"en": "Hello {{ name }}", "bn": long_bn},
        "email": {"en": "Subject: New\nHello", "bn": "Subject: নতুন\nহ্যালো"}}}
    channels = {}
    for spec in (short, long):
        async with sessionmaker() as s:
            c = await create_campaign(s, STORE, spec, NOON)
            await schedule_campaign(s, settings, STORE, c.id, NOON, force=True)
            await s.commit()
        await fan_out(sessionmaker, settings, STORE, c.id, NOON)
        async with sessionmaker() as s:
            channels[spec["name"]] = dict((await s.execute(
                select(Message.customer_id, Message.channel)
                .where(Message.campaign_id == c.id))).all())
    # E-mail (0.10) is cheapest for whoever has an address; then one SMS part (0.35).
    assert channels["Short"] == {"all": "email", "phone": "sms", "bn_phone": "sms"}
    # The long Bengali SMS costs more than WhatsApp: WhatsApp for that customer.
    assert channels["Long"] == {"all": "email", "phone": "sms", "bn_phone": "whatsapp"}


async def test_the_stores_own_conversion_rate_once_it_has_enough_recipients(
        sessionmaker, settings_factory):
    settings = settings_factory(campaigns={"own_conversion_min_recipients": 500})
    customers = [f"r{i:03d}" for i in range(500)]
    await _store(sessionmaker, [customer_row(c) for c in customers[:3]])
    sent_at = NOON - timedelta(days=20)  # the attribution window (7 days) has closed

    async def history(n: int) -> None:
        async with sessionmaker() as s:
            await enqueue_messages(s, [MessageRequest(
                store_id=STORE, customer_id=c, channel="email", to_address="x@y",
                body="Eid", idempotency_key=f"past:{c}", campaign_id="cmp_old",
                trigger="campaign") for c in customers[:n]], sent_at)
            await s.execute(insert(Order), [
                {"store_id": STORE, "order_id": f"o-{c}", "customer_id": c, "status": "PAID",
                 "total": Decimal(1000), "currency": "BDT",
                 "occurred_at": sent_at + timedelta(days=2)} for c in customers[:50]])
            await s.commit()

    await history(499)
    async with sessionmaker() as s:
        c = await create_campaign(s, STORE, {"name": "Next", "channels": ["email"],
                                             "segments": ["fans"], "template": "win_back",
                                             "discountPercent": 10}, NOON)
        few, _ = await preview_campaign(s, settings, c, NOON)
    assert (few.conversion_rate, few.conversion_source) == (0.038, "config")
    async with sessionmaker() as s:
        await enqueue_messages(s, [MessageRequest(
            store_id=STORE, customer_id=customers[499], channel="email", to_address="x@y",
            body="Eid", idempotency_key="past:last", campaign_id="cmp_old",
            trigger="campaign")], sent_at)
        await s.commit()
        enough, _ = await preview_campaign(s, settings, c, NOON)
    assert (enough.conversion_rate, enough.conversion_source) == (0.1, "store")  # 50 / 500
    assert enough.as_dict()["conversionSource"] == "store"
