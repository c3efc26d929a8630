"""`/api/v1/stores` (the stores a key may see) and, under `/api/v1/stores/{storeId}`,
`/settings` (the store's profile and settings), `/credits` (SMS credit balances and what
sends used) and `/audit` (every write: who, what, when)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, Request, Response

from stormd.daemon.http.auth import InStore, Who, job_of
from stormd.daemon.http.conventions import Cursor, IfMatch, Limit, page, tagged
from stormd.handlers.access import audit
from stormd.handlers.access.audit import AuditRecord
from stormd.handlers.kernel.paging import Page
from stormd.handlers.kernel.service import Call, Instant
from stormd.handlers.outreach import service as outreach
from stormd.handlers.outreach.service import Credits, CreditUse
from stormd.handlers.shop import service
from stormd.handlers.shop.service import SettingsChanges, StoreSettings, StoreSummary

stores = APIRouter(tags=["stores"])
router = APIRouter(tags=["stores"])


@stores.get("/api/v1/stores", operation_id="listStores", response_model=Page[StoreSummary])
async def list_stores(who: Who, request: Request, limit: Limit = 50, cursor: Cursor = None
                      ) -> Page[StoreSummary]:
    """The stores this key may act on: a store key's own, every store for an operator key."""
    return await service.list_stores(Call(job_of(request), who), page(limit, cursor, "id"))


@router.get("/settings", operation_id="getSettings", response_model=StoreSettings)
async def get_settings(scope: InStore, response: Response) -> StoreSettings:
    return tagged(await service.get_settings(scope.call, scope.store_id), response)


@router.patch("/settings", operation_id="updateSettings", response_model=StoreSettings)
async def update_settings(scope: InStore, changes: SettingsChanges, response: Response,
                          if_match: IfMatch = None) -> StoreSettings:
    """Change the store's name, time zone, currency, locale, shop URL, sender ids, monthly
    budget or minimum ROI; needs If-Match."""
    return tagged(await service.update_settings(scope.call, scope.store_id, changes, if_match,
                                                require_match=True), response)


@router.get("/credits", operation_id="getCredits", response_model=Credits)
async def credits(scope: InStore) -> Credits:
    """SMS credit balance on each provider account (in SMS segments)."""
    return await outreach.credits(scope.call, scope.store_id)


@router.get("/credits/history", operation_id="creditHistory", response_model=Page[CreditUse])
async def credit_history(scope: InStore, limit: Limit = 50, cursor: Cursor = None,
                         provider: Annotated[str | None, Query(max_length=32)] = None
                         ) -> Page[CreditUse]:
    """What SMS sends used, newest first."""
    return await outreach.credit_history(scope.call, scope.store_id,
                                         page(limit, cursor, "-id"), provider=provider)


@router.get("/audit", operation_id="listAudit", response_model=Page[AuditRecord])
async def audit_log(scope: InStore, limit: Limit = 50, cursor: Cursor = None,
                    action: Annotated[str | None, Query(max_length=64)] = None,
                    key_id: Annotated[str | None, Query(alias="keyId", max_length=32)] = None,
                    since: Annotated[Instant | None, Query(alias="from")] = None,
                    until: Annotated[Instant | None, Query(alias="to")] = None
                    ) -> Page[AuditRecord]:
    """Every write to the store, newest first: who (key or command line), what, when."""
    return await audit.list_audit(scope.call, scope.store_id, page(limit, cursor, "-id"),
                                  action, key_id, since, until)
