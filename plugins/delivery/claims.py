"""The delivery log as a work queue: claiming due messages and recording outcomes.

A claim turns due `queued` rows into `sending` (attempts + 1) with a lease: while a row is
`sending`, its `not_before` is the lease's end. A process killed mid-send leaves the row
`sending`; once the lease ends it is claimed again and resent with the same idempotency
key, so nothing is lost and an idempotent provider sees it once. PostgreSQL claims with
`FOR UPDATE SKIP LOCKED`, so several stormd processes share the queue; SQLite serialises
writers, which gives the same guarantee.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

from sqlalchemy import bindparam, insert, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from stormd.plugins.delivery.push_tokens import GONE_CODES, forget_push_tokens
from stormd.schema.db.executemany import execute_rows
from stormd.schema.marketing.messages import (
    EmailEvent,
    Message,
    SmsLog,
    SmsProvider,
    WhatsAppMessage,
)
from stormd.schema.wire.envelope import OutEvent, stage_events

CLAIMABLE = ("queued", "sending")
FINAL = ("sent", "failed", "cancelled")


def _due(now: datetime) -> Any:
    """Messages that may be claimed now, highest priority first."""
    return (select(Message.id, Message.status, Message.provider)
            .where(Message.status.in_(CLAIMABLE), Message.not_before <= now)
            .order_by(Message.priority.desc(), Message.not_before, Message.id))


async def any_due(session: AsyncSession, now: datetime) -> bool:
    """Whether a message may be claimed now: a plain read, so an idle poll does not take
    the write lock that `claim_due`'s transaction starts with."""
    return (await session.execute(_due(now).limit(1))).first() is not None


async def claim_due(session: AsyncSession, now: datetime, lease: timedelta,
                    limit: int) -> tuple[list[Any], dict[int, str]]:
    """Claim up to `limit` due messages, highest priority first.

    Returns read-only rows with the `messages` columns as attributes (Core rows: tens of
    thousands a second need no ORM identity map), and the messages in doubt: those whose
    lease ran out while a provider that cannot de-duplicate was being called (see
    `mark_calling`), by that provider's name."""
    due = _due(now).limit(limit)
    if session.bind.dialect.name == "postgresql":
        due = due.with_for_update(skip_locked=True)
    found = (await session.execute(due)).all()
    if not found:
        return [], {}
    in_doubt = {r.id: r.provider for r in found if r.status == "sending" and r.provider}
    table = Message.__table__
    stmt = (
        update(table)
        # Re-checked, so a row another process claimed since the select is left alone.
        .where(table.c.id.in_([r.id for r in found]), table.c.status.in_(CLAIMABLE),
               table.c.not_before <= now)
        .values(status="sending", attempts=table.c.attempts + 1, not_before=now + lease,
                provider=None, updated_at=now)
        .returning(*table.c)
    )
    rows = list((await session.execute(stmt)).all())
    rows.sort(key=lambda m: (-m.priority, m.id))
    return rows, {r.id: in_doubt[r.id] for r in rows if r.id in in_doubt}


async def mark_calling(session: AsyncSession, calls: list[tuple[int, str]]) -> None:
    """Record, before the call, which provider a claimed message is being sent through.

    Only for providers that cannot de-duplicate: if the process dies during the call, the
    next claim finds the mark and ends the message as failed ("outcome unknown") instead
    of risking a second copy to the customer."""
    table = Message.__table__
    await session.execute(
        update(table).where(table.c.id == bindparam("_id")).values(provider=bindparam("p")),
        [{"_id": message_id, "p": provider} for message_id, provider in calls])


@dataclass
class Outcome:
    """What became of one claimed message; written in batches by `record_outcomes`."""

    message: Any  # a claimed `messages` row
    status: str  # sent / failed / cancelled / queued (retry later)
    provider: str | None = None
    external_id: str | None = None
    cost: Decimal = Decimal(0)
    segments: int | None = None
    encoding: str | None = None
    error: str | None = None
    error_code: str | None = None
    not_before: datetime | None = None
    count_attempt: bool = True  # False: deferred without trying (every circuit open)
    held: bool = False  # queued again by quiet hours or Friday prayer, never tried
    reached_provider: bool = False
    to: str | None = None  # the address the provider was given
    body: str | None = None  # the text the provider was given, when not the queued body

    @property
    def counted_as(self) -> str:
        """The `status` label of stormd_messages_total: `queued` again is a `retry`, or
        `held` when the send window put it off (not a failure, so no alert should see it)."""
        if self.status != "queued":
            return self.status
        return "held" if self.held else "retry"


