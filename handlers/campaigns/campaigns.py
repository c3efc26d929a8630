"""Campaigns (EmailCampaign, for every channel): define, check, price, schedule, fan out.

A campaign targets segments (minus excluded segments, minus customers opted out of every
channel of its mix), sends each recipient one message on the first channel of its mix the
recipient can receive, keeps a deterministic holdout share for uplift, and may split the
rest into A/B variants. Life cycle:

    DRAFT --schedule--> SCHEDULED --(due)--> SENDING --> SENT
    SCHEDULED/SENDING --pause--> PAUSED --schedule--> SCHEDULED      any --cancel--> CANCELLED

`schedule` checks every template's variables, previews the cost and applies the ROI
guard (refusal overridable with force). The fan-out walks the audience in keyset pages of
`campaigns.batch_size`, committing each page, so 100,000 recipients never sit in memory
and a crash or pause resumes where it stopped (message keys are per campaign + customer).
"""

from __future__ import annotations

import logging
import random
import uuid
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator
from pydantic.alias_generators import to_camel
from sqlalchemy import Select, func, or_, select, union, update
from sqlalchemy.ext.asyncio import AsyncSession

from stormd.config.channels import Channel
from stormd.config.settings import Settings
from stormd.handlers.campaigns.ab_testing import assign_variant, in_holdout
from stormd.handlers.campaigns.results import conversion_rate
from stormd.handlers.kernel.context import JobContext
from stormd.handlers.kernel.service import Conflict, Instant, NotFound
from stormd.handlers.outreach.costs import (
    CostPreview,
    average_order_value,
    money,
    spent_this_month,
    unit_costs,
)
from stormd.handlers.outreach.queue import (
    STANDARD_NAMES,
    BatchOutcome,
    Outreach,
    PriceSampler,
    Recipient,
    StoreProfile,
    TemplateSet,
    bounded_key,
    load_templates,
    send_batch,
    store_profile,
)
from stormd.handlers.outreach.recommendations import last_order_products, recommend_many
from stormd.handlers.outreach.send_slots import SEND_MODES, send_moment, store_send_window
from stormd.handlers.outreach.template_library import (
    check_content,
    check_renders,
    count_use,
    parse_content,
)
from stormd.handlers.outreach.templates import MissingVariables, TemplateError, system_library
from stormd.handlers.scoring.features import first_column
from stormd.handlers.scoring.segments import (
    MEMBERS,
    SEGMENTS,
    audience_query,
    ensure_builtin_segments,
    get_segment,
)
from stormd.plugins.policy.eligibility import load_reach, reachable_clause
from stormd.plugins.policy.routing import Routing
from stormd.schema.db.upsert import insert_for
from stormd.schema.marketing.automations import AutomationWorkflow
from stormd.schema.marketing.campaigns import CampaignTemplate, EmailCampaign
from stormd.schema.marketing.messages import Message
from stormd.schema.shop.customers import Customer
from stormd.schema.wire.envelope import OutEvent, stage_events

log = logging.getLogger(__name__)

EDITABLE = ("DRAFT", "SCHEDULED", "PAUSED")
PREVIEW_EXACT = 10_000  # recipients a preview walks one by one; beyond, an even sample
HOLDOUT = "holdout"
RECOMMENDED = "recommended_products"  # a campaign template variable, per recipient


class CampaignError(ValueError):
    """A campaign request that cannot be done; the message says what is wrong."""


class CampaignNotFound(CampaignError, NotFound):
    """The store has no campaign of that id."""


class CampaignStateError(CampaignError, Conflict):
    """The campaign's status does not allow it (an edit after sending, a second cancel)."""


Slug = Annotated[str, Field(min_length=1, max_length=64)]
TemplateSlug = Annotated[str, Field(min_length=1, max_length=120)]
Content = dict[Annotated[str, Field(max_length=32)], dict[Annotated[str, Field(max_length=8)], str] | int]


class Variant(BaseModel):
    model_config = ConfigDict(extra="forbid", alias_generator=to_camel, populate_by_name=True)

    name: str = Field(min_length=1, max_length=16)
    weight: float = Field(default=1, gt=0, le=1000)
    template: TemplateSlug | None = None
    content: Content | None = None


