"""`/api/v1/stores/{storeId}/kpis` (the KPIs for a period, and per day, week or month) and
`/messages` (the delivery log, filtered and paged)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query

from stormd.config.channels import Channel
from stormd.daemon.http.auth import InStore
from stormd.daemon.http.conventions import Cursor, Limit, page
from stormd.handlers.kernel.paging import Page
from stormd.handlers.kernel.service import Instant
from stormd.handlers.outreach import service as outreach
from stormd.handlers.outreach.service import MessageRecord, MessageSort, MessageStatus
from stormd.handlers.reporting import service
from stormd.handlers.reporting.service import Bucket, Kpis

router = APIRouter(tags=["reports"])
Since = Annotated[Instant | None, Query(alias="from", description="From (included).")]
Until = Annotated[Instant | None, Query(alias="to", description="To (excluded).")]


@router.get("/kpis", operation_id="getKpis", response_model=Kpis, response_model_by_alias=True)
async def kpis(scope: InStore, since: Since = None, until: Until = None,
               bucket: Annotated[Bucket | None, Query(
                   description="Also give the KPIs per day, week or month (store time).")
               ] = None) -> Kpis:
    """Cart recovery, engagement, automation and campaign KPIs for a period (default: all
    time, or with a bucket the last 30 days, 12 weeks or 12 months)."""
    return await service.store_kpis(scope.call, scope.store_id, since, until, bucket)


@router.get("/messages", operation_id="listMessages", response_model=Page[MessageRecord])
async def messages(
        scope: InStore, limit: Limit = 50, cursor: Cursor = None, sort: MessageSort = "-id",
        customer_id: Annotated[str | None, Query(alias="customerId", max_length=128)] = None,
        channel: Annotated[Channel | None, Query()] = None,
        status: Annotated[MessageStatus | None, Query()] = None,
        campaign_id: Annotated[str | None, Query(alias="campaignId", max_length=64)] = None,
        trigger: Annotated[str | None, Query(max_length=64)] = None,
        since: Since = None, until: Until = None) -> Page[MessageRecord]:
    """The delivery log, newest first: who got what, through which provider, at what cost."""
    return await outreach.list_messages(
        scope.call, scope.store_id, page(limit, cursor, sort), customer_id=customer_id,
        channel=channel, status=status, campaign_id=campaign_id, trigger=trigger,
        since=since, until=until)