async def record_outcomes(session: AsyncSession, outcomes: list[Outcome], now: datetime,
                          prefix: str) -> None:
    """Write outcomes with their per-channel detail rows and `message.status` events."""
    if not outcomes:
        return
    params = []
    for o in outcomes:
        m = o.message
        params.append({
            "_id": m.id, "status": o.status, "provider": o.provider or m.provider,
            "external_id": o.external_id, "cost": o.cost,
            "segments": o.segments if o.segments is not None else m.segments,
            "error": (o.error or "")[:500] or None,
            "not_before": o.not_before or m.not_before,
            "attempts": m.attempts if o.count_attempt else m.attempts - 1,
            "sent_at": now if o.status == "sent" else None, "updated_at": now,
        })
    table = Message.__table__
    await execute_rows(session, update(table).where(table.c.id == bindparam("_id")).values(
        {c: bindparam(c) for c in params[0] if c != "_id"}), "outcomes", params)
    sms, whatsapp, email = [], [], []
    for o in outcomes:
        if o.status not in ("sent", "failed") or not o.reached_provider:
            continue
        m, sent = o.message, o.status == "sent"
        common = {"store_id": m.store_id, "message_id": m.id, "campaign_id": m.campaign_id,
                  "customer_id": m.customer_id, "external_id": o.external_id,
                  "cost": o.cost, "error_code": o.error_code, "created_at": now,
                  "sent_at": now if sent else None}
        if m.channel == "sms":
            sms.append({**common, "provider": o.provider, "phone_number": m.to_address or "",
                        "message": o.body or m.body, "encoding": o.encoding or "GSM-7",
                        "segments": o.segments or 0, "status": "SENT" if sent else "FAILED"})
        elif m.channel == "whatsapp":
            whatsapp.append({**common, "template_name": m.template or "",
                             "phone_number": m.to_address or "", "variables": m.data,
                             "status": "SENT" if sent else "FAILED"})
        elif m.channel == "email" and sent:
            email.append({"store_id": m.store_id, "message_id": str(m.id),
                          "customer_id": m.customer_id, "campaign_id": m.campaign_id,
                          "type": "SENT", "occurred_at": now})
    await execute_rows(session, insert(SmsLog.__table__), "sms_log", sms)
    await execute_rows(session, insert(WhatsAppMessage.__table__), "whatsapp_log", whatsapp)
    await execute_rows(session, insert(EmailEvent.__table__), "email_sent", email)
    await forget_push_tokens(session, [
        (o.message.store_id, o.message.customer_id, o.to) for o in outcomes
        if o.message.channel == "push" and o.error_code in GONE_CODES
        and o.message.customer_id and o.to])
    await stage_events(session, prefix, [status_event(o.message, o.status, o.provider, now)
                                         for o in outcomes if o.status in FINAL])


def _status_data(message: Any, status: str, provider: str | None) -> dict[str, Any]:
    data: dict[str, Any] = {
        "messageId": str(message.id), "customerId": message.customer_id,
        "channel": message.channel, "provider": provider or message.provider,
        "status": status,
    }
    if message.campaign_id:
        data["campaignId"] = message.campaign_id
    if message.trigger:
        data["trigger"] = message.trigger
    return data


def status_event(message: Any, status: str, provider: str | None, now: datetime) -> OutEvent:
    """`message.status` out: what became of a message (docs/events.md)."""
    return OutEvent(message.store_id, "message.status", _status_data(message, status, provider),
                    now)


async def stage_status_event(session: AsyncSession, message: Any, status: str,
                             provider: str | None, now: datetime, prefix: str) -> None:
    """One `message.status` event out, in the caller's transaction."""
    await stage_events(session, prefix, [status_event(message, status, provider, now)])


async def reserve_credit(session: AsyncSession, store_id: str, provider: str,
                         segments: int) -> tuple[bool, Decimal | None]:
    """Take `segments` from the store's prepaid SMS credit with `provider`.

    (True, rate) when taken, (True, None) when the store keeps no account with the
    provider (unmetered), (False, rate) when the credit would go below zero."""
    taken = await session.execute(
        update(SmsProvider)
        .where(SmsProvider.store_id == store_id, SmsProvider.provider == provider,
               SmsProvider.is_active.is_(True), SmsProvider.credit_balance >= segments)
        .values(credit_balance=SmsProvider.credit_balance - segments)
        .returning(SmsProvider.rate_per_sms)
    )
    rate = taken.scalar_one_or_none()
    if rate is not None:
        return True, rate
    account = await session.scalar(
        select(SmsProvider.rate_per_sms).where(SmsProvider.store_id == store_id,
                                               SmsProvider.provider == provider))
    return (account is None), account


async def refund_credit(session: AsyncSession, store_id: str, provider: str,
                        segments: int) -> None:
    await session.execute(
        update(SmsProvider)
        .where(SmsProvider.store_id == store_id, SmsProvider.provider == provider)
        .values(credit_balance=SmsProvider.credit_balance + segments)
    )
