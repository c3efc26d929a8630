"""The one path every campaign and automation message takes into the delivery queue.

Given a batch of customers (their `Reach`), it picks each one's channel (among the
sender's channels the customer can receive and the template has a body for: the cheapest
for this message, or the first listed), applies the daily cap (`on_cap` "defer" to the
next allowed day or "drop"; transactional messages are exempt) and the offer cooldown (a
sender that gives codes leaves out whoever had another code within
`limits.offer_cooldown`: "offer_cooldown"), issues discount codes, renders in the
customer's locale with templates compiled once, prices each message, and queues `Message`
rows in executemany batches. A key already queued is skipped before any code is issued,
so a redelivery adds nothing.

A merchant's body (a store template, a campaign's content) renders in the render worker,
the batch's messages in one round trip; one that fails to render (a missing variable, a
limit) fails that message alone: it is recorded as a `failed` message with the reason and
its recipient's status is "failed", never an error for the whole batch or its event.
"""

from __future__ import annotations

import hashlib
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from stormd.config.settings import Settings
from stormd.handlers.outreach.costs import UnitCosts
from stormd.handlers.outreach.discounts import CodeRequest, issue_codes, new_code
from stormd.handlers.outreach.send_slots import next_allowed_day, store_send_window
from stormd.handlers.outreach.templates import (
    OPTIONS,
    CompiledTemplate,
    Rendered,
    TemplateError,
    compile_source,
    compiled_system,
    sms_segment_limit,
    system_library,
)
from stormd.plugins.delivery.enqueue import MessageRequest, enqueue_messages
from stormd.plugins.policy.eligibility import Reach, over_cap, recent_offer_holders, sent_today
from stormd.plugins.policy.routing import route
from stormd.plugins.policy.sms_fit import fit_sms
from stormd.schema.marketing.campaigns import CampaignTemplate
from stormd.schema.marketing.messages import Message
from stormd.schema.shop.stores import Store

INSERT_CHUNK = 1000


@dataclass(frozen=True)
class StoreProfile:
    """What rendering and guarding need to know about a store (defaults if unseen)."""

    store_id: str
    name: str
    timezone: str
    currency: str
    min_roi: Decimal
    monthly_budget: Decimal | None

    @property
    def tz(self) -> ZoneInfo:
        return ZoneInfo(self.timezone)


async def store_profile(session: AsyncSession, settings: Settings, store_id: str) -> StoreProfile:
    store = await session.get(Store, store_id)
    return StoreProfile(
        store_id=store_id,
        name=(store.name if store and store.name else store_id),
        timezone=(store.timezone if store and store.timezone else settings.daemon.timezone),
        currency=(store.currency if store and store.currency else "BDT"),
        min_roi=(store.min_roi if store and store.min_roi is not None else Decimal(10)),
        monthly_budget=store.monthly_budget if store else None,
    )


class TemplateSet:
    """The bodies one sender uses: inline content, else the store's own template of that
    slug, else the system library's; each (channel, locale) compiled once. The content's
    top-level keys are channels (plus `email_html`) and the template's OPTIONS."""

    def __init__(self, slug: str | None, content: dict[str, dict[str, str]] | None = None,
                 label: str | None = None):
        self.slug = slug
        self.content = content or {}
        self.label = label or slug or "inline"
        self._compiled: dict[tuple[str, str], CompiledTemplate] = {}

    @property
    def local(self) -> bool:
        """Whether the bodies are the system library's (rendered here) rather than a
        merchant's (rendered in the worker)."""
        return not self.content

    def channels(self) -> set[str]:
        found = set(self.content) - {"email_html", *OPTIONS}
        if self.slug and self.slug in system_library() and not self.content:
            found |= set(system_library()[self.slug].bodies)
        return found

    @property
    def sms_max_segments(self) -> int | None:
        """How many parts an SMS of this template may take (trimmed at send time), if said."""
        if self.content:
            return sms_segment_limit(self.content.get("sms_max_segments"),
                                     f"template {self.label!r}: sms_max_segments")
        template = system_library().get(self.slug or "")
        return template.sms_max_segments if template else None

    def _source(self, channel: str, locale: str) -> str | None:
        by_locale = self.content.get(channel) or {}
        for loc in (locale, "en", "bn"):
            if loc in by_locale:
                return by_locale[loc]
        return None

    def get(self, channel: str, locale: str) -> CompiledTemplate:
        key = (channel, locale)
        if key not in self._compiled:
            source = self._source(channel, locale)
            if source is not None:
                html = (self.content.get("email_html") or {}).get(locale) if channel == "email" else None
                self._compiled[key] = compile_source(source, channel, f"{self.label}/{channel}.{locale}",
                                                     html_source=html)
            elif self.slug and not self.content:
                self._compiled[key] = compiled_system(self.slug, channel, locale)
            else:
                raise TemplateError(f"template {self.label!r} has no {channel} body")
        return self._compiled[key]

    def locales(self, channel: str) -> list[str]:
        if channel in self.content:
            return sorted(self.content[channel])
        if self.slug in system_library():
            return sorted(system_library()[self.slug].bodies.get(channel, {}))
        return []


