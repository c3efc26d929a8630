"""The cart actor: each cart's state, and the moment it becomes abandoned.

`cart.updated` / `cart.cleared` keep Cart and CartItem (a stale update, older than what we
hold, is ignored) and (re)arm one durable timer per cart, `cart:<id>`, due
`carts.abandon_after` after the last update. No polling sweep: when the timer fires
(within a second of its deadline) the cart is abandoned if it is still active, has not
converted and is worth at least `carts.min_value`, whoever its customer is: every
abandonment is recorded (the recovery rate counts it). One whose customer is reachable on
some channel is PENDING, and the recovery workflow (`cart_recovery`, a reaction) starts
it and takes over the same timer key, so any update, clear or order cancels whatever is
pending with one delete; one whose customer is not known yet, or not reachable, WAITS
and is reminded once the customer is (`cart_recovery.resume_waiting`).

Timers fire in batches (`on_timer_batch`): 100,000 carts abandoned in one minute are
decided with a handful of set-based queries per batch, not a query per cart.
"""

from __future__ import annotations

import functools
from decimal import Decimal
from typing import Any

from sqlalchemy import bindparam, insert, or_, select, update

from stormd.handlers.carts import recovery as cart_recovery
from stormd.handlers.kernel.context import HandlerContext, TimerFired
from stormd.plugins.policy.eligibility import load_reach
from stormd.schema.db.inlist import in_param, in_values
from stormd.schema.db.prepared import CHUNK, delete_in
from stormd.schema.db.upsert import upsert_rows
from stormd.schema.shop.carts import Cart, CartItem
from stormd.schema.shop.orders import Order
from stormd.schema.wire.events import CartUpdated, Event, OrderCreated

ABANDON_TIMER = "cart.abandon"
LIVE = ("ACTIVE", "ABANDONED")  # statuses an order converts and an update resets
CLOSED = ("CONVERTED", "RECOVERED")  # ordered: later updates no longer change the cart


def timer_key(cart_id: str) -> str:
    """The one timer key of a cart: abandonment, then each recovery step, replace it."""
    return f"cart:{cart_id}"


def value_priority(total: Decimal) -> int:
    """Timer and message priority: the cart's value in whole taka (higher goes first)."""
    return max(0, min(int(total), 2**31 - 1))


CART = Cart.__table__.c  # the event path reads and writes carts as Core rows: no ORM
# object per cart to load, track and flush (and none left stale in the session when
# another handler of the batch updates the cart).


@functools.cache
def _carts_by_id() -> Any:
    return select(CART.cart_id, CART.customer_id, CART.status, CART.updated_at).where(
        CART.store_id == bindparam("b_store"), in_param(CART.cart_id, "b_carts"))


@functools.cache
def _live_carts_of() -> Any:
    return select(CART.cart_id, CART.customer_id, CART.status, CART.updated_at).where(
        CART.store_id == bindparam("b_store"), CART.status.in_(LIVE),
        or_(in_param(CART.cart_id, "b_carts"), in_param(CART.customer_id, "b_customers")))


async def _current(ctx: HandlerContext, events: list[Event]) -> dict[str, Any]:
    """Each event's cart row, None if new, or False when the event is stale or the cart
    closed (one query for the run; the events are of distinct carts)."""
    ids = [e.data.cart_id for e in events]
    rows: dict[str, Any] = {}
    conn = await ctx.session.connection()
    for i in range(0, len(ids), CHUNK):
        rows.update((c.cart_id, c) for c in (await conn.execute(
            _carts_by_id(), {"b_store": ctx.store_id, "b_carts": ids[i:i + CHUNK]})))
    found: dict[str, Any] = {}
    for e in events:
        cart = rows.get(e.data.cart_id)
        stale = cart is not None and (cart.updated_at > e.occurred_at or cart.status in CLOSED)
        found[e.data.cart_id] = False if stale else cart
    return found


def _all_but_created(stmt: Any, columns: tuple[str, ...]) -> dict[str, Any]:
    """The upsert's update: every column given, except that a cart keeps its creation time."""
    return {c: stmt.excluded[c] for c in columns
            if c not in ("store_id", "cart_id", "created_at")}


