"""Abandoned-cart recovery end to end through the handlers and the daemon's timer loop,
on SQLite and PostgreSQL, with a settable clock (starts Tue 2026-11-24 10:00 Dhaka)."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal

import pytest
from cart_shop import DAY, HOUR, Shop

from stormd.plugins.delivery.enqueue import MessageRequest, enqueue_message
from stormd.schema.db.engine import make_engine, make_sessionmaker


@pytest.fixture
def shop(sessionmaker, clock, settings_factory):
    return Shop(sessionmaker, clock, settings_factory())


def shop_with(sessionmaker, clock, settings_factory, **sections) -> Shop:
    return Shop(sessionmaker, clock, settings_factory(**sections))



async def test_cart_idle_an_hour_gets_whatsapp_reminder_with_its_products(shop):
    await shop.customer()
    await shop.cart(price="1200", quantity=2)
    await shop.advance(59 * timedelta(minutes=1))
    assert await shop.messages() == []

    await shop.advance(timedelta(minutes=1))
    [msg] = await shop.messages()
    assert (msg.channel, msg.template, msg.trigger) == ("whatsapp", "cart_reminder_1",
                                                        "abandoned_cart")
    assert msg.to_address == "+8801711000001"
    assert "Jamdani saree × 2" in msg.body and "৳2,400" in msg.body
    assert "https://store_1.stormcom.app/cart/k1" in msg.body
    assert msg.priority == 2400
    # What Meta's template message needs: positional parameters and the product picture
    assert msg.data["params"][:2] == ["Rahim", "store_1"]
    assert msg.data["params"][-1] == "https://store_1.stormcom.app/cart/k1"
    assert msg.data["header_image"] == "https://cdn.example.com/p1.jpg"
    [ab] = await shop.abandonments()
    assert (ab.status, ab.recovery_attempts, ab.cart_value) == ("OPEN", 1, Decimal("2400.00"))
    assert ab.last_reminder_at == shop.clock.now()
    assert (await shop.cart_row()).status == "ABANDONED"
    [ex] = await shop.executions()
    assert ex.status == "WAITING" and ex.subject_id == "k1"
    [timer] = await shop.timers()
    assert timer.kind == "cart.remind" and timer.due_at == shop.clock.now() + DAY


async def test_cart_below_min_value_is_never_abandoned(shop):
    await shop.customer()
    await shop.cart(price="499")
    await shop.advance(2 * HOUR)
    assert await shop.abandonments() == [] and await shop.messages() == []
    assert (await shop.cart_row()).status == "ACTIVE"


async def test_cleared_cart_is_not_abandoned(shop):
    await shop.customer()
    await shop.cart()
    shop.clock.advance(30 * timedelta(minutes=1))
    await shop.event("cart.cleared", {"cartId": "k1"})
    await shop.advance(2 * HOUR)
    assert await shop.abandonments() == [] and await shop.timers() == []
    assert (await shop.cart_row()).status == "CLEARED"


async def test_stale_update_is_ignored(shop):
    await shop.customer()
    await shop.cart(price="1500")
    await shop.cart(price="600", at=shop.clock.now() - timedelta(minutes=5))
    assert (await shop.cart_row()).total == Decimal("1500.00")


async def test_order_with_cart_id_converts_and_nothing_is_sent(shop):
    await shop.customer()
    await shop.cart()
    shop.clock.advance(20 * timedelta(minutes=1))
    await shop.order(cart_id="k1")
    await shop.advance(2 * HOUR)
    cart = await shop.cart_row()
    assert (cart.status, cart.order_id) == ("CONVERTED", "o1")
    assert await shop.messages() == [] and await shop.timers() == []


async def test_order_by_same_customer_after_last_update_converts_cart(shop):
    await shop.customer()
    await shop.cart()
    shop.clock.advance(10 * timedelta(minutes=1))
    await shop.order()  # no cartId: placed after the cart's last update
    await shop.advance(2 * HOUR)
    assert (await shop.cart_row()).status == "CONVERTED"
    assert await shop.messages() == []


async def test_order_for_abandoned_cart_cancels_pending_steps_and_counts_recovered(shop):
    await shop.customer()
    await shop.cart(price="1800")
    await shop.advance(HOUR)
    shop.clock.advance(3 * HOUR)
    await shop.order(cart_id="k1", total="1750")
    await shop.advance(5 * DAY)
    assert len(await shop.messages()) == 1
    [ab] = await shop.abandonments()
    assert (ab.status, ab.order_id, ab.recovered_revenue) == ("RECOVERED", "o1",
                                                              Decimal("1750.00"))
    assert ab.recovered_at == shop.clock.now() - 5 * DAY
    assert (await shop.cart_row()).status == "RECOVERED"
    [ex] = await shop.executions()
    assert ex.status == "COMPLETED"


async def test_full_workflow_whatsapp_then_email_5_then_sms_10(shop):
    await shop.customer()
    await shop.cart()
    await shop.advance(HOUR)
    await shop.advance(DAY)
    await shop.advance(3 * DAY)
    first, second, third = await shop.messages()
    assert [m.channel for m in (first, second, third)] == ["whatsapp", "email", "sms"]
    code2, code3 = await shop.codes()
    assert (code2.percent, code3.percent) == (Decimal(5), Decimal(10))
    assert code2.code != code3.code and code2.cart_id == "k1"
    assert code2.code in second.body and "5% off" in second.subject and second.html
    assert code3.code in third.body and "10% off" in third.body
    assert second.created_at - first.created_at == DAY
    assert third.created_at - second.created_at == 3 * DAY
    [ab] = await shop.abandonments()
    assert (ab.status, ab.recovery_attempts) == ("ENDED", 3)
    [ex] = await shop.executions()
    assert ex.status == "COMPLETED" and ex.completed_at == shop.clock.now()
    assert await shop.timers() == []


async def test_update_after_reminder_restarts_clock_and_same_step_is_not_repeated(shop):
    await shop.customer()
    await shop.cart()
    await shop.advance(HOUR)
    assert len(await shop.messages()) == 1
    shop.clock.advance(2 * HOUR)
    await shop.cart(price="1300")  # the customer came back: pending step cancelled
    [timer] = await shop.timers()
    assert timer.kind == "cart.abandon" and timer.due_at == shop.clock.now() + HOUR
    await shop.advance(HOUR)  # abandoned again, 3 h after the WhatsApp reminder
    assert len(await shop.messages()) == 1  # step 1 not repeated within the 24 h cooldown
    abandonments = await shop.abandonments()
    assert [a.status for a in abandonments] == ["CANCELLED", "OPEN"]
    await shop.advance(DAY)
    assert [m.template for m in await shop.messages()] == ["cart_reminder_1", "cart_reminder_2"]


async def test_opted_out_channel_falls_back_to_next_consenting_one(shop):
    await shop.customer(consent={"whatsapp": False})
    await shop.cart()
    await shop.advance(HOUR)
    [msg] = await shop.messages()
    assert msg.channel == "sms" and msg.template == "cart_reminder_1"
    assert "Complete your order" in msg.body


async def test_customer_without_any_reachable_channel_is_recorded_and_waits(shop):
    await shop.customer(email=None, phone=None)
    await shop.cart()
    await shop.advance(2 * HOUR)
    assert [a.status for a in await shop.abandonments()] == ["WAITING"]
    assert await shop.messages() == []


async def test_quiet_hours_defer_the_step_and_an_order_cancels_it(shop):
    await shop.customer()
    shop.clock.advance(13 * HOUR)  # 23:00 in Dhaka
    await shop.cart()
    await shop.advance(3 * HOUR)  # abandoned at 00:00; 02:00 now: quiet hours
    await shop.advance(HOUR)
    assert await shop.messages() == []
    [timer] = await shop.timers()
    assert timer.payload["deferred"] == "quiet_hours"
    assert timer.due_at.hour == 1  # 07:00 Dhaka = 01:00 UTC
    await shop.order(cart_id="k1")
    await shop.advance(6 * HOUR)
    assert await shop.messages() == [] and await shop.timers() == []


async def test_quiet_hours_deferred_step_goes_at_seven(shop):
    await shop.customer()
    shop.clock.advance(15 * HOUR)  # 01:00 Dhaka
    await shop.cart()
    await shop.advance(HOUR)
    assert await shop.messages() == []
    await shop.advance(5 * HOUR)  # 07:00 Dhaka
    [msg] = await shop.messages()
    assert msg.created_at.astimezone(shop.settings.tz).hour == 7


async def test_daily_cap_defers_to_tomorrow_not_drops(sessionmaker, clock, settings_factory):
    shop = shop_with(sessionmaker, clock, settings_factory,
                     limits={"max_messages_per_customer_per_day": 1})
    await shop.customer("c1")
    await shop.customer("c2")
    async with sessionmaker() as s:  # c1 already had today's one message (a campaign)
        await enqueue_message(s, MessageRequest(
            store_id="store_1", customer_id="c1", channel="email", to_address="c1@example.com",
            body="Eid sale", idempotency_key="campaign:eid:c1", campaign_id="eid"), clock.now())
        await s.commit()
    await shop.cart("k1", customer="c1")
    await shop.cart("k2", customer="c2")
    await shop.advance(HOUR)
    assert [m.customer_id for m in await shop.messages() if m.trigger] == ["c2"]
    [deferred] = [t for t in await shop.timers() if t.payload.get("deferred")]
    assert deferred.key == "cart:k1" and deferred.payload["deferred"] == "daily_cap"
    local = deferred.due_at.astimezone(shop.settings.tz)
    assert (local.day, local.hour, local.minute) == (25, 0, 0)  # Dhaka midnight
    await shop.advance(13 * HOUR + timedelta(minutes=30))  # 00:30 in Dhaka
    reminders = [m for m in await shop.messages() if m.trigger]
    assert [m.customer_id for m in reminders] == ["c2", "c1"]
    assert reminders[1].created_at.astimezone(shop.settings.tz).day == 25


async def test_offer_cooldown_sends_step_without_a_discount(shop):
    await shop.customer()
    await shop.cart("old", price="1000")
    await shop.advance(HOUR)
    await shop.advance(DAY)  # email step: 5 % code for cart "old"
    await shop.order("o1", cart_id="old", total="950")
    shop.clock.advance(DAY)
    await shop.cart("new", price="3000")
    await shop.advance(HOUR)
    await shop.advance(DAY)
    emails = [m for m in await shop.messages() if m.channel == "email"]
    assert len(emails) == 2
    assert "off" not in emails[1].subject and "Complete your order" in emails[1].body
    assert len(await shop.codes()) == 1


async def test_discount_codes_are_unique_and_the_redeeming_order_is_attributed(shop):
    for n in range(5):
        await shop.customer(f"c{n}")
        await shop.cart(f"k{n}", customer=f"c{n}", price="800")
    await shop.advance(HOUR)
    await shop.advance(DAY)
    codes = await shop.codes()
    assert len(codes) == 5 and len({c.code for c in codes}) == 5
    used = next(c for c in codes if c.cart_id == "k3")
    shop.clock.advance(8 * DAY)  # past the attribution window: only the code ties it
    await shop.order("o9", customer="c3", total="760", codes=[used.code])
    recovered = [a for a in await shop.abandonments() if a.status == "RECOVERED"]
    assert [(a.cart_id, a.order_id, a.recovered_revenue) for a in recovered] == [
        ("k3", "o9", Decimal("760.00"))]
    used = next(c for c in await shop.codes() if c.cart_id == "k3")
    assert used.order_id == "o9" and used.redeemed_at is not None


async def test_order_by_customer_within_window_of_reminder_is_recovery(shop):
    await shop.customer()
    await shop.cart("k1")
    await shop.advance(HOUR)
    shop.clock.advance(2 * DAY)
    await shop.order("o2", cart_id="another")  # a different cart, 2 days after a reminder
    [ab] = await shop.abandonments()
    assert (ab.status, ab.order_id) == ("RECOVERED", "o2")


async def test_order_outside_attribution_window_is_not_a_recovery(shop):
    await shop.customer()
    await shop.cart("k1")
    await shop.advance(HOUR)
    await shop.advance(DAY)
    await shop.advance(3 * DAY)  # workflow ends with the SMS
    shop.clock.advance(8 * DAY)
    await shop.order("o2", cart_id="another")
    [ab] = await shop.abandonments()
    assert ab.status == "ENDED" and ab.order_id is None


async def test_timers_survive_a_restart_between_steps(db_url, clock, settings_factory):
    settings = settings_factory()
    engine = make_engine(db_url)
    shop = Shop(make_sessionmaker(engine), clock, settings)
    await shop.customer()
    await shop.cart()
    await shop.advance(HOUR)
    await engine.dispose()  # the daemon stops

    engine = make_engine(db_url)  # ... and starts again a day later
    try:
        shop = Shop(make_sessionmaker(engine), clock, settings)
        await shop.advance(DAY)
        assert [m.channel for m in await shop.messages()] == ["whatsapp", "email"]
    finally:
        await engine.dispose()


async def test_firing_the_same_timer_twice_sends_once(shop):
    await shop.customer()
    await shop.cart()
    shop.clock.advance(HOUR)
    [timer] = await shop.timers()
    from stormd.handlers.kernel.context import HandlerContext, TimerFired
    fired = TimerFired(timer.store_id, timer.key, timer.kind, timer.due_at, timer.payload)
    for _ in range(2):  # a redelivery after a crash between handling and deleting the row
        async with shop.sessionmaker() as s:
            await shop.registry.dispatch_timers(
                HandlerContext(s, shop.settings, shop.clock, "store_1"), [fired])
            await s.commit()
    assert len(await shop.messages()) == 1 and len(await shop.abandonments()) == 1


async def test_higher_value_carts_go_first_when_throttled(shop):
    values = {"small": "600", "big": "9000", "mid": "2500"}
    for n, (cart, price) in enumerate(values.items()):
        await shop.customer(f"c{n}")
        await shop.cart(cart, customer=f"c{n}", price=price)
    timers = await shop.timers()
    assert [t.key for t in sorted(timers, key=lambda t: -t.priority)] == [
        "cart:big", "cart:mid", "cart:small"]
    await shop.advance(HOUR)
    queued = sorted(await shop.messages(), key=lambda m: (-m.priority, m.not_before))
    assert [m.data["cartId"] for m in queued] == ["big", "mid", "small"]
    # Throttled to one send at a time, the delivery pipeline sends the biggest cart first.
    from stormd.plugins.delivery.pipeline import DeliveryPipeline

    throttled = shop.settings.model_copy(update={"delivery": shop.settings.delivery.model_copy(
        update={"batch_size": 1})})
    pipeline = DeliveryPipeline(throttled, shop.sessionmaker, shop.clock)
    sent_order = []
    try:
        for _ in values:
            assert await pipeline.run_once() == 1
            sent_order += [m.data["cartId"] for m in await shop.messages()
                           if m.status == "sent" and m.data["cartId"] not in sent_order]
    finally:
        await pipeline.stop()
    assert sent_order == ["big", "mid", "small"]


async def test_order_seen_before_a_late_cart_update_still_counts_as_converted(shop):
    await shop.customer()
    await shop.order("o1")  # placed now; the cart event below happened 10 minutes earlier
    await shop.cart(at=shop.clock.now() - timedelta(minutes=10))
    await shop.advance(2 * HOUR)
    cart = await shop.cart_row()
    assert (cart.status, cart.order_id) == ("CONVERTED", "o1")
    assert await shop.messages() == [] and await shop.abandonments() == []


async def test_two_carts_of_one_customer_on_one_day_get_one_recovery(shop):
    await shop.customer()
    await shop.cart("small", price="700")
    await shop.cart("big", price="5000")
    await shop.advance(HOUR)
    [msg] = await shop.messages()
    assert msg.data["cartId"] == "big"  # the higher-value cart wins the day's execution
    assert sorted((a.cart_id, a.status) for a in await shop.abandonments()) == [
        ("big", "OPEN"), ("small", "ENDED")]
    assert len(await shop.executions()) == 1


# --- carts whose customer is not known (or not reachable) at the deadline --------------------

async def _recovery_figures(shop) -> dict:
    from stormd.handlers.reporting.kpis import cart_recovery

    async with shop.sessionmaker() as session:
        return (await cart_recovery(session, ["store_1"]))["store_1"]


async def test_a_cart_of_a_customer_not_yet_known_is_recorded_and_reminded_once_known(shop):
    await shop.cart(customer="late")  # the storefront sent the cart before the customer
    await shop.advance(HOUR)
    [ab] = await shop.abandonments()
    assert (ab.status, ab.customer_id) == ("WAITING", "late")
    assert (await shop.cart_row()).status == "ABANDONED"
    assert (await _recovery_figures(shop))["abandoned_carts"] == 1  # the denominator has it
    assert await shop.messages() == []

    shop.clock.advance(timedelta(minutes=5))
    await shop.customer("late")
    [msg] = await shop.messages()
    assert (msg.customer_id, msg.template, msg.channel) == ("late", "cart_reminder_1", "whatsapp")
    [ab] = await shop.abandonments()
    assert (ab.status, ab.recovery_attempts) == ("OPEN", 1)
    [timer] = await shop.timers()  # the next step keeps the flow's timing
    assert timer.kind == "cart.remind" and timer.due_at == shop.clock.now() + DAY
    await shop.order(customer="late", cart_id="k1")
    assert [a.status for a in await shop.abandonments()] == ["RECOVERED"]


async def test_an_anonymous_cart_is_recorded_too(shop):
    await shop.cart(customer=None)
    await shop.advance(HOUR)
    [ab] = await shop.abandonments()
    assert (ab.status, ab.customer_id) == ("WAITING", None)
    assert await shop.messages() == []


async def test_an_unreachable_customer_is_reminded_once_reachable_at_the_step_reached(shop):
    await shop.customer(email=None, phone=None)
    await shop.cart()
    await shop.advance(HOUR)
    assert [a.status for a in await shop.abandonments()] == ["WAITING"]
    shop.clock.advance(30 * HOUR)  # past the second step's time (24 h after the first)
    await shop.customer(email="c1@example.com")
    [msg] = await shop.messages()
    assert (msg.template, msg.channel) == ("cart_reminder_2", "email")
    assert msg.data["discountCode"]  # the second step's code
    [ab] = await shop.abandonments()
    assert (ab.status, ab.next_step) == ("OPEN", 2)


async def test_a_customer_known_after_the_flow_would_have_ended_is_not_reminded(shop):
    await shop.cart(customer="late")
    await shop.advance(HOUR)
    shop.clock.advance(8 * DAY)  # past the last step (4 days) and the 7-day window
    await shop.customer("late")
    assert await shop.messages() == []
    assert [a.status for a in await shop.abandonments()] == ["ENDED"]
    assert (await _recovery_figures(shop))["abandoned_carts"] == 1
