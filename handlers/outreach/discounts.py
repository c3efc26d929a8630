"""Unique single-use discount codes stormd issues, and the orders that redeemed them.

A code is stored when it is issued (in the same transaction as the message carrying it),
so the order that redeems it can be attributed to the automation or campaign that gave it.
Codes are random (60 bits from `secrets`): unguessable, and a collision across a store's
lifetime is negligible; the unique index on (store, code) guards it anyway.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal

from sqlalchemy import insert, select
from sqlalchemy.ext.asyncio import AsyncSession

from stormd.schema.db.inlist import in_values
from stormd.schema.shop.promotions import DiscountCode

_ALPHABET = "ABCDEFGHJKLMNPQRSTUVWXYZ23456789"  # no 0/O, 1/I: read aloud over the phone


def new_code(percent: Decimal | int, prefix: str = "SAVE") -> str:
    """e.g. "SAVE10-7KQ2MX9RTA4P": the percent for people, 12 random characters for safety."""
    tail = "".join(secrets.choice(_ALPHABET) for _ in range(12))
    return f"{prefix}{int(percent)}-{tail}"


@dataclass(frozen=True)
class CodeRequest:
    customer_id: str | None
    percent: Decimal
    trigger: str
    cart_id: str | None = None
    campaign_id: str | None = None
    expires_at: datetime | None = None


async def issue_codes(
    session: AsyncSession, store_id: str, requests: list[CodeRequest], now: datetime
) -> list[str]:
    """Issue one fresh code per request (in order), stored in the caller's transaction."""
    if not requests:
        return []
    codes = [new_code(r.percent) for r in requests]
    await session.execute(insert(DiscountCode.__table__), [
        {"store_id": store_id, "code": code, "customer_id": r.customer_id, "percent": r.percent,
         "trigger": r.trigger, "cart_id": r.cart_id, "campaign_id": r.campaign_id,
         "created_at": now, "expires_at": r.expires_at, "redeemed_at": None, "order_id": None}
        for code, r in zip(codes, requests)
    ])
    return codes


async def codes_redeemed_by(
    session: AsyncSession, store_id: str, orders: dict[str, list[str]]
) -> dict[str, list[DiscountCode]]:
    """The stormd-issued codes each order (order id -> its promotion codes) redeemed, in
    one query for all of them.

    Marking a code redeemed (single use: the first order wins) is the orders handler's
    STATE work; this is for the reactions that attribute the order afterwards.
    """
    wanted = {order_id: {c for c in codes if c} for order_id, codes in orders.items()}
    wanted = {order_id: codes for order_id, codes in wanted.items() if codes}
    if not wanted:
        return {}
    found: dict[str, list[DiscountCode]] = {}
    for code in (await session.scalars(select(DiscountCode).where(
            DiscountCode.store_id == store_id,
            in_values(DiscountCode.code, sorted(set().union(*wanted.values()))),
            in_values(DiscountCode.order_id, list(wanted))))).all():
        if code.code in wanted[code.order_id]:
            found.setdefault(code.order_id, []).append(code)
    return found