async def keep_cart(ctx: HandlerContext, events: list[Event]) -> None:
    """Store the carts' contents and restart their inactivity clocks."""
    current = await _current(ctx, events)
    kept: list[CartUpdated] = []
    carts: list[dict[str, Any]] = []
    timers: list[dict[str, Any]] = []
    for event in events:
        d: CartUpdated = event.data  # type: ignore[assignment]
        at = event.occurred_at
        cart = current[d.cart_id]
        if cart is False:
            continue
        assert d.total is not None  # filled from the items by the payload model
        customer_id = d.customer_id or (cart.customer_id if cart is not None else None)
        carts.append({"store_id": ctx.store_id, "cart_id": d.cart_id,
                      "customer_id": customer_id, "status": "ACTIVE", "total": d.total,
                      "created_at": at, "updated_at": at, "order_id": None})
        kept.append(d)
        if d.total >= ctx.settings.carts.min_value:  # a customer may still come: see above
            timers.append({"key": timer_key(d.cart_id), "kind": ABANDON_TIMER,
                           "due_at": at + ctx.settings.carts.abandon_after,
                           "payload": {"cart": d.cart_id}, "priority": value_priority(d.total)})
    if not kept:
        return
    await upsert_rows(ctx.session, Cart.__table__, carts, ["store_id", "cart_id"],
                      set_=_all_but_created)
    ids = [d.cart_id for d in kept]
    await delete_in(ctx.session, CartItem.__table__, "cart_id", ctx.store_id, ids)
    items = [{"store_id": ctx.store_id, "cart_id": d.cart_id, "product_id": i.product_id,
              "name": i.name, "category": i.category, "quantity": i.quantity,
              "unit_price": i.unit_price, "image_url": i.image_url}
             for d in kept for i in d.items]
    if items:  # Core insert: the ORM's bulk path costs more per row than SQLite does
        await ctx.session.execute(insert(CartItem.__table__), items)
    await cart_recovery.cancel_recovery(ctx, ids, reason="cart updated")
    await ctx.schedule_many(timers)


async def clear_cart(ctx: HandlerContext, events: list[Event]) -> None:
    """An emptied cart is never abandoned; whatever was pending for it stops."""
    current = await _current(ctx, events)
    cleared = [{"cart_id": e.data.cart_id, "status": "CLEARED", "updated_at": e.occurred_at}
               for e in events if current[e.data.cart_id]]
    if cleared:
        await cart_recovery.set_carts(ctx, cleared)
        await cart_recovery.cancel_recovery(ctx, [c["cart_id"] for c in cleared],
                                            reason="cart cleared")


async def convert_carts(ctx: HandlerContext, events: list[Event]) -> None:
    """Each order converts its cart (cartId) and the customer's active carts last touched
    before it; the order is then attributed to a recovery if one earned it."""
    orders: list[OrderCreated] = [e.data for e in events]  # type: ignore[misc]
    cart_ids = sorted({d.cart_id for d in orders if d.cart_id})
    customers = sorted({d.customer_id for d in orders})
    carts: dict[str, Any] = {}  # in query order
    conn = await ctx.session.connection()
    for i in range(0, max(len(cart_ids), len(customers)), CHUNK):
        carts.update((c.cart_id, c) for c in await conn.execute(_live_carts_of(), {
            "b_store": ctx.store_id, "b_carts": cart_ids[i:i + CHUNK],
            "b_customers": customers[i:i + CHUNK]}))
    position = {cart_id: n for n, cart_id in enumerate(carts)}
    by_customer: dict[str | None, list[Any]] = {}
    for c in carts.values():
        by_customer.setdefault(c.customer_id, []).append(c)
    status = {cart_id: c.status for cart_id, c in carts.items()}  # as this run changes it
    converted: dict[str, str] = {}
    attributed = []
    for event, d in zip(events, orders):
        at = event.occurred_at
        near = by_customer.get(d.customer_id, [])  # the customer's carts, and the order's
        own = carts.get(d.cart_id) if d.cart_id else None
        if own is not None and own.customer_id != d.customer_id:
            near = sorted([*near, own], key=lambda c: position[c.cart_id])
        mine = [c.cart_id for c in near if status[c.cart_id] in LIVE and (
            c.cart_id == d.cart_id or (c.customer_id == d.customer_id and c.updated_at <= at
                                       and status[c.cart_id] == "ACTIVE"))]
        for cart_id in mine:  # attribute_orders marks the one it credits RECOVERED
            status[cart_id], converted[cart_id] = "CONVERTED", d.order_id
        attributed.append((d, at, mine))
    await cart_recovery.set_carts(ctx, [{"cart_id": c, "status": "CONVERTED", "order_id": o}
                           for c, o in converted.items()])
    await cart_recovery.attribute_orders(ctx, attributed)


