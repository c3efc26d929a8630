"""Applying what provider webhooks report to the delivery log, in one transaction.

A status only moves forward (sent -> delivered -> read); a failure or bounce ends it.
Each change updates the Message, its per-channel row (SmsLog, WhatsAppMessage) or adds an
EmailEvent, and publishes `message.status` (and `email.*` for e-mail engagement) out.
A request whose id was applied before is a replay and changes nothing.
"""

from __future__ import annotations

import logging
from datetime import datetime
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession

from stormd.config.settings import Settings
from stormd.plugins import StatusUpdate, WebhookResult
from stormd.plugins.delivery.claims import stage_status_event
from stormd.schema.db.upsert import insert_for
from stormd.schema.marketing.messages import EmailEvent, Message, SmsLog, WhatsAppMessage
from stormd.schema.runtime.inbox import ProcessedEvent
from stormd.schema.wire.envelope import OutEvent, stage_events

log = logging.getLogger("stormd.webhooks")

# Where each reported kind leaves the message, and how far along that is.
MESSAGE_STATUS = {"sent": "sent", "delivered": "delivered", "read": "read", "open": "read",
                  "click": "read", "bounce": "failed", "failed": "failed"}
RANK = {"queued": 0, "sending": 0, "sent": 1, "delivered": 2, "read": 3, "failed": 4}
EMAIL_EVENT = {"delivered": "DELIVERED", "open": "OPEN", "click": "CLICK", "bounce": "BOUNCE",
               "complaint": "COMPLAINT", "failed": "BOUNCE"}
EMAIL_OUT = {"open": "email.open", "click": "email.click", "bounce": "email.bounce"}


async def first_delivery(session: AsyncSession, provider: str, delivery_id: str,
                         now: datetime) -> bool:
    """Record the webhook request id; False if it was seen before (a replay)."""
    key = f"webhook:{provider}:{delivery_id}"[:128]
    stmt = insert_for(session, ProcessedEvent).values(
        event_id=key, store_id="_", type=f"webhook.{provider}"[:64], processed_at=now,
    ).on_conflict_do_nothing(index_elements=["store_id", "event_id"])
    return bool((await session.execute(stmt)).rowcount)


async def apply_webhook(session: AsyncSession, settings: Settings, provider: str,
                        result: WebhookResult, now: datetime) -> int | None:
    """Apply a verified webhook; the number of messages it changed, or None for a replay."""
    if result.delivery_id and not await first_delivery(session, provider, result.delivery_id,
                                                       now):
        return None
    ids = {u.external_id for u in result.updates}
    if not ids:
        return 0
    found = {m.external_id: m for m in await session.scalars(
        select(Message).where(Message.provider == provider, Message.external_id.in_(ids)))}
    changed = 0
    for update_ in result.updates:
        message = found.get(update_.external_id)
        if message is None:
            log.info("webhook %s: no message with provider id %s", provider,
                     update_.external_id)
            continue
        changed += await _apply(session, settings, message, update_, now)
    return changed


async def _apply(session: AsyncSession, settings: Settings, m: Message, u: StatusUpdate,
                 now: datetime) -> int:
    at = u.occurred_at or now
    prefix = settings.nats.subject_prefix
    if m.channel == "email" and u.kind in EMAIL_EVENT:
        session.add(EmailEvent(store_id=m.store_id, message_id=str(m.id),
                               customer_id=m.customer_id, campaign_id=m.campaign_id,
                               type=EMAIL_EVENT[u.kind], url=u.url,
                               reason=(u.reason or "")[:500] or None, occurred_at=at))
        if u.kind in EMAIL_OUT:
            data: dict[str, Any] = {"messageId": str(m.id), "customerId": m.customer_id,
                                    "campaignId": m.campaign_id}
            if u.url:
                data["url"] = u.url
            if u.reason:
                data["reason"] = u.reason
            await stage_events(session, prefix, [OutEvent(m.store_id, EMAIL_OUT[u.kind], data, now)])
    new = MESSAGE_STATUS.get(u.kind)
    if new is None or RANK.get(new, 0) <= RANK.get(m.status, 0):
        return 0
    error = (u.reason or u.error_code or None) if new == "failed" else m.error
    await session.execute(update(Message).where(Message.id == m.id).values(
        status=new, error=error, updated_at=now))
    m.status = new
    await _detail_row(session, m, new, u, at)
    await stage_status_event(session, m, new, m.provider, now, prefix)
    return 1


async def _detail_row(session: AsyncSession, m: Message, status: str, u: StatusUpdate,
                      at: datetime) -> None:
    if m.channel == "sms":
        values: dict[str, Any] = {"status": status.upper()}
        if status == "delivered":
            values["delivered_at"] = at
        if u.error_code:
            values["error_code"] = u.error_code
        await session.execute(update(SmsLog).where(SmsLog.message_id == m.id).values(**values))
    elif m.channel == "whatsapp":
        values = {"status": status.upper()}
        if status == "delivered":
            values["delivered_at"] = at
        if status == "read":
            values["read_at"] = at
        if u.error_code:
            values["error_code"] = u.error_code
        await session.execute(
            update(WhatsAppMessage).where(WhatsAppMessage.message_id == m.id).values(**values))
