"""Campaigns as the API and `stormd campaigns` see them: create, list, show, change,
preview (cost, ROI and rendered bodies), schedule (checks, price, ROI guard), send, pause,
cancel, and results. Both callers call these functions; a refusal raises (a campaign
error, or the ROI guard's `SendRefused`) with the reason.
"""

from __future__ import annotations

import copy
from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, create_model
from pydantic.alias_generators import to_camel
from pydantic.fields import FieldInfo
from sqlalchemy import select

from stormd.handlers.campaigns import campaigns as domain
from stormd.handlers.campaigns.campaigns import RECOMMENDED, CampaignError, CampaignSpec
from stormd.handlers.campaigns.results import campaign_report
from stormd.handlers.kernel.paging import Page, PageRequest, SortKey, fetch_page
from stormd.handlers.kernel.service import (
    Call,
    Instant,
    Invalid,
    NotFound,
    ServiceError,
    check_if_match,
    require_store,
)
from stormd.handlers.outreach.discounts import new_code
from stormd.handlers.outreach.queue import (
    load_templates,
    plain_percent,
    standard_variables,
    store_profile,
)
from stormd.handlers.outreach.recommendations import last_order_products, recommend_many
from stormd.handlers.outreach.templates import TemplateError
from stormd.plugins.policy.eligibility import Reach, load_reach
from stormd.plugins.policy.sms_fit import fit_sms
from stormd.schema.marketing.campaigns import CAMPAIGN_STATUSES, EmailCampaign

ID_PATTERN = r"^[A-Za-z0-9_-]{1,64}$"
Status = Literal["DRAFT", "SCHEDULED", "SENDING", "PAUSED", "SENT", "CANCELLED"]
assert set(Status.__args__) == set(CAMPAIGN_STATUSES)  # type: ignore[attr-defined]


class _Model(BaseModel):
    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="forbid")


def _optional(field: FieldInfo) -> FieldInfo:
    changed = copy.copy(field)
    changed.default, changed.default_factory = None, None
    return changed


# What may change in a campaign: any field of its definition, with the same bounds (fields
# left out keep their value).
CampaignChanges = create_model(
    "CampaignChanges", __config__=CampaignSpec.model_config,
    **{name: (f.annotation | None, _optional(f)) for name, f in CampaignSpec.model_fields.items()})


class Campaign(_Model):
    id: str
    store_id: str
    name: str
    status: Status
    channels: list[str]
    routing: str
    segments: list[str]
    exclude_segments: list[str]
    template: str | None
    content: dict[str, Any] | None
    variables: dict[str, Any]
    variants: list[dict[str, Any]]
    holdout_percent: int
    discount_percent: str | None
    budget: str | None
    send_mode: str
    scheduled_at: datetime | None
    started_at: datetime | None
    finished_at: datetime | None
    audience_size: int
    cost: str
    created_at: datetime
    updated_at: datetime


class CostPreview(_Model):
    """What sending would do: who gets what on which channel, its cost, what it may earn."""

    audience: int
    holdout: int
    unreachable: int
    capped: int
    deferred: int
    offer_cooldown: int = Field(description="Left out: they had another offer within "
                                            "limits.offer_cooldown.")
    reach: int
    by_channel: dict[str, int]
    sms_segments: int
    cost_by_channel: dict[str, str]
    cost: str
    average_order_value: str
    conversion_rate: float
    conversion_source: str = Field(description="config, or store: measured on the store's "
                                               "own past campaigns.")
    expected_revenue: str
    expected_roi: str | None = Field(description="Revenue per taka of cost (10 means 10:1).")
    min_roi: str
    budget_left: str | None
    alerts: list[str]
    refusals: list[str] = Field(description="Why scheduling would be refused (force overrides).")
    sampled: int | None = Field(description="null: every recipient was counted; else the "
                                            "figures (not the audience) are scaled from an "
                                            "even sample of this many recipients.")


class Rendered(BaseModel):
    model_config = ConfigDict(extra="allow")

    channel: str
    locale: str | None = None
    subject: str | None = None
    body: str


class PreviewRequest(_Model):
    customer_id: str | None = Field(default=None, max_length=128,
                                    description="Render for this real customer.")
    test_data: dict[str, Any] | None = Field(
        default=None, description="Variables to render with (default: a test customer).")


class CampaignPreview(_Model):
    campaign: Campaign
    preview: CostPreview
    rendered: list[Rendered]


class ScheduleRequest(_Model):
    send_mode: Literal["now", "at", "best_time", "off_peak", "peak"] | None = None
    at: Instant | None = Field(default=None, description="For sendMode at.")
    force: bool = Field(default=False, description="Send even below the minimum ROI or "
                                                   "over budget.")


