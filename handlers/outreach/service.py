"""Templates, the delivery log and SMS credits as the API and the command line see them.

Templates: the system library and the store's own (a store template of a slug overrides
the system one), saved after a check in the sandbox, and previewed with test data or a
real customer in Bengali and English, with the SMS encoding and segment count of every
rendered SMS. Messages: the delivery log, filtered and paged. Credits: each SMS provider
account's balance, and the history of what SMS sends used.
"""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field
from pydantic.alias_generators import to_camel
from sqlalchemy import func, select

from stormd.config.channels import CHANNELS
from stormd.handlers.kernel.paging import Page, PageRequest, SortKey, fetch_page
from stormd.handlers.kernel.service import (
    Call,
    Conflict,
    Invalid,
    NotFound,
    check_if_match,
    require_store,
)
from stormd.handlers.outreach.discounts import new_code
from stormd.handlers.outreach.queue import load_templates, standard_variables, store_profile
from stormd.handlers.outreach.template_library import (
    CATEGORIES,
    save_store_template,
    seed_system_templates,
    template_dict,
)
from stormd.handlers.outreach.templates import LOCALES, OPTIONS, TemplateError, system_library
from stormd.plugins import sms_info
from stormd.plugins.policy.eligibility import Reach, load_reach
from stormd.schema.marketing.campaigns import CampaignTemplate
from stormd.schema.marketing.messages import MESSAGE_STATUSES, Message, SmsLog, SmsProvider

Category = Literal["SEASONAL", "PROMOTIONAL", "AUTOMATION"]
assert set(Category.__args__) == set(CATEGORIES)  # type: ignore[attr-defined]
MessageStatus = Literal["queued", "sending", "sent", "delivered", "read", "failed",
                        "cancelled", "deferred"]
assert set(MessageStatus.__args__) == set(MESSAGE_STATUSES)  # type: ignore[attr-defined]


class _Model(BaseModel):
    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="forbid")


# --- templates ---------------------------------------------------------------------------


class Template(_Model):
    slug: str
    store_id: str | None = Field(description="null for a system template.")
    system: bool
    name: str
    category: str
    description: str | None
    recommended_discount: str | None
    channel_mix: list[str]
    usage_count: int
    bodies: dict[str, list[str]] = Field(description="channel -> the locales it has a body in")
    sms_max_segments: int | None
    content: dict[str, Any] = Field(description="The sources: {channel: {locale: body}} and "
                                                "options such as sms_max_segments.")


class TemplateDefinition(_Model):
    """One of the store's templates (its slug is in the path)."""

    name: str = Field(min_length=1, max_length=200)
    content: dict[str, dict[str, str] | int] = Field(
        description='{channel: {locale: body}}, e.g. {"sms": {"bn": "...", "en": "..."}}, '
                    "and the option sms_max_segments (1-10).")
    category: Category = "PROMOTIONAL"
    description: str | None = Field(default=None, max_length=2000)
    recommended_discount: str | None = Field(default=None, max_length=32)
    channel_mix: list[str] | None = Field(default=None, max_length=8)


class TemplatePreviewRequest(_Model):
    customer_id: str | None = Field(default=None, max_length=128,
                                    description="Render for this real customer (their locale).")
    test_data: dict[str, Any] | None = Field(
        default=None, description="Variables to render with; both locales are rendered.")


class SmsCount(_Model):
    encoding: str = Field(description="GSM-7 or UCS-2 (Bengali).")
    characters: int
    segments: int = Field(description="Parts the gateways bill.")


class RenderedTemplate(_Model):
    channel: str
    locale: str
    subject: str | None = None
    body: str | None = None
    sms: SmsCount | None = None
    error: str | None = Field(default=None, description="Why this body did not render "
                                                        "(e.g. a missing variable, named).")


class TemplatePreview(_Model):
    slug: str
    rendered: list[RenderedTemplate]


TemplateSort = Literal["slug", "-slug", "name", "-name"]
TEMPLATE_SORTS = {"slug": SortKey(CampaignTemplate.slug, "slug"),
                  "name": SortKey(CampaignTemplate.name, "name")}
TEMPLATE_ID = SortKey(CampaignTemplate.id, "id", int)


def to_template(t: CampaignTemplate) -> Template:
    data = template_dict(t)
    return Template.model_validate({**data, "content": dict(t.default_content or {})})


async def _library(call: Call) -> None:
    """The system rows mirror the shipped files (written when they do not yet)."""
    async with call.reading() as session:
        known = await session.scalar(select(func.count()).select_from(CampaignTemplate).where(
            CampaignTemplate.store_id.is_(None), CampaignTemplate.is_system.is_(True)))
    if known != len(system_library()):
        async with call.writing() as session:
            await seed_system_templates(session, call.now())


def _visible(store_id: str):
    """The store's own templates and the system ones it does not override."""
    own = select(CampaignTemplate.slug).where(CampaignTemplate.store_id == store_id)
    return (CampaignTemplate.store_id == store_id) | (
        CampaignTemplate.store_id.is_(None) & CampaignTemplate.slug.not_in(own))


