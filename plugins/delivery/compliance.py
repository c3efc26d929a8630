"""Send-time checks and dressing of claimed messages, one query per question per batch.

Consent may have changed since the message was queued, so it is checked again here for
marketing messages; a marketing message that comes due in quiet hours or Friday prayer (in
its store's time zone; a retry or a slow queue can push it there) is held to the window's
end, neither sent nor dropped; the SMS do-not-disturb list is honoured for every SMS; each store's
sender id is applied; every marketing e-mail gets an unsubscribe link and a signed
preference-centre token; WhatsApp messages carry their template's approval status.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import select, tuple_
from sqlalchemy.ext.asyncio import AsyncSession

from stormd.config.settings import Settings
from stormd.plugins import Outgoing
from stormd.plugins.delivery.claims import Outcome
from stormd.plugins.policy.eligibility import Reach, load_reach
from stormd.plugins.policy.preferences import preferences_url
from stormd.plugins.policy.send_time import SendWindow, configured_window
from stormd.plugins.policy.sms_fit import fit_sms
from stormd.schema.marketing.messages import Message, SmsProvider, WhatsAppTemplate
from stormd.schema.shop.customers import DndNumber
from stormd.schema.shop.stores import Store


@dataclass
class Ready:
    """A claimed message that passed the checks, with what its provider will receive."""

    message: Any  # a claimed `messages` row (plugins/delivery/claims.py)
    outgoing: Outgoing
    skip_providers: set[str] = field(default_factory=set)
    metered: frozenset[str] = frozenset()  # SMS providers the store keeps prepaid credit with


async def prepare(session: AsyncSession, settings: Settings, key: bytes,
                  claimed: list[Any], now: datetime) -> tuple[list[Ready], list[Outcome]]:
    """Split claimed messages into those to send and those ended (cancelled/failed) or
    held (queued again for later) here."""
    reach = await _reach(session, claimed)
    dnd = await _dnd(session, [m for m in claimed if m.channel == "sms"])
    senders, zones = await _stores(session, {m.store_id for m in claimed})
    windows = _send_windows(settings, zones, {m.store_id for m in claimed if m.marketing})
    templates = await _templates(session, [m for m in claimed if m.channel == "whatsapp"])
    accounts = await _sms_accounts(session, {m.store_id for m in claimed if m.channel == "sms"})
    ready: list[Ready] = []
    ended: list[Outcome] = []
    for m in claimed:
        if m.attempts > settings.delivery.max_attempts:
            ended.append(Outcome(m, "failed", error=f"gave up after {m.attempts - 1} attempts "
                                 "(lease expired each time)"))
            continue
        person = reach.get((m.store_id, m.customer_id))
        if m.marketing and person is not None and not person.consent.get(m.channel, False):
            ended.append(Outcome(m, "cancelled", error=f"customer opted out of {m.channel}"))
            continue
        to = m.to_address or (person.address(m.channel) if person else None)
        if not to:
            ended.append(Outcome(m, "failed", error=f"no {m.channel} address"))
            continue
        if m.channel == "sms" and (m.store_id, to) in dnd:
            ended.append(Outcome(m, "cancelled", error="number is on the do-not-disturb list"))
            continue
        held_until = windows[m.store_id].next_allowed(now) if m.marketing else now
        if held_until > now:
            ended.append(Outcome(m, "queued", not_before=held_until, count_attempt=False,
                                 held=True, error="held: quiet hours or Friday prayer"))
            continue
        ready.append(Ready(m, _outgoing(settings, key, m, to, person, senders, templates),
                           metered=accounts.get(m.store_id, frozenset())))
    return ready, ended


def _outgoing(settings: Settings, key: bytes, m: Message, to: str, person: Reach | None,
              senders: dict[str, str], templates: dict) -> Outgoing:
    locale = (m.data or {}).get("locale") or (person.locale if person else "bn")
    body, html, headers = m.body, m.html, {}
    data = dict(m.data or {})
    if m.channel == "email" and m.marketing and m.customer_id:
        url = preferences_url(settings, key, m.store_id, m.customer_id)
        headers = {"List-Unsubscribe": f"<{url}>",
                   "List-Unsubscribe-Post": "List-Unsubscribe=One-Click"}
        body = f"{body}\n\n--\nUnsubscribe or change your preferences: {url}"
        if html:
            html = (f'{html}\n<p style="font-size:12px;color:#666">'
                    f'<a href="{url}">Unsubscribe or change your preferences</a></p>')
    if m.channel == "sms":
        body = fit_sms(body, data)
    if m.channel == "whatsapp":
        found = templates.get((m.store_id, m.template, locale)) or templates.get(
            (m.store_id, m.template, None))
        if found is not None:
            data["whatsapp_template"] = found
    return Outgoing(
        message_id=m.id, store_id=m.store_id, channel=m.channel, to=to, body=body,
        idempotency_key=m.idempotency_key, subject=m.subject, html=html, template=m.template,
        locale=locale, customer_id=m.customer_id, campaign_id=m.campaign_id,
        trigger=m.trigger, sender_id=senders.get(m.store_id), marketing=m.marketing,
        headers=headers, data=data,
    )


async def _reach(session: AsyncSession, claimed: list[Any]) -> dict[tuple, Reach]:
    by_store: dict[str, set[str]] = defaultdict(set)
    for m in claimed:  # consent matters for marketing; the address when none was given
        if m.customer_id and (m.marketing or not m.to_address):
            by_store[m.store_id].add(m.customer_id)
    found: dict[tuple, Reach] = {}
    for store_id, ids in by_store.items():
        for cid, r in (await load_reach(session, store_id, ids)).items():
            found[(store_id, cid)] = r
    return found


async def _dnd(session: AsyncSession, sms: list[Any]) -> set[tuple[str, str]]:
    pairs = {(m.store_id, m.to_address) for m in sms if m.to_address}
    phones = {p for _, p in pairs}
    if not phones:
        return set()
    rows = await session.execute(
        select(DndNumber.store_id, DndNumber.phone).where(DndNumber.phone.in_(phones)))
    return {(s, p) for s, p in rows}


async def _sms_accounts(session: AsyncSession, stores: set[str]) -> dict[str, frozenset[str]]:
    """Per store, the SMS providers it has an account (prepaid credit) with."""
    if not stores:
        return {}
    found: dict[str, set[str]] = defaultdict(set)
    rows = await session.execute(
        select(SmsProvider.store_id, SmsProvider.provider).where(SmsProvider.store_id.in_(stores)))
    for store_id, provider in rows:
        found[store_id].add(provider)
    return {s: frozenset(p) for s, p in found.items()}


async def _stores(session: AsyncSession,
                  stores: set[str]) -> tuple[dict[str, str], dict[str, str]]:
    """Each store's sender id (where it has one) and time zone."""
    rows = (await session.execute(
        select(Store.id, Store.sender_id, Store.timezone).where(Store.id.in_(stores)))).all()
    return ({s: sender for s, sender, _ in rows if sender},
            {s: zone for s, _, zone in rows if zone})


