"""Segments: definitions, differential membership, real-time re-scoring, audiences.

A refresh computes who entered and who exited against the stored membership in SQL,
writes only that difference, publishes `customer.segmented` for each change
and tells the segment-change handlers (segment-entry automations). Between nightly runs, a
completed order, a status change, a redeemed promotion, a consent change or an e-mail open
re-scores that customer against the last run's bounds and moves their memberships in the
same transaction as the event.

A full refresh also says which entrants came by a *backfill* rather than by something they
did: every entrant of a segment's first full refresh, every entrant of the first full
refresh under changed criteria, and entrants whose history `stormd import` loaded since the
segment's last full refresh. The handlers are told, and by default do not react to them
(docs/segments.md, "Reactions, once per entry, and the backfill").

A segment whose evaluation fails (criteria saved before today's limits, SQL the database
refuses) is marked FAILED with the reason (`status`, `error`, shown by `stormd segments
list`) and keeps its last membership; it never holds up another segment or store. Real-time
re-scoring leaves FAILED segments out; the next full refresh (nightly, `stormd rfm run`)
tries them again and clears the mark when they work.
"""

from __future__ import annotations

import functools
import json
import logging
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import and_, bindparam, case, delete, exists, func, select, update
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm.attributes import set_committed_value
from sqlalchemy.sql import Select

from stormd.config.settings import Settings
from stormd.handlers.kernel.context import HandlerContext
from stormd.handlers.kernel.failures import retried
from stormd.handlers.scoring.criteria import (
    CriteriaError,
    compile_criteria,
    feature_from,
    reads_time,
)
from stormd.handlers.scoring.features import (
    ID_CHUNK,
    customer_aggregates,
    engagement,
    first_column,
)
from stormd.handlers.scoring.guardrails import record_segment_size
from stormd.handlers.scoring.lifecycle import upsert_buyers, upsert_prospects
from stormd.handlers.scoring.rescore_queue import queue_rescores
from stormd.handlers.scoring.rfm import latest_bounds, score
from stormd.plugins.policy.eligibility import reachable_clause
from stormd.schema.db.columnar import epoch_us, write_columns
from stormd.schema.db.upsert import insert_for
from stormd.schema.marketing.rfm import CustomerLifecycleMetrics
from stormd.schema.marketing.segments import CustomerSegment, CustomerSegmentMember
from stormd.schema.shop.customers import Customer, ImportedCustomer
from stormd.schema.shop.orders import Order
from stormd.schema.wire.events import Event

log = logging.getLogger("stormd.segments")

# Built-in segments by composite RFM score (docs/scoring.md), kept for every store.
BUILTINS: dict[str, tuple[str, dict[str, Any]]] = {
    "vip": ("VIP", {"rfm.composite": {"gte": 38}}),
    "loyal": ("Loyal", {"rfm.composite": {"between": [28, 37]}}),
    "at-risk": ("At risk", {"rfm.composite": {"between": [18, 27]}}),
    "hibernating": ("Hibernating", {"rfm.composite": {"lt": 18}}),
}
# The seed's examples, ready for a merchant to create (`stormd segments create --template`).
TEMPLATES: dict[str, tuple[str, dict[str, Any]]] = {
    "churn-risk": ("Churn risk",
                   {"lifecycle.stage": "ACTIVE", "daysSinceLastOrder": {"gte": 45}}),
    "new-customers": ("New customers",
                      {"orders.count": {"lte": 1}, "daysSinceFirstOrder": {"lte": 14}}),
    "high-discount-sensitivity": ("High discount sensitivity",
                                  {"promotions.redeemedRatio": {"gte": 0.5}}),
    "cross-sell-opportunity": ("Cross-sell opportunity",
                               {"categories.lastOrderMissing": ["Accessories"]}),
}
SLUG = re.compile(r"^[a-z0-9][a-z0-9_-]{0,63}$")
# Events whose customer may change segments between nightly runs.
RESCORING_EVENTS = ("order.created", "order.status_changed", "promotion.redeemed",
                    "customer.consent_changed", "email.open", "email.click")

