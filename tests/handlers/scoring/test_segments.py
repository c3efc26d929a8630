"""Segments: built-ins by composite, differential refresh across runs with the
`customer.segmented` events and segment-change hook, merchant segments with quota and
preview, audiences without opted-out customers, and re-scoring between runs in real time."""

from __future__ import annotations

from datetime import timedelta

import pytest
from shop_history import DAY, STORE, T, customer, order, scoring_fixture
from sqlalchemy import select

from stormd.handlers.kernel.context import JobContext
from stormd.handlers.scoring.nightly import run_store
from stormd.handlers.scoring.segments import (
    SegmentError,
    audience_query,
    create_segment,
    preview,
    template_definition,
)
from stormd.schema.marketing.rfm import CustomerLifecycleMetrics
from stormd.schema.marketing.segments import CustomerSegment, CustomerSegmentMember
from stormd.schema.runtime.inbox import OutboundEvent

FIRST_RUN = {"vip": {"c1"}, "loyal": {"c2", "c6"}, "at-risk": {"c3"},
             "hibernating": {"c4", "c7"}}


class Seen(list):
    """(segment, entered, exited) of each segment change; `backfill[segment]`: the entrants
    handlers were told came by a backfill."""

    def __init__(self):
        super().__init__()
        self.backfill: dict[str, set[str]] = {}


@pytest.fixture
def segment_changes(registry):
    """What segment-change handlers (segment-entry automations) are told."""
    seen = Seen()

    async def record(ctx, slug, entered, exited, backfill=()):
        seen.append((slug, sorted(entered), sorted(exited)))
        if backfill:
            seen.backfill.setdefault(slug, set()).update(backfill)

    registry.on_segment_change(record)
    return seen


async def _memberships(sessionmaker) -> dict[str, set[str]]:
    async with sessionmaker() as session:
        rows = await session.execute(
            select(CustomerSegment.slug, CustomerSegmentMember.customer_id)
            .join(CustomerSegmentMember, CustomerSegmentMember.segment_id == CustomerSegment.id))
        found: dict[str, set[str]] = {}
        for slug, cid in rows:
            found.setdefault(slug, set()).add(cid)
        return found


async def _entered_at(sessionmaker) -> dict[tuple[int, str], object]:
    async with sessionmaker() as session:
        rows = await session.scalars(select(CustomerSegmentMember))
        return {(r.segment_id, r.customer_id): r.entered_at for r in rows}


async def _events(sessionmaker) -> list[tuple[str, str, str]]:
    """(segment, change, customer) of every customer.segmented event staged, in order."""
    async with sessionmaker() as session:
        rows = await session.scalars(select(OutboundEvent).order_by(OutboundEvent.id))
        out = []
        for r in rows:
            assert r.subject == f"stormcom.out.{STORE}.customer.segmented"
            assert r.payload["type"] == "customer.segmented" and r.payload["storeId"] == STORE
            d = r.payload["data"]
            out.append((d["segment"], d["change"], d["customerId"]))
        return out


async def _first_run(sessionmaker, clock, settings, registry=None):
    async with sessionmaker() as session:
        await scoring_fixture(session)
        await session.commit()
    clock.set(T)
    return await run_store(JobContext(sessionmaker, settings, clock, registry), STORE)


async def test_first_run_fills_builtins_and_publishes_every_entry(
        sessionmaker, clock, settings_factory, segment_changes, registry
):
    report = await _first_run(sessionmaker, clock, settings_factory(), registry)
    assert await _memberships(sessionmaker) == FIRST_RUN
    assert {s: c.members for s, c in report.segments.items()} == {
        s: len(m) for s, m in FIRST_RUN.items()}
    assert sorted(await _events(sessionmaker)) == sorted(
        (s, "entered", c) for s, members in FIRST_RUN.items() for c in members)
    assert sorted(segment_changes) == sorted(
        (s, sorted(m), []) for s, m in FIRST_RUN.items())
    assert segment_changes.backfill == FIRST_RUN  # a first fill: every entrant is backfill
    assert {s: c.backfill_reason for s, c in report.segments.items()} == {
        s: "first fill" for s in FIRST_RUN}
    assert report.drifted == []  # a first fill is not drift


