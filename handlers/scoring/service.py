"""Segments as the API and `stormd segments` see them: list, create, show, change, delete,
members page by page, and a dry-run preview (count and a sample) of criteria.

A created or changed segment has its members at once (a full differential refresh in the
same transaction, with its `customer.segmented` events and segment-entry automations),
not at the next nightly run. Built-in segments (vip, loyal, at-risk, hibernating) are kept
by stormd: they can be read, not changed or deleted.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field
from pydantic.alias_generators import to_camel
from sqlalchemy import func, select

from stormd.handlers.campaigns.campaigns import segment_users
from stormd.handlers.kernel.paging import Page, PageRequest, SortKey, fetch_page
from stormd.handlers.kernel.service import (
    Call,
    Conflict,
    Invalid,
    NotFound,
    check_if_match,
    require_store,
)
from stormd.handlers.scoring import segments as seg
from stormd.handlers.scoring.criteria import CriteriaError, compile_criteria
from stormd.schema.marketing.segments import CustomerSegment, CustomerSegmentMember

ACTIVE = ("DRAFT", "SCHEDULED", "SENDING", "PAUSED")
Criteria = dict[str, Any]
CRITERIA_DOC = ("Segment criteria (docs/scoring.md): field conditions, all/any/not, e.g. "
                '{"rfm.composite": {"gte": 38}}.')


class _Model(BaseModel):
    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="forbid")


class SegmentDefinition(_Model):
    """A new segment."""

    slug: str = Field(pattern=seg.SLUG.pattern, description="1-64 lower-case letters, digits, - or _")
    name: str = Field(min_length=1, max_length=200)
    criteria: Criteria = Field(description=CRITERIA_DOC)


class SegmentChanges(_Model):
    """What to change in a segment (fields left out keep their value)."""

    name: str | None = Field(default=None, min_length=1, max_length=200)
    criteria: Criteria | None = Field(default=None, description=CRITERIA_DOC)


class Segment(_Model):
    slug: str
    name: str
    builtin: bool
    members: int
    criteria: Criteria
    created_at: datetime
    updated_at: datetime
    refreshed_at: datetime | None
    status: str = Field(default="OK", description="OK, or FAILED when its last refresh failed")
    error: str | None = Field(default=None, description="Why the last refresh failed")


class Member(_Model):
    customer_id: str
    entered_at: datetime | None = None


class PreviewRequest(_Model):
    criteria: Criteria = Field(description=CRITERIA_DOC)
    sample: int = Field(default=10, ge=0, le=100, description="How many matching customers to show.")


class Preview(_Model):
    count: int = Field(description="Customers of the store matching the criteria now.")
    sample: list[Member]


SegmentSort = Literal["id", "-id", "slug", "-slug", "name", "-name", "members", "-members",
                      "createdAt", "-createdAt"]
SORTS = {"id": SortKey(CustomerSegment.id, "id", int),
         "slug": SortKey(CustomerSegment.slug, "slug"),
         "name": SortKey(CustomerSegment.name, "name"),
         "members": SortKey(CustomerSegment.member_count, "member_count", int),
         "createdAt": SortKey(CustomerSegment.created_at, "created_at", datetime)}
MEMBER_SORTS = {"customerId": SortKey(CustomerSegmentMember.customer_id, "customer_id")}


def to_segment(s: CustomerSegment) -> Segment:
    return Segment(slug=s.slug, name=s.name, builtin=s.builtin, members=s.member_count,
                   criteria=s.criteria, created_at=s.created_at, updated_at=s.updated_at,
                   refreshed_at=s.refreshed_at, status=s.status or "OK", error=s.error)


def check_criteria(criteria: Any, now: datetime) -> None:
    """Refuse criteria that do not compile or pass the language's limits (depth, list and
    value counts: handlers/scoring/criteria.py), naming why."""
    try:
        compile_criteria(criteria, now)
    except CriteriaError as exc:
        raise Invalid(f"criteria: {exc}") from None


async def _row(session, store_id: str, slug: str, *, lock: bool = False) -> CustomerSegment:
    query = select(CustomerSegment).where(CustomerSegment.store_id == store_id,
                                          CustomerSegment.slug == slug)
    row = await session.scalar(query.with_for_update() if lock else query)
    if row is None:
        raise NotFound(f"store {store_id!r} has no segment {slug!r}")
    return row


async def _with_builtins(call: Call, store_id: str) -> None:
    """The store exists and has its built-in segments (made on first sight: a write only
    the first time)."""
    async with call.reading() as session:
        await require_store(session, store_id)
        known = await session.scalar(select(func.count()).select_from(CustomerSegment).where(
            CustomerSegment.store_id == store_id, CustomerSegment.builtin.is_(True)))
    if known < len(seg.BUILTINS):
        async with call.writing() as session:
            await seg.ensure_builtin_segments(session, store_id, call.now())


async def list_segments(call: Call, store_id: str, page: PageRequest,
                        builtin: bool | None = None) -> Page[Segment]:
    page.sort = page.sort or "id"
    page.filters = {"builtin": builtin}
    await _with_builtins(call, store_id)
    query = select(CustomerSegment).where(CustomerSegment.store_id == store_id)
    if builtin is not None:
        query = query.where(CustomerSegment.builtin.is_(builtin))
    async with call.reading() as session:
        return await fetch_page(session, query, page, SORTS, SORTS["id"], to_segment)


async def get_segment(call: Call, store_id: str, slug: str) -> Segment:
    await _with_builtins(call, store_id)
    async with call.reading() as session:
        return to_segment(await _row(session, store_id, slug))


async def create_segment(call: Call, store_id: str, definition: SegmentDefinition
                         ) -> Segment:
    """Save a merchant's segment (validated, within the store's quota) with its members."""
    now = call.now()
    check_criteria(definition.criteria, now)
    async with call.writing() as session:
        await require_store(session, store_id)
        try:
            row, _ = await seg.save_segment(call.handler_context(session, store_id),
                                            definition.model_dump())
        except seg.SegmentError as exc:
            raise Conflict(str(exc)) from None
        await session.refresh(row)
        await call.audit(session, store_id, "segments.create", row.slug,
                         definition.model_dump(mode="json", by_alias=True))
        return to_segment(row)


async def update_segment(call: Call, store_id: str, slug: str, changes: SegmentChanges,
                         if_match: str | None = None, *, require_match: bool = False
                         ) -> Segment:
    now = call.now()
    if changes.criteria is not None:
        check_criteria(changes.criteria, now)
    async with call.writing() as session:
        await require_store(session, store_id)
        row = await _row(session, store_id, slug, lock=True)
        check_if_match(to_segment(row), if_match, required=require_match)
        data = changes.model_dump(exclude_none=True)
        try:
            row, _ = await seg.update_segment(call.handler_context(session, store_id), slug,
                                              {"slug": slug, **data})
        except seg.SegmentError as exc:
            raise Conflict(str(exc)) from None
        await session.refresh(row)
        await call.audit(session, store_id, "segments.update", slug,
                         changes.model_dump(mode="json", by_alias=True, exclude_unset=True))
        return to_segment(row)


async def delete_segment(call: Call, store_id: str, slug: str, if_match: str | None = None,
                         *, require_match: bool = False) -> None:
    """Delete a merchant's segment and its memberships; refused while a campaign that is
    not finished targets it or a segment-entry automation listens to it."""
    async with call.writing() as session:
        await require_store(session, store_id)
        row = await _row(session, store_id, slug, lock=True)
        check_if_match(to_segment(row), if_match, required=require_match)
        try:
            await seg.delete_segment(call.handler_context(session, store_id), slug,
                                     await segment_users(session, store_id, slug))
        except seg.SegmentError as exc:
            raise Conflict(str(exc)) from None
        await call.audit(session, store_id, "segments.delete", slug)


async def segment_members(call: Call, store_id: str, slug: str, page: PageRequest
                          ) -> Page[Member]:
    page.sort = page.sort or "customerId"
    page.filters = {"segment": slug}
    async with call.reading() as session:
        await require_store(session, store_id)
        row = await _row(session, store_id, slug)
        query = select(CustomerSegmentMember).where(
            CustomerSegmentMember.store_id == store_id,
            CustomerSegmentMember.segment_id == row.id)
        return await fetch_page(session, query, page, MEMBER_SORTS, MEMBER_SORTS["customerId"],
                                lambda m: Member(customer_id=m.customer_id,
                                                 entered_at=m.entered_at))


async def preview_segment(call: Call, store_id: str, request: PreviewRequest) -> Preview:
    """Who matches the criteria now, without saving anything."""
    now = call.now()
    check_criteria(request.criteria, now)
    async with call.reading() as session:
        await require_store(session, store_id)
        count, ids = await seg.preview(session, store_id, request.criteria, now, request.sample)
    return Preview(count=count, sample=[Member(customer_id=c) for c in ids])


def template_definition(name: str) -> SegmentDefinition:
    """One of the ready-made definitions (`stormd segments create --template`)."""
    try:
        return SegmentDefinition.model_validate(seg.template_definition(name))
    except seg.SegmentError as exc:
        raise Invalid(str(exc)) from None