_ANY_TIME = datetime(2000, 1, 1, tzinfo=UTC)  # compiles criteria that do not read T
SEGMENTS = CustomerSegment.__table__
MEMBERS = CustomerSegmentMember.__table__
LM = CustomerLifecycleMetrics.__table__
IMPORTED = ImportedCustomer.__table__


class SegmentError(ValueError):
    """A segment that cannot be created or found; the message says why."""


@dataclass
class Change:
    """Who entered and who exited one segment in one refresh; `backfill`: the entrants who
    came by a backfill, and `backfill_reason` which one (first fill, criteria changed,
    imported history)."""

    slug: str
    entered: list[str] = field(default_factory=list)
    exited: list[str] = field(default_factory=list)
    members: int = 0
    backfill: list[str] = field(default_factory=list)
    backfill_reason: str | None = None


# --- definitions -----------------------------------------------------------------------

async def ensure_builtin_segments(session: AsyncSession, store_id: str, now: datetime) -> None:
    rows = [{"store_id": store_id, "slug": slug, "name": name, "criteria": criteria,
             "builtin": True, "member_count": 0, "created_at": now, "updated_at": now}
            for slug, (name, criteria) in BUILTINS.items()]
    stmt = insert_for(session, SEGMENTS).on_conflict_do_nothing(index_elements=["store_id", "slug"])
    await session.execute(stmt, rows)


async def list_segments(session: AsyncSession, store_id: str) -> list[CustomerSegment]:
    result = await session.scalars(
        select(CustomerSegment).where(CustomerSegment.store_id == store_id)
        .order_by(CustomerSegment.builtin.desc(), CustomerSegment.id)
    )
    return list(result)


async def get_segment(session: AsyncSession, store_id: str, slug: str) -> CustomerSegment:
    segment = await session.scalar(
        select(CustomerSegment).where(CustomerSegment.store_id == store_id,
                                      CustomerSegment.slug == slug)
    )
    if segment is None:
        raise SegmentError(f"store {store_id!r} has no segment {slug!r}")
    return segment


def definition_from(data: Any) -> tuple[str, str, dict[str, Any]]:
    """(slug, name, criteria) from a `{"slug", "name", "criteria"}` document, checked."""
    if not isinstance(data, dict):
        raise SegmentError("a segment definition is a JSON object {slug, name, criteria}")
    unknown = set(data) - {"slug", "name", "criteria"}
    if unknown:
        raise SegmentError(f"unknown key(s) in segment definition: {', '.join(sorted(unknown))}")
    for key in ("slug", "name", "criteria"):
        if key not in data:
            raise SegmentError(f"segment definition lacks {key!r}")
    slug, name = data["slug"], data["name"]
    if not isinstance(slug, str) or not SLUG.match(slug):
        raise SegmentError(f"slug {slug!r} must be 1-64 lower-case letters, digits, - or _")
    if not isinstance(name, str) or not name.strip() or len(name) > 200:
        raise SegmentError("name must be a non-empty string of at most 200 characters")
    compile_criteria(data["criteria"], datetime.now().astimezone())
    return slug, name.strip(), data["criteria"]


async def create_segment(session: AsyncSession, settings: Settings, store_id: str,
                         data: Any, now: datetime) -> CustomerSegment:
    """Save a merchant's segment after validation and the per-store quota."""
    slug, name, criteria = definition_from(data)
    await ensure_builtin_segments(session, store_id, now)
    existing = await session.scalar(
        select(func.count()).select_from(SEGMENTS)
        .where(SEGMENTS.c.store_id == store_id, SEGMENTS.c.slug == slug))
    if existing:
        raise SegmentError(f"store {store_id!r} already has a segment {slug!r}")
    own = await session.scalar(
        select(func.count()).select_from(SEGMENTS)
        .where(SEGMENTS.c.store_id == store_id, SEGMENTS.c.builtin.is_(False)))
    quota = settings.segments.max_per_store
    if own >= quota:
        raise SegmentError(f"store {store_id!r} has {own} segments, its quota "
                           f"(segments.max_per_store) is {quota}")
    segment = CustomerSegment(store_id=store_id, slug=slug, name=name, criteria=criteria,
                              builtin=False, member_count=0, created_at=now, updated_at=now)
    session.add(segment)
    await session.flush()
    return segment