async def test_second_run_writes_and_publishes_only_the_difference(
        sessionmaker, clock, settings_factory, segment_changes, registry
):
    settings = settings_factory()
    await _first_run(sessionmaker, clock, settings, registry)
    before, kept_since = await _memberships(sessionmaker), await _entered_at(sessionmaker)
    events_before = len(await _events(sessionmaker))
    segment_changes.clear()
    segment_changes.backfill.clear()
    async with sessionmaker() as session:  # a month later c4 and c7 come back
        await order(session, "n1", "c4", "5000.00", T + 20 * DAY)
        await order(session, "n2", "c7", "2500.00", T + 25 * DAY)
        await order(session, "n3", "c7", "100.00", T + 28 * DAY)
        await session.commit()
    clock.set(T + 30 * DAY)
    report = await run_store(JobContext(sessionmaker, settings, clock, registry), STORE)
    after = await _memberships(sessionmaker)
    moves = {(s, "entered", c) for s in after for c in after[s] - before.get(s, set())}
    moves |= {(s, "exited", c) for s in before for c in before[s] - after.get(s, set())}
    assert moves and "c4" not in after["hibernating"] and "c7" not in after["hibernating"]
    assert set((await _events(sessionmaker))[events_before:]) == moves
    assert {(s, c) for s, how, c in moves if how == "entered"} == {
        (s, c) for s, ch in report.segments.items() for c in ch.entered}
    assert sorted(segment_changes) == sorted(
        (s, sorted(ch.entered), sorted(ch.exited)) for s, ch in report.segments.items()
        if ch.entered or ch.exited)
    assert segment_changes.backfill == {}  # a later run: entries are the customers' own
    # Members who stayed were not rewritten: they keep their first entry time.
    for key, entered_at in (await _entered_at(sessionmaker)).items():
        if key in kept_since:
            assert entered_at == kept_since[key] == T


async def test_merchant_segments_are_validated_counted_and_previewed(
        sessionmaker, clock, settings_factory, registry
):
    settings = settings_factory(segments={"max_per_store": 2})
    await _first_run(sessionmaker, clock, settings, registry)
    async with sessionmaker() as session:
        await create_segment(session, settings, STORE, template_definition("new-customers"), T)
        with pytest.raises(SegmentError, match="already has a segment 'new-customers'"):
            await create_segment(session, settings, STORE,
                                 template_definition("new-customers"), T)
        with pytest.raises(SegmentError, match="slug"):
            await create_segment(session, settings, STORE,
                                 {"slug": "Bad Slug!", "name": "x", "criteria": {"rfm.r": 1}}, T)
        await create_segment(session, settings, STORE,
                             {"slug": "big-spenders", "name": "Big spenders",
                              "criteria": {"orders.total": {"gte": 500}}}, T)
        with pytest.raises(SegmentError, match="quota"):
            await create_segment(session, settings, STORE, template_definition("churn-risk"), T)
        assert await preview(session, STORE, {"orders.total": {"gte": 500}}, T) == (
            2, ["c4", "c7"])
        await session.commit()
    report = await run_store(JobContext(sessionmaker, settings, clock, registry), STORE)
    assert report.segments["new-customers"].members == 2
    assert (await _memberships(sessionmaker))["big-spenders"] == {"c4", "c7"}


async def test_opted_out_customers_stay_members_but_leave_the_channel_audience(
        sessionmaker, clock, settings_factory, registry
):
    await _first_run(sessionmaker, clock, settings_factory(), registry)
    async with sessionmaker() as session:
        await customer(session, "c2", phone="+8801711000002", email="c2@example.com")
        await customer(session, "c6", phone="+8801711000006", consent={"sms": False})
        await session.commit()
        loyal_sms = await session.scalars(audience_query(STORE, ["loyal"], "sms"))
        assert set(loyal_sms) == {"c2"}
        loyal_whatsapp = await session.scalars(audience_query(STORE, ["loyal"], "whatsapp"))
        assert set(loyal_whatsapp) == {"c2", "c6"}
        email = await session.scalars(audience_query(STORE, ["loyal", "vip"], "email"))
        assert set(email) == {"c2"}  # c1 and c6 have no address
        excluded = await session.scalars(
            audience_query(STORE, ["loyal"], "whatsapp", exclude=["c2"]))
        assert set(excluded) == {"c6"}
    assert (await _memberships(sessionmaker))["loyal"] == {"c2", "c6"}


