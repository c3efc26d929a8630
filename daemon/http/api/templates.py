"""`/api/v1/stores/{storeId}/templates`: the system library and the store's own templates;
save (If-Match when replacing the store's own), delete, and preview with test data in
Bengali and English with each SMS's segment count."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path, Query, Response

from stormd.daemon.http.auth import InStore
from stormd.daemon.http.conventions import Cursor, IfMatch, Limit, page, tagged
from stormd.handlers.kernel.paging import Page
from stormd.handlers.outreach import service
from stormd.handlers.outreach.service import (
    Category,
    Template,
    TemplateDefinition,
    TemplatePreview,
    TemplatePreviewRequest,
    TemplateSort,
)
from stormd.handlers.outreach.template_library import SLUG

router = APIRouter(prefix="/templates", tags=["templates"])
Slug = Annotated[str, Path(pattern=SLUG.pattern, description="The template's slug.")]


@router.get("", operation_id="listTemplates", response_model=Page[Template])
async def list_templates(scope: InStore, limit: Limit = 50, cursor: Cursor = None,
                         sort: TemplateSort = "slug",
                         system: Annotated[bool | None, Query(
                             description="Only the library (true) or the store's own (false).")
                         ] = None,
                         category: Annotated[Category | None, Query()] = None
                         ) -> Page[Template]:
    """The library (seasonal, promotional, automation) and the store's own templates (its
    own replaces a system one of the same slug)."""
    return await service.list_templates(scope.call, scope.store_id, page(limit, cursor, sort),
                                        system=system, category=category)


@router.get("/{slug}", operation_id="getTemplate", response_model=Template)
async def get_template(scope: InStore, slug: Slug, response: Response) -> Template:
    return tagged(await service.get_template(scope.call, scope.store_id, slug), response)


@router.put("/{slug}", operation_id="saveTemplate", response_model=Template,
            responses={201: {"model": Template, "description": "Created"}})
async def save_template(scope: InStore, slug: Slug, definition: TemplateDefinition,
                        response: Response, if_match: IfMatch = None) -> Template:
    """Create or replace one of the store's templates (checked in the sandbox now);
    replacing one needs If-Match."""
    saved, created = await service.save_template(scope.call, scope.store_id, slug, definition,
                                                 if_match, require_match=True)
    if created:
        response.status_code = 201
    return tagged(saved, response)


@router.delete("/{slug}", operation_id="deleteTemplate", status_code=204)
async def delete_template(scope: InStore, slug: Slug, if_match: IfMatch = None) -> Response:
    """Delete the store's own template (a system one of the slug shows again)."""
    await service.delete_template(scope.call, scope.store_id, slug, if_match,
                                  require_match=True)
    return Response(status_code=204)


@router.post("/{slug}/preview", operation_id="previewTemplate", response_model=TemplatePreview)
async def preview_template(scope: InStore, slug: Slug,
                           request: TemplatePreviewRequest | None = None) -> TemplatePreview:
    """Every body rendered with test data (bn and en) or for a customer, each SMS with its
    encoding and segment count; a body that cannot render says why."""
    return await service.preview_template(scope.call, scope.store_id, slug,
                                          request or TemplatePreviewRequest())
