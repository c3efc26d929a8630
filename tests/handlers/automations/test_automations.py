"""Automation triggers: timing, idempotency under redelivery, cooldowns, caps across triggers."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from decimal import Decimal

import pytest
from automation_world import World
from campaign_data import NOON, STORE, add_customers, add_store, customer_row
from sqlalchemy import insert

from stormd.handlers.automations.triggers import (
    add_segment_entry_workflow,
    run_birthdays,
    run_win_back,
)
from stormd.handlers.outreach.recommendations import cache
from stormd.plugins.delivery.enqueue import MessageRequest, enqueue_message
from stormd.schema.marketing.automations import AutomationExecution
from stormd.schema.marketing.messages import Message
from stormd.schema.marketing.rfm import CustomerLifecycleMetrics
from stormd.schema.runtime.timers import Timer
from stormd.schema.shop.products import Product


@pytest.fixture(autouse=True)
def fresh_recommendations():
    cache.clear()


@pytest.fixture
def settings(settings_factory):
    return settings_factory()


@pytest.fixture
async def world(sessionmaker, settings, clock):
    clock.set(NOON)
    async with sessionmaker() as s:
        await add_store(s)
        await add_customers(s, [customer_row(f"c{i}") for i in range(5)])
        await s.commit()
    return World(sessionmaker, settings, clock)


async def _lifecycle(world, rows):
    async with world.sessionmaker() as s:
        await s.execute(insert(CustomerLifecycleMetrics), [
            {"store_id": STORE, "customer_id": cid, "stage": stage, "churn_risk": 0.0,
             "orders_count": 2, "orders_total": Decimal(3000), "as_of": NOON,
             "last_order_at": NOON - timedelta(days=days)} for cid, stage, days in rows])
        await s.commit()


async def test_win_back_picks_active_customers_45_days_quiet_once_per_cooldown(world):
    await _lifecycle(world, [("c0", "ACTIVE", 45), ("c1", "ACTIVE", 44), ("c2", "CHURNED", 120),
                             ("c3", "ACTIVE", 60)])
    await world.run(run_win_back)
    await world.run(run_win_back)  # a re-run the same day adds nothing
    msgs = await world.rows(Message, trigger="win_back")
    assert sorted(m.customer_id for m in msgs) == ["c0", "c3"]
    assert all(m.data["discountCode"] in m.body for m in msgs)  # the code is in the message
    assert len(await world.rows(AutomationExecution, trigger="win_back")) == 2

    world.clock.advance(timedelta(days=3))  # c0, c3 inside the 14-day cooldown; c1 now 47 days
    await world.run(run_win_back)
    assert sorted(m.customer_id for m in await world.rows(Message, trigger="win_back")) == [
        "c0", "c1", "c3"]
    skipped = await world.rows(AutomationExecution, trigger="win_back", status="SKIPPED")
    assert {e.error for e in skipped} == {"cooldown"}
    assert sorted(e.customer_id for e in skipped) == ["c0", "c3"]

    world.clock.advance(timedelta(days=12))  # 15 days after the first: c0, c3 again, not c1
    await world.run(run_win_back)
    assert sorted(m.customer_id for m in await world.rows(Message, trigger="win_back")) == [
        "c0", "c0", "c1", "c3", "c3"]


async def test_vip_reward_once_a_month_on_entering_vip(world):
    await world.segment_change("vip", ["c0", "c1"], [])
    await world.segment_change("vip", ["c0"], [])  # redelivered refresh
    world.clock.advance(timedelta(days=3))
    await world.segment_change("vip", ["c0"], [])  # left and came back
    msgs = await world.rows(Message, trigger="vip")
    assert sorted(m.customer_id for m in msgs) == ["c0", "c1"]
    assert all(m.template == "vip_reward" and "20%" in m.body for m in msgs)
    world.clock.set(datetime(2026, 12, 2, 6, tzinfo=UTC))  # a new month, but c0's code
    await world.segment_change("vip", ["c0"], [])  # is 8 days old: no second offer yet
    assert len(await world.rows(Message, trigger="vip", customer_id="c0")) == 1
    [skipped] = await world.rows(AutomationExecution, trigger="vip", status="SKIPPED")
    assert skipped.error == "offer cooldown"
    world.clock.set(datetime(2027, 1, 2, 6, tzinfo=UTC))
    await world.segment_change("vip", ["c0"], [])
    assert len(await world.rows(Message, trigger="vip", customer_id="c0")) == 2


async def test_segment_entry_workflow_fires_its_template(world):
    await world.run(add_segment_entry_workflow, "at-risk", "win_back", ["email"], Decimal(10))
    await world.segment_change("at-risk", ["c2"], ["c4"])
    await world.segment_change("at-risk", ["c2"], [])
    [m] = await world.rows(Message, trigger="segment_entry:at-risk")
    assert m.customer_id == "c2" and m.channel == "email" and "10%" in m.body


async def test_post_purchase_upsell_two_days_after_paid_with_recommendations(world):
    async with world.sessionmaker() as s:
        await s.execute(insert(Product), [
            {"store_id": STORE, "product_id": p, "name": p.title(), "category": "Clothing",
             "price": Decimal(900), "active": True, "updated_at": NOON}
            for p in ("panjabi", "pajama", "tupi")])
        await s.commit()
    order = {"orderId": "o1", "customerId": "c1", "status": "PAID", "total": "1500",
             "items": [{"productId": "panjabi", "quantity": 1, "unitPrice": "1500"}]}
    await world.event("order.created", order, event_id="e-o1")
    await world.event("order.created", order, event_id="e-o1-again")  # a second delivery
    await world.event("order.status_changed", {"orderId": "o1", "status": "PAID"})
    [execution] = await world.rows(AutomationExecution, trigger="post_purchase")
    assert execution.status == "WAITING"
    [timer] = await world.rows(Timer)
    assert timer.due_at == NOON + timedelta(days=2)

    world.clock.advance(timedelta(days=1))
    assert await world.fire_due_timers() == 0
    world.clock.advance(timedelta(days=1))
    assert await world.fire_due_timers() == 1
    [m] = await world.rows(Message, trigger="post_purchase")
    assert m.customer_id == "c1" and "Pajama" in m.body and "Tupi" in m.body
    assert "Panjabi" not in m.body.split("liked", 1)[-1]  # just bought: not recommended
    [execution] = await world.rows(AutomationExecution, trigger="post_purchase")
    assert execution.status == "COMPLETED"


async def test_post_purchase_skipped_when_the_order_was_refunded(world):
    order = {"orderId": "o2", "customerId": "c2", "status": "PAID", "total": "900",
             "items": [{"productId": "x", "quantity": 1, "unitPrice": "900"}]}
    await world.event("order.created", order)
    world.clock.advance(timedelta(hours=5))
    await world.event("order.status_changed", {"orderId": "o2", "status": "REFUNDED"})
    world.clock.advance(timedelta(days=2))
    await world.fire_due_timers()
    assert await world.rows(Message, trigger="post_purchase") == []
    [execution] = await world.rows(AutomationExecution, trigger="post_purchase")
    assert execution.status == "SKIPPED" and "REFUNDED" in execution.error


@pytest.mark.parametrize("together", [False, True], ids=["one-by-one", "one-batch"])
async def test_post_purchase_timers_fired_in_one_batch_as_one_by_one(world, together):
    async with world.sessionmaker() as s:
        await s.execute(insert(Product), [
            {"store_id": STORE, "product_id": p, "name": p.title(), "category": category,
             "price": Decimal(900), "active": True, "updated_at": NOON}
            for p, category in [("panjabi", "Clothing"), ("pajama", "Clothing"),
                                ("tupi", "Clothing"), ("kettle", "Kitchen")]])
        await s.commit()
    orders = {"o1": ("c1", "panjabi"), "o2": ("c2", "panjabi"), "o3": ("c3", "kettle"),
              "o4": ("c4", "panjabi"), "o5": ("c1", "tupi")}
    for order_id, (customer_id, product_id) in orders.items():
        await world.event("order.created", {
            "orderId": order_id, "customerId": customer_id, "status": "PAID", "total": "900",
            "items": [{"productId": product_id, "quantity": 1, "unitPrice": "900"}]})
    world.clock.advance(timedelta(hours=5))
    await world.event("order.status_changed", {"orderId": "o2", "status": "CANCELLED"})
    world.clock.advance(timedelta(days=2))

    assert await world.fire_due_timers(together) == 5
    outcome = {e.subject_id: (e.status, e.error)
               for e in await world.rows(AutomationExecution, trigger="post_purchase")}
    assert outcome == {
        "o1": ("COMPLETED", None),
        "o2": ("SKIPPED", "order o2 is CANCELLED"),
        "o3": ("SKIPPED", "nothing to recommend"),  # the only product of its category
        "o4": ("COMPLETED", None),
        "o5": ("SKIPPED", "cooldown"),  # c1's second order: the upsell went out for o1
    }
    sent = {m.customer_id: m.body for m in await world.rows(Message, trigger="post_purchase")}
    assert sorted(sent) == ["c1", "c4"]
    assert "Pajama" in sent["c4"] and "Tupi" in sent["c4"]
    assert "Tupi" not in sent["c1"].split("liked", 1)[-1]  # bought with o5: not offered


async def test_welcome_series_three_messages_over_seven_days_once(world):
    data = {"customerId": "new1", "email": "new1@mail.bd", "name": "Nadia", "locale": "bn",
            "createdAt": NOON.isoformat()}
    await world.event("customer.upserted", data, event_id="w1")
    await world.event("customer.upserted", data, event_id="w1-redelivered")
    first = await world.rows(Message, trigger="welcome")
    assert [m.template for m in first] == ["welcome_1"] and "Nadia" in first[0].body
    world.clock.advance(timedelta(days=3))
    await world.fire_due_timers()
    world.clock.advance(timedelta(days=4))
    await world.fire_due_timers()
    msgs = await world.rows(Message, trigger="welcome")
    assert sorted(m.template for m in msgs) == ["welcome_1", "welcome_2", "welcome_3"]
    last = next(m for m in msgs if m.template == "welcome_3")
    assert last.data["discountCode"] in last.body and "10%" in last.body
    assert max(m.not_before for m in msgs) - min(m.not_before for m in msgs) <= timedelta(days=7)
    [execution] = await world.rows(AutomationExecution, trigger="welcome")
    assert execution.status == "COMPLETED" and execution.step == 2

    # an old customer's profile change is not a sign-up
    await world.event("customer.upserted", {"customerId": "c0", "name": "Old",
                                            "createdAt": "2025-01-01T00:00:00+06:00"})
    assert await world.rows(Message, trigger="welcome", customer_id="c0") == []


async def test_birthday_on_the_local_day_once_a_year(world):
    async with world.sessionmaker() as s:
        await add_customers(s, [
            customer_row("b1", birthday=date(1990, 11, 24)),
            customer_row("b2", birthday=date(1991, 11, 25)),
            customer_row("leap", birthday=date(2000, 2, 29)),
        ])
        await s.commit()
    world.clock.set(datetime(2026, 11, 23, 19, 0, tzinfo=UTC))  # 01:00 24 Nov Dhaka
    await world.run(run_birthdays)
    await world.run(run_birthdays)
    [m] = await world.rows(Message, trigger="birthday")
    assert m.customer_id == "b1"
    assert m.not_before == datetime(2026, 11, 24, 1, 0, tzinfo=UTC)  # held to 07:00


async def _fill_cap(world, customer_id):
    async with world.sessionmaker() as s:
        for i in range(2):
            await enqueue_message(s, MessageRequest(
                store_id=STORE, customer_id=customer_id, channel="sms", to_address="+8801",
                body="cart", idempotency_key=f"cart-{customer_id}-{i}",
                trigger="abandoned_cart"), world.clock.now())
        await s.commit()


async def test_cap_across_triggers_defers_to_the_next_day(world):
    await _fill_cap(world, "c0")
    await _lifecycle(world, [("c0", "ACTIVE", 50)])
    await world.run(run_win_back)
    [m] = await world.rows(Message, trigger="win_back")
    assert m.not_before == datetime(2026, 11, 25, 4, 0, tzinfo=UTC)  # 10:00 next day
    [execution] = await world.rows(AutomationExecution, trigger="win_back")
    assert execution.status == "COMPLETED"


async def one_customer_world(sessionmaker, settings, clock) -> World:
    """A store with the one customer c0, at noon, under `settings`."""
    clock.set(NOON)
    async with sessionmaker() as s:
        await add_store(s)
        await add_customers(s, [customer_row("c0")])
        await s.commit()
    return World(sessionmaker, settings, clock)


async def test_cap_with_drop_skips_and_says_why(sessionmaker, settings_factory, clock):
    settings = settings_factory(automations={"on_cap": {"vip": "drop"}})
    world = await one_customer_world(sessionmaker, settings, clock)
    await _fill_cap(world, "c0")
    await world.segment_change("vip", ["c0"], [])
    assert await world.rows(Message, trigger="vip") == []
    [execution] = await world.rows(AutomationExecution, trigger="vip")
    assert execution.status == "SKIPPED" and "daily cap" in execution.error


async def test_opted_out_customer_gets_nothing_and_the_log_says_why(world):
    from stormd.handlers.automations.service import execution_log
    from stormd.handlers.kernel.context import JobContext
    from stormd.handlers.kernel.paging import PageRequest
    from stormd.handlers.kernel.service import Actor, Call

    async with world.sessionmaker() as s:
        await add_customers(s, [customer_row("quiet", consent_email=False, consent_sms=False,
                                             consent_whatsapp=False)])
        await s.commit()
    await world.segment_change("vip", ["c0", "quiet"], [])
    call = Call(JobContext(world.sessionmaker, world.settings, world.clock), Actor("test"))
    log = (await execution_log(call, STORE, PageRequest(), trigger="vip")).items
    assert {(e.customer_id, e.status, e.error) for e in log} == {
        ("c0", "COMPLETED", None), ("quiet", "SKIPPED", "unreachable")}
    skipped = await execution_log(call, STORE, PageRequest(), status="skipped")
    assert [e.customer_id for e in skipped.items] == ["quiet"]


async def test_merchant_turns_a_trigger_off_and_sets_up_segment_entry(world):
    from stormd.handlers.automations.service import (
        WorkflowSettings,
        configure_workflow,
        list_workflows,
    )
    from stormd.handlers.kernel.context import JobContext
    from stormd.handlers.kernel.paging import PageRequest
    from stormd.handlers.kernel.service import Actor, Call

    call = Call(JobContext(world.sessionmaker, world.settings, world.clock), Actor("test"))
    await configure_workflow(call, STORE, "win_back", WorkflowSettings(enabled=False))
    await _lifecycle(world, [("c0", "ACTIVE", 60)])
    await world.run(run_win_back)
    assert await world.rows(Message, trigger="win_back") == []

    with pytest.raises(Exception, match="no template 'nope'"):
        await configure_workflow(call, STORE, "segment_entry:loyal", WorkflowSettings(
            enabled=True, config={"template": "nope"}))
    await configure_workflow(call, STORE, "segment_entry:loyal", WorkflowSettings(
        enabled=True, config={"template": "vip_reward", "discount_percent": "5"}))
    await world.segment_change("loyal", ["c1"], [])
    [m] = await world.rows(Message, trigger="segment_entry:loyal")
    assert m.customer_id == "c1" and "5%" in m.body
    listed = (await list_workflows(call, STORE, PageRequest())).items
    assert {(w.trigger, w.enabled) for w in listed} >= {
        ("win_back", False), ("segment_entry:loyal", True)}


@pytest.mark.parametrize("routing, whatsapp_price, channel", [
    ("cheapest", "0.50", "email"),  # the list prices: e-mail 0.10, WhatsApp 0.50
    ("cheapest", "0.05", "whatsapp"),
    ("listed", "0.05", "email")])
async def test_automations_route_to_the_cheapest_channel_or_keep_the_listed_order(
        sessionmaker, settings_factory, clock, routing, whatsapp_price, channel):
    settings = settings_factory(automations={"channels": ["email", "whatsapp"],
                                               "routing": routing},
                                campaigns={"message_cost": {"whatsapp": whatsapp_price}})
    world = await one_customer_world(sessionmaker, settings, clock)
    await world.segment_change("vip", ["c0"], [])
    [m] = await world.rows(Message, trigger="vip")
    assert m.channel == channel