def _send_windows(settings: Settings, zones: dict[str, str],
                  stores: set[str]) -> dict[str, SendWindow]:
    """The marketing send window of each store, in its own time zone (else daemon's)."""
    made: dict[str, SendWindow] = {}
    windows: dict[str, SendWindow] = {}
    for store_id in stores:
        zone = zones.get(store_id, settings.daemon.timezone)
        if zone not in made:
            try:
                made[zone] = configured_window(settings, zone)
            except (ValueError, KeyError):  # an unknown zone name: the daemon's zone
                made[zone] = configured_window(settings)
        windows[store_id] = made[zone]
    return windows


async def _templates(session: AsyncSession, messages: list[Any]) -> dict:
    keys = {(m.store_id, m.template) for m in messages if m.template}
    if not keys:
        return {}
    rows = await session.scalars(
        select(WhatsAppTemplate).where(
            tuple_(WhatsAppTemplate.store_id, WhatsAppTemplate.name).in_(keys)))
    found: dict[tuple, dict] = {}
    for t in rows:
        entry = {"name": t.name, "language": t.language, "status": t.status,
                 "category": t.category, "header_type": t.header_type,
                 "header_content": t.header_content}
        found[(t.store_id, t.name, t.language)] = entry
        found.setdefault((t.store_id, t.name, None), entry)
    return found
