"""Who may be sent what, and on which channel: consent, contact, caps and cooldowns.

Every automation and campaign asks the same questions before it queues a marketing
message, so they are answered here once, in batches (one query per question for many
customers, never a query per customer):

- `load_reach` / `Reach`: can the customer be reached on a channel (consent, an address,
  not on the SMS do-not-disturb list), and which channel to fall back to;
- `reachable_clause`: the same rule as SQL, for set-based audience queries;
- `sent_today`: messages already queued today (local day) against the daily cap;
- `recently_triggered`: the same trigger (and template) within a cooldown;
- `recent_offer_holders`: customers given a discount code within the offer cooldown.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import ColumnElement, and_, func, not_, or_, select
from sqlalchemy.ext.asyncio import AsyncSession

from stormd.config.channels import CHANNELS, Channel
from stormd.plugins.policy.send_time import local_day_bounds
from stormd.schema.db.inlist import in_values
from stormd.schema.marketing.messages import Message
from stormd.schema.shop.customers import Customer, DndNumber
from stormd.schema.shop.promotions import DiscountCode

# The order fallbacks wrap round in (the cost plan: WhatsApp first, then SMS, e-mail, push).
FALLBACK = (Channel.WHATSAPP, Channel.SMS, Channel.EMAIL, Channel.PUSH)
# Statuses of a message that never reached the customer: they count against no cap.
NOT_DELIVERED = ("cancelled", "failed")
# Bound parameters per IN (...) list; keeps SQLite and asyncpg well inside their limits.
CHUNK = 5000


def fallback_order(preferred: str) -> tuple[str, ...]:
    """`preferred` first, then the others in FALLBACK order after it (wrapping round)."""
    if preferred not in FALLBACK:
        raise ValueError(f"unknown channel {preferred!r}; expected one of {', '.join(CHANNELS)}")
    i = FALLBACK.index(preferred)
    return FALLBACK[i:] + FALLBACK[:i]


@dataclass(frozen=True)
class Reach:
    """How one customer can be reached: addresses, consent, and the SMS DND list."""

    customer_id: str
    name: str | None = None
    locale: str = "bn"
    email: str | None = None
    phone: str | None = None
    push_tokens: tuple[str, ...] = ()
    consent: Mapping[str, bool] = field(default_factory=dict)
    dnd: bool = False

    def address(self, channel: str) -> str | None:
        """The address a message on `channel` goes to, or None without one."""
        if channel == "email":
            return self.email
        if channel in ("sms", "whatsapp"):
            return self.phone
        if channel == "push":
            return self.push_tokens[0] if self.push_tokens else None
        raise ValueError(f"unknown channel {channel!r}")

    def reachable(self, channel: str) -> bool:
        if not self.consent.get(channel, False) or not self.address(channel):
            return False
        return not (channel == "sms" and self.dnd)

    def channels(self) -> list[str]:
        return [c for c in CHANNELS if self.reachable(c)]

    def pick(self, preferred: str) -> str | None:
        """`preferred` if reachable, else the next reachable channel, else None (skip)."""
        return next((c for c in fallback_order(preferred) if self.reachable(c)), None)


def _chunks(values: Iterable[Any]) -> Iterable[list[Any]]:
    items = list(dict.fromkeys(values))
    for i in range(0, len(items), CHUNK):
        yield items[i:i + CHUNK]


async def load_reach(
    session: AsyncSession, store_id: str, customer_ids: Iterable[str]
) -> dict[str, Reach]:
    """Reach of each known customer (unknown ids are absent: nobody to message)."""
    found: dict[str, Reach] = {}
    c, d = Customer.__table__.c, DndNumber.__table__.c  # Core columns: no ORM row loading
    for chunk in _chunks(customer_ids):
        rows = await session.execute(
            select(c.customer_id, c.name, c.locale, c.email, c.phone, c.push_tokens,
                   c.consent_email, c.consent_sms, c.consent_whatsapp, c.consent_push,
                   d.phone.label("dnd_phone"))
            .select_from(Customer.__table__.outerjoin(
                DndNumber.__table__, and_(d.store_id == c.store_id, d.phone == c.phone)))
            .where(c.store_id == store_id, in_values(c.customer_id, chunk))
        )
        for r in rows:
            found[r.customer_id] = Reach(
                customer_id=r.customer_id, name=r.name, locale=r.locale or "bn",
                email=r.email, phone=r.phone,
                push_tokens=tuple(str(t) for t in (r.push_tokens or ())),
                consent={"email": r.consent_email, "sms": r.consent_sms,
                         "whatsapp": r.consent_whatsapp, "push": r.consent_push},
                dnd=r.dnd_phone is not None,
            )
    return found


def reachable_clause(channel: str) -> ColumnElement[bool]:
    """SQL for "this Customer row may get a marketing message on `channel`"."""
    if channel == "email":
        return and_(Customer.consent_email.is_(True), Customer.email.is_not(None),
                    Customer.email != "")
    if channel == "whatsapp":
        return and_(Customer.consent_whatsapp.is_(True), Customer.phone.is_not(None))
    if channel == "sms":
        on_dnd = select(DndNumber.phone).where(
            DndNumber.store_id == Customer.store_id, DndNumber.phone == Customer.phone
        ).exists()
        return and_(Customer.consent_sms.is_(True), Customer.phone.is_not(None), not_(on_dnd))
    if channel == "push":
        return and_(Customer.consent_push.is_(True), Customer.push_tokens.is_not(None))
    raise ValueError(f"unknown channel {channel!r}")


def any_channel_clause() -> ColumnElement[bool]:
    """SQL for "reachable on at least one channel"."""
    return or_(*(reachable_clause(c) for c in CHANNELS))


async def sent_today(
    session: AsyncSession, store_id: str, customer_ids: Iterable[str], now: datetime,
    tz: ZoneInfo,
) -> dict[str, int]:
    """Marketing messages queued for each customer since local midnight (the daily cap's
    count); customers with none are absent."""
    start, end = local_day_bounds(now, tz)
    counts: dict[str, int] = {}
    for chunk in _chunks(customer_ids):
        rows = await session.execute(
            select(Message.customer_id, func.count())
            .where(Message.store_id == store_id, in_values(Message.customer_id, chunk),
                   Message.marketing.is_(True), Message.created_at >= start,
                   Message.created_at < end, Message.status.not_in(NOT_DELIVERED))
            .group_by(Message.customer_id)
        )
        counts.update({cid: n for cid, n in rows})
    return counts


async def recently_triggered(
    session: AsyncSession, store_id: str, customer_ids: Iterable[str], trigger: str,
    since: datetime, template: str | None = None,
) -> set[str]:
    """Customers sent a message of `trigger` (and `template`, if given) at or after `since`:
    the same-trigger cooldown."""
    hit: set[str] = set()
    for chunk in _chunks(customer_ids):
        query = select(Message.customer_id).distinct().where(
            Message.store_id == store_id, in_values(Message.customer_id, chunk),
            Message.trigger == trigger, Message.created_at >= since,
            Message.status.not_in(NOT_DELIVERED),
        )
        if template is not None:
            query = query.where(Message.template == template)
        hit.update((await session.scalars(query)).all())
    return hit


async def recent_offer_holders(
    session: AsyncSession, store_id: str, customer_ids: Iterable[str], since: datetime,
    own_cart: Mapping[str, str | None] | None = None,
) -> set[str]:
    """Customers issued a discount code at or after `since` (the offer cooldown).

    A code for the customer's own cart (`own_cart[customer_id]`) does not count, so a
    recovery's escalating offers (5 %, then 10 %) are one offer, not two.
    """
    own_cart = own_cart or {}
    held: set[str] = set()
    for chunk in _chunks(customer_ids):
        rows = await session.execute(
            select(DiscountCode.customer_id, DiscountCode.cart_id)
            .where(DiscountCode.store_id == store_id, in_values(DiscountCode.customer_id, chunk),
                   DiscountCode.created_at >= since)
        )
        for cid, cart_id in rows:
            if cart_id is None or cart_id != own_cart.get(cid):
                held.add(cid)
    return held


def over_cap(counts: Mapping[str, int], customer_id: str, cap: int) -> bool:
    """True when the customer has had `cap` messages today (a cap of 0 blocks all)."""
    return counts.get(customer_id, 0) >= cap

