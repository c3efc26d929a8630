"""Orders, their items and status history, and the promotions redeemed on them.

An order's status is the latest entry of its history by storefront time (`occurredAt`),
so a late or replayed event never overwrites a newer status. The set-based functions are
shared by the STATE handlers and `stormd import`.
"""

from __future__ import annotations

import functools
from collections.abc import Iterable, Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import and_, bindparam, exists, func, or_, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from stormd.handlers.kernel.context import HandlerContext
from stormd.handlers.shop.customers import ensure_customers
from stormd.handlers.shop.stores import ensure_store
from stormd.schema.db.inlist import in_param
from stormd.schema.db.upsert import BATCH_ROWS, upsert_rows
from stormd.schema.shop.orders import Order, OrderItem, OrderStatusChange
from stormd.schema.shop.promotions import AppliedPromotion, DiscountCode
from stormd.schema.wire.events import Event, OrderCreated, PromotionRedeemed

ORDERS = Order.__table__
HISTORY = OrderStatusChange.__table__
CODES = DiscountCode.__table__

# (the order as the storefront sent it, when it happened)
TimedOrder = tuple[OrderCreated, datetime]
TimedRedemption = tuple[PromotionRedeemed, datetime]


def order_rows(store_id: str, orders: Iterable[TimedOrder]
               ) -> tuple[list[dict[str, Any]], list[dict[str, Any]], list[dict[str, Any]]]:
    """(orders, items, status history) rows for a batch of orders."""
    heads: list[dict[str, Any]] = []
    lines: list[dict[str, Any]] = []
    history: list[dict[str, Any]] = []
    for data, at in orders:
        heads.append({
            "store_id": store_id, "order_id": data.order_id, "customer_id": data.customer_id,
            "cart_id": data.cart_id, "status": data.status, "total": data.total,
            "promotion_codes": data.promotion_codes, "occurred_at": at,
            "status_changed_at": at,
        })
        for line_no, item in enumerate(data.items, 1):
            lines.append({
                "store_id": store_id, "order_id": data.order_id, "line_no": line_no,
                "product_id": item.product_id, "name": item.name, "category": item.category,
                "quantity": item.quantity, "unit_price": item.unit_price,
            })
        history.append({"store_id": store_id, "order_id": data.order_id,
                        "status": data.status, "occurred_at": at})
    return heads, lines, history


def _keep_status(stmt, columns: tuple[str, ...]) -> dict[str, Any]:
    """On a repeated order, refresh everything but the status (the history decides it)."""
    return {c: stmt.excluded[c] for c in columns
            if c not in ("store_id", "order_id", "status", "status_changed_at")}


async def upsert_orders(session: AsyncSession, store_id: str, orders: Sequence[TimedOrder],
                        known_customers: set[str] | None = None) -> None:
    """Insert or refresh orders with their items and status history; the buyers are made
    known as customers and stormd-issued codes in `promotionCodes` are marked redeemed.

    `known_customers` (ids already made known in this transaction, kept up to date here)
    spares a bulk load from re-inserting the same buyers batch after batch."""
    heads, lines, history = order_rows(store_id, orders)
    if not heads:
        return
    buyers = {h["customer_id"] for h in heads}
    if known_customers is not None:
        buyers -= known_customers
        known_customers |= buyers
    await ensure_customers(session, store_id, buyers)
    await upsert_rows(session, ORDERS, heads, ["store_id", "order_id"], set_=_keep_status)
    await upsert_rows(session, OrderItem.__table__, lines, ["store_id", "order_id", "line_no"])
    await upsert_rows(session, HISTORY, history,
                      ["store_id", "order_id", "occurred_at", "status"], update=False)
    await _status_from_history(session, store_id, [h["order_id"] for h in heads])
    used = [(code, data.order_id, at) for data, at in orders for code in data.promotion_codes or ()]
    await _mark_codes_redeemed(session, store_id, used)


async def apply_order_status(session: AsyncSession, store_id: str,
                             changes: Sequence[tuple[str, str, datetime]]) -> None:
    """Record (orderId, status, occurredAt) changes; an order takes a status only if it is
    its newest. A change for an order not seen yet is kept and applies when it arrives."""
    rows = [{"store_id": store_id, "order_id": o, "status": s, "occurred_at": at}
            for o, s, at in changes]
    await upsert_rows(session, HISTORY, rows,
                      ["store_id", "order_id", "occurred_at", "status"], update=False)
    await _status_from_history(session, store_id, sorted({o for o, _, _ in changes}))