async def load_templates(session: AsyncSession, store_id: str, slug: str | None,
                         content: dict[str, Any] | None = None) -> TemplateSet:
    """The template set for a slug (the store's own row overrides the system one) or for
    inline content."""
    if content:
        return TemplateSet(slug, content)
    if slug is None:
        raise TemplateError("no template and no content given")
    row = (await session.execute(
        select(CampaignTemplate.default_content)
        .where(CampaignTemplate.store_id == store_id, CampaignTemplate.slug == slug)
    )).scalar()
    if row:
        return TemplateSet(slug, row)
    if slug not in system_library():
        raise TemplateError(f"no template {slug!r} (neither the store's nor a system one)")
    return TemplateSet(slug)


def standard_variables(reach: Reach, store: StoreProfile, settings: Settings) -> dict[str, Any]:
    """Variables every template may use without the sender providing them."""
    name = reach.name
    return {
        "name": name, "first_name": (name.split() or [None])[0] if name else None,
        "customer_id": reach.customer_id, "locale": reach.locale,
        "store_name": store.name, "currency": store.currency,
        "shop_url": settings.automations.shop_url.format(store=store.store_id),
    }


STANDARD_NAMES = frozenset({"name", "first_name", "customer_id", "locale", "store_name",
                            "currency", "shop_url"})
DISCOUNT_NAMES = frozenset({"discount_code", "discount_percent"})  # when a code is issued


KEY_LENGTH = 200  # Message.idempotency_key, AutomationExecution.idempotency_key


def bounded_key(key: str) -> str:
    """The key as is when it fits the column, else its head plus a digest of the whole
    (long store and customer ids must not overflow, nor collide)."""
    if len(key) <= KEY_LENGTH:
        return key
    return f"{key[:150]}~{hashlib.sha256(key.encode()).hexdigest()[:48]}"


@dataclass
class Outreach:
    """What one sender (a campaign, a variant, a trigger step) sends to its recipients."""

    store: StoreProfile
    trigger: str
    templates: TemplateSet
    channels: Sequence[str]
    send_at: datetime
    costs: UnitCosts
    on_cap: str = "defer"
    marketing: bool = True
    discount_percent: Decimal | None = None
    code_valid_until: datetime | None = None
    campaign_id: str | None = None
    variant: str | None = None
    priority: int = 0
    variables: dict[str, Any] = field(default_factory=dict)
    routing: str = "cheapest"  # plugins.policy.routing: the cheapest reachable channel, or "listed"


@dataclass
class Recipient:
    reach: Reach
    key: str  # the message's idempotency key
    variables: dict[str, Any] = field(default_factory=dict)
    execution_id: int | None = None


