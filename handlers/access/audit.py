"""The audit log as the API shows it: every write through the service layer, newest first,
filtered by action or key (written by `Call.audit` in the write's own transaction)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict
from pydantic.alias_generators import to_camel
from sqlalchemy import select

from stormd.handlers.kernel.paging import Page, PageRequest, SortKey, fetch_page
from stormd.handlers.kernel.service import Call
from stormd.schema.runtime.access import AuditEntry

SORTS = {"id": SortKey(AuditEntry.id, "id", int)}


class AuditRecord(BaseModel):
    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True)

    id: int
    at: datetime
    store_id: str | None
    key_id: str | None
    actor: str
    action: str
    target: str | None
    detail: dict[str, Any] | None


def _record(e: AuditEntry) -> AuditRecord:
    return AuditRecord(id=e.id, at=e.at, store_id=e.store_id, key_id=e.key_id, actor=e.actor,
                       action=e.action, target=e.target, detail=e.detail)


async def list_audit(call: Call, store_id: str, page: PageRequest, action: str | None = None,
                     key_id: str | None = None, since: datetime | None = None,
                     until: datetime | None = None) -> Page[AuditRecord]:
    page.sort = page.sort or "-id"
    page.filters = {"action": action, "key": key_id, "from": since, "to": until}
    query = select(AuditEntry).where(AuditEntry.store_id == store_id)
    if action:
        query = query.where(AuditEntry.action == action)
    if key_id:
        query = query.where(AuditEntry.key_id == key_id)
    if since is not None:
        query = query.where(AuditEntry.at >= since)
    if until is not None:
        query = query.where(AuditEntry.at < until)
    async with call.reading() as session:
        return await fetch_page(session, query, page, SORTS, SORTS["id"], _record)