async def save_segment(ctx: HandlerContext, data: Any) -> tuple[CustomerSegment, Change]:
    """Create a merchant's segment and find its members at once (a first fill: a backfill,
    which automations do not react to unless told)."""
    segment = await create_segment(ctx.session, ctx.settings, ctx.store_id, data, ctx.now())
    return segment, await refresh_segment(ctx, segment, ctx.now())


async def update_segment(ctx: HandlerContext, slug: str, data: Any
                         ) -> tuple[CustomerSegment, Change | None]:
    """Rename a merchant's segment or change its criteria (`{"slug", "name"?,
    "criteria"?}`); changed criteria move its members at once (a backfill)."""
    if not isinstance(data, dict):
        raise SegmentError("a segment update is a JSON object {slug, name?, criteria?}")
    unknown = set(data) - {"slug", "name", "criteria"}
    if unknown:
        raise SegmentError(f"unknown key(s) in segment update: {', '.join(sorted(unknown))}")
    if data.get("slug", slug) != slug:
        raise SegmentError(f"slug {data['slug']!r} is not {slug!r}: a segment keeps its slug")
    segment = await get_segment(ctx.session, ctx.store_id, slug)
    if segment.builtin:
        raise SegmentError(f"segment {slug!r} is built in: its definition is kept by stormd")
    definition_from({"slug": slug, "name": data.get("name", segment.name),
                     "criteria": data.get("criteria", segment.criteria)})
    if "name" in data:
        segment.name = data["name"].strip()
    changed = "criteria" in data and data["criteria"] != segment.criteria
    if changed:
        segment.criteria = data["criteria"]
    segment.updated_at = ctx.now()
    await ctx.session.flush()
    return segment, (await refresh_segment(ctx, segment, ctx.now()) if changed else None)


async def delete_segment(ctx: HandlerContext, slug: str, busy: Iterable[str] = ()) -> int:
    """Delete a merchant's segment and its memberships; returns the members it had. Refused
    for a built-in segment and while something in `busy` (what uses it) is named."""
    segment = await get_segment(ctx.session, ctx.store_id, slug)
    if segment.builtin:
        raise SegmentError(f"segment {slug!r} is built in and cannot be deleted")
    users = list(busy)
    if users:
        raise SegmentError(f"segment {slug!r} is used by {', '.join(users)}")
    gone = await ctx.session.execute(delete(MEMBERS).where(
        MEMBERS.c.store_id == ctx.store_id, MEMBERS.c.segment_id == segment.id))
    await ctx.session.delete(segment)
    await ctx.session.flush()
    record_segment_size(ctx.store_id, slug, 0)
    return gone.rowcount or 0


def template_definition(name: str) -> dict[str, Any]:
    if name not in TEMPLATES:
        raise SegmentError(f"no template {name!r}; templates are {', '.join(TEMPLATES)}")
    title, criteria = TEMPLATES[name]
    return {"slug": name, "name": title, "criteria": criteria}


# --- evaluation ------------------------------------------------------------------------

def matching(store_id: str, criteria: Any, as_of: datetime) -> Select:
    """Customer ids of the store meeting the criteria as of T."""
    return (select(LM.c.customer_id).select_from(feature_from())
            .where(LM.c.store_id == store_id, compile_criteria(criteria, as_of)))


async def preview(session: AsyncSession, store_id: str, criteria: Any, as_of: datetime,
                  sample: int = 10) -> tuple[int, list[str]]:
    """How many customers match now, and a few of them; nothing is saved."""
    query = matching(store_id, criteria, as_of)
    try:
        count = await session.scalar(select(func.count()).select_from(query.subquery()))
        ids = list(await session.scalars(query.order_by(LM.c.customer_id).limit(sample)))
    except DBAPIError as exc:
        if retried(exc):
            raise
        raise SegmentError(f"the database could not evaluate these criteria "
                           f"({_reason(exc)}); simplify them") from None
    return int(count or 0), ids