@dataclass
class BatchOutcome:
    """What happened to each recipient: queued, deferred (queued for a later day),
    capped (dropped), unreachable, offer_cooldown (had another code lately: no second
    offer), or duplicate (already queued before)."""

    status: dict[str, str] = field(default_factory=dict)
    errors: dict[str, str] = field(default_factory=dict)  # why a "failed" recipient failed
    by_channel: Counter = field(default_factory=Counter)
    cost_by_channel: dict[str, Decimal] = field(default_factory=dict)
    sms_segments: float = 0  # fractional only when estimated from a sample
    samples: list[dict[str, Any]] = field(default_factory=list)

    def count(self, status: str) -> int:
        return sum(1 for s in self.status.values() if s == status)

    def merge(self, other: BatchOutcome) -> None:
        self.status.update(other.status)
        self.errors.update(other.errors)
        self.by_channel.update(other.by_channel)
        for ch, cost in other.cost_by_channel.items():
            self.cost_by_channel[ch] = self.cost_by_channel.get(ch, Decimal(0)) + cost
        self.sms_segments += other.sms_segments
        self.samples.extend(other.samples[: max(0, 3 - len(self.samples))])




def _variables(r: Recipient, outreach: Outreach, settings: Settings, code: str | None
               ) -> dict[str, Any]:
    variables = {**standard_variables(r.reach, outreach.store, settings),
                 **outreach.variables, **r.variables}
    if outreach.discount_percent:
        variables["discount_code"] = code
        variables["discount_percent"] = plain_percent(outreach.discount_percent)
    return variables


class PriceSampler:
    """Prices a big dry run from a sample: every `every`-th message of each channel and
    locale is rendered (SMS parts vary with names and codes); the others are priced at the
    sample's mean. Counts per channel stay exact; only SMS segments become an estimate."""

    def __init__(self, every: int = 1):
        self.every = max(1, every)
        self._seen: Counter = Counter()
        self._parts: dict[tuple[str, str], list[float]] = {}
        self._cost: dict[tuple[str, str], Decimal] = {}

    def wants(self, channel: str, locale: str) -> bool:
        key = (channel, locale)
        self._seen[key] += 1
        return key not in self._parts or self._seen[key] % self.every == 0

    def record(self, channel: str, locale: str, parts: int, cost: Decimal) -> None:
        key = (channel, locale)
        total, n = self._parts.get(key, [0.0, 0.0])
        self._parts[key] = [total + parts, n + 1]
        self._cost[key] = self._cost.get(key, Decimal(0)) + cost

    def estimate(self, channel: str, locale: str) -> tuple[float, Decimal]:
        total, n = self._parts[(channel, locale)]
        return total / n, self._cost[(channel, locale)] / Decimal(int(n))


async def already_queued(session: AsyncSession, keys: list[str]) -> set[str]:
    found: set[str] = set()
    for i in range(0, len(keys), INSERT_CHUNK):
        found.update((await session.scalars(
            select(Message.idempotency_key).where(Message.idempotency_key.in_(keys[i:i + INSERT_CHUNK]))
        )).all())
    return found


