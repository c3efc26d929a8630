"""Campaigns: definition checks, audience, fan-out, holdout, preview and the ROI guard."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
from campaign_data import NOON, STORE, add_customers, add_segment, add_store, customer_row
from sqlalchemy import func, select

from stormd.handlers.campaigns.campaigns import (
    CampaignError,
    cancel_campaign,
    create_campaign,
    fan_out,
    get_campaign,
    pause_campaign,
    preview_campaign,
    schedule_campaign,
    update_campaign,
)
from stormd.handlers.outreach.costs import SendRefused
from stormd.plugins.delivery.enqueue import MessageRequest, enqueue_message
from stormd.schema.marketing.messages import Message
from stormd.schema.runtime.inbox import OutboundEvent
from stormd.schema.shop.promotions import DiscountCode

# The channels in the campaign's own order (SMS, else e-mail): these tests are about the
# fan-out; choosing the cheapest channel is tested below and in test_costs_routing.py.
EID = {"name": "Eid sale", "channels": ["sms", "email"], "segments": ["vip"],
       "template": "eid_ul_fitr", "discountPercent": 30, "routing": "listed"}


BAD = [
    ({"segments": ["nope"]}, "nope"),
    ({"channels": ["fax"]}, "channels"),
    ({"holdoutPercent": 95}, "holdoutPercent"),
    ({"template": "no_such_template"}, "no_such_template"),
    ({"sendMode": "at"}, "scheduledAt"),
    ({"surprise": 1}, "surprise"),
]



async def _messages(sessionmaker, **where):
    async with sessionmaker() as s:
        query = select(Message).order_by(Message.customer_id)
        for k, v in where.items():
            query = query.where(getattr(Message, k) == v)
        return list((await s.scalars(query)).all())


async def _setup(sessionmaker, n=6, **store):
    async with sessionmaker() as s:
        await add_store(s, **store)
        rows = [customer_row(f"c{i}") for i in range(n)]
        rows[1].update(consent_sms=False)                         # falls back to email
        rows[2].update(consent_sms=False, consent_email=False)    # unreachable on the mix
        rows[3].update(locale="bn")
        await add_customers(s, rows)
        await add_segment(s, "vip", [f"c{i}" for i in range(n)])
        await add_segment(s, "staff", ["c5"])
        await s.commit()


async def test_refuses_a_template_variable_nobody_supplies_naming_it(sessionmaker):
    await _setup(sessionmaker)
    spec = {**EID, "template": None,
            "content": {"sms": {"en": "Hi {{ name }}, {{ coupon_text }} {{ discount_code }}"}}}
    async with sessionmaker() as s:
        with pytest.raises(CampaignError, match="coupon_text"):
            await create_campaign(s, STORE, spec, NOON)
        c = await create_campaign(s, STORE, {**spec, "variables": {"coupon_text": "Eid!"}}, NOON)
        assert c.status == "DRAFT"
        for bad, named in BAD:
            with pytest.raises(Exception, match=named):
                await create_campaign(s, STORE, {**EID, **bad}, NOON)
        # the built-in segments exist for every store, even before its first RFM run
        loyal = await create_campaign(s, STORE, {**EID, "segments": ["loyal", "at-risk"]}, NOON)
        assert loyal.segments == ["loyal", "at-risk"]


async def test_fan_out_queues_one_message_per_reachable_member_on_the_first_channel(
        sessionmaker, settings_factory):
    settings = settings_factory()
    await _setup(sessionmaker)
    async with sessionmaker() as s:
        c = await create_campaign(s, STORE, {**EID, "excludeSegments": ["staff"]}, NOON)
        await schedule_campaign(s, settings, STORE, c.id, NOON)
        await s.commit()
    result = await fan_out(sessionmaker, settings, STORE, c.id, NOON)
    assert result["status"] == "SENT"
    msgs = await _messages(sessionmaker, campaign_id=c.id)
    by_customer = {m.customer_id: m for m in msgs}
    assert set(by_customer) == {"c0", "c1", "c3", "c4"}  # c2 unreachable, c5 excluded
    assert by_customer["c0"].channel == "sms" and by_customer["c1"].channel == "email"
    assert "ঈদ মোবারক" in by_customer["c3"].body           # Bengali locale
    assert by_customer["c1"].subject.startswith("Eid Mubarak")
    codes = {m.data["discountCode"] for m in msgs}
    assert len(codes) == 4 and all(code in by_customer[m.customer_id].body
                                   for m in msgs for code in [m.data["discountCode"]])
    async with sessionmaker() as s:
        issued = (await s.execute(select(func.count()).select_from(DiscountCode)
                                  .where(DiscountCode.campaign_id == c.id))).scalar()
    assert issued == 4
    assert all(m.not_before == NOON and m.status == "queued" for m in msgs)


async def test_fan_out_again_adds_no_message_and_no_code(sessionmaker, settings_factory):
    settings = settings_factory(campaigns={"batch_size": 2})
    await _setup(sessionmaker)
    async with sessionmaker() as s:
        c = await create_campaign(s, STORE, EID, NOON)
        await schedule_campaign(s, settings, STORE, c.id, NOON)
        await s.commit()
    await fan_out(sessionmaker, settings, STORE, c.id, NOON)
    async with sessionmaker() as s:  # as if the run were interrupted and restarted
        (await s.get(type(c), c.id)).status = "SENDING"
        await s.commit()
    await fan_out(sessionmaker, settings, STORE, c.id, NOON)
    assert len(await _messages(sessionmaker, campaign_id=c.id)) == 5
    async with sessionmaker() as s:
        assert (await s.execute(select(func.count()).select_from(DiscountCode))).scalar() == 5


async def test_holdout_is_deterministic_and_logged_never_sent(sessionmaker, settings_factory):
    settings = settings_factory()
    async with sessionmaker() as s:
        await add_store(s)
        await add_customers(s, [customer_row(f"h{i:03d}") for i in range(200)])
        await add_segment(s, "vip", [f"h{i:03d}" for i in range(200)])
        await s.commit()
        c = await create_campaign(s, STORE, {**EID, "holdoutPercent": 20}, NOON)
        await schedule_campaign(s, settings, STORE, c.id, NOON)
        await s.commit()
        first, _ = await preview_campaign(s, settings, c, NOON)
        second, _ = await preview_campaign(s, settings, c, NOON)
    assert first.holdout == second.holdout and 20 <= first.holdout <= 60
    await fan_out(sessionmaker, settings, STORE, c.id, NOON)
    held = await _messages(sessionmaker, campaign_id=c.id, variant="holdout")
    assert len(held) == first.holdout
    assert all(m.status == "cancelled" and m.cost == 0 for m in held)
    sent = await _messages(sessionmaker, campaign_id=c.id, status="queued")
    assert len(sent) == 200 - first.holdout


async def test_preview_counts_channels_segments_cost_and_expected_revenue(
        sessionmaker, settings_factory):
    settings = settings_factory()
    await _setup(sessionmaker)
    async with sessionmaker() as s:
        c = await create_campaign(s, STORE, EID, NOON)
        preview, samples = await preview_campaign(s, settings, c, NOON)
    assert preview.audience == 5 and preview.unreachable == 0  # c2 is not in the audience
    assert preview.by_channel == {"sms": 4, "email": 1}
    assert preview.sms_segments == 4  # each fits one part (Bengali: UCS-2, 70 characters)
    assert preview.cost == Decimal("1.00") * preview.sms_segments + Decimal("0.10")
    # expected revenue: AOV (default 2500, no orders yet) x 3.8 % x reach 5
    assert preview.expected_revenue == Decimal("475.00")
    assert samples and samples[0]["body"]
    assert preview.as_dict()["byChannel"] == {"sms": 4, "email": 1}


async def test_roi_guard_refuses_a_poor_send_unless_forced(sessionmaker, settings_factory):
    settings = settings_factory(campaigns={"expected_conversion_rate": 0.001})
    await _setup(sessionmaker)
    async with sessionmaker() as s:
        c = await create_campaign(s, STORE, EID, NOON)
        with pytest.raises(SendRefused, match="below the store's minimum 10"):
            await schedule_campaign(s, settings, STORE, c.id, NOON)
        c, preview = await schedule_campaign(s, settings, STORE, c.id, NOON, force=True)
        assert c.status == "SCHEDULED" and preview.refusals()


async def test_budget_refusal_and_alert(sessionmaker, settings_factory):
    settings = settings_factory()
    await _setup(sessionmaker, monthly_budget=Decimal(3))
    async with sessionmaker() as s:
        c = await create_campaign(s, STORE, {**EID, "budget": "100"}, NOON)
        await s.commit()
        with pytest.raises(SendRefused, match="over the budget left"):
            await schedule_campaign(s, settings, STORE, c.id, NOON)
        preview, _ = await preview_campaign(s, settings, c, NOON)
    assert preview.budget_left == Decimal("3.00")
    assert preview.alerts and "budget" in preview.alerts[0]
    async with sessionmaker() as s:
        await schedule_campaign(s, settings, STORE, c.id, NOON, force=True)
        await s.commit()
        [alert] = (await s.scalars(select(OutboundEvent))).all()
    assert alert.subject == f"stormcom.out.{STORE}.campaign.budget_alert"
    assert alert.payload["data"]["campaignId"] == c.id


async def test_campaign_drops_customers_at_the_daily_cap(sessionmaker, settings_factory):
    settings = settings_factory()
    await _setup(sessionmaker)
    async with sessionmaker() as s:
        for i in range(2):
            await enqueue_message(s, MessageRequest(
                store_id=STORE, customer_id="c0", channel="sms", to_address="+8801711000000",
                body="earlier", idempotency_key=f"earlier-{i}", trigger="win_back"), NOON)
        c = await create_campaign(s, STORE, EID, NOON)
        await schedule_campaign(s, settings, STORE, c.id, NOON)
        await s.commit()
    result = await fan_out(sessionmaker, settings, STORE, c.id, NOON)
    assert result["capped"] == 1
    assert "c0" not in {m.customer_id for m in await _messages(sessionmaker, campaign_id=c.id)}


async def test_scheduling_in_quiet_hours_holds_to_seven_and_best_time_picks_a_slot(
        sessionmaker, settings_factory):
    settings = settings_factory()
    await _setup(sessionmaker)
    night = datetime(2026, 11, 24, 20, 30, tzinfo=UTC)  # 02:30 Dhaka
    async with sessionmaker() as s:
        c = await create_campaign(s, STORE, EID, night)
        c, _ = await schedule_campaign(s, settings, STORE, c.id, night)
        assert c.scheduled_at == datetime(2026, 11, 25, 1, 0, tzinfo=UTC)  # 07:00
        await pause_campaign(s, STORE, c.id, night)
        c, _ = await schedule_campaign(s, settings, STORE, c.id, night, send_mode="best_time")
        assert c.scheduled_at == datetime(2026, 11, 25, 4, 0, tzinfo=UTC)  # 10:00


async def test_update_pause_and_cancel(sessionmaker, settings_factory):
    # Two campaigns with codes to the same customers at once: no offer cooldown here.
    settings = settings_factory(campaigns={"batch_size": 2}, limits={"offer_cooldown": "0s"})
    await _setup(sessionmaker)
    async with sessionmaker() as s:
        c = await create_campaign(s, STORE, EID, NOON)
        c = await update_campaign(s, STORE, c.id, {"name": "Eid 2", "holdoutPercent": 0}, NOON)
        assert c.name == "Eid 2" and c.template == "eid_ul_fitr"
        await schedule_campaign(s, settings, STORE, c.id, NOON)
        c = await update_campaign(s, STORE, c.id, {"segments": ["vip", "staff"]}, NOON)
        assert c.status == "DRAFT"  # changed after pricing: the guard must run again
        with pytest.raises(CampaignError, match="only a scheduled or sending"):
            await pause_campaign(s, STORE, c.id, NOON)
        await schedule_campaign(s, settings, STORE, c.id, NOON)
        await s.commit()
    await fan_out(sessionmaker, settings, STORE, c.id, NOON)
    async with sessionmaker() as s:
        with pytest.raises(CampaignError, match="SENT"):
            await update_campaign(s, STORE, c.id, {"name": "late"}, NOON)
        c2 = await create_campaign(s, STORE, EID, NOON)
        await schedule_campaign(s, settings, STORE, c2.id, NOON)
        await s.commit()
    async with sessionmaker() as s:
        await pause_campaign(s, STORE, c2.id, NOON)
        await s.commit()
    with pytest.raises(CampaignError, match="PAUSED"):
        await fan_out(sessionmaker, settings, STORE, c2.id, NOON)
    async with sessionmaker() as s:
        await schedule_campaign(s, settings, STORE, c2.id, NOON)
        await s.commit()
    await fan_out(sessionmaker, settings, STORE, c2.id, NOON)
    async with sessionmaker() as s:
        c2, withdrawn = await cancel_campaign(s, STORE, c2.id, NOON + timedelta(minutes=1))
        await s.commit()
    assert c2.status == "CANCELLED" and withdrawn == 5  # queued, not yet delivered
    async with sessionmaker() as s:
        with pytest.raises(CampaignError, match="already CANCELLED"):
            await cancel_campaign(s, STORE, c2.id, NOON)
    assert {m.status for m in await _messages(sessionmaker, campaign_id=c2.id)} == {"cancelled"}


async def test_big_preview_counts_exactly_and_prices_sms_from_a_sample(sessionmaker,
                                                                       settings_factory):
    await _setup(sessionmaker, n=40)
    async with sessionmaker() as s:
        c = await create_campaign(s, STORE, EID, NOON)
        exact, _ = await preview_campaign(s, settings_factory(), c, NOON)
        sampled, _ = await preview_campaign(
            s, settings_factory(campaigns={"preview_renders": 5}), c, NOON)
    assert sampled.by_channel == exact.by_channel == {"sms": 38, "email": 1}
    assert sampled.sms_segments == exact.sms_segments  # one part each: the mean is exact
    assert sampled.cost == exact.cost


async def test_minute_cron_fans_out_when_the_moment_comes(sessionmaker, settings_factory, clock):
    from stormd.handlers.campaigns.campaigns import dispatch_due_campaigns, due_campaigns
    from stormd.handlers.kernel.context import JobContext

    settings = settings_factory()
    await _setup(sessionmaker)
    clock.set(NOON)
    async with sessionmaker() as s:
        c = await create_campaign(s, STORE, EID, NOON)
        c, _ = await schedule_campaign(s, settings, STORE, c.id, NOON, send_mode="best_time")
        await s.commit()
    assert c.scheduled_at == NOON + timedelta(hours=2)  # 14:00 Dhaka
    job = JobContext(sessionmaker, settings, clock)
    await dispatch_due_campaigns(job)
    assert await _messages(sessionmaker, campaign_id=c.id) == []
    clock.set(NOON + timedelta(hours=2))
    await dispatch_due_campaigns(job)
    msgs = await _messages(sessionmaker, campaign_id=c.id)
    assert len(msgs) == 5 and all(m.not_before == NOON + timedelta(hours=2) for m in msgs)
    async with sessionmaker() as s:
        assert (await get_campaign(s, STORE, c.id)).status == "SENT"
        # a campaign another process is sending right now is left alone; a stalled one resumed
        c2 = await create_campaign(s, STORE, EID, clock.now())
        c2.status, c2.updated_at = "SENDING", clock.now()
        await s.commit()
        assert await due_campaigns(s, clock.now()) == []
        assert await due_campaigns(s, clock.now() + timedelta(minutes=11)) == [(STORE, c2.id)]


async def _fan_out_channels(sessionmaker, settings, spec) -> dict[str, str]:
    async with sessionmaker() as s:
        c = await create_campaign(s, STORE, spec, NOON)
        await schedule_campaign(s, settings, STORE, c.id, NOON, force=True)
        await s.commit()
    await fan_out(sessionmaker, settings, STORE, c.id, NOON)
    return {m.customer_id: m.channel for m in await _messages(sessionmaker, campaign_id=c.id)}


async def test_each_customer_gets_the_cheapest_channel_unless_the_campaign_keeps_its_order(
        sessionmaker, settings_factory):
    # List prices where WhatsApp is cheapest, then SMS (one part), then e-mail.
    settings = settings_factory(limits={"max_messages_per_customer_per_day": 5,
                                        "offer_cooldown": "0s"},
                                campaigns={"message_cost": {"email": "2.00", "sms": "1.00",
                                                            "whatsapp": "0.50"}})
    async with sessionmaker() as s:
        await add_store(s)
        await add_customers(s, [
            customer_row("all"),                                        # WhatsApp is cheapest
            customer_row("no_wa", consent_whatsapp=False),              # then SMS
            customer_row("mail_only", consent_whatsapp=False, consent_sms=False),
            customer_row("no_mail", email=None, consent_whatsapp=False),
        ])
        await add_segment(s, "vip", ["all", "no_wa", "mail_only", "no_mail"])
        await s.commit()
    spec = {**EID, "channels": ["email", "sms", "whatsapp"], "routing": "cheapest"}
    assert await _fan_out_channels(sessionmaker, settings, spec) == {
        "all": "whatsapp", "no_wa": "sms", "mail_only": "email", "no_mail": "sms"}
    listed = await _fan_out_channels(sessionmaker, settings, {**spec, "routing": "listed"})
    assert listed == {"all": "email", "no_wa": "email", "mail_only": "email", "no_mail": "sms"}
    long = {**spec, "name": "Catalogue", "template": None, "discountPercent": None,
            "content": {"sms": {"en": "New this week: " + "hand-woven jamdani sarees, " * 10},
                        "email": {"en": "New this week at the shop"}}}
    assert await _fan_out_channels(sessionmaker, settings, long) == {
        "all": "email", "no_wa": "email", "mail_only": "email", "no_mail": "sms"}