async def _converted(ctx: HandlerContext, carts: list[Any]) -> dict[str, str]:
    """Carts an order already converted (by cartId, or by the customer after the cart's
    last update), mapped to the order; guards against an order seen before the timer."""
    ids = [c.cart_id for c in carts]
    customers = list({c.customer_id for c in carts if c.customer_id})
    since = min(c.updated_at for c in carts)
    # Two indexed lookups, not one OR: SQLite scans the whole orders table for the OR.
    o = Order.__table__.c
    cols = (o.order_id, o.cart_id, o.customer_id, o.occurred_at)
    rows = [*(await ctx.session.execute(select(*cols).where(
        o.store_id == ctx.store_id, in_values(o.cart_id, ids)))).all()]
    if customers:
        rows += (await ctx.session.execute(select(*cols).where(
            o.store_id == ctx.store_id, in_values(o.customer_id, customers),
            o.occurred_at >= since))).all()
    rows.sort(key=lambda r: r.occurred_at)
    by_cart = {r.cart_id: r.order_id for r in rows if r.cart_id}
    by_customer: dict[str, list[Any]] = {}
    for r in rows:
        by_customer.setdefault(r.customer_id, []).append(r)
    found: dict[str, str] = {}
    for c in carts:
        if c.cart_id in by_cart:
            found[c.cart_id] = by_cart[c.cart_id]
            continue
        later = next((r for r in by_customer.get(c.customer_id, ())
                      if r.occurred_at >= c.updated_at), None) if c.customer_id else None
        if later is not None:
            found[c.cart_id] = later.order_id
    return found


@cart_recovery.without_cyclic_gc
async def detect_abandonment(ctx: HandlerContext, fired: list[TimerFired]) -> None:
    """Decide, for every cart whose inactivity timer fired, whether it is abandoned, and
    record each abandonment: PENDING when its customer can be reminded (the recovery
    reaction, `cart_recovery.start_pending`, starts it), WAITING when the customer is not
    known yet or not reachable."""
    cfg = ctx.settings.carts
    now = ctx.now()
    ids = [f.payload.get("cart") or f.key.removeprefix("cart:") for f in fired]
    carts: list[Any] = []
    for i in range(0, len(ids), 5000):
        carts.extend((await ctx.session.execute(
            select(CART.cart_id, CART.customer_id, CART.total, CART.updated_at)
            .where(CART.store_id == ctx.store_id, in_values(CART.cart_id, ids[i:i + 5000]),
                   CART.status == "ACTIVE")
        )).all())
    # A timer from before the last update would have been replaced; this is belt and braces.
    carts = [c for c in carts if c.updated_at + cfg.abandon_after <= now
             and c.total >= cfg.min_value]
    if not carts:
        return
    converted = await _converted(ctx, carts)
    await cart_recovery.set_carts(ctx, [{"cart_id": c, "status": "CONVERTED", "order_id": o}
                                        for c, o in converted.items()])
    carts = [c for c in carts if c.cart_id not in converted]
    if not carts:
        return
    reach = await load_reach(ctx.session, ctx.store_id,
                             [c.customer_id for c in carts if c.customer_id])
    cart_recovery.remember_reach(ctx, reach)
    await ctx.session.execute(
        update(Cart).where(Cart.store_id == ctx.store_id,
                           in_values(Cart.cart_id, [c.cart_id for c in carts]))
        .values(status="ABANDONED").execution_options(synchronize_session=False)
    )
    await cart_recovery.record_abandonments(ctx, [
        (c, "PENDING" if c.customer_id in reach and reach[c.customer_id].channels()
         else "WAITING") for c in carts])
