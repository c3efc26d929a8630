"""Segments in real time through the running daemon: an order published on NATS moves the
customer's segments and `customer.segmented` comes out on `<prefix>.out.<store>.>`."""

from __future__ import annotations

import asyncio
import json
from datetime import timedelta

import nats
from daemon_helpers import envelope, publish

from stormd.config.clock import Clock
from stormd.daemon.runtime.app import Daemon
from stormd.handlers.kernel.context import JobContext
from stormd.handlers.scoring.nightly import run_store
from stormd.handlers.shop.orders import upsert_orders
from stormd.schema.wire.events import OrderCreated

ITEMS = [{"productId": "p1", "category": "Shoes", "quantity": 1, "unitPrice": "100"}]


async def _history(sessionmaker, now):
    """a: two recent orders (vip), b: one 20 days ago (at-risk), c: 200 days ago
    (hibernating)."""
    orders = [("o1", "a", "500", 1), ("o2", "a", "500", 5), ("o3", "b", "300", 20),
              ("o4", "c", "700", 200)]
    async with sessionmaker() as session:
        for order_id, customer, total, days in orders:
            data = OrderCreated.model_validate({"orderId": order_id, "customerId": customer,
                                                "status": "PAID", "total": total,
                                                "items": ITEMS})
            await upsert_orders(session, "store_1", [(data, now - timedelta(days=days))])
        await session.commit()


async def test_order_on_nats_moves_segments_and_publishes_customer_segmented(
        daemon_settings, sessionmaker, nats_server, js):
    settings = daemon_settings()
    now = Clock().now()
    await _history(sessionmaker, now)
    report = await run_store(JobContext(sessionmaker, settings, Clock()), "store_1")
    assert {s: c.members for s, c in report.segments.items()} == {
        "vip": 1, "loyal": 0, "at-risk": 1, "hibernating": 1}

    nc = await nats.connect(nats_server)
    seen: list[dict] = []
    got_all = asyncio.Event()

    async def on_message(msg):
        seen.append(json.loads(msg.data)["data"])
        if len(seen) >= 5:
            got_all.set()

    await nc.subscribe("stormcom.out.store_1.customer.segmented", cb=on_message)
    daemon = Daemon(settings, timer_poll=0.05)
    await daemon.start()
    try:
        # c comes back with a large order: recency 0 -> R5, F2, M5 = 41 -> vip.
        await publish(js, envelope("order.created", {
            "orderId": "o9", "customerId": "c", "status": "PAID", "total": "2000",
            "items": ITEMS}, store="store_1") | {"occurredAt": now.isoformat()})
        await asyncio.wait_for(got_all.wait(), timeout=15)
    finally:
        await daemon.stop()
        await nc.close()
    moves = [(d["segment"], d["change"], d["customerId"]) for d in seen]
    # First the nightly run's entries (from the outbox), then the order's moves.
    assert sorted(moves[:3]) == [("at-risk", "entered", "b"), ("hibernating", "entered", "c"),
                                 ("vip", "entered", "a")]
    assert sorted(moves[3:]) == [("hibernating", "exited", "c"), ("vip", "entered", "c")]
