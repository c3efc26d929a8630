"""The demo's "hostile content" section: what a careless or hostile merchant could type
into the store's templates and segments, and what stormd made of it during the day.

At the end of the day the demo's marketer tries a few bodies and criteria of the hostile
corpus (tests/hostile/test_content_corpus.py) through the same request API and handlers
the console uses; each is refused with its reason, in milliseconds, and nothing of them is
kept. Then the day's own figures: reactions dropped, merchant renders refused, segments
FAILED, abandoned carts waiting for their customer.
"""

from __future__ import annotations

import time
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from stormd.daemon.demo.section import Section
from stormd.handlers.scoring.criteria import CriteriaError
from stormd.handlers.scoring.segments import SegmentError, preview
from stormd.schema.marketing.segments import CustomerSegment
from stormd.schema.metrics import REACTION_FAILURES, TEMPLATE_FAILURES
from stormd.schema.shop.carts import CartAbandonmentEvent
from stormd.schema.shop.customers import Customer

TEMPLATES = {
    "welcome_1 reading a variable no trigger gives": (
        "welcome_1", "Hi {{ name }}, {{ no_such_variable }}"),
    "an exponent tower": ("promo", "{% set a = ((10**1000)**1000)**20 %}x"),
    "a macro calling itself": ("promo", "{% macro f(n) %}{{ f(n + 1) }}{% endmacro %}{{ f(1) }}"),
    "lipsum(60000)": ("promo", "{{ lipsum(60000) }}"),
}


def _nested_not(depth: int) -> dict[str, Any]:
    criteria: dict[str, Any] = {"rfm.r": 5}
    for _ in range(depth):
        criteria = {"not": criteria}
    return criteria


CRITERIA = {
    "`not` nested 200 deep": _nested_not(200),
    "an `in` list of 1,200 values": {"rfm.composite": {"in": list(range(1200))}},
}


def _total(counter: Any) -> float:
    return sum(s.value for m in counter.collect() for s in m.samples
               if s.name.endswith("_total"))


async def report_hostile_content(session: AsyncSession, player: Any) -> Section:
    store = (await session.execute(select(Customer.store_id).limit(1))).scalar() or ""
    failed_segments = (await session.execute(select(func.count()).where(
        CustomerSegment.store_id == store, CustomerSegment.status == "FAILED"))).scalar()
    waiting = (await session.execute(select(func.count()).where(
        CartAbandonmentEvent.store_id == store,
        CartAbandonmentEvent.status == "WAITING"))).scalar()
    data: dict[str, Any] = {
        "templates": {}, "criteria": {}, "reactionFailures": _total(REACTION_FAILURES),
        "templateFailures": _total(TEMPLATE_FAILURES), "failedSegments": failed_segments,
        "abandonmentsWaiting": waiting}
    lines = [f"the day: reactions dropped {data['reactionFailures']:.0f}, store-template "
             f"renders refused {data['templateFailures']:.0f}, segments FAILED "
             f"{failed_segments}, abandoned carts waiting for their customer {waiting}"]
    for what, (slug, body) in TEMPLATES.items():
        started = time.perf_counter()
        reply = await player.api("templates.save", {"template": {
            "slug": slug, "name": what, "content": {"sms": {"bn": body, "en": body}}}})
        reason = reply.get("error", "accepted")
        data["templates"][what] = reason
        lines.append(f"save-template {what}: {reason} "
                     f"({(time.perf_counter() - started) * 1000:.0f} ms)")
    for what, criteria in CRITERIA.items():
        try:
            await preview(session, store, criteria, player.clock.now())
            reason = "accepted"
        except (CriteriaError, SegmentError) as exc:
            reason = str(exc)
        data["criteria"][what] = reason
        lines.append(f"segments preview {what}: {reason[:110]}")
    return Section("hostileContent", "Hostile content (refused, never run)", lines, data)