async def list_templates(call: Call, store_id: str, page: PageRequest, *,
                         system: bool | None = None, category: str | None = None
                         ) -> Page[Template]:
    """The system library (seasonal, promotional, automation) and the store's own."""
    page.sort = page.sort or "slug"
    page.filters = {"system": system, "category": category}
    await _library(call)
    query = select(CampaignTemplate).where(_visible(store_id))
    if system is not None:
        query = query.where(CampaignTemplate.is_system.is_(system))
    if category:
        query = query.where(CampaignTemplate.category == category)
    async with call.reading() as session:
        await require_store(session, store_id)
        return await fetch_page(session, query, page, TEMPLATE_SORTS, TEMPLATE_ID, to_template)


async def _template_row(session, store_id: str, slug: str) -> CampaignTemplate:
    row = await session.scalar(select(CampaignTemplate).where(
        CampaignTemplate.slug == slug, _visible(store_id)))
    if row is None:
        raise NotFound(f"store {store_id!r} has no template {slug!r} (neither its own nor a "
                       "system one)")
    return row


async def get_template(call: Call, store_id: str, slug: str) -> Template:
    await _library(call)
    async with call.reading() as session:
        await require_store(session, store_id)
        return to_template(await _template_row(session, store_id, slug))


async def save_template(call: Call, store_id: str, slug: str, definition: TemplateDefinition,
                        if_match: str | None = None, *, require_match: bool = False
                        ) -> tuple[Template, bool]:
    """Create or replace one of the store's templates (checked in the sandbox now; a system
    slug is overridden for the store). Replacing the store's own takes If-Match (from the
    API). Returns the template and whether it was created."""
    data = {"slug": slug, **definition.model_dump(by_alias=True, exclude_none=True)}
    async with call.writing() as session:
        await require_store(session, store_id)
        own = await session.scalar(select(CampaignTemplate).where(
            CampaignTemplate.store_id == store_id, CampaignTemplate.slug == slug)
            .with_for_update())
        if own is not None:
            check_if_match(to_template(own), if_match, required=require_match)
        row = await save_store_template(session, store_id, data, call.now())
        await call.audit(session, store_id, "templates.save", slug,
                         {"name": definition.name, "channels": sorted(definition.content)})
        return to_template(row), own is None


async def delete_template(call: Call, store_id: str, slug: str, if_match: str | None = None,
                          *, require_match: bool = False) -> None:
    """Delete the store's own template of a slug (the system one, if any, shows again)."""
    async with call.writing() as session:
        await require_store(session, store_id)
        own = await session.scalar(select(CampaignTemplate).where(
            CampaignTemplate.store_id == store_id, CampaignTemplate.slug == slug)
            .with_for_update())
        if own is None:
            if slug in system_library():
                raise Conflict(f"{slug!r} is a system template: it cannot be deleted "
                               "(save one of your own to override it)")
            raise NotFound(f"store {store_id!r} has no template {slug!r}")
        check_if_match(to_template(own), if_match, required=require_match)
        await session.delete(own)
        await call.audit(session, store_id, "templates.delete", slug)


async def preview_template(call: Call, store_id: str, slug: str,
                           request: TemplatePreviewRequest) -> TemplatePreview:
    """Every body of the template rendered with test data in bn and en (or for a real
    customer in their locale), each SMS with its encoding and billed segment count; a body
    that cannot render says why instead."""
    settings = call.settings
    await _library(call)
    async with call.reading() as session:
        await require_store(session, store_id)
        await _template_row(session, store_id, slug)
        templates = await load_templates(session, store_id, slug)
        store = await store_profile(session, settings, store_id)
        if request.customer_id:
            reach = (await load_reach(session, store_id, [request.customer_id])
                     ).get(request.customer_id)
            if reach is None:
                raise NotFound(f"customerId: store {store_id!r} has no customer "
                               f"{request.customer_id!r}")
            people: list[tuple[Reach, dict[str, Any]]] = [(reach, {})]
        else:
            test = request.test_data or {}
            people = [(Reach(customer_id=str(test.get("customer_id", "test-customer")),
                             name=str(test.get("name", "Test Customer")), locale=loc), test)
                      for loc in LOCALES]
    rendered = []
    for channel in sorted(templates.channels() - set(OPTIONS)):
        for reach, test in people:
            variables = {**standard_variables(reach, store, settings),
                         "discount_code": new_code(10), "discount_percent": "10", **test}
            item = RenderedTemplate(channel=channel, locale=reach.locale)
            try:  # a store's own body renders in the worker, under the limits of a send
                [out] = await templates.get(channel, reach.locale).render_many([variables],
                                                                               counted=False)
                if isinstance(out, TemplateError):
                    raise out
                item.subject, item.body = out.subject, out.body
                if channel == "sms":
                    info = sms_info(out.body)
                    item.sms = SmsCount(encoding=info.encoding, characters=info.characters,
                                        segments=info.segments)
            except TemplateError as exc:
                item.error = str(exc)
            except (TypeError, ValueError, ArithmeticError, LookupError, AttributeError,
                    RecursionError) as exc:  # the template's own expression failed
                item.error = f"{channel}.{reach.locale}: {type(exc).__name__}: {exc}"
            rendered.append(item)
    return TemplatePreview(slug=slug, rendered=rendered)


