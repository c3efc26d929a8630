"""Reactions to segment entries wherever a refresh runs: exactly once per entry, again after
leaving; the backfill policy (first fill, changed criteria) with its opt-in; segment-entry
sequences; A/B variants of an automation's message with results per variant."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
from automation_world import World
from campaign_data import NOON, STORE, add_customers, add_segment, add_store, customer_row
from shop_history import order
from sqlalchemy import delete, select

from stormd.handlers.automations import service as automations
from stormd.handlers.automations.triggers import configure_workflow, variant_salt
from stormd.handlers.campaigns import service as campaigns
from stormd.handlers.campaigns.ab_testing import assign_variant
from stormd.handlers.kernel.paging import PageRequest
from stormd.handlers.kernel.service import Actor, Call
from stormd.handlers.scoring.nightly import run_all_stores
from stormd.handlers.scoring.segments import rescore_customers, save_segment, update_segment
from stormd.schema.marketing.automations import AutomationExecution
from stormd.schema.marketing.messages import Message
from stormd.schema.marketing.segments import CustomerSegment, CustomerSegmentMember
from stormd.schema.shop.promotions import DiscountCode

DAY = timedelta(days=1)


async def _world(sessionmaker, settings, clock, customers=("u", "v", "w")) -> World:
    clock.set(NOON)
    async with sessionmaker() as s:
        await add_store(s)
        await add_customers(s, [customer_row(c) for c in customers])
        await s.commit()
    return World(sessionmaker, settings, clock)


async def _orders(world: World, *rows: tuple[str, str, str, datetime]) -> None:
    async with world.sessionmaker() as s:
        for order_id, customer, total, at in rows:
            await order(s, order_id, customer, total, at, store=STORE)
        await s.commit()


def _at(y: int, m: int, d: int) -> datetime:
    return datetime(y, m, d, 6, tzinfo=UTC)  # noon in Dhaka


async def test_each_vip_entry_is_rewarded_once_and_again_after_leaving(
        sessionmaker, settings_factory, clock):
    """Thresholds mode: two orders of 5,000 in a fortnight make a VIP (composite 41); 65
    days of silence make them loyal again (33)."""
    world = await _world(sessionmaker, settings_factory(rfm={"mode": "thresholds"}), clock)
    await _orders(world, ("u1", "u", "300", _at(2026, 11, 20)))
    await run_all_stores(world.job())  # the first fill: nobody is a VIP yet

    await _orders(world, ("w1", "w", "5000", _at(2026, 11, 25)),
                  ("w2", "w", "5000", _at(2026, 11, 26)))
    world.clock.set(_at(2026, 11, 27))
    await run_all_stores(world.job())
    await run_all_stores(world.job())  # the nightly run again: no entry, nothing sent
    assert [m.customer_id for m in await world.rows(Message, trigger="vip")] == ["w"]

    world.clock.set(_at(2027, 1, 30))
    report = (await run_all_stores(world.job()))[0]
    assert report.segments["vip"].exited == ["w"]

    world.clock.set(_at(2027, 2, 3))
    await _orders(world, ("w3", "w", "5000", _at(2027, 2, 1)),
                  ("w4", "w", "5000", _at(2027, 2, 2)))
    changes = await world.run(rescore_customers, ["w"])  # the real-time path this time
    assert any(c.slug == "vip" and c.entered == ["w"] for c in changes)
    await run_all_stores(world.job())  # and the nightly run after it adds nothing
    sent = await world.rows(Message, trigger="vip")
    assert [m.customer_id for m in sent] == ["w", "w"]
    runs = await world.rows(AutomationExecution, trigger="vip")
    assert sorted((x.idempotency_key.rsplit(":", 1)[-1], x.status) for x in runs) == [
        ("2026-11", "COMPLETED"), ("2027-02", "COMPLETED")]


@pytest.mark.parametrize("react, status", [([], "SKIPPED"), (["vip"], "COMPLETED")])
async def test_the_first_fill_rewards_nobody_unless_the_automation_opts_in(
        sessionmaker, settings_factory, clock, react, status):
    settings = settings_factory(rfm={"mode": "thresholds"},
                                automations={"react_to_backfill": react})
    world = await _world(sessionmaker, settings, clock)
    await _orders(world, ("v1", "v", "5000", _at(2026, 11, 20)),
                  ("v2", "v", "5000", _at(2026, 11, 22)))
    report = (await run_all_stores(world.job()))[0]
    assert (report.segments["vip"].entered, report.segments["vip"].backfill) == (["v"], ["v"])
    [run] = await world.rows(AutomationExecution, trigger="vip")
    assert run.status == status
    assert len(await world.rows(Message, trigger="vip")) == (status == "COMPLETED")
    if status == "SKIPPED":
        assert run.error == "segment backfill"
        assert await world.rows(DiscountCode) == []


async def test_changed_criteria_are_a_backfill_unless_the_workflow_reacts_to_it(
        sessionmaker, settings_factory, clock):
    world = await _world(sessionmaker, settings_factory(), clock, customers=("a", "b", "c"))
    await _orders(world, ("a1", "a", "2000", NOON - 3 * DAY), ("b1", "b", "600", NOON - 3 * DAY),
                  ("c1", "c", "300", NOON - 3 * DAY))
    await run_all_stores(world.job())
    config = {"template": "vip_reward", "discount_percent": "5"}
    await world.run(configure_workflow, "segment_entry:big", True, config)
    definition = {"slug": "big", "name": "Big", "criteria": {"orders.total": {"gte": 1000}}}
    segment, change = await world.run(save_segment, definition)
    assert (segment.member_count, change.backfill_reason) == (1, "first fill")
    segment, change = await world.run(update_segment, "big",
                                      {"criteria": {"orders.total": {"gte": 500}}})
    assert (change.entered, change.backfill_reason) == (["b"], "criteria changed")
    await world.run(configure_workflow, "segment_entry:big", True,
                    {**config, "react_to_backfill": True})
    await world.run(update_segment, "big", {"criteria": {"orders.total": {"gte": 300}}})
    runs = {x.customer_id: (x.status, x.error)
            for x in await world.rows(AutomationExecution, trigger="segment_entry:big")}
    assert runs == {"a": ("SKIPPED", "segment backfill"), "b": ("SKIPPED", "segment backfill"),
                    "c": ("COMPLETED", None)}
    assert [m.customer_id for m in await world.rows(Message)] == ["c"]


async def test_a_segment_entry_sequence_sends_its_steps_until_the_customer_leaves(
        sessionmaker, settings_factory, clock):
    world = await _world(sessionmaker, settings_factory(), clock, customers=("c0", "c1"))
    async with sessionmaker() as s:
        await add_segment(s, "fans", ["c0", "c1"])
        await s.commit()
    steps = [{"template": "welcome_1"}, {"after": "3d", "template": "welcome_2"},
             {"after": "4d", "template": "welcome_3", "discountPercent": 10}]
    await world.run(configure_workflow, "segment_entry:fans", True, {"steps": steps})
    await world.segment_change("fans", ["c0", "c1"], [])
    await world.segment_change("fans", ["c0", "c1"], [])  # the same entry told twice
    first = await world.rows(Message, trigger="segment_entry:fans")
    assert sorted((m.customer_id, m.template) for m in first) == [
        ("c0", "welcome_1"), ("c1", "welcome_1")]

    async with sessionmaker() as s:  # c1 leaves the segment before the second step
        await s.execute(delete(CustomerSegmentMember).where(
            CustomerSegmentMember.customer_id == "c1"))
        await s.commit()
    world.clock.advance(3 * DAY)
    assert await world.fire_due_timers(together=True) == 2
    world.clock.advance(4 * DAY)
    assert await world.fire_due_timers(together=True) == 2
    sent = sorted((m.customer_id, m.template) for m in
                  await world.rows(Message, trigger="segment_entry:fans"))
    assert sent == [("c0", "welcome_1"), ("c0", "welcome_2"), ("c0", "welcome_3"),
                    ("c1", "welcome_1")]
    last = next(m for m in await world.rows(Message, customer_id="c0", template="welcome_3"))
    assert last.data["discountCode"] in last.body
    runs = {x.customer_id: (x.status, x.error) for x in
            await world.rows(AutomationExecution, trigger="segment_entry:fans")}
    assert runs == {"c0": ("COMPLETED", None), "c1": ("CANCELLED", "left the segment")}


async def test_an_automation_ab_test_splits_its_customers_and_reports_each_variant(
        sessionmaker, settings_factory, clock):
    customers = [f"c{i:02d}" for i in range(40)]
    world = await _world(sessionmaker, settings_factory(), clock, customers=customers)
    job = world.job()
    variants = [{"name": "gift", "template": "vip_reward"},
                {"name": "party", "weight": 1, "template": "birthday"}]
    with pytest.raises(ValueError, match="A/B variants are for"):
        await world.run(configure_workflow, "welcome", True, {"variants": variants})
    with pytest.raises(Exception, match="no template 'nope'"):
        await world.run(configure_workflow, "vip", True,
                        {"variants": [variants[0], {"name": "x", "template": "nope"}]})
    call = Call(job, Actor("test"))
    await automations.configure_workflow(call, STORE, "vip", automations.WorkflowSettings(
        enabled=True, config={"variants": variants}))
    await world.segment_change("vip", customers, [])
    expected = {c: assign_variant(variant_salt(STORE, "vip"), c, variants) for c in customers}
    sent = {m.customer_id: (m.variant, m.template) for m in await world.rows(Message)}
    assert sent == {c: (v, "vip_reward" if v == "gift" else "birthday")
                    for c, v in expected.items()}
    assert set(expected.values()) == {"gift", "party"}

    buyer = customers[0]  # one customer of a variant orders within the attribution window
    await _orders(world, ("o1", buyer, "900", NOON + DAY))
    results = await automations.automation_results(call, STORE, "vip")
    by_variant = {v["variant"]: v for v in results["variants"]}
    counts = {name: sum(1 for v in expected.values() if v == name) for name in ("gift", "party")}
    assert {k: v["sent"] for k, v in by_variant.items()} == counts
    assert by_variant[expected[buyer]]["converted"] == 1
    assert results["abTest"]["winner"] is None and "under 100" in results["abTest"]["reason"]
    log = await automations.execution_log(call, STORE, PageRequest(limit=100), trigger="vip")
    assert {e.customer_id: e.variant for e in log.items} == expected


async def test_segment_members_arrive_with_the_definition(sessionmaker, settings_factory, clock):
    """A created segment has its members at once (the campaign launched next reaches them)."""
    world = await _world(sessionmaker, settings_factory(), clock, customers=("a", "b"))
    await _orders(world, ("a1", "a", "2000", NOON - DAY))
    await world.run(rescore_customers, ["a", "b"])
    await world.run(save_segment, {"slug": "buyers", "name": "Buyers",
                                   "criteria": {"orders.count": {"gte": 1}}})
    async with sessionmaker() as s:
        seg = await s.scalar(select(CustomerSegment).where(CustomerSegment.slug == "buyers"))
        members = (await s.scalars(select(CustomerSegmentMember.customer_id).where(
            CustomerSegmentMember.segment_id == seg.id))).all()
    assert (seg.member_count, list(members)) == (1, ["a"])
    call = Call(world.job(), Actor("test"))
    created = await campaigns.create_campaign(call, STORE, campaigns.parse_spec({
        "name": "Thanks", "channels": ["email"], "segments": ["buyers"],
        "template": "vip_reward", "discountPercent": 5}, campaigns.CampaignSpec))
    preview = await campaigns.preview_campaign(call, STORE, created.id,
                                               campaigns.PreviewRequest())
    assert preview.preview.audience == 1
    assert Decimal(preview.preview.cost) > 0


async def test_a_segment_entry_workflow_is_switched_off_and_on_keeping_its_sequence(
        sessionmaker, settings_factory, clock):
    world = await _world(sessionmaker, settings_factory(), clock, customers=("c0",))
    with pytest.raises(ValueError, match="config.template: required"):
        await world.run(configure_workflow, "segment_entry:fans", True, None)
    with pytest.raises(ValueError, match=r"config.steps\[1\].after"):
        await world.run(configure_workflow, "segment_entry:fans", True, {"steps": [
            {"template": "welcome_1"}, {"after": "soon", "template": "welcome_2"}]})
    steps = [{"template": "welcome_1"}, {"after": "3d", "template": "welcome_2"}]
    await world.run(configure_workflow, "segment_entry:fans", True, {"steps": steps})
    off = await world.run(configure_workflow, "segment_entry:fans", False, None)
    assert (off.enabled, off.config) == (False, {"steps": steps})
    await world.segment_change("fans", ["c0"], [])
    assert await world.rows(Message) == []
    await world.run(configure_workflow, "segment_entry:fans", True, None)
    await world.segment_change("fans", ["c0"], [])
    assert [m.template for m in await world.rows(Message)] == ["welcome_1"]