def _reason(exc: BaseException) -> str:
    """A failure's first line, without the SQL or its parameters."""
    orig = getattr(exc, "orig", None) or exc
    return f"{type(orig).__name__}: {str(orig).splitlines()[0] if str(orig) else ''}"[:300]


async def mark_failed(session: AsyncSession, segment_id: int, error: str, now: datetime) -> None:
    """The segment's evaluation failed: FAILED with the reason (its membership is kept)."""
    await session.execute(update(SEGMENTS).where(SEGMENTS.c.id == segment_id).values(
        status="FAILED", error=error[:500], failed_at=now))


async def member_ids(session: AsyncSession, store_id: str, segment_id: int) -> list[str]:
    result = await session.scalars(
        select(MEMBERS.c.customer_id)
        .where(MEMBERS.c.store_id == store_id, MEMBERS.c.segment_id == segment_id)
        .order_by(MEMBERS.c.customer_id))
    return list(result)


async def refresh_segment(ctx: HandlerContext, segment: CustomerSegment,
                          as_of: datetime) -> Change:
    """Full differential refresh of one segment: entered and exited found in SQL."""
    store_id = ctx.store_id
    crit = compile_criteria(segment.criteria, as_of)
    member = and_(MEMBERS.c.store_id == store_id, MEMBERS.c.segment_id == segment.id)
    is_member = exists().where(member, MEMBERS.c.customer_id == LM.c.customer_id)
    entered = await first_column(ctx.session, select(LM.c.customer_id).select_from(feature_from())
                                 .where(LM.c.store_id == store_id, crit, ~is_member))
    still_matches = exists(
        select(LM.c.customer_id).select_from(feature_from())
        .where(LM.c.store_id == MEMBERS.c.store_id, LM.c.customer_id == MEMBERS.c.customer_id,
               crit))
    exited = await first_column(ctx.session,
                                select(MEMBERS.c.customer_id).where(member, ~still_matches))
    change = Change(segment.slug, entered, exited)
    change.backfill_reason, change.backfill = await backfill_of(ctx, segment, entered)
    await apply_change(ctx, segment, change, recount=True)
    now = ctx.now()
    await ctx.session.execute(update(SEGMENTS).where(SEGMENTS.c.id == segment.id).values(
        filled_at=now, filled_criteria=segment.criteria))
    # The object as written, so its caller (and a second refresh in this session) sees it.
    for name, value in (("filled_at", now), ("filled_criteria", segment.criteria),
                        ("member_count", change.members), ("refreshed_at", now)):
        set_committed_value(segment, name, value)
    return change


async def backfill_of(ctx: HandlerContext, segment: CustomerSegment, entered: list[str]
                      ) -> tuple[str | None, list[str]]:
    """(why, who) of a full refresh's entrants came by a backfill: all of them at the
    segment's first full refresh or under criteria changed since the last one; else those
    whose history was imported since then."""
    if not entered:
        return None, []
    if segment.filled_at is None:
        return "first fill", entered
    if segment.filled_criteria != segment.criteria:
        return "criteria changed", entered
    imported = set(await first_column(ctx.session, select(IMPORTED.c.customer_id).where(
        IMPORTED.c.store_id == ctx.store_id, IMPORTED.c.imported_at > segment.filled_at)))
    found = [c for c in entered if c in imported]
    return ("imported history" if found else None), found


async def forget_imports(session: AsyncSession, store_id: str) -> int:
    """Drop the import marks every segment of the store has had a full refresh since."""
    filled = (await session.execute(
        select(func.count(), func.count(SEGMENTS.c.filled_at), func.min(SEGMENTS.c.filled_at))
        .where(SEGMENTS.c.store_id == store_id))).one()
    if not filled[0] or filled[0] != filled[1]:
        return 0
    result = await session.execute(delete(IMPORTED).where(
        IMPORTED.c.store_id == store_id, IMPORTED.c.imported_at <= filled[2]))
    return result.rowcount or 0