async def test_order_between_runs_rescores_against_the_last_runs_bounds(
        sessionmaker, clock, settings_factory, handle_event, segment_changes, registry
):
    await _first_run(sessionmaker, clock, settings_factory(), registry)
    events_before = len(await _events(sessionmaker))
    segment_changes.clear()
    segment_changes.backfill.clear()
    clock.set(T + timedelta(minutes=30))  # before c4's order placed at T+1h
    # c4 (hibernating) orders again: recency 0 -> R5, frequency 1 -> F2, 500.00 -> M5: 41.
    await handle_event("order.created", {
        "orderId": "rt1", "customerId": "c4", "status": "PAID", "total": "500.00",
        "items": [{"productId": "p1", "category": "Shoes", "quantity": 1, "unitPrice": "500"}],
    }, at=T + timedelta(minutes=30))
    async with sessionmaker() as session:
        row = await session.get(CustomerLifecycleMetrics, (STORE, "c4"))
    assert (row.r, row.f, row.m, row.composite, row.stage) == (5, 2, 5, 41, "ACTIVE")
    assert (await _memberships(sessionmaker))["vip"] == {"c1", "c4"}
    assert (await _events(sessionmaker))[events_before:] == [
        ("vip", "entered", "c4"), ("hibernating", "exited", "c4")]
    assert sorted(segment_changes) == [("hibernating", [], ["c4"]), ("vip", ["c4"], [])]


async def test_refund_and_consent_change_move_memberships_in_real_time(
        sessionmaker, clock, settings_factory, handle_event, registry
):
    settings = settings_factory()
    await _first_run(sessionmaker, clock, settings, registry)
    async with sessionmaker() as session:
        await create_segment(session, settings, STORE, {
            "slug": "no-email", "name": "No email", "criteria": {"consent.email": False}}, T)
        await session.commit()
    clock.set(T + timedelta(hours=2))
    await handle_event("order.status_changed", {"orderId": "o3", "status": "REFUNDED"})
    await handle_event("customer.consent_changed",
                       {"customerId": "c1", "channel": "email", "optedIn": False})
    members = await _memberships(sessionmaker)
    assert members["loyal"] == {"c6"} and members["no-email"] == {"c1"}
    async with sessionmaker() as session:
        c2 = await session.get(CustomerLifecycleMetrics, (STORE, "c2"))
    assert (c2.stage, c2.orders_count, c2.composite) == ("PROSPECT", 0, None)
    events = await _events(sessionmaker)
    assert events[-2:] == [("loyal", "exited", "c2"), ("no-email", "entered", "c1")]


async def test_a_run_as_of_an_earlier_instant_never_undoes_a_later_event(
        sessionmaker, clock, settings_factory, handle_event, registry
):
    settings = settings_factory()
    await _first_run(sessionmaker, clock, settings, registry)
    clock.set(T + timedelta(minutes=30))
    await handle_event("order.created", {
        "orderId": "rt1", "customerId": "c4", "status": "PAID", "total": "500.00",
        "items": [{"productId": "p1", "category": "Shoes", "quantity": 1, "unitPrice": "500"}],
    }, at=T + timedelta(minutes=30))
    await run_store(JobContext(sessionmaker, settings, clock, registry), STORE, T)  # scores as of T
    async with sessionmaker() as session:
        row = await session.get(CustomerLifecycleMetrics, (STORE, "c4"))
    assert (row.composite, row.as_of) == (41, T + timedelta(minutes=30))
    assert "c4" in (await _memberships(sessionmaker))["vip"]


async def test_real_time_criteria_read_the_event_instant_and_edits_take_effect(
        sessionmaker, clock, settings_factory, handle_event, registry
):
    """Re-scoring reuses compiled criteria only where they do not depend on T: a day
    count is judged at each event's instant, and an edited definition applies at once."""
    settings = settings_factory()
    await _first_run(sessionmaker, clock, settings, registry)
    async with sessionmaker() as session:
        for slug, criteria in (("quiet", {"daysSinceLastOrder": {"gte": 41}}),
                               ("spent", {"orders.total": {"gte": 40}})):
            await create_segment(session, settings, STORE,
                                 {"slug": slug, "name": slug, "criteria": criteria}, T)
        await session.commit()

    async def touch_c3(at):  # c3's last completed order is T-40d, 50.00 in total
        clock.set(at)
        await handle_event("customer.consent_changed",
                           {"customerId": "c3", "channel": "sms", "optedIn": True}, at=at)
        members = await _memberships(sessionmaker)
        return "c3" in members.get("quiet", set()), "c3" in members.get("spent", set())

    assert await touch_c3(T + timedelta(hours=1)) == (False, True)  # 40 days: not quiet
    assert await touch_c3(T + DAY + timedelta(hours=1)) == (True, True)  # 41 days
    async with sessionmaker() as session:
        for slug, criteria in (("quiet", {"daysSinceLastOrder": {"gte": 50}}),
                               ("spent", {"orders.total": {"gte": 60}})):
            segment = await session.scalar(
                select(CustomerSegment).where(CustomerSegment.slug == slug))
            segment.criteria = criteria
        await session.commit()
    assert await touch_c3(T + DAY + timedelta(hours=2)) == (False, False)
