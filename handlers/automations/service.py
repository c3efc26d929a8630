"""Automations as the API and `stormd campaigns automation-*` see them: the store's
triggers (turn one on or off, configure a segment-entry workflow), the execution log with
filters, and one trigger's results (ROI)."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field
from pydantic.alias_generators import to_camel
from sqlalchemy import select

from stormd.handlers.automations import triggers
from stormd.handlers.campaigns.results import automation_report
from stormd.handlers.kernel.paging import Page, PageRequest, SortKey, fetch_page
from stormd.handlers.kernel.service import (
    Call,
    Invalid,
    NotFound,
    check_if_match,
    require_store,
)
from stormd.schema.marketing.automations import (
    EXECUTION_STATUSES,
    AutomationExecution,
    AutomationWorkflow,
)

TRIGGER_PATTERN = r"^(win_back|vip|post_purchase|welcome|birthday|segment_entry:[a-z0-9][a-z0-9_-]{0,49})$"
ExecutionStatus = Literal["PENDING", "RUNNING", "WAITING", "COMPLETED", "FAILED", "SKIPPED",
                          "CANCELLED"]
assert set(ExecutionStatus.__args__) == set(EXECUTION_STATUSES)  # type: ignore[attr-defined]


class _Model(BaseModel):
    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="forbid")


class Workflow(_Model):
    trigger: str
    name: str
    enabled: bool = Field(description="Switched on for this store.")
    active: bool = Field(description="Enabled here and in the daemon's automations.enabled.")
    config: dict[str, Any] | None
    updated_at: datetime


class WorkflowSettings(_Model):
    """Turn a trigger on or off; a `segment_entry:<slug>` trigger takes
    {template, channels?, discount_percent?}."""

    enabled: bool
    config: dict[str, Any] | None = None


class Execution(_Model):
    id: int
    trigger: str
    customer_id: str | None
    subject_id: str | None
    status: str
    step: int
    error: str | None
    variant: str | None = Field(default=None, description="The A/B variant it was sent")
    created_at: datetime
    updated_at: datetime
    completed_at: datetime | None


LogSort = Literal["-createdAt", "createdAt"]
LOG_SORTS = {"createdAt": SortKey(AutomationExecution.created_at, "created_at", datetime)}
WORKFLOW_SORTS = {"trigger": SortKey(AutomationWorkflow.trigger, "trigger")}
LOG_ID = SortKey(AutomationExecution.id, "id", int)


def _workflow(call: Call, w: AutomationWorkflow) -> Workflow:
    on = w.trigger.split(":", 1)[0] in call.settings.automations.enabled
    return Workflow(trigger=w.trigger, name=w.name, enabled=w.enabled, active=w.enabled and on,
                    config=w.config, updated_at=w.updated_at)


async def list_workflows(call: Call, store_id: str, page: PageRequest) -> Page[Workflow]:
    """The store's triggers: every built-in one (made on first sight) and its own
    segment-entry workflows."""
    page.sort = "trigger"
    async with call.reading() as session:
        await require_store(session, store_id)
        known = set((await session.scalars(select(AutomationWorkflow.trigger).where(
            AutomationWorkflow.store_id == store_id))).all())
    if set(triggers.TRIGGERS) - known:
        async with call.writing() as session:
            ctx = call.handler_context(session, store_id)
            for trigger in triggers.TRIGGERS:
                await triggers.ensure_workflow(ctx, trigger)
    query = select(AutomationWorkflow).where(AutomationWorkflow.store_id == store_id)
    async with call.reading() as session:
        return await fetch_page(session, query, page, WORKFLOW_SORTS, WORKFLOW_SORTS["trigger"],
                                lambda w: _workflow(call, w))


async def get_workflow(call: Call, store_id: str, trigger: str) -> Workflow:
    """One trigger of the store (a built-in one is made on first sight)."""
    async with call.reading() as session:
        await require_store(session, store_id)
        found = await session.scalar(select(AutomationWorkflow).where(
            AutomationWorkflow.store_id == store_id, AutomationWorkflow.trigger == trigger))
    if found is not None:
        return _workflow(call, found)
    if trigger not in triggers.TRIGGERS:
        raise NotFound(f"store {store_id!r} has no automation {trigger!r}")
    async with call.writing() as session:
        return _workflow(call, await triggers.ensure_workflow(
            call.handler_context(session, store_id), trigger))


async def configure_workflow(call: Call, store_id: str, trigger: str,
                             settings: WorkflowSettings, if_match: str | None = None, *,
                             require_match: bool = False) -> Workflow:
    """Turn a trigger on or off for the store; changing one that exists takes If-Match
    (from the API)."""
    async with call.writing() as session:
        await require_store(session, store_id)
        found = await session.scalar(select(AutomationWorkflow).where(
            AutomationWorkflow.store_id == store_id, AutomationWorkflow.trigger == trigger)
            .with_for_update())
        if found is not None:
            check_if_match(_workflow(call, found), if_match, required=require_match)
        ctx = call.handler_context(session, store_id)
        try:
            workflow = await triggers.configure_workflow(ctx, trigger, settings.enabled,
                                                         settings.config)
        except ValueError as exc:
            raise Invalid(str(exc)) from None
        await session.flush()
        await call.audit(session, store_id, "automations.configure", trigger,
                         settings.model_dump(mode="json", by_alias=True))
        return _workflow(call, workflow)


async def execution_log(call: Call, store_id: str, page: PageRequest, *,
                        trigger: str | None = None, status: str | None = None,
                        customer_id: str | None = None, since: datetime | None = None,
                        until: datetime | None = None) -> Page[Execution]:
    """Recent executions, newest first (the automation log viewer's data)."""
    page.sort = page.sort or "-createdAt"
    page.filters = {"trigger": trigger, "status": status, "customer": customer_id,
                    "from": since, "to": until}
    Ex = AutomationExecution
    query = select(Ex).where(Ex.store_id == store_id)
    if trigger:
        query = query.where(Ex.trigger == trigger)
    if status:
        query = query.where(Ex.status == status.upper())
    if customer_id:
        query = query.where(Ex.customer_id == customer_id)
    if since is not None:
        query = query.where(Ex.created_at >= since)
    if until is not None:
        query = query.where(Ex.created_at < until)
    async with call.reading() as session:
        await require_store(session, store_id)
        return await fetch_page(session, query, page, LOG_SORTS, LOG_ID, lambda e: Execution(
            id=e.id, trigger=e.trigger, customer_id=e.customer_id, subject_id=e.subject_id,
            status=e.status, step=e.step, error=e.error,
            variant=(e.context or {}).get("variant"), created_at=e.created_at,
            updated_at=e.updated_at, completed_at=e.completed_at))


async def automation_results(call: Call, store_id: str, trigger: str) -> dict[str, Any]:
    """ROI of one automation (win_back, vip, birthday, ...)."""
    async with call.reading() as session:
        await require_store(session, store_id)
        return await automation_report(session, call.settings, store_id, trigger)
