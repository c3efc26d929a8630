"""Learned recommendations in use: the nightly step learns a store's product neighbours,
post-purchase and campaigns' `recommended_products` pick them, and the rules answer for
cold products and for stores without a model.

The store: phones sell with covers (40 orders) and chargers (20); rice, the best seller,
is in most phone orders too (50) and in 200 orders of staples. Counting co-purchases, as
the rules do, puts rice first after a phone; the learned model discounts a product bought
with everything and puts the cover and the charger first. A lamp sold three times is
cold (fewer than five orders): the rules answer for it.
"""

from __future__ import annotations

import json
from datetime import timedelta
from decimal import Decimal

import pytest
from campaign_data import NOON, STORE, add_customers, add_store, customer_row
from sqlalchemy import insert, select

from stormd.handlers.campaigns.campaigns import create_campaign, fan_out, schedule_campaign
from stormd.handlers.kernel.context import HandlerContext, JobContext, TimerFired
from stormd.handlers.outreach.recommendations import cache
from stormd.handlers.predictions.learned import learn_store, learned_neighbours
from stormd.handlers.shop.orders import upsert_orders
from stormd.handlers.wiring import build_registry
from stormd.schema.marketing.messages import Message
from stormd.schema.marketing.recommendations import RecommendationEvent
from stormd.schema.runtime.timers import Timer
from stormd.schema.shop.products import Product
from stormd.schema.wire.events import OrderCreated, parse_event

PRODUCTS = {"phone": "Electronics", "cover": "Accessories", "charger": "Electronics",
            "rice": "Groceries", "lentils": "Groceries", "oil": "Groceries",
            "lamp": "Home", "kettle": "Home"}
BASKETS = ([("phone", "cover", "rice")] * 30 + [("phone", "charger", "rice")] * 20
           + [("phone", "cover")] * 10 + [("rice", "lentils", "oil")] * 200
           + [("lamp", "rice")] * 3 + [("kettle",)] * 8)


@pytest.fixture(autouse=True)
def fresh_cache():
    cache.clear()
    yield
    cache.clear()


async def _store(sessionmaker):
    async with sessionmaker() as s:
        await add_store(s)
        await add_customers(s, [customer_row(f"c{i}") for i in range(3)])
        await s.execute(insert(Product), [
            {"store_id": STORE, "product_id": p, "name": p.title(), "category": c,
             "price": Decimal(500), "active": True, "updated_at": NOON}
            for p, c in PRODUCTS.items()])
        orders = []
        for n, basket in enumerate(BASKETS):
            items = [{"productId": p, "category": PRODUCTS[p], "quantity": 1,
                      "unitPrice": "500"} for p in basket]
            orders.append((OrderCreated.model_validate({
                "orderId": f"h{n}", "customerId": f"h{n % 90}", "status": "DELIVERED",
                "total": str(500 * len(basket)), "items": items}),
                NOON - timedelta(days=60 - n % 50)))
        await upsert_orders(s, STORE, orders)
        await s.commit()


async def _post_purchase(sessionmaker, settings, clock, product: str) -> tuple[str, str]:
    """c1 buys `product`; two days later the upsell goes out: (its body, the strategy)."""
    registry = build_registry()
    body = {"id": f"e-{product}", "type": "order.created", "storeId": STORE,
            "occurredAt": clock.now().isoformat(),
            "data": {"orderId": f"new-{product}", "customerId": "c1", "status": "PAID",
                     "total": "500", "items": [{"productId": product, "quantity": 1,
                                                "unitPrice": "500"}]}}
    event = parse_event(f"stormcom.events.{STORE}.order.created", json.dumps(body).encode(),
                        "stormcom")
    async with sessionmaker() as s:
        await registry.dispatch_event(HandlerContext(s, settings, clock, STORE,
                                                     registry=registry), event)
        await s.commit()
    clock.advance(timedelta(days=2))
    async with sessionmaker() as s:
        due = (await s.scalars(select(Timer).where(Timer.due_at <= clock.now()))).all()
        await registry.dispatch_timers(HandlerContext(s, settings, clock, STORE, registry=registry),
                                       [TimerFired(t.store_id, t.key, t.kind, t.due_at,
                                                   t.payload) for t in due])
        for t in due:
            await s.delete(t)
        await s.commit()
        message = (await s.scalars(select(Message).where(
            Message.trigger == "post_purchase", Message.customer_id == "c1")
            .order_by(Message.id.desc()))).first()
        record = (await s.scalars(select(RecommendationEvent).order_by(
            RecommendationEvent.id.desc()))).first()
    return message.body.split("liked", 1)[-1], record.strategy


