"""One offer cooldown for every trigger that gives a code (cart steps, win-back, VIP,
birthday, welcome, anniversary, campaigns); post-purchase on the first of PAID or DELIVERED
(cash on delivery included), once an order; the first-order anniversary; win-back by churn
risk."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from decimal import Decimal

import pytest
from automation_world import World
from campaign_data import NOON, STORE, add_customers, add_segment, add_store, customer_row
from sqlalchemy import insert

from stormd.handlers.automations.anniversary import run_anniversaries
from stormd.handlers.automations.triggers import run_birthdays, run_win_back
from stormd.handlers.campaigns.campaigns import create_campaign, fan_out, schedule_campaign
from stormd.handlers.outreach.recommendations import cache
from stormd.schema.marketing.automations import AutomationExecution
from stormd.schema.marketing.messages import Message
from stormd.schema.marketing.rfm import CustomerLifecycleMetrics
from stormd.schema.shop.products import Product
from stormd.schema.shop.promotions import DiscountCode

DAY = timedelta(days=1)


@pytest.fixture(autouse=True)
def fresh_recommendations():
    cache.clear()


async def _world(sessionmaker, settings, clock, rows) -> World:
    clock.set(NOON)
    async with sessionmaker() as s:
        await add_store(s)
        await add_customers(s, rows)
        await s.commit()
    return World(sessionmaker, settings, clock)


async def _cart_code(world: World, customer_id: str, at: datetime) -> None:
    """A cart reminder's code for `customer_id`, issued at `at`."""
    async with world.sessionmaker() as s:
        await s.execute(insert(DiscountCode), [{
            "store_id": STORE, "code": f"SAVE5-{customer_id}", "customer_id": customer_id,
            "percent": Decimal(5), "trigger": "abandoned_cart", "cart_id": "cart1",
            "created_at": at, "expires_at": at + 7 * DAY}])
        await s.commit()


async def _lifecycle(world: World, rows) -> None:
    async with world.sessionmaker() as s:
        await s.execute(insert(CustomerLifecycleMetrics), [
            {"store_id": STORE, "customer_id": cid, "stage": stage, "churn_risk": risk,
             "orders_count": 2, "orders_total": Decimal(3000), "as_of": NOON,
             "first_order_at": first, "last_order_at": NOON - timedelta(days=days)}
            for cid, stage, days, risk, first in rows])
        await s.commit()


async def _codes(world: World, trigger: str) -> list[str]:
    return sorted(c.customer_id for c in await world.rows(DiscountCode, trigger=trigger))


async def _vip(world):
    await world.segment_change("vip", ["held", "free"], [])


async def _birthday(world):
    await world.run(run_birthdays)


async def _anniversary(world):
    await world.run(run_anniversaries)


async def _win_back(world):
    await world.run(run_win_back)


async def _welcome(world):
    for c in ("held", "free"):
        await world.event("customer.upserted", {"customerId": c, "createdAt": NOON.isoformat()})
    world.clock.advance(7 * DAY)
    await world.fire_due_timers()


@pytest.mark.parametrize("trigger, run", [
    ("vip", _vip), ("birthday", _birthday), ("anniversary", _anniversary),
    ("win_back", _win_back), ("welcome", _welcome)])
async def test_no_trigger_stacks_a_second_offer_within_the_offer_cooldown(
        sessionmaker, settings_factory, clock, trigger, run):
    """`held` got a cart code lately (by the time the trigger gives its own), `free` did
    not: only `free` gets the trigger's code; `held`'s execution says why."""
    birthday = NOON.astimezone(UTC).date().replace(year=1990)
    world = await _world(sessionmaker, settings_factory(), clock, [
        customer_row(c, birthday=birthday) for c in ("held", "free")])
    first = NOON - timedelta(days=365)
    await _lifecycle(world, [(c, "ACTIVE", 50, 0.8, first) for c in ("held", "free")])
    await _cart_code(world, "held", NOON - 5 * DAY + (7 * DAY if trigger == "welcome" else DAY * 0))
    await run(world)
    assert await _codes(world, trigger) == ["free"]
    runs = {x.customer_id: (x.status, x.error)
            for x in await world.rows(AutomationExecution, trigger=trigger)}
    assert runs["held"] == ("SKIPPED", "offer cooldown")
    assert runs["free"][0] == "COMPLETED"


