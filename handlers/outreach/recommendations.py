"""Upsell and cross-sell: what goes with a product, learned first, rules behind.

Learned: a product the store's nightly model knows (handlers/predictions/learned.py) has
neighbours with scores; for several context products the scores are summed, so what goes
with the whole order comes first (strategy `learned`). Rules, for a cold product (too few
orders to learn from) or a store without a model: first the products most often bought in
the same completed orders (co-purchase, one set-based query over order_items), then the
best sellers of its category. Per-product candidate lists are cached for
`automations.recommendations_cache` (a day); per customer, products in their open cart,
bought in the last `automations.recommendations_exclude_days`, inactive, or themselves the
context are left out. Every recommendation handed out is recorded as a RecommendationEvent.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import and_, func, insert, select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import aliased

from stormd.config.settings import Settings
from stormd.handlers.predictions.learned import learned_neighbours
from stormd.schema.db.inlist import in_values
from stormd.schema.marketing.recommendations import RecommendationEvent
from stormd.schema.shop.carts import Cart, CartItem
from stormd.schema.shop.orders import COMPLETED_STATUSES, Order, OrderItem
from stormd.schema.shop.products import Product

CANDIDATES = 20  # per context product, before per-customer exclusions
OPEN_CARTS = ("ACTIVE", "ABANDONED")


@dataclass(frozen=True)
class Candidate:
    product_id: str
    name: str
    category: str | None
    price: Any
    image_url: str | None
    strategy: str  # learned / co_purchased / same_category
    score: float = 0.0  # learned only: the model's blended score

    def as_dict(self) -> dict[str, Any]:
        return {"product_id": self.product_id, "name": self.name, "category": self.category,
                "price": self.price, "image_url": self.image_url, "strategy": self.strategy}


class CandidateCache:
    """Per (store, product) candidate lists, each kept until its expiry instant."""

    def __init__(self) -> None:
        self._entries: dict[tuple[str, str], tuple[datetime, list[Candidate]]] = {}

    def get(self, store_id: str, product_id: str, now: datetime) -> list[Candidate] | None:
        hit = self._entries.get((store_id, product_id))
        return hit[1] if hit and hit[0] > now else None

    def put(self, store_id: str, product_id: str, until: datetime, items: list[Candidate]) -> None:
        self._entries[(store_id, product_id)] = (until, items)

    def clear(self) -> None:
        self._entries.clear()


cache = CandidateCache()


async def _co_purchased(session: AsyncSession, store_id: str, product_id: str) -> list[str]:
    mine, other = aliased(OrderItem), aliased(OrderItem)
    together = func.count(func.distinct(other.order_id))
    rows = await session.execute(
        select(other.product_id, together)
        .join(mine, and_(mine.store_id == other.store_id, mine.order_id == other.order_id))
        .join(Order, and_(Order.store_id == other.store_id, Order.order_id == other.order_id))
        .where(other.store_id == store_id, mine.product_id == product_id,
               other.product_id != product_id, Order.status.in_(COMPLETED_STATUSES))
        .group_by(other.product_id).order_by(together.desc(), other.product_id).limit(CANDIDATES))
    return [pid for pid, _ in rows]


async def _same_category(session: AsyncSession, store_id: str, product_id: str) -> list[str]:
    category = select(Product.category).where(Product.store_id == store_id,
                                              Product.product_id == product_id).scalar_subquery()
    sold = func.count(OrderItem.id)
    rows = await session.execute(
        select(Product.product_id, sold)
        .outerjoin(OrderItem, and_(OrderItem.store_id == Product.store_id,
                                   OrderItem.product_id == Product.product_id))
        .where(Product.store_id == store_id, Product.category == category,
               Product.product_id != product_id, Product.active.is_(True))
        .group_by(Product.product_id).order_by(sold.desc(), Product.product_id).limit(CANDIDATES))
    return [pid for pid, _ in rows]


async def candidates(session: AsyncSession, settings: Settings, store_id: str, product_id: str,
                     now: datetime) -> list[Candidate]:
    """The learned neighbours when the store's model knows the product; otherwise
    co-purchased first, then same category. Cached per product for a day."""
    hit = cache.get(store_id, product_id, now)
    if hit is not None:
        return hit
    learned = (await learned_neighbours(session, store_id, [product_id])).get(product_id)
    if learned:
        ordered = [p for p, _ in learned]
        strategy = dict.fromkeys(ordered, "learned")
        score = dict(learned)
    else:
        co = await _co_purchased(session, store_id, product_id)
        same = [p for p in await _same_category(session, store_id, product_id) if p not in co]
        strategy = {**{p: "same_category" for p in same}, **{p: "co_purchased" for p in co}}
        ordered, score = co + same, {}
    found = {p.product_id: p for p in (await session.scalars(
        select(Product).where(Product.store_id == store_id, Product.product_id.in_(ordered),
                              Product.active.is_(True)))).all()} if ordered else {}
    items = [Candidate(pid, found[pid].name, found[pid].category, found[pid].price,
                       found[pid].image_url, strategy[pid], score.get(pid, 0.0))
             for pid in ordered if pid in found]
    cache.put(store_id, product_id, now + settings.automations.recommendations_cache, items)
    return items


async def excluded_for(session: AsyncSession, settings: Settings, store_id: str,
                       customers: list[str], now: datetime) -> dict[str, set[str]]:
    """Per customer: products in their open carts or bought in the last N days (one query
    for all of them)."""
    in_cart = select(Cart.customer_id, CartItem.product_id).join(Cart, and_(
        Cart.store_id == CartItem.store_id, Cart.cart_id == CartItem.cart_id)).where(
        Cart.store_id == store_id, in_values(Cart.customer_id, customers),
        Cart.status.in_(OPEN_CARTS))
    since = now - timedelta(days=settings.automations.recommendations_exclude_days)
    bought = select(Order.customer_id, OrderItem.product_id).join(Order, and_(
        Order.store_id == OrderItem.store_id, Order.order_id == OrderItem.order_id)).where(
        Order.store_id == store_id, in_values(Order.customer_id, customers),
        Order.status.in_(COMPLETED_STATUSES), Order.occurred_at >= since)
    found: dict[str, set[str]] = {}
    for customer_id, product_id in await session.execute(in_cart.union(bought)):
        found.setdefault(customer_id, set()).add(product_id)
    return found


async def recommend_many(session: AsyncSession, settings: Settings, store_id: str,
                         wanted: list[tuple[str | None, Iterable[str]]], now: datetime,
                         trigger: str | None = None, limit: int | None = None,
                         record: bool = True) -> list[list[dict[str, Any]]]:
    """`recommend` for many (customer, context products) at once: one exclusion query for
    all customers, cached candidates, one insert for every recommendation recorded (none
    with `record=False`, for previews). Returns the products for each request, in order:
    the learned neighbours of the context by summed score, then the rules' candidates of
    its cold products in context order."""
    limit = limit or settings.automations.recommendations_count
    customers = list(dict.fromkeys(c for c, _ in wanted if c))
    excluded = await excluded_for(session, settings, store_id, customers, now) if customers else {}
    answers: list[list[dict[str, Any]]] = []
    records: list[dict[str, Any]] = []
    for customer_id, context in wanted:
        context = list(dict.fromkeys(context))
        skip = set(context) | excluded.get(customer_id, set())
        lists = [await candidates(session, settings, store_id, p, now) for p in context]
        summed: dict[str, float] = {}
        first: dict[str, Candidate] = {}
        for items in lists:
            for c in items:
                if c.strategy == "learned":
                    summed[c.product_id] = summed.get(c.product_id, 0.0) + c.score
                    first.setdefault(c.product_id, c)
        ranked = sorted(summed, key=lambda p: (-summed[p], p))
        ordered = [first[p] for p in ranked] + [c for items in lists for c in items
                                                if c.strategy != "learned"]
        chosen: list[Candidate] = []
        for c in ordered:
            if c.product_id not in skip and len(chosen) < limit:
                chosen.append(c)
                skip.add(c.product_id)
        if chosen:
            records.append({
                "store_id": store_id, "customer_id": customer_id,
                "context_product_id": context[0] if context else None,
                "strategy": _strategy({c.strategy for c in chosen}),
                "products": [c.product_id for c in chosen], "trigger": trigger,
                "created_at": now})
        answers.append([c.as_dict() for c in chosen])
    if records and record:
        await session.execute(insert(RecommendationEvent), records)
    return answers


def _strategy(used: set[str]) -> str:
    """What the recorded recommendation came from: `learned`, `learned+rules`, or the rules
    used (`co_purchased`, `same_category`, `co_purchased+same_category`)."""
    if "learned" in used:
        return "learned" if used == {"learned"} else "learned+rules"
    return "+".join(sorted(used))


async def last_order_products(session: AsyncSession, store_id: str, customers: list[str]
                              ) -> dict[str, list[str]]:
    """Per customer, the products of their last completed order (every order at that
    instant), in line order: the context of a campaign's `recommended_products`."""
    o = Order.__table__.c
    last = (select(o.customer_id, func.max(o.occurred_at).label("at"))
            .where(o.store_id == store_id, in_values(o.customer_id, customers),
                   o.status.in_(COMPLETED_STATUSES))
            .group_by(o.customer_id).subquery())
    rows = await session.execute(
        select(Order.customer_id, OrderItem.product_id)
        .join(last, and_(last.c.customer_id == Order.customer_id, last.c.at == Order.occurred_at))
        .join(OrderItem, and_(OrderItem.store_id == Order.store_id,
                              OrderItem.order_id == Order.order_id))
        .where(Order.store_id == store_id, Order.status.in_(COMPLETED_STATUSES))
        .order_by(Order.customer_id, Order.order_id, OrderItem.line_no))
    found: dict[str, list[str]] = {}
    for customer_id, product_id in rows:
        found.setdefault(customer_id, []).append(product_id)
    return found


async def recommend(session: AsyncSession, settings: Settings, store_id: str,
                    customer_id: str | None, context: Iterable[str], now: datetime,
                    trigger: str | None = None, limit: int | None = None) -> list[dict[str, Any]]:
    """Up to `limit` products for the customer around the context products, recorded."""
    [answer] = await recommend_many(session, settings, store_id, [(customer_id, context)], now,
                                    trigger, limit)
    return answer
