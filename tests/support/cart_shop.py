"""A storefront for the cart tests: contract events in, the daemon's real timer loop firing
due timers, and what a merchant would look at (messages queued, abandonments, codes)."""

from __future__ import annotations

import json
import uuid
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import select

from stormd.daemon.runtime.scheduler import TimerLoop
from stormd.handlers.carts import carts, recovery
from stormd.handlers.kernel.context import HandlerContext
from stormd.handlers.kernel.registry import HandlerRegistry
from stormd.handlers.shop import customers, orders
from stormd.schema.marketing.automations import AutomationExecution
from stormd.schema.marketing.messages import Message
from stormd.schema.runtime.timers import Timer
from stormd.schema.shop.carts import Cart, CartAbandonmentEvent
from stormd.schema.shop.promotions import DiscountCode
from stormd.schema.wire.events import parse_event

STORE = "store_1"
HOUR = timedelta(hours=1)
DAY = timedelta(days=1)


def cart_registry() -> HandlerRegistry:
    """Only the cart, customer and order handlers react (the other automations would queue
    their own messages and use up the daily cap)."""
    r = HandlerRegistry()
    r.on_event_batch("customer.upserted")(customers.on_customer_upserted)
    r.react_to_batch("customer.upserted", name="abandoned_cart")(recovery.resume_waiting)
    r.on_event_batch("order.created")(orders.on_order_created)
    r.on_event_batch("order.created")(carts.convert_carts)
    r.on_event_batch("order.status_changed")(orders.on_order_status_changed)
    r.on_event_batch("promotion.redeemed")(orders.on_promotion_redeemed)
    r.on_event_batch("cart.updated")(carts.keep_cart)
    r.on_event_batch("cart.cleared")(carts.clear_cart)
    r.on_timer_batch(carts.ABANDON_TIMER)(carts.detect_abandonment)
    r.react_to_timer_batch(carts.ABANDON_TIMER, name="abandoned_cart")(recovery.start_pending)
    r.react_to_timer_batch(recovery.REMIND_TIMER, name="abandoned_cart")(recovery.run_due_steps)
    return r


class Shop:
    def __init__(self, sessionmaker, clock, settings, registry: HandlerRegistry | None = None):
        self.sessionmaker, self.clock, self.settings = sessionmaker, clock, settings
        self.registry = registry or cart_registry()

    async def event(self, type_: str, data: dict[str, Any], at: datetime | None = None) -> None:
        prefix = self.settings.nats.subject_prefix
        envelope = {"id": f"evt_{uuid.uuid4().hex}", "type": type_, "storeId": STORE,
                    "occurredAt": (at or self.clock.now()).isoformat(), "data": data}
        event = parse_event(f"{prefix}.events.{STORE}.{type_}",
                            json.dumps(envelope, default=str).encode(), prefix)
        async with self.sessionmaker() as session:
            await self.registry.dispatch_event(HandlerContext(
                session, self.settings, self.clock, STORE, registry=self.registry), event)
            await session.commit()

    async def customer(self, cid: str = "c1", **fields: Any) -> None:
        data = {"customerId": cid, "name": "Rahim", "email": f"{cid}@example.com",
                "phone": "+8801711000001", "locale": "en", **fields}
        await self.event("customer.upserted", data)

    async def cart(self, cart_id: str = "k1", customer: str | None = "c1",
                   price: str = "1200", quantity: int = 1, at: datetime | None = None) -> None:
        data = {"cartId": cart_id, "items": [
            {"productId": "p1", "name": "Jamdani saree", "quantity": quantity,
             "unitPrice": price, "imageUrl": "https://cdn.example.com/p1.jpg"}]}
        if customer:
            data["customerId"] = customer
        await self.event("cart.updated", data, at)

    async def order(self, order_id: str = "o1", customer: str = "c1", cart_id: str | None = None,
                    total: str = "1200", codes: list[str] | None = None) -> None:
        data = {"orderId": order_id, "customerId": customer, "status": "PAID", "total": total,
                "items": [{"productId": "p1", "quantity": 1, "unitPrice": total}]}
        if cart_id:
            data["cartId"] = cart_id
        if codes:
            data["promotionCodes"] = codes
        await self.event("order.created", data)

    async def fire(self) -> int:
        """Fire every due timer with the daemon's own timer loop."""
        loop = TimerLoop(self.sessionmaker, self.settings, self.clock, self.registry, batch=500)
        total = 0
        while n := await loop.fire_due():
            total += n
        return total

    async def advance(self, delta: timedelta) -> None:
        self.clock.advance(delta)
        await self.fire()

    async def _all(self, query) -> list[Any]:
        async with self.sessionmaker() as s:
            return list((await s.scalars(query)).all())

    async def messages(self) -> list[Message]:
        return await self._all(select(Message).order_by(Message.id))

    async def abandonments(self) -> list[CartAbandonmentEvent]:
        return await self._all(select(CartAbandonmentEvent).order_by(CartAbandonmentEvent.id))

    async def executions(self) -> list[AutomationExecution]:
        return await self._all(select(AutomationExecution).order_by(AutomationExecution.id))

    async def codes(self) -> list[DiscountCode]:
        return await self._all(select(DiscountCode).order_by(DiscountCode.id))

    async def timers(self) -> list[Timer]:
        return await self._all(select(Timer).order_by(Timer.due_at))

    async def cart_row(self, cart_id: str = "k1") -> Cart | None:
        async with self.sessionmaker() as s:
            return await s.get(Cart, (STORE, cart_id))
