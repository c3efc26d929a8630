"""order.created, order.status_changed and promotion.redeemed keep orders and their history."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal

from sqlalchemy import select

import stormd.handlers.shop.orders  # noqa: F401  (registers the STATE handlers)
from stormd.schema import (
    AppliedPromotion,
    Customer,
    DiscountCode,
    Order,
    OrderItem,
    OrderStatusChange,
)

ORDER = {
    "orderId": "o1", "customerId": "c1", "cartId": "cart1", "status": "PENDING",
    "total": "1550.00",
    "items": [
        {"productId": "p1", "name": "Panjabi", "category": "Clothing", "quantity": 1,
         "unitPrice": "1450.00"},
        {"productId": "p2", "quantity": 2, "unitPrice": "50.00"},
    ],
}


async def _order(sessionmaker, order_id="o1") -> Order:
    async with sessionmaker() as s:
        return await s.get(Order, ("store_1", order_id))


async def _history(sessionmaker, order_id="o1") -> list[str]:
    async with sessionmaker() as s:
        return list((await s.scalars(
            select(OrderStatusChange.status).where(OrderStatusChange.order_id == order_id)
            .order_by(OrderStatusChange.occurred_at))).all())


async def test_order_is_stored_with_items_history_and_customer(handle_event, sessionmaker,
                                                                clock):
    await handle_event("order.created", ORDER)
    o = await _order(sessionmaker)
    assert (o.customer_id, o.cart_id, o.status, o.total) == (
        "c1", "cart1", "PENDING", Decimal("1550.00"))
    assert o.occurred_at == clock.now()
    async with sessionmaker() as s:
        items = (await s.scalars(select(OrderItem).order_by(OrderItem.line_no))).all()
        assert await s.get(Customer, ("store_1", "c1")) is not None
    assert [(i.product_id, i.quantity, i.unit_price) for i in items] == [
        ("p1", 1, Decimal("1450.00")), ("p2", 2, Decimal("50.00"))]
    assert await _history(sessionmaker) == ["PENDING"]
    async with sessionmaker() as s:  # times are stored as every other writer stores them
        found = await s.scalars(select(Order.order_id).where(Order.occurred_at == clock.now()))
        assert found.all() == ["o1"]


async def test_status_changes_follow_storefront_time(handle_event, sessionmaker, clock):
    t0 = clock.now()
    await handle_event("order.created", ORDER, at=t0)
    await handle_event("order.status_changed", {"orderId": "o1", "status": "PAID"},
                       at=t0 + timedelta(minutes=5))
    await handle_event("order.status_changed", {"orderId": "o1", "status": "DELIVERED"},
                       at=t0 + timedelta(days=2))
    # arrives late: it happened before DELIVERED, so it must not overwrite it
    await handle_event("order.status_changed", {"orderId": "o1", "status": "SHIPPED"},
                       at=t0 + timedelta(days=1))
    o = await _order(sessionmaker)
    assert o.status == "DELIVERED" and o.status_changed_at == t0 + timedelta(days=2)
    assert await _history(sessionmaker) == ["PENDING", "PAID", "SHIPPED", "DELIVERED"]


async def test_replayed_order_created_does_not_undo_a_later_status(handle_event, sessionmaker,
                                                                   clock):
    t0 = clock.now()
    await handle_event("order.created", ORDER, at=t0)
    await handle_event("order.status_changed", {"orderId": "o1", "status": "PAID"},
                       at=t0 + timedelta(hours=1))
    await handle_event("order.created", ORDER, at=t0)
    assert (await _order(sessionmaker)).status == "PAID"
    assert await _history(sessionmaker) == ["PENDING", "PAID"]
    async with sessionmaker() as s:
        assert len((await s.scalars(select(OrderItem))).all()) == 2


async def test_status_before_the_order_applies_when_the_order_arrives(handle_event,
                                                                      sessionmaker, clock):
    t0 = clock.now()
    await handle_event("order.status_changed", {"orderId": "o1", "status": "CANCELLED"},
                       at=t0 + timedelta(minutes=10))
    await handle_event("order.created", ORDER, at=t0)
    o = await _order(sessionmaker)
    assert o.status == "CANCELLED" and o.occurred_at == t0


async def test_promotion_redeemed_marks_stormd_code_and_takes_its_campaign(
        handle_event, sessionmaker, clock):
    async with sessionmaker() as s:
        s.add(DiscountCode(store_id="store_1", code="CART10-AB12", customer_id="c1",
                           percent=Decimal(10), trigger="cart_recovery", campaign_id="camp9",
                           created_at=clock.now() - timedelta(days=1)))
        await s.commit()
    await handle_event("order.created", ORDER)
    redeemed = {"orderId": "o1", "customerId": "c1", "code": "CART10-AB12",
                "discountType": "PERCENT", "discountAmount": "155.00"}
    await handle_event("promotion.redeemed", redeemed)
    await handle_event("promotion.redeemed", redeemed, at=clock.now() + timedelta(hours=1))
    async with sessionmaker() as s:
        applied = (await s.scalars(select(AppliedPromotion))).all()
        code = (await s.scalars(select(DiscountCode))).one()
    assert [(a.code, a.campaign_id, a.discount_amount) for a in applied] == [
        ("CART10-AB12", "camp9", Decimal("155.00"))]
    assert code.redeemed_at == clock.now() and code.order_id == "o1"


async def test_storefront_code_is_recorded_without_a_stormd_code(handle_event, sessionmaker):
    await handle_event("promotion.redeemed", {
        "orderId": "o2", "customerId": "c1", "code": "EID2026", "discountType": "FIXED",
        "discountAmount": "100", "campaignId": "eid"})
    async with sessionmaker() as s:
        a = (await s.scalars(select(AppliedPromotion))).one()
    assert (a.code, a.campaign_id, a.discount_type) == ("EID2026", "eid", "FIXED")


async def test_order_with_a_stormd_code_marks_it_redeemed_once(handle_event, sessionmaker, clock):
    async with sessionmaker() as s:
        s.add(DiscountCode(store_id="store_1", code="WB15-XY", customer_id="c1",
                           percent=Decimal(15), trigger="win_back", created_at=clock.now()))
        await s.commit()
    await handle_event("order.created", {**ORDER, "promotionCodes": ["WB15-XY", "OTHER"]})
    later = clock.now() + timedelta(days=1)
    await handle_event("order.created", {**ORDER, "orderId": "o2", "promotionCodes": ["WB15-XY"]},
                       at=later)
    async with sessionmaker() as s:
        code = (await s.scalars(select(DiscountCode))).one()
        o = await s.get(Order, ("store_1", "o1"))
    assert (code.redeemed_at, code.order_id) == (clock.now(), "o1")
    assert o.promotion_codes == ["WB15-XY", "OTHER"]