async def test_a_campaign_with_codes_leaves_out_who_had_another_offer(
        sessionmaker, settings_factory, clock):
    settings = settings_factory()
    world = await _world(sessionmaker, settings, clock,
                         [customer_row(c) for c in ("held", "free")])
    async with sessionmaker() as s:
        await add_segment(s, "fans", ["held", "free"])
        await s.commit()
    await _cart_code(world, "held", NOON - 13 * DAY)
    spec = {"name": "Eid", "channels": ["email"], "segments": ["fans"],
            "template": "eid_ul_fitr", "discountPercent": 30}
    async with sessionmaker() as s:
        c = await create_campaign(s, STORE, spec, NOON)
        c, preview = await schedule_campaign(s, settings, STORE, c.id, NOON, force=True)
        await s.commit()
    assert (preview.audience, preview.offer_cooldown, preview.reach) == (2, 1, 1)
    result = await fan_out(sessionmaker, settings, STORE, c.id, NOON)
    assert result["offer_cooldown"] == 1
    assert await _codes(world, "campaign") == ["free"]
    world.clock.advance(2 * DAY)  # over 14 days after the cart code: `held` again, not `free`
    async with sessionmaker() as s:
        c2 = await create_campaign(s, STORE, {**spec, "name": "Eid 2"}, world.clock.now())
        await schedule_campaign(s, settings, STORE, c2.id, world.clock.now(), force=True)
        await s.commit()
    await fan_out(sessionmaker, settings, STORE, c2.id, world.clock.now())
    assert [m.customer_id for m in await world.rows(Message, campaign_id=c2.id)] == ["held"]


async def test_a_seasonal_template_brings_its_recommended_discount(
        sessionmaker, settings_factory, clock):
    await _world(sessionmaker, settings_factory(), clock, [customer_row("c0")])
    async with sessionmaker() as s:
        victory = await create_campaign(s, STORE, {
            "name": "Victory Day", "channels": ["sms"], "template": "victory_day"}, NOON)
        own = await create_campaign(s, STORE, {
            "name": "Victory Day, 20", "channels": ["sms"], "template": "victory_day",
            "discountPercent": 20}, NOON)
        await s.commit()
    assert victory.discount_percent == Decimal(16)  # the template's symbolic 16 %
    assert own.discount_percent == Decimal(20)  # a campaign that names one keeps it


async def _shop(world: World) -> None:
    async with world.sessionmaker() as s:
        await s.execute(insert(Product), [
            {"store_id": STORE, "product_id": p, "name": p.title(), "category": "Clothing",
             "price": Decimal(900), "active": True, "updated_at": NOON}
            for p in ("panjabi", "pajama", "tupi")])
        await s.commit()


def _order(order_id: str, customer_id: str, status: str) -> dict:
    return {"orderId": order_id, "customerId": customer_id, "status": status, "total": "1500",
            "items": [{"productId": "panjabi", "quantity": 1, "unitPrice": "1500"}]}


async def test_cash_on_delivery_gets_the_upsell_when_delivered_and_an_order_only_once(
        sessionmaker, settings_factory, clock):
    world = await _world(sessionmaker, settings_factory(), clock,
                         [customer_row(c) for c in ("cod", "card")])
    await _shop(world)
    await world.event("order.created", _order("o-cod", "cod", "PENDING"))
    await world.event("order.created", _order("o-card", "card", "PAID"))
    world.clock.advance(DAY)
    await world.event("order.status_changed", {"orderId": "o-cod", "status": "SHIPPED"})
    await world.event("order.status_changed", {"orderId": "o-card", "status": "SHIPPED"})
    world.clock.advance(DAY)
    delivered = world.clock.now()
    for order_id in ("o-cod", "o-card"):
        await world.event("order.status_changed", {"orderId": order_id, "status": "DELIVERED"})
    runs = {x.subject_id: x for x in await world.rows(AutomationExecution,
                                                      trigger="post_purchase")}
    assert set(runs) == {"o-cod", "o-card"}  # one each, though o-card was PAID and DELIVERED
    world.clock.set(delivered + 2 * DAY)
    await world.fire_due_timers()
    sent = sorted(m.customer_id for m in await world.rows(Message, trigger="post_purchase"))
    assert sent == ["card", "cod"]
    [cod] = await world.rows(Message, trigger="post_purchase", customer_id="cod")
    assert cod.not_before >= delivered + 2 * DAY  # two days after the delivery