async def test_post_purchase_picks_the_learned_neighbours(sessionmaker, settings_factory,
                                                          clock):
    settings = settings_factory(automations={"recommendations_count": 2})
    await _store(sessionmaker)
    clock.set(NOON)
    learned = await learn_store(JobContext(sessionmaker, settings, clock), STORE, NOON)
    assert learned == 6  # phone, cover, charger, rice, lentils, oil; lamp and kettle cold
    async with sessionmaker() as s:
        neighbours = await learned_neighbours(s, STORE, ["phone", "lamp", "kettle"])
    assert set(neighbours) == {"phone"}
    assert [p for p, _ in neighbours["phone"][:2]] == ["cover", "charger"]
    assert len(neighbours["phone"]) <= settings.predictions.recommendation_neighbours

    text, strategy = await _post_purchase(sessionmaker, settings, clock, "phone")
    assert "Cover" in text and "Charger" in text and "Rice" not in text
    assert strategy == "learned"


async def test_cold_products_and_stores_without_a_model_get_the_rules(sessionmaker,
                                                                      settings_factory, clock):
    settings = settings_factory(automations={"recommendations_count": 2})
    await _store(sessionmaker)
    clock.set(NOON)
    text, strategy = await _post_purchase(sessionmaker, settings, clock, "phone")  # no model
    assert "Rice" in text and "Cover" in text and "Charger" not in text  # by raw counts
    assert strategy == "co_purchased"

    await learn_store(JobContext(sessionmaker, settings, clock), STORE, clock.now())
    cache.clear()
    clock.advance(timedelta(days=31))  # past the exclusion of what c1 bought
    text, strategy = await _post_purchase(sessionmaker, settings, clock, "lamp")  # cold
    assert "Rice" in text and strategy.startswith("co_purchased")


async def test_a_campaign_recommends_around_each_customers_last_order(sessionmaker,
                                                                     settings_factory, clock):
    settings = settings_factory(automations={"recommendations_count": 2})
    await _store(sessionmaker)
    clock.set(NOON)
    await learn_store(JobContext(sessionmaker, settings, clock), STORE, NOON)
    async with sessionmaker() as s:  # c0 last bought a phone (long enough ago), c2 nothing
        await upsert_orders(s, STORE, [(OrderCreated.model_validate({
            "orderId": "c0-last", "customerId": "c0", "status": "DELIVERED", "total": "500",
            "items": [{"productId": "phone", "quantity": 1, "unitPrice": "500"}]}),
            NOON - timedelta(days=40))])
        c = await create_campaign(s, STORE, {
            "name": "For you", "channels": ["email"], "content": {"email": {"en": (
                "Subject: For you\nHi {{ name }},{% for p in recommended_products %} "
                "{{ p.name }}{% else %} see what is new{% endfor %}.")}}}, NOON)
        await schedule_campaign(s, settings, STORE, c.id, NOON, force=True)
        await s.commit()
    await fan_out(sessionmaker, settings, STORE, c.id, NOON)
    async with sessionmaker() as s:
        bodies = {m.customer_id: m.body for m in await s.scalars(
            select(Message).where(Message.campaign_id == c.id))}
    assert bodies["c0"] == "Hi Name c0, Cover Charger."
    assert bodies["c2"] == "Hi Name c2, see what is new."