class CampaignSpec(BaseModel):
    """A campaign as the CLI and the API describe it (camelCase or snake_case keys)."""

    model_config = ConfigDict(extra="forbid", alias_generator=to_camel, populate_by_name=True)

    name: str = Field(min_length=1, max_length=200)
    channels: list[Channel] = Field(min_length=1)
    routing: Routing = "cheapest"  # or "listed": the channels' own order (plugins.policy.routing)
    # empty: every customer of the store
    segments: list[Slug] = Field(default_factory=list, max_length=50)
    exclude_segments: list[Slug] = Field(default_factory=list, max_length=50)
    template: TemplateSlug | None = None
    # {channel: {locale: source}} and the template options (sms_max_segments: int)
    content: Content | None = None
    variables: dict[str, Any] = Field(default_factory=dict)
    variants: list[Variant] = Field(default_factory=list, max_length=10)
    holdout_percent: int = Field(default=0, ge=0, le=90)
    discount_percent: Decimal | None = Field(default=None, ge=0, le=100, decimal_places=2)
    budget: Decimal | None = Field(default=None, ge=0, le=Decimal("999999999999.99"),
                                   decimal_places=2)
    send_mode: Literal["now", "at", "best_time", "off_peak", "peak"] = "now"
    scheduled_at: Instant | None = None

    @field_validator("channels")
    @classmethod
    def _unique(cls, value: list[str]) -> list[str]:
        if len(set(value)) != len(value):
            raise ValueError("a channel is listed twice")
        return value


FIELDS = tuple(CampaignSpec.model_fields)


def _spec_error(exc: ValidationError) -> CampaignError:
    err = exc.errors()[0]
    where = ".".join(str(p) for p in err["loc"]) or "campaign"
    return CampaignError(f"{where}: {err['msg']}")


def parse_spec(data: dict[str, Any]) -> CampaignSpec:
    try:
        spec = CampaignSpec.model_validate(data)
    except ValidationError as exc:
        raise _spec_error(exc) from None
    if not spec.template and not spec.content and not spec.variants:
        raise CampaignError("template: give a template slug, inline content, or variants")
    names = [v.name for v in spec.variants]
    if len(set(names)) != len(names) or HOLDOUT in names:
        raise CampaignError("variants: names must be unique and not 'holdout'")
    if spec.send_mode == "at" and spec.scheduled_at is None:
        raise CampaignError("scheduledAt: send_mode 'at' needs a time")
    return spec


def to_dict(c: EmailCampaign) -> dict[str, Any]:
    return {
        "id": c.id, "storeId": c.store_id, "name": c.name, "status": c.status,
        "channels": c.channels, "routing": c.routing, "segments": c.segments, "excludeSegments": c.exclude_segments or [],
        "template": c.template, "content": c.content, "variables": c.variables or {},
        "variants": c.variants or [], "holdoutPercent": c.holdout_percent,
        "discountPercent": None if c.discount_percent is None else str(c.discount_percent),
        "budget": None if c.budget is None else str(c.budget), "sendMode": c.send_mode,
        "scheduledAt": _iso(c.scheduled_at), "startedAt": _iso(c.started_at),
        "finishedAt": _iso(c.finished_at), "audienceSize": c.audience_size,
        "cost": str(money(c.cost or 0)), "createdAt": _iso(c.created_at),
        "updatedAt": _iso(c.updated_at),
    }


def _iso(t: datetime | None) -> str | None:
    return t.isoformat() if t else None


# --- checks ---------------------------------------------------------------------------


async def _template_sets(session: AsyncSession, c: EmailCampaign) -> dict[str | None, TemplateSet]:
    """The template set of each variant (key None when there are no variants)."""
    if c.variants:
        return {v["name"]: await load_templates(session, c.store_id, v.get("template") or c.template,
                                                v.get("content") or c.content)
                for v in c.variants}
    return {None: await load_templates(session, c.store_id, c.template, c.content)}


