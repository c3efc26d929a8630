"""Campaigns over request/reply (`<prefix>.api.campaigns.<verb>`), API-first: the
storefront's admin drives campaigns with these, and `stormd campaigns` calls the same
functions. Every request names its store (`storeId`); replies are JSON objects; a refusal
raises, and the API server answers `{"error": "..."}` with the reason.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import select

from stormd.handlers.automations.triggers import configure_workflow
from stormd.handlers.campaigns.campaigns import (
    RECOMMENDED,
    CampaignError,
    cancel_campaign,
    create_campaign,
    fan_out,
    get_campaign,
    list_campaigns,
    pause_campaign,
    preview_campaign,
    schedule_campaign,
    to_dict,
    update_campaign,
)
from stormd.handlers.campaigns.results import automation_report, campaign_report
from stormd.handlers.kernel.context import JobContext
from stormd.handlers.outreach.discounts import new_code
from stormd.handlers.outreach.queue import (
    load_templates,
    plain_percent,
    standard_variables,
    store_profile,
)
from stormd.handlers.outreach.recommendations import last_order_products, recommend_many
from stormd.handlers.outreach.template_library import (
    list_templates,
    save_store_template,
    seed_system_templates,
    template_dict,
)
from stormd.handlers.outreach.templates import TemplateError
from stormd.plugins.policy.eligibility import Reach, load_reach
from stormd.plugins.policy.sms_fit import fit_sms
from stormd.schema.marketing.automations import AutomationExecution, AutomationWorkflow

# Request name -> handler: the table the daemon's request/reply server answers from
# (handlers/__init__.py hands it to the registry) and the CLI calls in-process.
HANDLERS: dict[str, Any] = {}


def api(name: str):
    """Enter the handler in this module's table under `name`."""

    def enter(fn):
        HANDLERS[name] = fn
        return fn

    return enter


def _text(request: dict[str, Any], key: str, hint: str = "") -> str:
    """A required non-empty string field, else a refusal naming it."""
    value = request.get(key)
    if not isinstance(value, str) or not value:
        raise CampaignError(f"{key}: required{hint}")
    return value


def _object(request: dict[str, Any], key: str) -> dict[str, Any]:
    """A required JSON object field, else a refusal naming it."""
    value = request.get(key)
    if not isinstance(value, dict):
        raise CampaignError(f"{key}: required (an object)")
    return value


def _store(request: dict[str, Any]) -> str:
    return _text(request, "storeId")


def _id(request: dict[str, Any]) -> str:
    return _text(request, "id", " (the campaign id)")


async def _saved_campaign(job: JobContext, change) -> dict[str, Any]:
    """Run `change(session, now)` (returns the campaign), commit, reply with the campaign."""
    async with job.sessionmaker() as session:
        c = await change(session, job.clock.now())
        await session.commit()
        return {"campaign": to_dict(c)}


def _instant(value: Any, field: str) -> datetime | None:
    if value is None:
        return None
    try:
        when = datetime.fromisoformat(str(value))
    except ValueError:
        raise CampaignError(f"{field}: {value!r} is not an ISO 8601 time") from None
    if when.tzinfo is None:
        raise CampaignError(f"{field}: {value!r} needs a time zone")
    return when


@api("campaigns.create")
async def api_create(job: JobContext, request: dict[str, Any]) -> dict[str, Any]:
    """{storeId, campaign: {name, channels, segments, template|content|variants, ...}}"""
    spec, store = _object(request, "campaign"), _store(request)
    return await _saved_campaign(job, lambda session, now: create_campaign(
        session, store, spec, now))


@api("campaigns.update")
async def api_update(job: JobContext, request: dict[str, Any]) -> dict[str, Any]:
    """{storeId, id, changes: {...}}"""
    changes, store, cid = _object(request, "changes"), _store(request), _id(request)
    return await _saved_campaign(job, lambda session, now: update_campaign(
        session, store, cid, changes, now))