@functools.cache
def _status_update() -> Any:
    """Orders (store b_store, ids b_orders) whose history has a newer entry take it."""
    h = HISTORY.alias("h")
    same_order = and_(h.c.store_id == ORDERS.c.store_id, h.c.order_id == ORDERS.c.order_id)
    latest = (select(h.c.status).where(same_order)
              .order_by(h.c.occurred_at.desc(), h.c.id.desc()).limit(1).scalar_subquery())
    latest_at = select(func.max(h.c.occurred_at)).where(same_order).scalar_subquery()
    newer = exists().where(same_order, or_(
        h.c.occurred_at > ORDERS.c.status_changed_at,
        and_(h.c.occurred_at == ORDERS.c.status_changed_at, h.c.status != ORDERS.c.status),
    ))
    return (update(ORDERS)
            .where(ORDERS.c.store_id == bindparam("b_store"),
                   in_param(ORDERS.c.order_id, "b_orders"), newer)
            .values(status=latest, status_changed_at=latest_at))


async def _status_from_history(session: AsyncSession, store_id: str,
                               order_ids: list[str]) -> None:
    """Set each order's status to its latest history entry where history has a newer one
    (set-based: one UPDATE per batch of orders, built once)."""
    conn = await session.connection()
    for start in range(0, len(order_ids), BATCH_ROWS):
        await conn.execute(_status_update(), {
            "b_store": store_id, "b_orders": list(order_ids[start:start + BATCH_ROWS])})


async def _mark_codes_redeemed(session: AsyncSession, store_id: str,
                               used: list[tuple[str, str, datetime]]) -> None:
    """Mark stormd-issued codes redeemed (first redemption wins); other codes are ignored."""
    if not used:
        return
    stmt = (update(CODES)
            .where(CODES.c.store_id == store_id, CODES.c.code == bindparam("b_code"),
                   CODES.c.redeemed_at.is_(None))
            .values(redeemed_at=bindparam("b_at", type_=CODES.c.redeemed_at.type),
                    order_id=bindparam("b_order")))
    conn = await session.connection()
    await conn.execute(stmt, [{"b_code": c, "b_order": o, "b_at": at} for c, o, at in used])


async def record_promotion_redeemed(session: AsyncSession, store_id: str,
                                    redemptions: Sequence[TimedRedemption]) -> None:
    """Record redeemed promotions once per (order, code); a code stormd issued is marked
    redeemed and lends its campaign to the redemption when the event names none."""
    if not redemptions:
        return
    codes = sorted({r.code for r, _ in redemptions})
    campaign_of = dict((await session.execute(
        select(CODES.c.code, CODES.c.campaign_id)
        .where(CODES.c.store_id == store_id, CODES.c.code.in_(codes))
    )).all())
    rows = [{
        "store_id": store_id, "order_id": r.order_id, "customer_id": r.customer_id,
        "code": r.code, "discount_type": r.discount_type, "discount_amount": r.discount_amount,
        "campaign_id": r.campaign_id or campaign_of.get(r.code), "occurred_at": at,
    } for r, at in redemptions]
    await upsert_rows(session, AppliedPromotion.__table__, rows,
                      ["store_id", "order_id", "code"], update=False)
    await _mark_codes_redeemed(session, store_id,
                               [(r.code, r.order_id, at) for r, at in redemptions])


async def on_order_created(ctx: HandlerContext, events: list[Event]) -> None:
    await ensure_store(ctx)
    await upsert_orders(ctx.session, ctx.store_id, [(e.data, e.occurred_at) for e in events])


async def on_order_status_changed(ctx: HandlerContext, events: list[Event]) -> None:
    await ensure_store(ctx)
    await apply_order_status(ctx.session, ctx.store_id, [
        (e.data.order_id, e.data.status, e.occurred_at) for e in events])


async def on_promotion_redeemed(ctx: HandlerContext, events: list[Event]) -> None:
    await ensure_store(ctx)
    await record_promotion_redeemed(ctx.session, ctx.store_id,
                                    [(e.data, e.occurred_at) for e in events])