async def apply_change(ctx: HandlerContext, segment: CustomerSegment, change: Change,
                       recount: bool = False) -> None:
    """Write the difference, publish it, and tell segment-change handlers. The member
    count is recounted on a full refresh and moved by the difference otherwise."""
    session, store_id, now = ctx.session, ctx.store_id, ctx.now()
    await write_columns(session, MEMBERS, {
        "store_id": store_id, "segment_id": segment.id, "customer_id": change.entered,
        "entered_at": epoch_us(now)}, ["store_id", "segment_id", "customer_id"], update=False)
    for start in range(0, len(change.exited), ID_CHUNK):
        await session.execute(
            delete(MEMBERS).where(MEMBERS.c.store_id == store_id,
                                  MEMBERS.c.segment_id == segment.id,
                                  MEMBERS.c.customer_id.in_(change.exited[start:start + ID_CHUNK])))
    if recount:
        count: Any = select(func.count()).select_from(MEMBERS).where(
            MEMBERS.c.store_id == store_id, MEMBERS.c.segment_id == segment.id).scalar_subquery()
    else:
        count = SEGMENTS.c.member_count + len(change.entered) - len(change.exited)
    values: dict[str, Any] = {"member_count": count, "refreshed_at": now}
    if recount:  # a full refresh that worked: whatever failed before works again
        values.update(status="OK", error=None)
    change.members = int(await session.scalar(
        update(SEGMENTS).where(SEGMENTS.c.id == segment.id)
        .values(**values).returning(SEGMENTS.c.member_count)) or 0)
    await emit_segmented(ctx, change)
    if change.entered or change.exited:
        if ctx.registry is not None:
            await ctx.registry.dispatch_segment_change(ctx, segment.slug, change.entered,
                                                       change.exited, change.backfill)
    record_segment_size(store_id, segment.slug, change.members)


async def emit_segmented(ctx: HandlerContext, change: Change) -> None:
    """One `customer.segmented` event out per customer who moved, staged in one write."""
    await ctx.emit_many("customer.segmented", [
        *({"customerId": c, "segment": change.slug, "change": "entered"} for c in change.entered),
        *({"customerId": c, "segment": change.slug, "change": "exited"} for c in change.exited),
    ])


# --- real time -------------------------------------------------------------------------

async def rescore_customers(ctx: HandlerContext, customer_ids: Iterable[str],
                            as_of: datetime | None = None) -> list[Change]:
    """Re-score these customers against the last run's bounds, update their lifecycle rows
    and move their memberships; returns the changes (only segments that moved)."""
    session, store_id, settings = ctx.session, ctx.store_id, ctx.settings
    as_of = as_of or ctx.now()
    ids = list(dict.fromkeys(customer_ids))
    if not ids:
        return []
    known = ctx.remembered(_BOUNDS)  # the nightly run commits in its own
    if store_id not in known:
        known[store_id] = await latest_bounds(session, store_id)
    bounds = known[store_id]
    agg = await customer_aggregates(session, store_id, as_of, settings.rfm.window_days, ids)
    found = await engagement(session, store_id, as_of,
                             settings.lifecycle.engagement_window_days, ids)
    scores = None
    if bounds is not None:
        scores = score(agg, as_of, settings.rfm, bounds)
    elif settings.rfm.mode == "thresholds":
        scores = score(agg, as_of, settings.rfm)
    await upsert_buyers(session, store_id, as_of, agg, scores, settings.lifecycle, found)
    await upsert_prospects(session, store_id, as_of, agg.customer_ids, ids, found)
    return await move_memberships(ctx, ids, as_of)


# Re-scoring runs once per run of events; a batch's runs share these (per transaction):
_BOUNDS = "stormd.rfm_bounds"  # store -> its latest RFM run's bounds
_SEGMENTS = "stormd.live_segments"  # store -> its segment rows below
# The segment columns real-time re-scoring needs (rows, not ORM objects); FAILED ones wait
# for the next full refresh.
_LIVE_SEGMENTS = (select(SEGMENTS.c.id, SEGMENTS.c.slug, SEGMENTS.c.criteria, SEGMENTS.c.builtin)
                  .where(SEGMENTS.c.store_id == bindparam("store"), SEGMENTS.c.status != "FAILED")
                  .order_by(SEGMENTS.c.builtin.desc(), SEGMENTS.c.id))