async def send_batch(session: AsyncSession, settings: Settings, now: datetime,
                     outreach: Outreach, recipients: list[Recipient], *, dry_run: bool = False,
                     sampler: PriceSampler | None = None) -> BatchOutcome:
    """Queue one message per recipient (or, with dry_run, only count and price them;
    a `sampler` then renders only a sample and prices the rest from it)."""
    out = BatchOutcome()
    if not recipients:
        return out
    fresh = recipients
    if not dry_run:
        done = await already_queued(session, [r.key for r in recipients])
        for r in recipients:
            if r.key in done:
                out.status[r.reach.customer_id] = "duplicate"
        fresh = [r for r in recipients if r.key not in done]

    available = outreach.templates.channels()
    usable = [c for c in outreach.channels if c in available]
    probe_code = new_code(outreach.discount_percent) if outreach.discount_percent else None
    sms_limit = outreach.templates.sms_max_segments
    if outreach.discount_percent and fresh and settings.limits.offer_cooldown:
        held = await recent_offer_holders(session, outreach.store.store_id,
                                          [r.reach.customer_id for r in fresh],
                                          now - settings.limits.offer_cooldown)
        for r in fresh:
            if r.reach.customer_id in held:
                out.status[r.reach.customer_id] = "offer_cooldown"
        fresh = [r for r in fresh if r.reach.customer_id not in held]
    probes: dict[tuple[str, str], tuple[int, Decimal]] = {}
    if outreach.routing == "cheapest" and len(usable) > 1 and fresh:
        probes = await _probes(outreach, settings, fresh, usable, probe_code, sms_limit)
    window = store_send_window(settings, outreach.store.tz)
    counts = (await sent_today(session, outreach.store.store_id,
                               [r.reach.customer_id for r in fresh], now, outreach.store.tz)
              if outreach.marketing else {})
    cap = settings.limits.max_messages_per_customer_per_day
    deferred_at = None
    plans: list[tuple[Recipient, str, datetime]] = []
    for r in fresh:
        cid = r.reach.customer_id
        channel = route(r.reach, usable, outreach.routing,
                        lambda ch, r=r: probes[(ch, r.reach.locale)][0],
                        (lambda ch, r=r: probes[(ch, r.reach.locale)][1]) if probes else None)
        if channel is None:
            out.status[cid] = "unreachable"
            continue
        when = outreach.send_at
        if outreach.marketing and over_cap(counts, cid, cap):
            if outreach.on_cap == "drop":
                out.status[cid] = "capped"
                continue
            deferred_at = deferred_at or next_allowed_day(max(now, outreach.send_at), settings, window)
            when = deferred_at
            out.status[cid] = "deferred"
        else:
            out.status[cid] = "queued"
        plans.append((r, channel, when))

    codes: list[str | None] = [None] * len(plans)
    if outreach.discount_percent and plans:
        if dry_run:  # a code of the real shape, so SMS segments are counted right
            codes = [new_code(outreach.discount_percent)] * len(plans)
        else:
            codes = list(await issue_codes(session, outreach.store.store_id, [
                CodeRequest(customer_id=r.reach.customer_id, percent=outreach.discount_percent,
                            trigger=outreach.trigger, campaign_id=outreach.campaign_id,
                            expires_at=outreach.code_valid_until)
                for r, _, _ in plans
            ], now))

    todo: list[tuple[Recipient, str, datetime, str | None, dict[str, Any]]] = []
    for (r, channel, when), code in zip(plans, codes):
        variables = _variables(r, outreach, settings, code)
        out.by_channel[channel] += 1
        if sampler is not None and len(out.samples) >= 3 and not sampler.wants(channel, r.reach.locale):
            parts, cost = sampler.estimate(channel, r.reach.locale)
            out.cost_by_channel[channel] = out.cost_by_channel.get(channel, Decimal(0)) + cost
            out.sms_segments += parts
            continue
        todo.append((r, channel, when, code, variables))
    rendered = await _render_all(outreach.templates, [(channel, r.reach.locale, variables)
                                                      for r, channel, _, _, variables in todo],
                                 sms_limit)

    requests: list[MessageRequest] = []
    for (r, channel, when, code, variables), result in zip(todo, rendered):
        if isinstance(result, TemplateError):
            out.status[r.reach.customer_id] = "failed"
            out.errors[r.reach.customer_id] = str(result)[:500]
            out.by_channel[channel] -= 1
            requests.append(_failed_request(outreach, r, channel, when, str(result)))
            continue
        compiled = outreach.templates.get(channel, r.reach.locale)
        data = {"locale": r.reach.locale, **({"discountCode": code} if code else {}),
                **({"params": compiled.params(variables)} if channel == "whatsapp" else {})}
        billed = result.body
        if channel == "sms" and sms_limit:  # trimmed at send time; priced as it will be sent
            data.update(compiled.sms_fit(sms_limit, result))
            billed = fit_sms(result.body, data, quiet=True)
        parts, cost = await outreach.costs.cost(channel, billed, marketing=outreach.marketing,
                                                locale=r.reach.locale,
                                                data=data if channel == "whatsapp" else None)
        if sampler is not None:
            sampler.record(channel, r.reach.locale, parts or 0, cost)
        out.cost_by_channel[channel] = out.cost_by_channel.get(channel, Decimal(0)) + cost
        out.sms_segments += parts or 0
        if len(out.samples) < 3:
            out.samples.append({"customerId": r.reach.customer_id, "channel": channel,
                                "subject": result.subject, "body": billed})
        requests.append(MessageRequest(
            store_id=outreach.store.store_id, customer_id=r.reach.customer_id, channel=channel,
            to_address=r.reach.address(channel), body=result.body, subject=result.subject,
            html=result.html, idempotency_key=r.key, template=outreach.templates.label,
            trigger=outreach.trigger, campaign_id=outreach.campaign_id,
            execution_id=r.execution_id, variant=outreach.variant, priority=outreach.priority,
            not_before=when, marketing=outreach.marketing, cost=cost, data=data,
        ))
    if requests and not dry_run:
        await enqueue_messages(session, requests, now)
    return out


