"""How a handler asks for a message to be sent: a `Message` row, queued in its transaction.

The delivery pipeline picks queued rows by channel and priority once they are due. The
idempotency key is unique, so asking twice (a race, a redelivered event) queues once.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from stormd.schema.db.upsert import insert_for, upsert_rows
from stormd.schema.marketing.messages import Message


@dataclass
class MessageRequest:
    store_id: str
    customer_id: str | None
    channel: str  # email/sms/whatsapp/push
    to_address: str | None
    body: str
    idempotency_key: str
    subject: str | None = None
    html: str | None = None
    template: str | None = None
    trigger: str | None = None
    campaign_id: str | None = None
    execution_id: int | None = None
    variant: str | None = None
    priority: int = 0
    not_before: datetime | None = None
    marketing: bool = True
    data: dict[str, Any] = field(default_factory=dict)
    cost: Decimal = Decimal(0)
    status: str = "queued"  # "failed" records a message that could not be made (its error)
    error: str | None = None


def _row(request: MessageRequest, now: datetime) -> dict[str, Any]:
    return {
        "store_id": request.store_id, "customer_id": request.customer_id,
        "channel": request.channel, "to_address": request.to_address, "body": request.body,
        "subject": request.subject, "html": request.html, "template": request.template,
        "trigger": request.trigger, "campaign_id": request.campaign_id,
        "execution_id": request.execution_id, "variant": request.variant,
        "idempotency_key": request.idempotency_key, "priority": request.priority,
        "not_before": request.not_before or now, "marketing": request.marketing,
        "data": request.data or None, "cost": request.cost, "status": request.status,
        "error": request.error, "attempts": 0, "created_at": now, "updated_at": now,
    }


def _insert_once(session: AsyncSession):
    return insert_for(session, Message.__table__).on_conflict_do_nothing(
        index_elements=["idempotency_key"])


async def enqueue_message(session: AsyncSession, request: MessageRequest, now: datetime) -> bool:
    """Queue the message; False if its idempotency key was already queued."""
    result = await session.execute(_insert_once(session).values(**_row(request, now)))
    return bool(result.rowcount)


async def enqueue_messages(
    session: AsyncSession, requests: list[MessageRequest], now: datetime
) -> None:
    """Queue many messages in one executemany; keys already queued are skipped."""
    if requests:  # upsert_rows: SQLite's driver path, a fraction of SQLAlchemy's per-row cost
        await upsert_rows(session, Message.__table__, [_row(r, now) for r in requests],
                          ["idempotency_key"], update=False)
