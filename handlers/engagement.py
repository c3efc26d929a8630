"""`email.sent|open|click|bounce` from the storefront (CONTRACT §3) become EmailEvent rows.

They are what the open and click rates (`stormd kpis`) and a campaign's per-variant
results count. A `messageId` that is one of stormd's own delivery-log ids lends the
event its customer and campaign when the storefront leaves them out; any other id (mail
the storefront sent itself) is recorded as given.
"""

from __future__ import annotations

from sqlalchemy import select

from stormd.handlers.context import HandlerContext
from stormd.handlers.events import EmailEngagement, Event
from stormd.handlers.registry import STATE, on_event
from stormd.schema.messages import EmailEvent, Message

EVENT_KIND = {"email.sent": "SENT", "email.open": "OPEN", "email.click": "CLICK",
              "email.bounce": "BOUNCE"}


async def _logged_message(ctx: HandlerContext, message_id: str) -> tuple[str | None, str | None]:
    """(customer, campaign) of the delivery-log row with this id, if stormd sent it."""
    if not message_id.isdigit() or len(message_id) > 18:
        return None, None
    row = (await ctx.session.execute(
        select(Message.customer_id, Message.campaign_id)
        .where(Message.store_id == ctx.store_id, Message.id == int(message_id))
    )).first()
    return (row[0], row[1]) if row else (None, None)


@on_event(*EVENT_KIND, stage=STATE)
async def on_email_engagement(ctx: HandlerContext, event: Event) -> None:
    data: EmailEngagement = event.data  # type: ignore[assignment]
    customer, campaign = data.customer_id, data.campaign_id
    if customer is None or campaign is None:
        logged_customer, logged_campaign = await _logged_message(ctx, data.message_id)
        customer = customer or logged_customer
        campaign = campaign or logged_campaign
    ctx.session.add(EmailEvent(
        store_id=ctx.store_id, message_id=data.message_id, customer_id=customer,
        campaign_id=campaign, type=EVENT_KIND[event.type], url=data.url,
        reason=(data.reason or "")[:500] or None, occurred_at=event.occurred_at))
