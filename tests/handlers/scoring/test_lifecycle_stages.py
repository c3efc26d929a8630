"""Lifecycle stages and churn risk (docs/scoring.md, docs/segments.md) on the hand-computed store
of shop_history: the churn-risk formula as documented, and thresholds read from the
configuration (both databases)."""

from __future__ import annotations

from datetime import timedelta

import pytest
from shop_history import STORE, T, scoring_fixture
from sqlalchemy import select

from stormd.handlers.kernel.context import JobContext
from stormd.handlers.scoring.nightly import run_store
from stormd.schema.marketing.rfm import CustomerLifecycleMetrics


def risk(days: int, half_life: float) -> float:
    """The documented definition: 1 - 2^(-d/h), h clamped to [7, churned_after_days]."""
    return round(1 - 2 ** (-days / half_life), 4)


async def _lifecycle(sessionmaker, clock, settings) -> dict[str, tuple[str, float]]:
    async with sessionmaker() as session:
        await scoring_fixture(session)
        await session.commit()
    clock.set(T)
    await run_store(JobContext(sessionmaker, settings, clock), STORE)
    async with sessionmaker() as session:
        rows = await session.scalars(select(CustomerLifecycleMetrics))
        return {r.customer_id: (r.stage, round(float(r.churn_risk), 4)) for r in rows}


async def test_churn_risk_is_the_documented_half_life_of_a_customers_usual_gap(
        sessionmaker, clock, settings_factory):
    got = await _lifecycle(sessionmaker, clock, settings_factory())
    assert got == {
        "c1": ("ACTIVE", risk(1, 9)),      # orders 9 days apart, the last a day ago
        "c2": ("NEW", risk(1, 30)),        # one order: the usual gap is new_max_days
        "c3": ("ACTIVE", risk(40, 30)),    # its cancelled order does not count
        "c4": ("CHURNED", risk(200, 30)),  # its order after T does not count
        "c6": ("NEW", 0.0),                # ordered at T
        "c7": ("CHURNED", risk(180, 30)),
        "c5": ("PROSPECT", 0.0), "c8": ("PROSPECT", 0.0), "c9": ("PROSPECT", 0.0),
    }
    assert got["c7"][1] == 0.9844  # six usual gaps of silence: 1 - 1/64


async def test_stage_thresholds_and_the_gap_clamp_follow_the_configuration(
        sessionmaker, clock, settings_factory):
    settings = settings_factory(lifecycle={"new_max_days": 0, "churned_after_days": 30})
    got = await _lifecycle(sessionmaker, clock, settings)
    assert {c: stage for c, (stage, _) in got.items()} == {
        "c1": "ACTIVE", "c2": "ACTIVE", "c3": "CHURNED", "c4": "CHURNED", "c6": "NEW",
        "c7": "CHURNED", "c5": "PROSPECT", "c8": "PROSPECT", "c9": "PROSPECT"}
    # One-order customers' gap is new_max_days (0 here), clamped up to 7 days.
    assert (got["c2"][1], got["c3"][1], got["c1"][1]) == (risk(1, 7), risk(40, 7), risk(1, 9))


async def _opens(sessionmaker, opens: dict[str, int]) -> None:
    """An e-mail the storefront sent each customer and they opened `days` before T."""
    from sqlalchemy import insert

    from stormd.schema.marketing.messages import EmailEvent

    async with sessionmaker() as session:
        await session.execute(insert(EmailEvent), [
            {"store_id": STORE, "message_id": f"m-{c}", "customer_id": c, "type": kind,
             "occurred_at": T - timedelta(days=days, hours=hours)}
            for c, days in opens.items() for kind, hours in (("SENT", 1), ("OPEN", 0))])
        await session.commit()


@pytest.mark.parametrize("engaged_within, c7_stage", [(30, "ACTIVE"), (0, "CHURNED")])
async def test_recent_opens_hold_off_churn_up_to_the_engaged_limit(
        sessionmaker, clock, settings_factory, engaged_within, c7_stage):
    """c7's last order is 180 days old, c4's 200: both CHURNED by days. c7 opened an e-mail
    10 days ago: not churned while engaged (up to 180 days); c4 also opened one, but 200
    days is past the limit; c3 (ACTIVE, 40 days) opened one 40 days ago: no change."""
    await _opens(sessionmaker, {"c7": 10, "c4": 5, "c3": 40})
    settings = settings_factory(lifecycle={"engaged_within_days": engaged_within})
    got = await _lifecycle(sessionmaker, clock, settings)
    assert (got["c7"][0], got["c4"][0], got["c3"][0]) == (c7_stage, "CHURNED", "ACTIVE")
    # The churn risk stays what the orders say.
    assert got["c7"][1] == risk(180, 30)


async def test_an_open_between_runs_brings_a_customer_back_from_churned(
        sessionmaker, clock, settings_factory):
    """The e-mail open arrives as an event: the customer is re-scored at once."""
    import json

    from stormd.handlers.kernel.context import HandlerContext
    from stormd.handlers.wiring import build_registry
    from stormd.schema.wire.events import parse_event

    settings = settings_factory()
    got = await _lifecycle(sessionmaker, clock, settings)
    assert got["c7"][0] == "CHURNED"
    clock.set(T + timedelta(hours=2))
    body = {"id": "e1", "type": "email.open", "storeId": STORE,
            "occurredAt": clock.now().isoformat(),
            "data": {"messageId": "m-c7", "customerId": "c7"}}
    event = parse_event(f"stormcom.events.{STORE}.email.open", json.dumps(body).encode(),
                        "stormcom")
    async with sessionmaker() as session:
        ctx = HandlerContext(session, settings, clock, STORE, registry=build_registry())
        await ctx.registry.dispatch_event(ctx, event)
        await session.commit()
    async with sessionmaker() as session:
        row = await session.get(CustomerLifecycleMetrics, (STORE, "c7"))
    assert (row.stage, row.emails_sent, row.emails_opened) == ("ACTIVE", 1, 1)
    assert row.last_open_at == clock.now()
