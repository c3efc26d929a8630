"""The demo's predicted-value section on a store that can be fitted (the demo's own store
of 300 shoppers with a year of orders is one; the quick demo tests use fewer, which get the
"not enough history" reason)."""

from __future__ import annotations

from types import SimpleNamespace

from clv_shop import T, clv_store

from stormd.daemon.demo.predictions import STORE, report_predictions
from stormd.handlers.kernel.context import JobContext
from stormd.handlers.scoring.nightly import run_all_stores


async def test_the_section_shows_the_fit_the_revenue_and_the_churn_segment(
        sessionmaker, settings_factory, clock):
    async with sessionmaker() as session:
        await clv_store(session, STORE)
        await session.commit()
    clock.set(T)
    await run_all_stores(JobContext(sessionmaker, settings_factory(), clock), T, STORE)
    async with sessionmaker() as session:
        section = await report_predictions(session, SimpleNamespace(clock=clock))
    text = "\n".join(section.lines)
    assert section.data["status"] == "OK"
    assert text.startswith("fitted as of 2026-11-24 04:00 UTC on ")
    assert "BG/NBD r " in text and "Gamma-Gamma p " in text
    revenue = section.data["predictedRevenue"]["365d"]
    assert f"next 365 days BDT {float(revenue):,.2f}" in text
    members = section.data["churnSegment"]["members"]
    assert 0 < members and f'{{"churn.probability": {{"gte": 0.7}}}}: {members} customers' in text
    assert section.data["example"]["available"] and "most valuable: c" in text