# --- the delivery log --------------------------------------------------------------------


class MessageRecord(_Model):
    id: int
    store_id: str
    customer_id: str | None
    channel: str
    provider: str | None
    template: str | None
    trigger: str | None
    campaign_id: str | None
    variant: str | None
    status: str
    cost: Decimal
    segments: int | None
    error: str | None
    created_at: datetime
    sent_at: datetime | None
    subject: str | None
    body: str


MessageSort = Literal["-id", "id"]
MESSAGE_SORTS = {"id": SortKey(Message.id, "id", int)}


def _message(m: Message) -> MessageRecord:
    return MessageRecord(id=m.id, store_id=m.store_id, customer_id=m.customer_id,
                         channel=m.channel, provider=m.provider, template=m.template,
                         trigger=m.trigger, campaign_id=m.campaign_id, variant=m.variant,
                         status=m.status, cost=m.cost, segments=m.segments, error=m.error,
                         created_at=m.created_at, sent_at=m.sent_at, subject=m.subject,
                         body=m.body)


async def list_messages(call: Call, store_id: str | None, page: PageRequest, *,
                        customer_id: str | None = None, channel: str | None = None,
                        status: str | None = None, campaign_id: str | None = None,
                        trigger: str | None = None, since: datetime | None = None,
                        until: datetime | None = None) -> Page[MessageRecord]:
    """The delivery log, newest first: who got what, through which provider, at what cost
    (store None: every store, for the operator's command line)."""
    page.sort = page.sort or "-id"
    page.filters = {"customer": customer_id, "channel": channel, "status": status,
                    "campaign": campaign_id, "trigger": trigger, "from": since, "to": until}
    if channel is not None and channel not in CHANNELS:
        raise Invalid(f"channel {channel!r} is not one of {', '.join(CHANNELS)}")
    query = select(Message)
    for column, value in ((Message.store_id, store_id), (Message.customer_id, customer_id),
                          (Message.channel, channel), (Message.status, status),
                          (Message.campaign_id, campaign_id), (Message.trigger, trigger)):
        if value is not None:
            query = query.where(column == value)
    if since is not None:
        query = query.where(Message.created_at >= since)
    if until is not None:
        query = query.where(Message.created_at < until)
    async with call.reading() as session:  # a store never heard of has no messages
        return await fetch_page(session, query, page, MESSAGE_SORTS, MESSAGE_SORTS["id"],
                                _message)


# --- SMS credits -------------------------------------------------------------------------


class CreditAccount(_Model):
    provider: str
    sender_id: str | None
    balance: int = Field(description="SMS segments left on the account.")
    rate_per_sms: Decimal
    active: bool
    updated_at: datetime


class Credits(_Model):
    store_id: str
    total_segments: int
    accounts: list[CreditAccount]


class CreditUse(_Model):
    id: int
    at: datetime
    provider: str
    segments: int
    cost: Decimal
    status: str
    message_id: int
    campaign_id: str | None


async def credits(call: Call, store_id: str) -> Credits:
    """The store's SMS credit balance on each provider account."""
    async with call.reading() as session:
        await require_store(session, store_id)
        rows = (await session.scalars(select(SmsProvider).where(
            SmsProvider.store_id == store_id).order_by(SmsProvider.provider))).all()
    accounts = [CreditAccount(provider=r.provider, sender_id=r.sender_id,
                              balance=r.credit_balance, rate_per_sms=r.rate_per_sms,
                              active=r.is_active, updated_at=r.updated_at) for r in rows]
    return Credits(store_id=store_id, total_segments=sum(a.balance for a in accounts),
                   accounts=accounts)


async def credit_history(call: Call, store_id: str, page: PageRequest, *,
                         provider: str | None = None) -> Page[CreditUse]:
    """What SMS sends used, newest first: one row per SMS with its segments and cost."""
    page.sort = "-id"
    page.filters = {"provider": provider}
    query = select(SmsLog).where(SmsLog.store_id == store_id)
    if provider:
        query = query.where(SmsLog.provider == provider)
    sorts = {"id": SortKey(SmsLog.id, "id", int)}
    async with call.reading() as session:
        await require_store(session, store_id)
        return await fetch_page(session, query, page, sorts, sorts["id"], lambda r: CreditUse(
            id=r.id, at=r.created_at, provider=r.provider, segments=r.segments, cost=r.cost,
            status=r.status, message_id=r.message_id, campaign_id=r.campaign_id))