async def test_post_purchase_on_paid_only_leaves_cash_on_delivery_out(
        sessionmaker, settings_factory, clock):
    settings = settings_factory(automations={"post_purchase_on": ["PAID"]})
    world = await _world(sessionmaker, settings, clock, [customer_row("cod")])
    await world.event("order.created", _order("o-cod", "cod", "PENDING"))
    await world.event("order.status_changed", {"orderId": "o-cod", "status": "DELIVERED"})
    assert await world.rows(AutomationExecution, trigger="post_purchase") == []


async def test_first_order_anniversary_once_a_year_on_the_local_day(
        sessionmaker, settings_factory, clock):
    world = await _world(sessionmaker, settings_factory(), clock, [
        customer_row(c) for c in ("one", "two", "yesterday", "recent")])
    local_noon = NOON  # Tuesday 24 Nov 2026, 12:00 in Dhaka
    await _lifecycle(world, [
        ("one", "ACTIVE", 10, 0.1, local_noon.replace(year=2025) - timedelta(hours=11)),  # 01:00
        ("two", "ACTIVE", 10, 0.1, local_noon.replace(year=2024) + timedelta(hours=11)),  # 23:00
        ("yesterday", "ACTIVE", 10, 0.1, local_noon.replace(year=2025) - DAY),
        ("recent", "NEW", 10, 0.1, local_noon - timedelta(days=10)),
    ])
    await world.run(run_anniversaries)
    await world.run(run_anniversaries)  # a re-run the same day: nothing more
    sent = {m.customer_id: m for m in await world.rows(Message, trigger="anniversary")}
    assert set(sent) == {"one", "two"}
    assert "1 year " in sent["one"].body and "2 years" in sent["two"].body
    assert sent["one"].data["discountCode"] in sent["one"].body


async def test_a_leap_day_first_order_is_remembered_on_28_february(
        sessionmaker, settings_factory, clock):
    world = await _world(sessionmaker, settings_factory(), clock, [customer_row("leap")])
    await _lifecycle(world, [("leap", "ACTIVE", 10, 0.1, datetime(2024, 2, 29, 6, tzinfo=UTC))])
    world.clock.set(datetime(2027, 2, 28, 6, tzinfo=UTC))
    await world.run(run_anniversaries)
    [m] = await world.rows(Message, trigger="anniversary")
    assert m.customer_id == "leap" and "3 years" in m.body
    assert date(2027, 2, 28) == m.not_before.date()


async def test_win_back_by_churn_risk_picks_who_is_late_for_their_own_rhythm(
        sessionmaker, settings_factory, clock):
    settings = settings_factory(automations={"win_back_by": "churn_risk",
                                             "win_back_min_churn_risk": 0.75})
    world = await _world(sessionmaker, settings, clock,
                         [customer_row(c) for c in ("weekly", "slow", "churned")])
    first = NOON - timedelta(days=400)
    # `weekly` is 20 days quiet against a 7-day rhythm (0.86); `slow` 60 days against 90
    # (0.37): days alone (45) would pick `slow`, churn risk picks `weekly`.
    await _lifecycle(world, [("weekly", "ACTIVE", 20, 0.86, first),
                             ("slow", "ACTIVE", 60, 0.37, first),
                             ("churned", "CHURNED", 120, 0.9, first)])
    await world.run(run_win_back)
    assert [m.customer_id for m in await world.rows(Message, trigger="win_back")] == ["weekly"]