class Scheduled(_Model):
    campaign: Campaign
    preview: CostPreview


class Sent(_Model):
    campaign: Campaign
    result: dict[str, Any] = Field(description="Messages queued per status, holdout kept back.")


class Cancelled(_Model):
    campaign: Campaign
    withdrawn: int = Field(description="Queued messages withdrawn.")


class Results(_Model):
    campaign: Campaign
    results: dict[str, Any] = Field(description="Orders, revenue, cost, net, ROI, variants, "
                                                "A/B test, uplift over the holdout.")


CampaignSort = Literal["createdAt", "-createdAt", "name", "-name"]
SORTS = {"createdAt": SortKey(EmailCampaign.created_at, "created_at", datetime),
         "name": SortKey(EmailCampaign.name, "name"),
         "id": SortKey(EmailCampaign.id, "id")}


def to_campaign(c: EmailCampaign) -> Campaign:
    return Campaign.model_validate(domain.to_dict(c))


def _spec(spec: BaseModel) -> dict[str, Any]:
    return spec.model_dump(exclude_unset=True)


async def list_campaigns(call: Call, store_id: str, page: PageRequest,
                         status: str | None = None) -> Page[Campaign]:
    page.sort = page.sort or "-createdAt"
    page.filters = {"status": status}
    query = select(EmailCampaign).where(EmailCampaign.store_id == store_id)
    if status:
        query = query.where(EmailCampaign.status == status.upper())
    async with call.reading() as session:
        await require_store(session, store_id)
        return await fetch_page(session, query, page, SORTS, SORTS["id"], to_campaign)


async def get_campaign(call: Call, store_id: str, campaign_id: str) -> Campaign:
    async with call.reading() as session:
        await require_store(session, store_id)
        return to_campaign(await domain.get_campaign(session, store_id, campaign_id))


async def create_campaign(call: Call, store_id: str, spec: CampaignSpec) -> Campaign:
    """A DRAFT campaign (its segments and templates checked now)."""
    async with call.writing() as session:
        await require_store(session, store_id)
        c = await domain.create_campaign(session, store_id, _spec(spec), call.now())
        await call.audit(session, store_id, "campaigns.create", c.id, {"name": c.name})
        return to_campaign(c)


async def update_campaign(call: Call, store_id: str, campaign_id: str, changes: BaseModel,
                          if_match: str | None = None, *, require_match: bool = False
                          ) -> Campaign:
    """Change a DRAFT, SCHEDULED or PAUSED campaign (a scheduled one returns to DRAFT: what
    was priced changed)."""
    fields = _spec(changes)
    async with call.writing() as session:
        await require_store(session, store_id)
        await session.execute(select(EmailCampaign.id).where(
            EmailCampaign.id == campaign_id).with_for_update())
        current = await domain.get_campaign(session, store_id, campaign_id)
        check_if_match(to_campaign(current), if_match, required=require_match)
        c = await domain.update_campaign(session, store_id, campaign_id, fields, call.now())
        await call.audit(session, store_id, "campaigns.update", campaign_id,
                         {"fields": sorted(fields)})
        return to_campaign(c)


RENDER_FAILURES = (TypeError, ValueError, ArithmeticError, LookupError, AttributeError,
                   RecursionError)


async def preview_campaign(call: Call, store_id: str, campaign_id: str,
                           request: PreviewRequest) -> CampaignPreview:
    try:
        return await _preview(call, store_id, campaign_id, request)
    except (CampaignError, ServiceError):
        raise
    except RENDER_FAILURES as exc:  # an expression of a template failed with these data
        raise Invalid(f"a template failed to render: {type(exc).__name__}: {exc}") from None


