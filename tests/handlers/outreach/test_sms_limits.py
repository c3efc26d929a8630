"""A template that caps its SMS parts (`sms_max_segments`, `{# sms_tail #}`): the messages
queued from it carry the cap and their fixed tail, are priced as they will be sent, and go
out trimmed through the delivery pipeline (the built-in outbox) with the link and the code
whole: a campaign's store template or inline content, and the system cart reminders."""

from __future__ import annotations

from decimal import Decimal

import pytest
from campaign_data import NOON, STORE, add_customers, add_segment, add_store, customer_row
from cart_shop import HOUR, Shop
from sqlalchemy import select

from stormd.handlers.campaigns.campaigns import (
    CampaignError,
    create_campaign,
    fan_out,
    schedule_campaign,
)
from stormd.handlers.outreach.template_library import save_store_template, template_dict
from stormd.handlers.outreach.templates import CompiledTemplate, TemplateError, system_library
from stormd.plugins import sms_info
from stormd.plugins.delivery.pipeline import DeliveryPipeline
from stormd.schema.marketing.messages import Message, SmsLog

PHONE = ("স্যামসাং গ্যালাক্সি এ৫৫ ফাইভজি স্মার্টফোন (৮ জিবি র‍্যাম, ২৫৬ জিবি স্টোরেজ) ও "
         "২৫ ওয়াট ফাস্ট চার্জার, সিলিকন কভার আর স্ক্রিন প্রোটেক্টর সহ পুরো সেট")
SHORT_SMS = {"sms": {"bn": "{{ product }}{# sms_tail #} — আজই নিন: {{ shop_url }}"},
             "sms_max_segments": 1}
LINK = "https://s1.stormcom.app/"


async def _audience(sessionmaker) -> None:
    async with sessionmaker() as s:
        await add_store(s)
        await add_customers(s, [customer_row(f"c{i}", locale="bn") for i in range(2)])
        await add_segment(s, "vip", ["c0", "c1"])
        await s.commit()


async def _deliver(sessionmaker, settings, clock) -> list[SmsLog]:
    pipeline = DeliveryPipeline(settings, sessionmaker, clock)
    try:
        await pipeline.run_once()
    finally:
        await pipeline.stop()
    async with sessionmaker() as s:
        return list((await s.scalars(select(SmsLog).order_by(SmsLog.id))).all())


async def test_store_template_allowed_one_segment_sends_a_long_product_in_one_ucs2_part(
        sessionmaker, settings_factory, clock):
    settings = settings_factory(campaigns={"message_cost": {"sms": "0.40"}})
    clock.set(NOON)
    await _audience(sessionmaker)
    async with sessionmaker() as s:
        row = await save_store_template(s, STORE, {"slug": "phone_drop", "name": "Phone drop",
                                                   "content": SHORT_SMS}, NOON)
        assert template_dict(row)["smsMaxSegments"] == 1
        assert template_dict(row)["bodies"] == {"sms": ["bn"]} and row.channel_mix == ["sms"]
        c = await create_campaign(s, STORE, {"name": "Phone", "channels": ["sms"],
                                             "segments": ["vip"], "template": "phone_drop",
                                             "variables": {"product": PHONE}}, NOON)
        await schedule_campaign(s, settings, STORE, c.id, NOON)
        await s.commit()
    await fan_out(sessionmaker, settings, STORE, c.id, NOON)

    async with sessionmaker() as s:
        queued = list((await s.scalars(select(Message))).all())
    assert len(queued) == 2
    for m in queued:  # queued whole, with what trimming needs; priced as it will be sent
        assert m.body.startswith(PHONE) and sms_info(m.body).segments == 3
        assert m.data["sms_max_segments"] == 1 and m.data["sms_tail"] == " — আজই নিন: " + LINK
        assert m.cost == Decimal("0.40")

    logs = await _deliver(sessionmaker, settings, clock)
    assert len(logs) == 2
    for log in logs:  # what the provider got and the log bills: one part, link whole
        assert (log.encoding, log.segments) == ("UCS-2", 1)
        assert log.message.endswith("… — আজই নিন: " + LINK)
        assert PHONE.startswith(log.message.split("…")[0])


