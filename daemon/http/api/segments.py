"""`/api/v1/stores/{storeId}/segments`: list and create, get, change and delete, members
page by page, and a preview (count and sample) of criteria without saving."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path, Query, Response

from stormd.daemon.http.auth import InStore
from stormd.daemon.http.conventions import Cursor, IfMatch, Limit, page, tagged
from stormd.handlers.kernel.paging import Page
from stormd.handlers.scoring import service
from stormd.handlers.scoring.segments import SLUG
from stormd.handlers.scoring.service import (
    Member,
    Preview,
    PreviewRequest,
    Segment,
    SegmentChanges,
    SegmentDefinition,
    SegmentSort,
)

router = APIRouter(prefix="/segments", tags=["segments"])
Slug = Annotated[str, Path(pattern=SLUG.pattern, description="The segment's slug.")]


@router.get("", operation_id="listSegments", response_model=Page[Segment])
async def list_segments(scope: InStore, limit: Limit = 50, cursor: Cursor = None,
                        sort: SegmentSort = "id",
                        builtin: Annotated[bool | None, Query(
                            description="Only built-in (true) or only the store's own (false).")
                        ] = None) -> Page[Segment]:
    """The store's segments with their member counts."""
    return await service.list_segments(scope.call, scope.store_id, page(limit, cursor, sort),
                                       builtin)


@router.post("", operation_id="createSegment", status_code=201, response_model=Segment)
async def create_segment(scope: InStore, definition: SegmentDefinition,
                         response: Response) -> Segment:
    """Save a segment; it has its members at once."""
    return tagged(await service.create_segment(scope.call, scope.store_id, definition), response)


@router.post("/preview", operation_id="previewSegment", response_model=Preview)
async def preview_segment(scope: InStore, request: PreviewRequest) -> Preview:
    """How many customers match the criteria now, and a few of them; nothing is saved."""
    return await service.preview_segment(scope.call, scope.store_id, request)


@router.get("/{slug}", operation_id="getSegment", response_model=Segment)
async def get_segment(scope: InStore, slug: Slug, response: Response) -> Segment:
    return tagged(await service.get_segment(scope.call, scope.store_id, slug), response)


@router.patch("/{slug}", operation_id="updateSegment", response_model=Segment)
async def update_segment(scope: InStore, slug: Slug, changes: SegmentChanges,
                         response: Response, if_match: IfMatch = None) -> Segment:
    """Rename it or change its criteria (members move at once); needs If-Match."""
    return tagged(await service.update_segment(scope.call, scope.store_id, slug, changes,
                                               if_match, require_match=True), response)


@router.delete("/{slug}", operation_id="deleteSegment", status_code=204)
async def delete_segment(scope: InStore, slug: Slug, if_match: IfMatch = None) -> Response:
    """Delete one of the store's own segments; needs If-Match."""
    await service.delete_segment(scope.call, scope.store_id, slug, if_match, require_match=True)
    return Response(status_code=204)


@router.get("/{slug}/members", operation_id="listSegmentMembers", response_model=Page[Member])
async def members(scope: InStore, slug: Slug, limit: Limit = 50, cursor: Cursor = None
                  ) -> Page[Member]:
    """The segment's customers, by customer id."""
    return await service.segment_members(scope.call, scope.store_id, slug,
                                         page(limit, cursor, "customerId"))