def _failed_request(outreach: Outreach, r: Recipient, channel: str, when: datetime,
                    error: str) -> MessageRequest:
    """The record of a message whose body failed to render: `failed`, with the reason,
    under the message's own key (a redelivery does not try again)."""
    return MessageRequest(
        store_id=outreach.store.store_id, customer_id=r.reach.customer_id, channel=channel,
        to_address=r.reach.address(channel), body="", idempotency_key=r.key,
        template=outreach.templates.label, trigger=outreach.trigger,
        campaign_id=outreach.campaign_id, execution_id=r.execution_id,
        variant=outreach.variant, priority=outreach.priority, not_before=when,
        marketing=outreach.marketing, status="failed", error=error[:500])


async def _render_all(templates: TemplateSet, wanted: list[tuple[str, str, dict[str, Any]]],
                      sms_limit: int | None) -> list[Rendered | TemplateError]:
    """Render each (channel, locale, variables): one `render_many` per body (a merchant's
    batch in one round trip to the worker); failures in their places."""
    by_body: dict[tuple[str, str], list[int]] = {}
    for i, (channel, locale, _) in enumerate(wanted):
        by_body.setdefault((channel, locale), []).append(i)
    results: list[Any] = [None] * len(wanted)
    for (channel, locale), where in by_body.items():
        try:
            compiled = templates.get(channel, locale)
        except TemplateError as exc:  # a stored body that no longer parses: its messages fail
            for i in where:
                results[i] = exc
            continue
        answers = await compiled.render_many([wanted[i][2] for i in where],
                                             tail=channel == "sms" and bool(sms_limit))
        for i, answer in zip(where, answers):
            results[i] = answer
    return results


async def _probes(outreach: Outreach, settings: Settings, fresh: list[Recipient],
                  usable: list[str], probe_code: str | None, sms_limit: int | None
                  ) -> dict[tuple[str, str], tuple[int, Decimal]]:
    """(length, price) of the message per (channel, locale) "cheapest" routing compares:
    rendered once a batch for the first recipient of each locale (names and codes barely
    move them; a merchant's body in the worker, in one round trip), an SMS priced as it
    will be sent (trimmed to the template's parts). A body that fails to render counts as
    empty and priceless: that message fails when rendered for real."""
    first: dict[str, Recipient] = {}
    for r in fresh:
        first.setdefault(r.reach.locale, r)
    wanted = [(channel, locale, _variables(r, outreach, settings, probe_code))
              for locale, r in first.items() for channel in usable]
    answers = await _render_all(outreach.templates, wanted, sms_limit)
    found: dict[tuple[str, str], tuple[int, Decimal]] = {}
    for (channel, locale, _), answer in zip(wanted, answers):
        if isinstance(answer, TemplateError):
            found[(channel, locale)] = (0, Decimal("Infinity"))
            continue
        billed = answer.body
        if channel == "sms" and sms_limit:
            fit = outreach.templates.get(channel, locale).sms_fit(sms_limit, answer)
            billed = fit_sms(answer.body, fit, quiet=True)
        _, cost = await outreach.costs.cost(channel, billed, marketing=outreach.marketing,
                                            locale=locale)
        found[(channel, locale)] = (len(answer.body), cost)
    return found


def plain_percent(value: Decimal) -> int | Decimal:
    """15 rather than 15.00 in a message."""
    return int(value) if value == int(value) else value.normalize()