async def check_campaign(session: AsyncSession, c: EmailCampaign, now: datetime) -> None:
    """Refuse before sending: unknown segments, a channel without a body, or a body that
    reads a variable nobody supplies (named). The built-in segments (vip, loyal, ...) are
    known to every store, even before its first RFM run."""
    await ensure_builtin_segments(session, c.store_id, now)
    for slug in [*c.segments, *(c.exclude_segments or [])]:
        try:
            await get_segment(session, c.store_id, slug)
        except ValueError as exc:
            raise CampaignError(f"segments: {exc}") from None
    inline = [(where, content) for where, content in [
        ("content", c.content),
        *((f"variants.{v['name']}.content", v.get("content")) for v in c.variants or [])]
        if content]
    for where, content in inline:
        check_content(where, content)
    supplied = set(STANDARD_NAMES) | set(c.variables or {}) | {RECOMMENDED}
    if c.discount_percent:
        supplied |= {"discount_code", "discount_percent"}
    for templates in (await _template_sets(session, c)).values():
        usable = [ch for ch in c.channels if ch in templates.channels()]
        if not usable:
            raise CampaignError(f"template {templates.label!r} has no body for any of "
                                f"{', '.join(c.channels)}")
        for channel in usable:
            for locale in templates.locales(channel) or ["bn", "en"]:
                try:
                    templates.get(channel, locale).check(supplied)
                except MissingVariables as exc:
                    raise CampaignError(f"{exc}: add them to the campaign's variables") from None
    for where, content in inline:  # rendered with sample data under a real send's limits
        try:
            await check_renders(where, parse_content(where, content), None, c.variables)
        except TemplateError as exc:
            raise CampaignError(str(exc)) from None


# --- operations -----------------------------------------------------------------------


async def create_campaign(session: AsyncSession, store_id: str, data: dict[str, Any],
                          now: datetime) -> EmailCampaign:
    spec = parse_spec(data)
    c = EmailCampaign(id=f"cmp_{uuid.uuid4().hex[:16]}", store_id=store_id, status="DRAFT",
                      created_at=now, updated_at=now, audience_size=0, cost=Decimal(0))
    recommended = await seasonal_discount(session, store_id, spec)
    if recommended is not None:
        spec = spec.model_copy(update={"discount_percent": recommended})
    _apply(c, spec)
    await check_campaign(session, c, now)
    session.add(c)
    for slug in {c.template, *(v.get("template") for v in c.variants or [])} - {None}:
        await count_use(session, store_id, slug, now)
    await session.flush()
    return c


async def seasonal_discount(session: AsyncSession, store_id: str, spec: CampaignSpec
                            ) -> Decimal | None:
    """The recommended discount (`default_discount_percent` in its meta.toml) of the system
    seasonal or promotional template a campaign uses, when the campaign names no discount:
    one template for all its variants, not overridden by the store's own wording."""
    if spec.discount_percent is not None or spec.content:
        return None
    if any(v.content for v in spec.variants):
        return None
    slugs = {v.template or spec.template for v in spec.variants} or {spec.template}
    if len(slugs) != 1:
        return None
    slug = slugs.pop()
    template = system_library().get(slug or "")
    if template is None or template.category not in ("SEASONAL", "PROMOTIONAL"):
        return None
    if await session.scalar(select(func.count()).select_from(CampaignTemplate).where(
            CampaignTemplate.store_id == store_id, CampaignTemplate.slug == slug)):
        return None
    percent = template.default_discount_percent
    return Decimal(percent) if percent else None


def _apply(c: EmailCampaign, spec: CampaignSpec) -> None:
    c.name, c.channels, c.segments = spec.name, list(spec.channels), list(spec.segments)
    c.routing = spec.routing
    c.exclude_segments = list(spec.exclude_segments)
    c.template, c.content, c.variables = spec.template, spec.content, dict(spec.variables)
    c.variants = [v.model_dump(exclude_none=True) for v in spec.variants] or None
    c.holdout_percent, c.discount_percent, c.budget = (spec.holdout_percent,
                                                       spec.discount_percent, spec.budget)
    c.send_mode, c.scheduled_at = spec.send_mode, spec.scheduled_at


