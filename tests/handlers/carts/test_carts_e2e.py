"""Through the real daemon: cart events published on a real nats-server, the abandonment
timer fired by the daemon's timer loop, the reminder in the outbox, the order recovering it."""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from datetime import UTC, datetime, timedelta

import nats
from sqlalchemy import select

from stormd.daemon.runtime.app import Daemon
from stormd.schema.db.engine import make_engine, make_sessionmaker
from stormd.schema.marketing.messages import Message
from stormd.schema.shop.carts import Cart, CartAbandonmentEvent


async def _publish(js, type_: str, data: dict) -> None:
    env = {"id": f"evt_{uuid.uuid4().hex}", "type": type_, "storeId": "store_1",
           "occurredAt": datetime.now(UTC).isoformat(), "data": data}
    await js.publish(f"stormcom.events.store_1.{type_}", json.dumps(env).encode(),
                     headers={"Nats-Msg-Id": env["id"]})


async def _eventually(query, sessionmaker, timeout: float = 15.0):
    deadline = time.monotonic() + timeout
    while True:
        async with sessionmaker() as s:
            rows = (await s.scalars(query)).all()
        if rows or time.monotonic() > deadline:
            return rows
        await asyncio.sleep(0.1)


async def test_cart_published_on_nats_is_recovered_through_the_daemon(
    db_url, nats_server, settings_factory
):
    settings = settings_factory(
        nats={"url": nats_server}, database={"url": db_url},
        metrics={"listen": "127.0.0.1:0"}, http={"listen": "127.0.0.1:0"},
        carts={"abandon_after": "1s"},
        limits={"quiet_hours": ["00:00", "00:00"], "friday_prayer": []},  # any wall clock
    )
    daemon = Daemon(settings)  # the production timer loop (1 s poll, woken on schedule)
    await daemon.start()
    nc = await nats.connect(nats_server)
    engine = make_engine(db_url)
    sessionmaker = make_sessionmaker(engine)
    try:
        js = nc.jetstream()
        await _publish(js, "customer.upserted", {
            "customerId": "c1", "name": "Rahim", "phone": "+8801711000001", "locale": "bn"})
        await _publish(js, "cart.updated", {
            "cartId": "k1", "customerId": "c1",
            "items": [{"productId": "p1", "name": "Panjabi", "quantity": 1, "unitPrice": "1500"}]})
        published = time.monotonic()
        [msg] = await _eventually(select(Message).where(Message.trigger == "abandoned_cart"),
                                  sessionmaker)
        assert time.monotonic() - published < 1 + 5  # abandon_after + a generous margin
        assert msg.channel == "whatsapp" and "Panjabi" in msg.body and msg.customer_id == "c1"
        async with sessionmaker() as s:
            cart = await s.get(Cart, ("store_1", "k1"))
        late = msg.created_at - (cart.updated_at + timedelta(seconds=1))
        assert timedelta(0) <= late < timedelta(seconds=1)  # detected within 1 s of its deadline

        await _publish(js, "order.created", {
            "orderId": "o1", "customerId": "c1", "cartId": "k1", "status": "PAID",
            "total": "1500", "items": [{"productId": "p1", "quantity": 1, "unitPrice": "1500"}]})
        [ab] = await _eventually(select(CartAbandonmentEvent).where(
            CartAbandonmentEvent.status == "RECOVERED"), sessionmaker)
        assert ab.order_id == "o1" and ab.cart_id == "k1"
    finally:
        await nc.close()
        await daemon.stop()
        await engine.dispose()