async def test_campaign_inline_content_carries_its_limit_and_bad_limits_are_refused(
        sessionmaker, settings_factory, clock):
    settings = settings_factory()
    clock.set(NOON)
    await _audience(sessionmaker)
    spec = {"name": "Phone", "channels": ["sms"], "segments": ["vip"],
            "variables": {"product": PHONE}}
    async with sessionmaker() as s:
        for bad in (0, 11, "one", {"bn": 1}):
            with pytest.raises((CampaignError, TemplateError), match="sms_max_segments"):
                await create_campaign(s, STORE, {**spec, "content": {
                    **SHORT_SMS, "sms_max_segments": bad}}, NOON)
        with pytest.raises(TemplateError, match="not only options"):
            await create_campaign(s, STORE, {**spec, "content": {"sms_max_segments": 1}}, NOON)
        c = await create_campaign(s, STORE, {**spec, "content": SHORT_SMS}, NOON)
        await schedule_campaign(s, settings, STORE, c.id, NOON)
        await s.commit()
    await fan_out(sessionmaker, settings, STORE, c.id, NOON)
    logs = await _deliver(sessionmaker, settings, clock)
    assert [(log.segments, log.message.endswith(LINK)) for log in logs] == [(1, True)] * 2


def test_the_tail_mark_must_stand_outside_blocks_and_keeps_what_follows_it_whole():
    for bad in ("{% if a %}{{ a }}{# sms_tail #}{% endif %} {{ url }}",
                "{% for i in items %}{{ i }}{# sms_tail #}{% endfor %}"):
        with pytest.raises(TemplateError, match="outside any"):
            CompiledTemplate(bad, "bad")
    with pytest.raises(TemplateError, match="must not be set before it"):
        CompiledTemplate("{% set code = 'X' %}{{ a }}{# sms_tail #} {{ code }}", "bad")
    t = CompiledTemplate("{{ a }}{# sms_tail #} কোড {{ code }} {{ url }}")
    values = {"a": "পণ্য", "code": "SAVE10-AB", "url": "https://x.bd/k"}
    rendered = t.render(values, tail=True)
    assert t.sms_fit(2, rendered) == {"sms_max_segments": 2,
                                      "sms_tail": " কোড SAVE10-AB https://x.bd/k"}
    assert t.sms_fit(None, rendered) == {}


def test_short_system_sms_templates_say_how_many_parts_they_may_take():
    limits = {slug: t.sms_max_segments for slug, t in system_library().items()}
    assert {s: limits[s] for s in ("cart_reminder_1", "cart_reminder_2", "cart_reminder_3",
                                   "friday_flash_sale")} == {
        "cart_reminder_1": 3, "cart_reminder_2": 3, "cart_reminder_3": 3,
        "friday_flash_sale": 2}


async def test_bengali_cart_reminder_with_a_long_product_stays_within_its_parts(
        sessionmaker, clock, settings_factory):
    shop = Shop(sessionmaker, clock, settings_factory())
    await shop.customer(locale="bn", consent={"whatsapp": False})  # step 1 falls back to SMS
    await shop.event("cart.updated", {"cartId": "k1", "customerId": "c1", "items": [
        {"productId": "p1", "name": PHONE, "quantity": 1, "unitPrice": "45000"},
        {"productId": "p2", "name": "কভার", "quantity": 1, "unitPrice": "500"}]})
    await shop.advance(HOUR)
    [msg] = await shop.messages()
    assert (msg.channel, msg.template) == ("sms", "cart_reminder_1")
    assert msg.body.startswith("2টি পণ্য: " + PHONE) and sms_info(msg.body).segments == 4
    assert msg.data["sms_max_segments"] == 3
    assert msg.data["sms_tail"] == (" — store_1-এ আপনার কার্ট (৳45,500) অপেক্ষা করছে। "
                                    "অর্ডার করুন: https://store_1.stormcom.app/cart/k1")

    [log] = await _deliver(sessionmaker, shop.settings, clock)
    assert (log.encoding, log.segments) == ("UCS-2", 3)
    assert log.message.startswith("2টি পণ্য: স্যামসাং") and "…" in log.message
    assert log.message.endswith(msg.data["sms_tail"])