async def get_campaign(session: AsyncSession, store_id: str, campaign_id: str) -> EmailCampaign:
    c = await session.get(EmailCampaign, campaign_id)
    if c is None or c.store_id != store_id:
        raise CampaignNotFound(f"store {store_id!r} has no campaign {campaign_id!r}")
    return c


async def list_campaigns(session: AsyncSession, store_id: str, status: str | None = None
                         ) -> list[EmailCampaign]:
    query = select(EmailCampaign).where(EmailCampaign.store_id == store_id)
    if status:
        query = query.where(EmailCampaign.status == status.upper())
    return list((await session.scalars(query.order_by(EmailCampaign.created_at.desc()))).all())


async def update_campaign(session: AsyncSession, store_id: str, campaign_id: str,
                          changes: dict[str, Any], now: datetime) -> EmailCampaign:
    c = await get_campaign(session, store_id, campaign_id)
    if c.status not in EDITABLE:
        raise CampaignStateError(f"campaign {campaign_id} is {c.status}: only {', '.join(EDITABLE)} "
                            "campaigns can be changed")
    stored = {k: v for k in FIELDS if (v := getattr(c, k)) is not None}
    current = CampaignSpec.model_validate(stored).model_dump(exclude_none=True)
    merged = {**current, **{_snake(k): v for k, v in changes.items()}}
    _apply(c, parse_spec(merged))
    await check_campaign(session, c, now)
    if c.status == "SCHEDULED":  # what was priced and guarded changed: schedule again
        c.status = "DRAFT"
    c.updated_at = now
    return c


def _snake(key: str) -> str:
    return "".join(f"_{ch.lower()}" if ch.isupper() else ch for ch in key)


