"""Rows the campaign and automation tests start from (plain inserts on a real database)."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal

from sqlalchemy import insert

from stormd.schema.marketing.segments import CustomerSegment, CustomerSegmentMember
from stormd.schema.shop.customers import Customer
from stormd.schema.shop.stores import Store

STORE = "s1"
# Tuesday 2026-11-24 12:00 in Dhaka (UTC+6): inside every send window.
NOON = datetime(2026, 11, 24, 6, 0, tzinfo=UTC)


def customer_row(cid: str, **kw) -> dict:
    row = dict(store_id=STORE, customer_id=cid, email=f"{cid}@mail.bd", phone="+8801711000000",  # noqa: C408
               name=f"Name {cid}", locale="en", consent_email=True, consent_sms=True,
               consent_whatsapp=True, consent_push=False, push_tokens=None, created_at=NOON,
               updated_at=NOON, birthday=None)
    row.update(kw)
    return row


async def add_store(session, **kw) -> None:
    session.add(Store(id=STORE, name="Dokan", timezone="Asia/Dhaka", currency="BDT",
                      min_roi=kw.pop("min_roi", Decimal(10)), created_at=NOON, **kw))
    await session.flush()


async def add_customers(session, rows: list[dict]) -> None:
    await session.execute(insert(Customer), rows)


async def add_segment(session, slug: str, members: list[str]) -> None:
    seg = CustomerSegment(store_id=STORE, slug=slug, name=slug, criteria={}, builtin=False,
                          member_count=len(members), created_at=NOON, updated_at=NOON)
    session.add(seg)
    await session.flush()
    if members:
        await session.execute(insert(CustomerSegmentMember), [
            {"store_id": STORE, "segment_id": seg.id, "customer_id": m, "entered_at": NOON}
            for m in members])
