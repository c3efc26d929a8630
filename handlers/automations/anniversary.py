"""The first-order anniversary: a daily cron thanks each customer whose first completed
order was placed on this local day (the store's time zone) one or more whole years ago,
with a code (`automations.anniversary_discount_percent`), once a year.

The first completed order is the one the scores count (`first_order_at` of the lifecycle
row). A first order on 29 February is remembered on 28 February in other years, as
birthdays are. The template gets `years`.
"""

from __future__ import annotations

from datetime import date, datetime, time, timedelta

from sqlalchemy import and_, or_, select

from stormd.handlers.automations.triggers import (
    CHUNK,
    Step,
    _cooldown,
    _each_store_in_pages,
    _leap,
    local_today,
    run_trigger,
)
from stormd.handlers.kernel.context import HandlerContext, JobContext
from stormd.handlers.outreach.queue import store_profile
from stormd.schema.marketing.rfm import CustomerLifecycleMetrics

MAX_YEARS = 30  # anniversaries looked for, back from today


def _same_day_years_ago(today: date, years: int) -> list[date]:
    """The local dates `years` before `today` whose anniversary is today."""
    year = today.year - years
    if (today.month, today.day) == (2, 28) and not _leap(today.year):
        return [date(year, 2, 28)] + ([date(year, 2, 29)] if _leap(year) else [])
    if (today.month, today.day) == (2, 29):
        return [date(year, 2, 29)] if _leap(year) else []
    return [date(year, today.month, today.day)]


async def run_anniversaries(ctx: HandlerContext, after: str = "") -> tuple[str, dict[str, str]]:
    """One page of today's anniversaries (keyset by customer id)."""
    store = await store_profile(ctx.session, ctx.settings, ctx.store_id)
    today = local_today(ctx, store.tz)
    lm = CustomerLifecycleMetrics
    spans = []
    for years in range(1, MAX_YEARS + 1):
        for day in _same_day_years_ago(today, years):
            start = datetime.combine(day, time(0), store.tz)
            spans.append(and_(lm.first_order_at >= start,
                              lm.first_order_at < start + timedelta(days=1)))
    rows = (await ctx.session.execute(
        select(lm.customer_id, lm.first_order_at).where(
            lm.store_id == ctx.store_id, lm.orders_count > 0, or_(*spans),
            lm.customer_id > after)
        .order_by(lm.customer_id).limit(CHUNK))).all()
    years = {cid: today.year - first.astimezone(store.tz).year for cid, first in rows}
    step = Step("anniversary", "anniversary", ctx.settings.automations.anniversary_discount_percent,
                cooldown=_cooldown(ctx),
                variables={cid: {"years": n} for cid, n in years.items()})
    outcome = await run_trigger(ctx, list(years), str(today.year), step)
    return (rows[-1][0] if len(rows) == CHUNK else ""), outcome


async def anniversary_job(job: JobContext) -> None:
    await _each_store_in_pages(job, run_anniversaries)