async def preview_campaign(session: AsyncSession, settings: Settings, c: EmailCampaign,
                           now: datetime) -> tuple[CostPreview, list[dict[str, Any]]]:
    """Counts per channel, SMS segments, cost, expected revenue and ROI, budget, alerts,
    plus a few rendered samples: what the fan-out would do, without queuing. The audience
    size is exact; up to `PREVIEW_EXACT` recipients every figure is too, beyond it the
    others are measured on a random sample of that many (the same for the same campaign:
    random, because ids often follow a pattern an every-n-th pick would alias with) and
    scaled, so a preview of 100,000 costs about what one of 10,000 does. SMS segments and cost
    are estimated from a rendered sample of about `campaigns.preview_renders`."""
    store = await store_profile(session, settings, c.store_id)
    rate, source = await conversion_rate(session, settings, c.store_id, now)
    preview = CostPreview(conversion_rate=rate, conversion_source=source, min_roi=store.min_roi)
    preview.average_order_value = await average_order_value(session, settings, c.store_id)
    outcome, counts = BatchOutcome(), {"audience": 0, "holdout": 0}
    senders = await _senders(session, settings, c, store, now)
    everyone = await first_column(session, audience_ids(c))  # one query, ids only
    size = len(everyone)
    if size > PREVIEW_EXACT:
        everyone = random.Random(c.id).sample(everyone, PREVIEW_EXACT)
    everyone.sort()
    sampler = PriceSampler(every=len(everyone) // settings.campaigns.preview_renders + 1)
    batch = settings.campaigns.batch_size
    pages = (everyone[start:start + batch] for start in range(0, len(everyone), batch))
    for ids in pages:
        counts["audience"] += len(ids)
        groups = await _recipients(session, c, ids)
        counts["holdout"] += len(groups.pop(HOLDOUT, []))
        await _recommend_to(session, settings, c, senders, groups, now, record=False)
        for variant, recipients in groups.items():
            outcome.merge(await send_batch(session, settings, now, senders[variant], recipients,
                                           dry_run=True, sampler=sampler))
    scale = size / counts["audience"] if counts["audience"] else 1.0

    def scaled(n: float) -> int:
        return round(n * scale)

    preview.audience, preview.holdout = size, scaled(counts["holdout"])
    preview.unreachable = scaled(outcome.count("unreachable"))
    preview.capped, preview.deferred = scaled(outcome.count("capped")), scaled(
        outcome.count("deferred"))
    preview.offer_cooldown = scaled(outcome.count("offer_cooldown"))
    preview.by_channel = {ch: scaled(n) for ch, n in outcome.by_channel.items()}
    preview.cost_by_channel = {ch: money(cost * Decimal(str(scale)))
                               for ch, cost in outcome.cost_by_channel.items()}
    preview.sms_segments = scaled(outcome.sms_segments)
    preview.sampled = counts["audience"] if size > PREVIEW_EXACT else None
    await _budget(session, settings, c, store, preview, now)
    return preview, outcome.samples


async def _budget(session: AsyncSession, settings: Settings, c: EmailCampaign,
                  store: StoreProfile, preview: CostPreview, now: datetime) -> None:
    limits = []
    if c.budget is not None:
        limits.append(money(c.budget))
    if store.monthly_budget is not None:
        spent = await spent_this_month(session, c.store_id, now, store.tz)
        left = money(max(store.monthly_budget - spent, Decimal(0)))
        limits.append(left)
        share = (spent + preview.cost) / store.monthly_budget * 100 if store.monthly_budget else 100
        if share >= settings.campaigns.budget_alert_percent:
            preview.alerts.append(
                f"this send brings the month's spend to {share:.0f}% of the budget "
                f"{money(store.monthly_budget)} (alert at {settings.campaigns.budget_alert_percent:.0f}%)")
    preview.budget_left = min(limits) if limits else None


async def schedule_campaign(session: AsyncSession, settings: Settings, store_id: str,
                            campaign_id: str, now: datetime, *, force: bool = False,
                            send_mode: str | None = None, at: datetime | None = None
                            ) -> tuple[EmailCampaign, CostPreview]:
    """Check, price and guard, then set the (allowed) moment the fan-out starts."""
    c = await get_campaign(session, store_id, campaign_id)
    if c.status not in EDITABLE:
        raise CampaignStateError(f"campaign {campaign_id} is {c.status}: it cannot be scheduled")
    if send_mode is not None:
        if send_mode not in SEND_MODES:
            raise CampaignError(f"sendMode: {send_mode!r} is not one of {', '.join(SEND_MODES)}")
        c.send_mode = send_mode
    if at is not None:
        c.scheduled_at = at
    await check_campaign(session, c, now)
    preview, _ = await preview_campaign(session, settings, c, now)
    preview.guard(force)
    store = await store_profile(session, settings, store_id)
    window = store_send_window(settings, store.tz)
    try:
        c.scheduled_at = send_moment(c.send_mode, now, settings, window, c.scheduled_at)
    except ValueError as exc:
        raise CampaignError(str(exc)) from None
    c.status, c.updated_at = "SCHEDULED", now
    for alert in preview.alerts:
        log.warning("budget alert for store %s campaign %s: %s", store_id, c.id, alert)
    await stage_events(session, settings.nats.subject_prefix, [
        OutEvent(store_id, "campaign.budget_alert", {
            "campaignId": c.id, "alert": alert, "cost": str(preview.cost),
            "budgetLeft": None if preview.budget_left is None else str(preview.budget_left)},
            now) for alert in preview.alerts])
    return c, preview


async def pause_campaign(session: AsyncSession, store_id: str, campaign_id: str, now: datetime
                         ) -> EmailCampaign:
    c = await get_campaign(session, store_id, campaign_id)
    if c.status not in ("SCHEDULED", "SENDING"):
        raise CampaignStateError(f"campaign {campaign_id} is {c.status}: only a scheduled or sending "
                            "campaign can be paused")
    c.status, c.updated_at = "PAUSED", now
    return c


async def cancel_campaign(session: AsyncSession, store_id: str, campaign_id: str, now: datetime
                          ) -> tuple[EmailCampaign, int]:
    """Cancel, and withdraw its messages still waiting in the queue (a SENT campaign's
    messages held for a later slot, too); returns how many were withdrawn."""
    c = await get_campaign(session, store_id, campaign_id)
    if c.status == "CANCELLED":
        raise CampaignStateError(f"campaign {campaign_id} is already {c.status}")
    c.status, c.updated_at, c.finished_at = "CANCELLED", now, now
    result = await session.execute(
        update(Message).where(Message.store_id == store_id, Message.campaign_id == campaign_id,
                              Message.status == "queued")
        .values(status="cancelled", error="campaign cancelled", updated_at=now)
    )
    return c, result.rowcount or 0


async def segment_users(session: AsyncSession, store_id: str, slug: str) -> list[str]:
    """What keeps a segment from being deleted: unfinished campaigns that target or exclude
    it, and its segment-entry automation while that is on."""
    users = [f"campaign {c.id}" for c in (await session.scalars(select(EmailCampaign).where(
        EmailCampaign.store_id == store_id, EmailCampaign.status.in_(EDITABLE + ("SENDING",))
    ))).all() if slug in (c.segments or []) or slug in (c.exclude_segments or [])]
    if await session.scalar(select(AutomationWorkflow.id).where(
            AutomationWorkflow.store_id == store_id,
            AutomationWorkflow.trigger == f"segment_entry:{slug}",
            AutomationWorkflow.enabled.is_(True))):
        users.append(f"the automation segment_entry:{slug} (turn it off first)")
    return users


# --- audience and fan-out ----------------------------------------------------------------


def audience_ids(c: EmailCampaign, after: str | None = None, size: int | None = None) -> Select:
    """Customer ids of the audience: in any segment (all customers when none), not in an
    excluded one, reachable on at least one channel of the mix. With `after`/`size`, one
    keyset page: the bound goes inside each branch, so a page reads only its own rows."""
    exclude = None
    if c.exclude_segments:
        exclude = (select(MEMBERS.c.customer_id)
                   .join(SEGMENTS, SEGMENTS.c.id == MEMBERS.c.segment_id)
                   .where(MEMBERS.c.store_id == c.store_id, SEGMENTS.c.store_id == c.store_id,
                          SEGMENTS.c.slug.in_(c.exclude_segments)))
    if not c.segments:
        query = select(Customer.customer_id).where(
            Customer.store_id == c.store_id, or_(*(reachable_clause(ch) for ch in c.channels)))
        if exclude is not None:
            query = query.where(Customer.customer_id.not_in(exclude))
        return _page(query, Customer.customer_id, after, size)
    branches = []
    for ch in c.channels:
        branch = audience_query(c.store_id, c.segments, ch, exclude)
        if after is not None:  # bound both joined sides, so neither is walked from its start
            branch = branch.where(Customer.customer_id > after)
        branches.append(select(_page(branch, MEMBERS.c.customer_id, after, size)
                               .subquery().c.customer_id))
    return union(*branches)


def _page(query: Select, column: Any, after: str | None, size: int | None) -> Select:
    if after is None:
        return query
    return query.where(column > after).order_by(column).limit(size)


async def audience_page(session: AsyncSession, c: EmailCampaign, after: str, size: int
                        ) -> list[str]:
    """The next `size` audience ids after `after` (keyset pagination, ascending id)."""
    sub = audience_ids(c, after, size).subquery()
    return list((await session.scalars(
        select(sub.c.customer_id).order_by(sub.c.customer_id).limit(size))).all())


async def audience_count(session: AsyncSession, c: EmailCampaign) -> int:
    sub = audience_ids(c).subquery()
    return (await session.execute(select(func.count()).select_from(sub))).scalar() or 0


def message_key(c: EmailCampaign, customer_id: str) -> str:
    return bounded_key(f"{c.store_id}:campaign:{c.id}:{customer_id}")


async def _recipients(session: AsyncSession, c: EmailCampaign, ids: list[str]
                      ) -> dict[str | None, list[Recipient]]:
    """The page's recipients grouped by variant (None without variants, HOLDOUT apart)."""
    reach = await load_reach(session, c.store_id, ids)
    groups: dict[str | None, list[Recipient]] = {}
    for cid in ids:
        r = reach.get(cid)
        if r is None:
            continue
        if in_holdout(c.id, cid, c.holdout_percent):
            group: str | None = HOLDOUT
        elif c.variants:
            group = assign_variant(c.id, cid, c.variants)
        else:
            group = None
        groups.setdefault(group, []).append(Recipient(reach=r, key=message_key(c, cid)))
    return groups


def _reads(templates: TemplateSet, channels: list[str], name: str) -> bool:
    """Whether any body the campaign may send reads the variable `name`."""
    for channel in channels:
        if channel not in templates.channels():
            continue
        for locale in templates.locales(channel) or ["bn", "en"]:
            if name in templates.get(channel, locale).required:
                return True
    return False


async def _recommend_to(session: AsyncSession, settings: Settings, c: EmailCampaign,
                        senders: dict[str | None, Outreach],
                        groups: dict[str | None, list[Recipient]], now: datetime,
                        record: bool) -> None:
    """`recommended_products` for each recipient whose body reads it: what goes with
    their last completed order (the learned neighbours, else the rules; handlers/outreach/
    recommendations.py), an empty list when there is nothing to recommend."""
    wanted = [r for variant, recipients in groups.items() if variant in senders
              and _reads(senders[variant].templates, c.channels, RECOMMENDED)
              for r in recipients]
    if not wanted:
        return
    ids = [r.reach.customer_id for r in wanted]
    context = await last_order_products(session, c.store_id, ids)
    products = await recommend_many(session, settings, c.store_id,
                                    [(cid, context.get(cid, [])) for cid in ids], now,
                                    trigger="campaign", record=record)
    for r, chosen in zip(wanted, products):
        r.variables = {**r.variables, RECOMMENDED: chosen}


async def _senders(session: AsyncSession, settings: Settings, c: EmailCampaign,
                   store: StoreProfile, now: datetime) -> dict[str | None, Outreach]:
    costs = await unit_costs(session, settings, c.store_id)
    window = store_send_window(settings, store.tz)
    if c.scheduled_at is not None:
        send_at = window.next_allowed(max(c.scheduled_at, now))
    else:
        send_at = send_moment(c.send_mode, now, settings, window)
    valid_until = now + settings.automations.code_valid_for
    return {
        variant: Outreach(
            store=store, trigger="campaign", templates=templates, channels=c.channels,
            send_at=send_at, costs=costs,
            on_cap=settings.automations.on_cap.get("campaign", "drop"),
            discount_percent=c.discount_percent or None, code_valid_until=valid_until,
            campaign_id=c.id, variant=variant, variables=dict(c.variables or {}),
            routing=c.routing,
        )
        for variant, templates in (await _template_sets(session, c)).items()
    }


def _holdout_rows(c: EmailCampaign, recipients: list[Recipient], now: datetime) -> list[dict]:
    """Held-out customers are logged (never sent) so uplift compares them with recipients."""
    return [{
        "store_id": c.store_id, "customer_id": r.reach.customer_id, "channel": c.channels[0],
        "provider": None, "template": c.template, "trigger": "campaign", "campaign_id": c.id,
        "execution_id": None, "variant": HOLDOUT, "idempotency_key": r.key, "priority": 0,
        "status": "cancelled", "attempts": 0, "not_before": now, "to_address": None,
        "subject": None, "body": "", "html": None, "data": None, "marketing": True,
        "segments": None, "cost": Decimal(0), "external_id": None,
        "error": "holdout: kept out to measure uplift", "created_at": now, "updated_at": now,
        "sent_at": None,
    } for r in recipients]


async def _insert_holdout(session: AsyncSession, rows: list[dict]) -> None:
    stmt = insert_for(session, Message).on_conflict_do_nothing(index_elements=["idempotency_key"])
    await session.execute(stmt, rows)


async def fan_out(sessionmaker: Any, settings: Settings, store_id: str, campaign_id: str,
                  now: datetime, heartbeat: Any = None) -> dict[str, Any]:
    """Expand a due campaign into queued messages, one committed page at a time.

    Stops early (status stays PAUSED/CANCELLED) when the campaign is paused or cancelled
    between pages; running it again continues, skipping recipients already queued. The
    start is a conditional update (SCHEDULED -> SENDING), so of two processes picking the
    same due campaign only one fans it out; each page refreshes `updated_at` from
    `heartbeat()` (default: `now`) so a stalled run can be told from a live one."""
    beat = heartbeat or (lambda: now)
    async with sessionmaker() as session:
        c = await get_campaign(session, store_id, campaign_id)
        if c.status not in ("SCHEDULED", "SENDING"):
            raise CampaignStateError(f"campaign {campaign_id} is {c.status}: nothing to send")
        claimed = await session.execute(
            update(EmailCampaign).where(EmailCampaign.id == campaign_id,
                                        EmailCampaign.status == c.status,
                                        EmailCampaign.updated_at == c.updated_at)
            .values(status="SENDING", started_at=c.started_at or now, updated_at=beat()))
        if not claimed.rowcount:
            return {"status": "SENDING", "skipped": "another run holds this campaign"}
        await session.commit()
    async with sessionmaker() as session:  # templates compiled once for the whole run
        c = await get_campaign(session, store_id, campaign_id)
        senders = await _senders(session, settings, c,
                                 await store_profile(session, settings, store_id), now)
    totals: dict[str, int] = {}
    last = ""
    while True:
        async with sessionmaker() as session:
            c = await get_campaign(session, store_id, campaign_id)
            if c.status != "SENDING":
                return {"status": c.status, **totals}
            ids = await audience_page(session, c, last, settings.campaigns.batch_size)
            if not ids:
                c.status, c.finished_at, c.updated_at = "SENT", now, now
                c.audience_size = await _logged(session, c)
                c.cost = await _queued_cost(session, c)
                await session.commit()
                return {"status": "SENT", **totals}
            last = ids[-1]
            groups = await _recipients(session, c, ids)
            held = groups.pop(HOLDOUT, [])
            if held:
                await _insert_holdout(session, _holdout_rows(c, held, now))
                totals["holdout"] = totals.get("holdout", 0) + len(held)
            await _recommend_to(session, settings, c, senders, groups, now, record=True)
            for variant, recipients in groups.items():
                outcome = await send_batch(session, settings, now, senders[variant], recipients)
                for status in outcome.status.values():
                    totals[status] = totals.get(status, 0) + 1
            c.updated_at = beat()
            await session.commit()


async def _logged(session: AsyncSession, c: EmailCampaign) -> int:
    return (await session.execute(
        select(func.count()).where(Message.store_id == c.store_id, Message.campaign_id == c.id)
    )).scalar() or 0


async def _queued_cost(session: AsyncSession, c: EmailCampaign) -> Decimal:
    return money((await session.execute(
        select(func.coalesce(func.sum(Message.cost), 0))
        .where(Message.store_id == c.store_id, Message.campaign_id == c.id)
    )).scalar() or 0)


STALLED = timedelta(minutes=10)


async def due_campaigns(session: AsyncSession, now: datetime) -> list[tuple[str, str]]:
    """(store, campaign) of every campaign whose moment has come, or whose fan-out stalled
    (SENDING with no page committed for ten minutes: its process died)."""
    rows = await session.execute(
        select(EmailCampaign.store_id, EmailCampaign.id).where(
            or_((EmailCampaign.status == "SENDING") & (EmailCampaign.updated_at <= now - STALLED),
                (EmailCampaign.status == "SCHEDULED") & (EmailCampaign.scheduled_at <= now)))
        .order_by(EmailCampaign.scheduled_at)
    )
    return [(s, i) for s, i in rows]


async def dispatch_due_campaigns(job: JobContext) -> None:
    """Every minute: fan out the campaigns that are due (and resume interrupted ones)."""
    async with job.sessionmaker() as session:
        due = await due_campaigns(session, job.clock.now())
    for store_id, campaign_id in due:
        try:
            result = await fan_out(job.sessionmaker, job.settings, store_id, campaign_id,
                                   job.clock.now(), heartbeat=job.clock.now)
        except CampaignError as exc:  # paused or cancelled since it was found due
            log.info("campaign %s of store %s not sent: %s", campaign_id, store_id, exc)
            continue
        except TemplateError as exc:  # a template changed since scheduling: stop, say why
            log.warning("campaign %s of store %s paused: %s", campaign_id, store_id, exc)
            async with job.sessionmaker() as session:
                await session.execute(update(EmailCampaign).where(EmailCampaign.id == campaign_id)
                                      .values(status="PAUSED", updated_at=job.clock.now()))
                await session.commit()
            continue
        log.info("campaign %s of store %s: %s", campaign_id, store_id, result)