@api("campaigns.schedule")
async def api_schedule(job: JobContext, request: dict[str, Any]) -> dict[str, Any]:
    """{storeId, id, sendMode?, at?, force?}: checks, cost preview and the ROI guard."""
    async with job.sessionmaker() as session:
        c, preview = await schedule_campaign(
            session, job.settings, _store(request), _id(request), job.clock.now(),
            force=bool(request.get("force")), send_mode=request.get("sendMode"),
            at=_instant(request.get("at"), "at"))
        await session.commit()
        return {"campaign": to_dict(c), "preview": preview.as_dict()}


@api("campaigns.pause")
async def api_pause(job: JobContext, request: dict[str, Any]) -> dict[str, Any]:
    store, cid = _store(request), _id(request)
    return await _saved_campaign(job, lambda session, now: pause_campaign(
        session, store, cid, now))


@api("campaigns.cancel")
async def api_cancel(job: JobContext, request: dict[str, Any]) -> dict[str, Any]:
    async with job.sessionmaker() as session:
        c, withdrawn = await cancel_campaign(session, _store(request), _id(request),
                                             job.clock.now())
        await session.commit()
        return {"campaign": to_dict(c), "withdrawn": withdrawn}


@api("campaigns.get")
async def api_get(job: JobContext, request: dict[str, Any]) -> dict[str, Any]:
    async with job.sessionmaker() as session:
        return {"campaign": to_dict(await get_campaign(session, _store(request), _id(request)))}


@api("campaigns.list")
async def api_list(job: JobContext, request: dict[str, Any]) -> dict[str, Any]:
    """{storeId, status?}"""
    async with job.sessionmaker() as session:
        rows = await list_campaigns(session, _store(request), request.get("status"))
        return {"campaigns": [to_dict(c) for c in rows]}


