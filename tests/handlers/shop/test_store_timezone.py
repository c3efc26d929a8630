"""A store first heard of takes the daemon's time zone (`daemon.timezone`), whatever it is."""

from __future__ import annotations

import json

import pytest

from stormd.handlers.kernel.context import HandlerContext
from stormd.schema.shop.stores import Store
from stormd.schema.wire.events import parse_event


@pytest.mark.parametrize("zone", ["Europe/London", "Asia/Dhaka"])
async def test_a_new_store_gets_the_daemon_time_zone(sessionmaker, settings_factory, clock,
                                                    registry, zone):
    settings = settings_factory(daemon={"timezone": zone})
    envelope = {"id": "e1", "type": "customer.upserted", "storeId": "store_new",
                "occurredAt": clock.now().isoformat(), "data": {"customerId": "c1"}}
    event = parse_event("stormcom.events.store_new.customer.upserted",
                        json.dumps(envelope).encode(), "stormcom", clock.now())
    async with sessionmaker() as session:
        await registry.dispatch_event(HandlerContext(session, settings, clock, "store_new",
                                                     registry=registry), event)
        await session.commit()
    async with sessionmaker() as session:
        assert (await session.get(Store, "store_new")).timezone == zone
