"""Storefront e-mail engagement events feed the open and click rates and campaign results."""

from __future__ import annotations

from sqlalchemy import select

import stormd.handlers.shop.engagement  # noqa: F401  (registers the handler)
from stormd.handlers.reporting.kpis import compute_kpis
from stormd.plugins.delivery.enqueue import MessageRequest, enqueue_message
from stormd.schema.marketing.messages import EmailEvent, Message


async def test_opens_and_clicks_from_the_storefront_give_open_and_click_rates(
        handle_event, sessionmaker):
    for message in ("m1", "m2"):
        await handle_event("email.sent", {"messageId": message, "customerId": "c1"})
    await handle_event("email.open", {"messageId": "m1", "customerId": "c1"})
    await handle_event("email.open", {"messageId": "m1", "customerId": "c1"})  # opened twice
    await handle_event("email.click", {"messageId": "m1", "url": "https://shop.example/deal"})
    async with sessionmaker() as s:
        [row] = await compute_kpis(s, "store_1")
    assert row["emails_sent"] == 2
    assert row["email_open_rate"] == 0.5 and row["email_click_rate"] == 0.5


async def test_engagement_with_a_stormd_message_is_credited_to_its_campaign(
        handle_event, sessionmaker, clock):
    async with sessionmaker() as s:
        await enqueue_message(s, MessageRequest(
            store_id="store_1", customer_id="c7", channel="email", to_address="a@example.com",
            body="Eid offer", idempotency_key="k1", campaign_id="42"), clock.now())
        await s.commit()
        message_id = (await s.scalars(select(Message.id))).one()
    await handle_event("email.bounce", {"messageId": str(message_id), "reason": "mailbox full"})
    async with sessionmaker() as s:
        event = (await s.scalars(select(EmailEvent))).one()
    assert (event.type, event.customer_id, event.campaign_id, event.reason) == (
        "BOUNCE", "c7", "42", "mailbox full")