async def _preview(call: Call, store_id: str, campaign_id: str,
                   request: PreviewRequest) -> CampaignPreview:
    """The cost preview (counts per channel, SMS segments, cost, expected revenue and ROI,
    refusals, alerts) and the bodies rendered for a real customer, or for test data in
    every channel and both locales."""
    now, settings = call.now(), call.settings
    async with call.reading() as session:
        await require_store(session, store_id)
        c = await domain.get_campaign(session, store_id, campaign_id)
        preview, samples = await domain.preview_campaign(session, settings, c, now)
        store = await store_profile(session, settings, store_id)
        templates = await load_templates(session, store_id, c.template, c.content) if (
            c.template or c.content) else None
        if request.customer_id:
            reach = (await load_reach(session, store_id, [request.customer_id])
                     ).get(request.customer_id)
            if reach is None:
                raise NotFound(f"customerId: store {store_id!r} has no customer "
                               f"{request.customer_id!r}")
            people = [(reach, None)]
        else:
            test = request.test_data or {}
            people = [(Reach(customer_id=str(test.get("customer_id", "test-customer")),
                             name=str(test.get("name", "Test Customer")), locale=loc), test)
                      for loc in ("bn", "en")]
        rendered = []
        if templates is not None:
            for reach, test in people:
                variables = {**standard_variables(reach, store, settings),
                             **(c.variables or {}), **(test or {})}
                if RECOMMENDED not in variables:  # the customer's own, or none for test data
                    variables[RECOMMENDED] = [] if test is not None else (await recommend_many(
                        session, settings, store_id, [(reach.customer_id, (
                            await last_order_products(session, store_id, [reach.customer_id])
                        ).get(reach.customer_id, []))], now, record=False))[0]
                if c.discount_percent:
                    variables.setdefault("discount_code", new_code(c.discount_percent))
                    variables.setdefault("discount_percent", plain_percent(c.discount_percent))
                for channel in c.channels:
                    if channel not in templates.channels():
                        continue
                    compiled = templates.get(channel, reach.locale)
                    [out] = await compiled.render_many([variables], tail=channel == "sms")
                    if isinstance(out, TemplateError):
                        raise out
                    body = out.body
                    if channel == "sms":  # as it will be sent: trimmed to the template's parts
                        body = fit_sms(body, compiled.sms_fit(templates.sms_max_segments, out),
                                       quiet=True)
                    rendered.append({"channel": channel, "locale": reach.locale,
                                     "subject": out.subject, "body": body})
        return CampaignPreview(campaign=to_campaign(c),
                               preview=CostPreview.model_validate(preview.as_dict()),
                               rendered=[Rendered.model_validate(r)
                                         for r in (rendered or samples)])


async def schedule_campaign(call: Call, store_id: str, campaign_id: str,
                            request: ScheduleRequest) -> Scheduled:
    """Check, price and guard (refused below the store's minimum ROI or over budget unless
    forced), then set the moment the fan-out starts."""
    async with call.writing() as session:
        await require_store(session, store_id)
        c, preview = await domain.schedule_campaign(
            session, call.settings, store_id, campaign_id, call.now(), force=request.force,
            send_mode=request.send_mode, at=request.at)
        await call.audit(session, store_id, "campaigns.schedule", campaign_id,
                         request.model_dump(mode="json", by_alias=True, exclude_unset=True))
        return Scheduled(campaign=to_campaign(c),
                         preview=CostPreview.model_validate(preview.as_dict()))


async def send_campaign(call: Call, store_id: str, campaign_id: str) -> Sent:
    """Fan a scheduled campaign out into the delivery queue now (the minute cron does this
    by itself when the campaign's moment comes)."""
    await get_campaign(call, store_id, campaign_id)
    result = await domain.fan_out(call.job.sessionmaker, call.settings, store_id, campaign_id,
                                  call.now())
    async with call.writing() as session:
        await call.audit(session, store_id, "campaigns.send", campaign_id, result)
        c = await domain.get_campaign(session, store_id, campaign_id)
        return Sent(campaign=to_campaign(c), result=result)


async def pause_campaign(call: Call, store_id: str, campaign_id: str) -> Campaign:
    async with call.writing() as session:
        await require_store(session, store_id)
        c = await domain.pause_campaign(session, store_id, campaign_id, call.now())
        await call.audit(session, store_id, "campaigns.pause", campaign_id)
        return to_campaign(c)


async def cancel_campaign(call: Call, store_id: str, campaign_id: str) -> Cancelled:
    """Cancel, withdrawing its messages still queued."""
    async with call.writing() as session:
        await require_store(session, store_id)
        c, withdrawn = await domain.cancel_campaign(session, store_id, campaign_id, call.now())
        await call.audit(session, store_id, "campaigns.cancel", campaign_id,
                         {"withdrawn": withdrawn})
        return Cancelled(campaign=to_campaign(c), withdrawn=withdrawn)


async def campaign_results(call: Call, store_id: str, campaign_id: str) -> Results:
    """Attributed orders, revenue, actual cost, ROI, variants, uplift."""
    async with call.reading() as session:
        await require_store(session, store_id)
        c = await domain.get_campaign(session, store_id, campaign_id)
        return Results(campaign=to_campaign(c),
                       results=await campaign_report(session, call.settings, store_id,
                                                     campaign_id))


def parse_spec(data: Any, model: type[BaseModel] = CampaignSpec) -> Any:
    """A campaign definition (or changes) from JSON, refused by field (the CLI's files)."""
    from pydantic import ValidationError

    try:
        return model.model_validate(data)
    except ValidationError as exc:
        err = exc.errors()[0]
        where = ".".join(str(p) for p in err["loc"]) or "campaign"
        raise Invalid(f"{where}: {err['msg']}") from None


__all__ = ["CampaignChanges", "CampaignError", "CampaignSpec"]
