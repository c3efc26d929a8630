"""`/api/v1/stores/{storeId}/campaigns`: the whole lifecycle, as `stormd campaigns` does
it: create, list, get, change (If-Match), preview (cost, ROI, rendered bodies), schedule
and send (both take an Idempotency-Key), pause, cancel, results."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path, Query, Request, Response

from stormd.daemon.http.auth import InStore
from stormd.daemon.http.conventions import (
    Cursor,
    IdempotencyKey,
    IfMatch,
    Limit,
    idempotent,
    page,
    tagged,
)
from stormd.handlers.campaigns import service
from stormd.handlers.campaigns.service import (
    Campaign,
    CampaignChanges,
    CampaignPreview,
    CampaignSort,
    CampaignSpec,
    Cancelled,
    PreviewRequest,
    Results,
    Scheduled,
    ScheduleRequest,
    Sent,
    Status,
)
from stormd.handlers.kernel.paging import Page

router = APIRouter(prefix="/campaigns", tags=["campaigns"])
CampaignId = Annotated[str, Path(alias="id", pattern=service.ID_PATTERN,
                                 description="The campaign's id.")]


@router.get("", operation_id="listCampaigns", response_model=Page[Campaign])
async def list_campaigns(scope: InStore, limit: Limit = 50, cursor: Cursor = None,
                         sort: CampaignSort = "-createdAt",
                         status: Annotated[Status | None, Query()] = None) -> Page[Campaign]:
    """The store's campaigns, newest first."""
    return await service.list_campaigns(scope.call, scope.store_id, page(limit, cursor, sort),
                                        status)


@router.post("", operation_id="createCampaign", status_code=201, response_model=Campaign)
async def create_campaign(scope: InStore, spec: CampaignSpec, response: Response) -> Campaign:
    """A DRAFT campaign; its segments and templates are checked now."""
    return tagged(await service.create_campaign(scope.call, scope.store_id, spec), response)


@router.get("/{id}", operation_id="getCampaign", response_model=Campaign)
async def get_campaign(scope: InStore, campaign_id: CampaignId, response: Response) -> Campaign:
    return tagged(await service.get_campaign(scope.call, scope.store_id, campaign_id), response)


@router.patch("/{id}", operation_id="updateCampaign", response_model=Campaign)
async def update_campaign(scope: InStore, campaign_id: CampaignId, changes: CampaignChanges,
                          response: Response, if_match: IfMatch = None) -> Campaign:
    """Change a DRAFT, SCHEDULED or PAUSED campaign (a scheduled one returns to DRAFT);
    needs If-Match."""
    return tagged(await service.update_campaign(scope.call, scope.store_id, campaign_id,
                                                changes, if_match, require_match=True),
                  response)


@router.post("/{id}/preview", operation_id="previewCampaign", response_model=CampaignPreview)
async def preview_campaign(scope: InStore, campaign_id: CampaignId,
                           request: PreviewRequest | None = None) -> CampaignPreview:
    """Cost per channel, SMS segments, expected revenue and ROI, refusals, and the bodies
    rendered for a customer or test data; nothing is queued."""
    return await service.preview_campaign(scope.call, scope.store_id, campaign_id,
                                          request or PreviewRequest())


@router.post("/{id}/schedule", operation_id="scheduleCampaign", response_model=Scheduled)
async def schedule_campaign(scope: InStore, campaign_id: CampaignId, request: Request,
                            body: ScheduleRequest | None = None,
                            idempotency_key: IdempotencyKey = None) -> Response:
    """Check, price and schedule; refused (409) below the store's minimum ROI or over
    budget unless force is true."""
    return await idempotent(request, scope, idempotency_key, lambda: service.schedule_campaign(
        scope.call, scope.store_id, campaign_id, body or ScheduleRequest()))


@router.post("/{id}/send", operation_id="sendCampaign", response_model=Sent)
async def send_campaign(scope: InStore, campaign_id: CampaignId, request: Request,
                        idempotency_key: IdempotencyKey = None) -> Response:
    """Fan a scheduled campaign out into the delivery queue now."""
    return await idempotent(request, scope, idempotency_key, lambda: service.send_campaign(
        scope.call, scope.store_id, campaign_id))


@router.post("/{id}/pause", operation_id="pauseCampaign", response_model=Campaign)
async def pause_campaign(scope: InStore, campaign_id: CampaignId, response: Response
                         ) -> Campaign:
    """Stop a scheduled or sending campaign (schedule it again to resume)."""
    return tagged(await service.pause_campaign(scope.call, scope.store_id, campaign_id),
                  response)


@router.post("/{id}/cancel", operation_id="cancelCampaign", response_model=Cancelled)
async def cancel_campaign(scope: InStore, campaign_id: CampaignId) -> Cancelled:
    """Cancel, withdrawing its messages still queued."""
    return await service.cancel_campaign(scope.call, scope.store_id, campaign_id)


@router.get("/{id}/results", operation_id="campaignResults", response_model=Results)
async def campaign_results(scope: InStore, campaign_id: CampaignId) -> Results:
    """Attributed orders and revenue, actual cost, ROI, A/B variants, uplift."""
    return await service.campaign_results(scope.call, scope.store_id, campaign_id)
