"""Lifecycle stages and churn risk (docs/scoring.md, docs/segments.md) on the hand-computed store
of shop_history: the churn-risk formula as documented, and thresholds read from the
configuration (both databases)."""

from __future__ import annotations

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
