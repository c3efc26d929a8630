"""Dropping push tokens the push service says are gone (FCM `UNREGISTERED`).

A token is unregistered when the app was uninstalled or the token expired; sending to it
again can never succeed, so it leaves the customer's `push_tokens` in the same transaction
that records the failure, and routing stops counting push as a way to reach them.
"""

from __future__ import annotations

from collections import defaultdict

from sqlalchemy import bindparam, select, tuple_, update
from sqlalchemy.ext.asyncio import AsyncSession

from stormd.schema.shop.customers import Customer

GONE_CODES = frozenset({"UNREGISTERED"})


async def forget_push_tokens(session: AsyncSession,
                             gone: list[tuple[str, str, str]]) -> None:
    """Remove each (store_id, customer_id, token) from that customer's push tokens."""
    if not gone:
        return
    dropped: dict[tuple[str, str], set[str]] = defaultdict(set)
    for store_id, customer_id, token in gone:
        dropped[(store_id, customer_id)].add(token)
    rows = await session.execute(
        select(Customer.store_id, Customer.customer_id, Customer.push_tokens)
        .where(tuple_(Customer.store_id, Customer.customer_id).in_(list(dropped))))
    changes = []
    for store_id, customer_id, tokens in rows:
        kept = [t for t in tokens or () if str(t) not in dropped[(store_id, customer_id)]]
        if len(kept) != len(tokens or ()):
            changes.append({"s": store_id, "c": customer_id, "t": kept or None})
    if changes:
        table = Customer.__table__
        await session.execute(
            update(table).where(table.c.store_id == bindparam("s"),
                                table.c.customer_id == bindparam("c"))
            .values(push_tokens=bindparam("t")), changes)
