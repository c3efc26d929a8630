"""A storefront for the cart tests: contract events in, the daemon's real timer loop firing
due timers, and what a merchant would look at (messages queued, abandonments, codes)."""

from __future__ import annotations

import json
import uuid
from collections import defaultdict
from datetime import datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import select

import stormd.handlers.carts.carts
import stormd.handlers.shop.customers
import stormd.handlers.shop.orders  # noqa: F401
from stormd.daemon.runtime.scheduler import TimerLoop
from stormd.handlers.kernel.context import HandlerContext
from stormd.handlers.kernel.registry import dispatch_event, registry
from stormd.schema.marketing.automations import AutomationExecution
from stormd.schema.marketing.messages import Message
from stormd.schema.runtime.timers import Timer
from stormd.schema.shop.carts import Cart, CartAbandonmentEvent
from stormd.schema.shop.promotions import DiscountCode
from stormd.schema.wire.events import parse_event

STORE = "store_1"
HOUR = timedelta(hours=1)
DAY = timedelta(days=1)


CART_MODULES = ("stormd.handlers.carts.carts.", "stormd.handlers.carts.recovery.",
                "stormd.handlers.shop.customers.", "stormd.handlers.shop.orders.")
CART_TIMERS = ("cart.abandon", "cart.remind")


@pytest.fixture
def cart_handlers_only(monkeypatch):
    """Only the cart, customer and order handlers react (other automations imported by
    other tests would otherwise queue their own messages and use up the daily cap)."""
    events = {t: [r for r in regs if r.name.startswith(CART_MODULES)]
              for t, regs in registry._events.items()}
    monkeypatch.setattr(registry, "_events", defaultdict(list, events))
    monkeypatch.setattr(registry, "_timers",
                        {k: v for k, v in registry._timers.items() if k in CART_TIMERS})
    monkeypatch.setattr(registry, "_segment_changes", [])


class Shop:
    def __init__(self, sessionmaker, clock, settings):
        self.sessionmaker, self.clock, self.settings = sessionmaker, clock, settings

    async def event(self, type_: str, data: dict[str, Any], at: datetime | None = None) -> None:
        prefix = self.settings.nats.subject_prefix
        envelope = {"id": f"evt_{uuid.uuid4().hex}", "type": type_, "storeId": STORE,
                    "occurredAt": (at or self.clock.now()).isoformat(), "data": data}
        event = parse_event(f"{prefix}.events.{STORE}.{type_}",
                            json.dumps(envelope, default=str).encode(), prefix)
        async with self.sessionmaker() as session:
            await dispatch_event(HandlerContext(session, self.settings, self.clock, STORE), event)
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
        loop = TimerLoop(self.sessionmaker, self.settings, self.clock, batch=500)
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
