"""`email.sent|open|click|bounce` from the storefront become EmailEvent rows.

They are what the open and click rates (`stormd kpis`) and a campaign's per-variant
results count. A `messageId` that is one of stormd's own delivery-log ids lends the
event its customer and campaign when the storefront leaves them out; any other id (mail
the storefront sent itself) is recorded as given.
"""

from __future__ import annotations

from sqlalchemy import insert, select

from stormd.handlers.kernel.context import HandlerContext
from stormd.schema.marketing.messages import EmailEvent, Message
from stormd.schema.wire.events import EmailEngagement, Event

EVENT_KIND = {"email.sent": "SENT", "email.open": "OPEN", "email.click": "CLICK",
              "email.bounce": "BOUNCE"}
CHUNK = 1000


def _log_id(message_id: str) -> int | None:
    """The delivery-log id a `messageId` may be (stormd's ids are integers)."""
    return int(message_id) if message_id.isdigit() and len(message_id) <= 18 else None


async def _logged_messages(ctx: HandlerContext, ids: list[int]
                           ) -> dict[int, tuple[str | None, str | None]]:
    """(customer, campaign) of the delivery-log rows with these ids that stormd sent."""
    found: dict[int, tuple[str | None, str | None]] = {}
    for i in range(0, len(ids), CHUNK):
        found.update((row[0], (row[1], row[2])) for row in await ctx.session.execute(
            select(Message.id, Message.customer_id, Message.campaign_id)
            .where(Message.store_id == ctx.store_id, Message.id.in_(ids[i:i + CHUNK]))))
    return found


async def on_email_engagement(ctx: HandlerContext, events: list[Event]) -> None:
    """One lookup of the delivery log for the run, one multi-row insert."""
    datas: list[EmailEngagement] = [e.data for e in events]  # type: ignore[misc]
    wanted = sorted({i for d in datas if d.customer_id is None or d.campaign_id is None
                     if (i := _log_id(d.message_id)) is not None})
    logged = await _logged_messages(ctx, wanted) if wanted else {}
    rows = []
    for event, data in zip(events, datas):
        log_customer, log_campaign = logged.get(_log_id(data.message_id) or -1, (None, None))
        rows.append({
            "store_id": ctx.store_id, "message_id": data.message_id,
            "customer_id": data.customer_id or log_customer,
            "campaign_id": data.campaign_id or log_campaign, "type": EVENT_KIND[event.type],
            "url": data.url, "reason": (data.reason or "")[:500] or None,
            "occurred_at": event.occurred_at})
    await ctx.session.execute(insert(EmailEvent), rows)