# Criteria values evaluated in one query at most (SQLite takes 32,766 parameters), and the
# size up to which a set of segments' queries is cached.
PACK_VALUES = 5_000
CACHED_VALUES = 2_000


@functools.lru_cache(maxsize=16)
def _membership_queries(segments: tuple[tuple[int, str], ...], as_of: datetime | None
                        ) -> tuple[tuple[int, ...], Select, Select, tuple[tuple[int, str], ...]]:
    """For segments ((id, criteria JSON), ...): the ids of those whose criteria compile,
    the query of customers' (id, hit per segment), the query of their memberships (both
    taking `store` and `ids`), and the (id, reason) of those refused. Cached when no
    criteria reads T (as_of None): the expressions are then the same on every event."""
    tested, hits, refused = [], [], []
    for seg_id, text in segments:
        try:
            hits.append(case((compile_criteria(json.loads(text), as_of or _ANY_TIME), 1),
                             else_=0))
            tested.append(seg_id)
        except (CriteriaError, RecursionError, ValueError) as exc:
            refused.append((seg_id, f"invalid criteria: {exc}"))
    ids = bindparam("ids", expanding=True)
    features = (select(LM.c.customer_id, *hits).select_from(feature_from())
                .where(LM.c.store_id == bindparam("store"), LM.c.customer_id.in_(ids)))
    # Naming the segments lets the primary key (store, segment, customer) find the rows.
    members = (select(MEMBERS.c.segment_id, MEMBERS.c.customer_id)
               .where(MEMBERS.c.store_id == bindparam("store"),
                      MEMBERS.c.segment_id.in_(tested), MEMBERS.c.customer_id.in_(ids)))
    return tuple(tested), features, members, tuple(refused)


def _values_in(criteria: Any) -> int:
    """How many values a criteria holds (what its SQL binds)."""
    if isinstance(criteria, dict):
        return sum(_values_in(v) for v in criteria.values()) or 1
    if isinstance(criteria, list):
        return sum(_values_in(v) for v in criteria) or 1
    return 1


def _packs(segments: list[Any]) -> list[list[Any]]:
    """Segments in packs of at most PACK_VALUES values, each evaluated in one query."""
    packs: list[list[Any]] = []
    size = PACK_VALUES
    for s in segments:
        n = _values_in(s.criteria)
        if size + n > PACK_VALUES:
            packs.append([])
            size = 0
        packs[-1].append(s)
        size += n
    return packs


async def move_memberships(ctx: HandlerContext, ids: list[str], as_of: datetime) -> list[Change]:
    """Evaluate every segment for these customers (in one query per chunk, for segments of
    ordinary size), diff against their stored memberships, and apply the moves. A segment
    that cannot be evaluated is marked FAILED and left out; the others move."""
    session, store_id = ctx.session, ctx.store_id
    known = ctx.remembered(_SEGMENTS)
    segments = known.get(store_id)
    if segments is None:
        segments = (await session.execute(_LIVE_SEGMENTS, {"store": store_id})).all()
        if not any(s.builtin for s in segments):
            await ensure_builtin_segments(session, store_id, ctx.now())
            segments = (await session.execute(_LIVE_SEGMENTS, {"store": store_id})).all()
        known[store_id] = segments
    changes: dict[int, Change] = {}
    failed: dict[int, str] = {}
    for pack in _packs(segments):
        await _evaluate(ctx, pack, ids, as_of, changes, failed)
    if failed:
        for seg_id, reason in failed.items():
            slug = next(s.slug for s in segments if s.id == seg_id)
            log.error("segment %s of store %s cannot be evaluated, marked FAILED: %s",
                      slug, store_id, reason)
            await mark_failed(session, seg_id, reason, ctx.now())
        known[store_id] = [s for s in segments if s.id not in failed]
    moved = []
    for s in segments:
        change = changes.get(s.id)
        if change and (change.entered or change.exited):
            change.entered.sort()
            change.exited.sort()
            await apply_change(ctx, s, change)
            moved.append(change)
    return moved


