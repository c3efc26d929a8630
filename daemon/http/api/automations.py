"""`/api/v1/stores/{storeId}/automations`: the store's triggers (turn on or off, configure
a segment-entry workflow), the execution log with filters, and a trigger's results."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Path, Query, Response

from stormd.daemon.http.auth import InStore
from stormd.daemon.http.conventions import Cursor, IfMatch, Limit, page, tagged
from stormd.handlers.automations import service
from stormd.handlers.automations.service import (
    Execution,
    ExecutionStatus,
    LogSort,
    Workflow,
    WorkflowSettings,
)
from stormd.handlers.kernel.paging import Page
from stormd.handlers.kernel.service import Instant

router = APIRouter(prefix="/automations", tags=["automations"])
Trigger = Annotated[str, Path(pattern=service.TRIGGER_PATTERN,
                              description="win_back, vip, post_purchase, welcome, birthday or "
                                          "segment_entry:<segment slug>")]


@router.get("", operation_id="listAutomations", response_model=Page[Workflow])
async def list_automations(scope: InStore, limit: Limit = 50, cursor: Cursor = None
                           ) -> Page[Workflow]:
    """Every trigger of the store and whether it is on."""
    return await service.list_workflows(scope.call, scope.store_id,
                                        page(limit, cursor, "trigger"))


@router.get("/log", operation_id="automationLog", response_model=Page[Execution])
async def automation_log(
        scope: InStore, limit: Limit = 50, cursor: Cursor = None, sort: LogSort = "-createdAt",
        trigger: Annotated[str | None, Query(max_length=64)] = None,
        status: Annotated[ExecutionStatus | None, Query()] = None,
        customer_id: Annotated[str | None, Query(alias="customerId", max_length=128)] = None,
        since: Annotated[Instant | None, Query(alias="from")] = None,
        until: Annotated[Instant | None, Query(alias="to")] = None) -> Page[Execution]:
    """Recent executions (trigger, customer, status, step, why one was skipped)."""
    return await service.execution_log(scope.call, scope.store_id, page(limit, cursor, sort),
                                       trigger=trigger, status=status, customer_id=customer_id,
                                       since=since, until=until)


@router.get("/{trigger}", operation_id="getAutomation", response_model=Workflow)
async def get_automation(scope: InStore, trigger: Trigger, response: Response) -> Workflow:
    return tagged(await service.get_workflow(scope.call, scope.store_id, trigger), response)


@router.put("/{trigger}", operation_id="configureAutomation", response_model=Workflow)
async def configure(scope: InStore, trigger: Trigger, settings: WorkflowSettings,
                    response: Response, if_match: IfMatch = None) -> Workflow:
    """Turn a trigger on or off; changing one that exists needs If-Match."""
    return tagged(await service.configure_workflow(scope.call, scope.store_id, trigger,
                                                   settings, if_match, require_match=True),
                  response)


@router.get("/{trigger}/results", operation_id="automationResults",
            response_model=dict[str, Any])
async def results(scope: InStore, trigger: Trigger) -> dict[str, Any]:
    """Orders and revenue attributed to the trigger's messages and codes, cost, ROI."""
    return await service.automation_results(scope.call, scope.store_id, trigger)