@api("campaigns.preview")
async def api_preview(job: JobContext, request: dict[str, Any]) -> dict[str, Any]:
    """{storeId, id, customerId? | testData?}: the cost preview (counts per channel, SMS
    segments, cost, expected revenue and ROI, refusals, alerts) and rendered bodies, for a
    real customer or for test data in every channel and locale."""
    store_id, now = _store(request), job.clock.now()
    async with job.sessionmaker() as session:
        c = await get_campaign(session, store_id, _id(request))
        preview, samples = await preview_campaign(session, job.settings, c, now)
        store = await store_profile(session, job.settings, store_id)
        templates = await load_templates(session, store_id, c.template, c.content) if (
            c.template or c.content) else None
        customer_id = request.get("customerId")
        if customer_id:
            reach = (await load_reach(session, store_id, [customer_id])).get(customer_id)
            if reach is None:
                raise CampaignError(f"customerId: store {store_id!r} has no customer {customer_id!r}")
            people = [(reach, None)]
        else:
            test = request.get("testData") or {}
            if not isinstance(test, dict):
                raise CampaignError("testData: must be an object")
            people = [(Reach(customer_id=test.get("customer_id", "test-customer"),
                             name=test.get("name", "Test Customer"), locale=loc), test)
                      for loc in ("bn", "en")]
        rendered = []
        if templates is not None:
            for reach, test in people:
                variables = {**standard_variables(reach, store, job.settings),
                             **(c.variables or {}), **(test or {})}
                if RECOMMENDED not in variables:  # the customer's own, or none for test data
                    variables[RECOMMENDED] = [] if test is not None else (await recommend_many(
                        session, job.settings, store_id, [(reach.customer_id, (
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
        return {"campaign": to_dict(c), "preview": preview.as_dict(),
                "rendered": rendered or samples}


@api("campaigns.send")
async def api_send(job: JobContext, request: dict[str, Any]) -> dict[str, Any]:
    """{storeId, id}: fan a scheduled campaign out now (the minute cron does this by
    itself when the campaign's moment comes)."""
    store_id, cid = _store(request), _id(request)
    result = await fan_out(job.sessionmaker, job.settings, store_id, cid, job.clock.now())
    async with job.sessionmaker() as session:
        return {"campaign": to_dict(await get_campaign(session, store_id, cid)), "result": result}


@api("campaigns.results")
async def api_results(job: JobContext, request: dict[str, Any]) -> dict[str, Any]:
    """{storeId, id}: attributed orders, revenue, actual cost, ROI, variants, uplift."""
    store_id, cid = _store(request), _id(request)
    async with job.sessionmaker() as session:
        c = await get_campaign(session, store_id, cid)
        return {"campaign": to_dict(c),
                "results": await campaign_report(session, job.settings, store_id, cid)}


@api("automations.results")
async def api_automation_results(job: JobContext, request: dict[str, Any]) -> dict[str, Any]:
    """{storeId, trigger}: ROI of one automation (win_back, vip, birthday, ...)."""
    trigger = _text(request, "trigger")
    async with job.sessionmaker() as session:
        return {"results": await automation_report(session, job.settings, _store(request),
                                                   trigger)}


def _workflow_dict(w) -> dict[str, Any]:
    return {"trigger": w.trigger, "name": w.name, "enabled": w.enabled, "config": w.config,
            "updatedAt": w.updated_at}


@api("automations.configure")
async def api_configure_automation(job: JobContext, request: dict[str, Any]) -> dict[str, Any]:
    """{storeId, trigger, enabled, config?}: turn a trigger on or off for the store; a
    `segment_entry:<slug>` trigger takes {template, channels?, discount_percent?}."""
    trigger = _text(request, "trigger")
    if not isinstance(request.get("enabled"), bool):
        raise CampaignError("enabled: true or false")
    async with job.sessionmaker() as session:
        ctx = job.handler_context(session, _store(request))
        workflow = await configure_workflow(ctx, trigger, request["enabled"], request.get("config"))
        await session.commit()
        return {"workflow": _workflow_dict(workflow)}


@api("automations.list")
async def api_list_automations(job: JobContext, request: dict[str, Any]) -> dict[str, Any]:
    """{storeId}: the store's workflows (built-ins appear once they first ran or were set)."""
    async with job.sessionmaker() as session:
        rows = (await session.scalars(select(AutomationWorkflow).where(
            AutomationWorkflow.store_id == _store(request)).order_by(AutomationWorkflow.trigger))).all()
        return {"workflows": [_workflow_dict(w) for w in rows]}


@api("automations.log")
async def api_automation_log(job: JobContext, request: dict[str, Any]) -> dict[str, Any]:
    """{storeId, trigger?, status?, customerId?, limit? (100)}: recent executions, newest
    first (the automation log viewer's data)."""
    limit = min(int(request.get("limit") or 100), 1000)
    query = select(AutomationExecution).where(AutomationExecution.store_id == _store(request))
    for key, column in (("trigger", AutomationExecution.trigger),
                        ("status", AutomationExecution.status),
                        ("customerId", AutomationExecution.customer_id)):
        if request.get(key):
            value = str(request[key])
            query = query.where(column == (value.upper() if key == "status" else value))
    async with job.sessionmaker() as session:
        rows = (await session.scalars(query.order_by(AutomationExecution.created_at.desc(),
                                                     AutomationExecution.id.desc())
                                      .limit(limit))).all()
    return {"executions": [
        {"id": e.id, "trigger": e.trigger, "customerId": e.customer_id, "subjectId": e.subject_id,
         "status": e.status, "step": e.step, "error": e.error,
         "variant": (e.context or {}).get("variant"), "createdAt": e.created_at,
         "updatedAt": e.updated_at, "completedAt": e.completed_at} for e in rows]}


@api("campaigns.templates")
async def api_templates(job: JobContext, request: dict[str, Any]) -> dict[str, Any]:
    """{storeId?}: the system template library (seasonal, promotional, automation) and the
    store's own: slug, name, category, recommended discount, channel mix, bodies."""
    async with job.sessionmaker() as session:
        await seed_system_templates(session, job.clock.now())
        rows = await list_templates(session, request.get("storeId") or "")
        await session.commit()
        return {"templates": [template_dict(t) for t in rows]}


@api("templates.save")
async def api_save_template(job: JobContext, request: dict[str, Any]) -> dict[str, Any]:
    """{storeId, template: {slug, name, content: {channel: {locale: body}}, category?, ...}}:
    a store template (checked in the sandbox now); a system slug is overridden for the store."""
    data = _object(request, "template")
    async with job.sessionmaker() as session:
        row = await save_store_template(session, _store(request), data, job.clock.now(),
                                        job.settings)
        await session.commit()
        return {"template": template_dict(row)}