async def _evaluate(ctx: HandlerContext, pack: list[Any], ids: list[str], as_of: datetime,
                    changes: dict[int, Change], failed: dict[int, str]) -> None:
    """Who should be and who is in each segment of the pack, for these customers; a pack
    that fails is evaluated segment by segment, each failing one noted in `failed`."""
    session, store_id = ctx.session, ctx.store_id
    timeless = not any(reads_time(s.criteria) for s in pack)
    key = tuple((s.id, json.dumps(s.criteria)) for s in pack)
    small = sum(_values_in(s.criteria) for s in pack) <= CACHED_VALUES
    build = _membership_queries if timeless and small else _membership_queries.__wrapped__
    tested, features, members, refused = build(key, None if timeless else as_of)
    failed.update(refused)
    if not tested:
        return
    found = {seg_id: Change(slug) for seg_id, slug in ((s.id, s.slug) for s in pack)
             if seg_id in tested}
    try:
        async with session.begin_nested():
            for start in range(0, len(ids), ID_CHUNK):
                params = {"store": store_id, "ids": ids[start:start + ID_CHUNK]}
                should = {(seg_id, row[0]) for row in await session.execute(features, params)
                          for seg_id, hit in zip(tested, row[1:]) if hit}
                current = {(seg_id, cid) for seg_id, cid in await session.execute(members, params)}
                for seg_id, cid in should - current:
                    found[seg_id].entered.append(cid)
                for seg_id, cid in current - should:
                    found[seg_id].exited.append(cid)
    except Exception as exc:
        if retried(exc):
            raise
        if len(pack) == 1:
            failed[pack[0].id] = _reason(exc)
            return
        for segment in pack:
            if segment.id in tested:
                await _evaluate(ctx, [segment], ids, as_of, changes, failed)
        return
    changes.update(found)


async def _customers_of(ctx: HandlerContext, events: list[Event]) -> list[str]:
    """The customers these events concern (an order status change names only its order:
    its customer is looked up, one query for the run)."""
    named = [getattr(e.data, "customer_id", None) for e in events]
    orders = [e.data.order_id for e, c in zip(events, named)
              if not c and getattr(e.data, "order_id", None) is not None]
    buyer: dict[str, str] = {}
    for start in range(0, len(orders), ID_CHUNK):
        buyer.update((await ctx.session.execute(
            select(Order.order_id, Order.customer_id).where(
                Order.store_id == ctx.store_id,
                Order.order_id.in_(orders[start:start + ID_CHUNK])))).all())
    found = [c or buyer.get(getattr(e.data, "order_id", None) or "") for e, c in zip(events, named)]
    return [c for c in found if c]


async def rescore_on_event(ctx: HandlerContext, events: list[Event]) -> None:
    """Keep the customers' scores and segments current between nightly runs. In a group
    commit the customers are queued (one insert a batch) for the re-scoring loop, which
    re-scores them moments later; alone (a single dispatch, a careful rerun's event) they
    are re-scored at once, in the event's transaction."""
    customers = await _customers_of(ctx, events)
    if customers and not ctx.defer(queue_rescores, customers):
        await rescore_customers(ctx, customers)


# --- audiences -------------------------------------------------------------------------

def audience_query(store_id: str, segment_slugs: Iterable[str], channel: str,
                   exclude: Any = None) -> Select:
    """Customer ids in any of the segments who may get a marketing message on `channel`
    (consent given, an address for it, SMS not on the DND list), minus `exclude` (ids or
    a select of ids). Opted-out customers stay segment members but never appear here."""
    slugs = list(segment_slugs)
    query = (
        select(MEMBERS.c.customer_id).distinct()
        .join(SEGMENTS, SEGMENTS.c.id == MEMBERS.c.segment_id)
        .join(Customer, and_(Customer.store_id == MEMBERS.c.store_id,
                             Customer.customer_id == MEMBERS.c.customer_id))
        .where(MEMBERS.c.store_id == store_id, SEGMENTS.c.store_id == store_id,
               SEGMENTS.c.slug.in_(slugs), reachable_clause(channel))
    )
    if exclude is not None:
        query = query.where(MEMBERS.c.customer_id.not_in(
            exclude if isinstance(exclude, Select) else list(exclude)))
    return query
