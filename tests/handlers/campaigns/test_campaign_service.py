"""The campaign API over real NATS request/reply (`stormcom.api.campaigns.*`)."""

from __future__ import annotations

import json

import nats
from campaign_data import NOON, STORE, add_customers, add_segment, add_store, customer_row

from stormd.daemon.bus.requests import ApiServer
from stormd.handlers.wiring import build_registry


async def test_admin_drives_a_campaign_over_nats(nats_server, sessionmaker, settings_factory,
                                                 clock):
    clock.set(NOON)
    settings = settings_factory()
    async with sessionmaker() as s:
        await add_store(s)
        await add_customers(s, [customer_row(f"c{i}") for i in range(3)])
        await add_segment(s, "vip", ["c0", "c1", "c2"])
        await s.commit()
    nc = await nats.connect(nats_server)
    server = ApiServer(nc, sessionmaker, settings, clock, build_registry())
    await server.start()

    async def ask(name: str, request: dict) -> dict:
        reply = await nc.request(f"stormcom.api.{name}", json.dumps(request).encode(), timeout=30)
        return json.loads(reply.data)

    try:
        created = await ask("campaigns.create", {"storeId": STORE, "campaign": {
            "name": "Independence Day", "channels": ["whatsapp", "sms"], "segments": ["vip"],
            "template": "independence_day", "discountPercent": 26}})
        cid = created["campaign"]["id"]
        missing = await ask("campaigns.create", {"storeId": STORE, "campaign": {
            "name": "x", "channels": ["sms"], "content": {"sms": {"en": "{{ gift }}"}}}})
        assert "gift" in missing["error"]

        preview = await ask("campaigns.preview", {"storeId": STORE, "id": cid,
                                                  "testData": {"name": "Karim"}})
        assert preview["preview"]["byChannel"] == {"whatsapp": 3}  # first channel of the mix
        assert any("Independence Day: 26% off" in r["body"] for r in preview["rendered"])

        scheduled = await ask("campaigns.schedule", {"storeId": STORE, "id": cid,
                                                     "sendMode": "best_time"})
        assert scheduled["campaign"]["scheduledAt"] == "2026-11-24T08:00:00+00:00"  # 14:00
        paused = await ask("campaigns.pause", {"storeId": STORE, "id": cid})
        assert paused["campaign"]["status"] == "PAUSED"
        listed = await ask("campaigns.list", {"storeId": STORE, "status": "paused"})
        assert [c["id"] for c in listed["campaigns"]] == [cid]
        cancelled = await ask("campaigns.cancel", {"storeId": STORE, "id": cid})
        assert cancelled["campaign"]["status"] == "CANCELLED"
        other_store = await ask("campaigns.get", {"storeId": "s2", "id": cid})
        assert "no campaign" in other_store["error"]
        library = await ask("campaigns.templates", {"storeId": STORE})
        assert len(library["templates"]) >= 18
        saved = await ask("templates.save", {"storeId": STORE, "template": {
            "slug": "bad", "name": "Bad", "content": {"sms": {"en": "{{ x.__class__ }}"}}}})
        assert "__class__" in saved["error"]  # refused when saved, not only when rendered
    finally:
        await server.stop()
        await nc.close()
