"""Rule-based upsell and cross-sell: what goes with a product.

For a context product: first the products most often bought in the same completed orders
(co-purchase, one set-based query over order_items), then the best sellers of its category.
Per-product candidate lists are cached for `automations.recommendations_cache` (a day);
per customer, products in their open cart, bought in the last
`automations.recommendations_exclude_days`, inactive, or themselves the context are left out.
Every recommendation handed out is recorded as a RecommendationEvent.
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
    strategy: str  # co_purchased / same_category

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
    """Co-purchased first, then same category; cached per product for a day."""
    hit = cache.get(store_id, product_id, now)
    if hit is not None:
        return hit
    co = await _co_purchased(session, store_id, product_id)
    same = [p for p in await _same_category(session, store_id, product_id) if p not in co]
    strategy = {**{p: "same_category" for p in same}, **{p: "co_purchased" for p in co}}
    ordered = co + same
    found = {p.product_id: p for p in (await session.scalars(
        select(Product).where(Product.store_id == store_id, Product.product_id.in_(ordered),
                              Product.active.is_(True)))).all()} if ordered else {}
    items = [Candidate(pid, found[pid].name, found[pid].category, found[pid].price,
                       found[pid].image_url, strategy[pid]) for pid in ordered if pid in found]
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
                         trigger: str | None = None, limit: int | None = None
                         ) -> list[list[dict[str, Any]]]:
    """`recommend` for many (customer, context products) at once: one exclusion query for
    all customers, cached candidates, one insert for every recommendation recorded.
    Returns the products for each request, in order."""
    limit = limit or settings.automations.recommendations_count
    customers = list(dict.fromkeys(c for c, _ in wanted if c))
    excluded = await excluded_for(session, settings, store_id, customers, now) if customers else {}
    answers: list[list[dict[str, Any]]] = []
    records: list[dict[str, Any]] = []
    for customer_id, context in wanted:
        context = list(dict.fromkeys(context))
        skip = set(context) | excluded.get(customer_id, set())
        chosen: list[Candidate] = []
        for product_id in context:
            for c in await candidates(session, settings, store_id, product_id, now):
                if c.product_id not in skip and len(chosen) < limit:
                    chosen.append(c)
                    skip.add(c.product_id)
        if chosen:
            records.append({
                "store_id": store_id, "customer_id": customer_id,
                "context_product_id": context[0] if context else None,
                "strategy": "+".join(sorted({c.strategy for c in chosen})),
                "products": [c.product_id for c in chosen], "trigger": trigger,
                "created_at": now})
        answers.append([c.as_dict() for c in chosen])
    if records:
        await session.execute(insert(RecommendationEvent), records)
    return answers


async def recommend(session: AsyncSession, settings: Settings, store_id: str,
                    customer_id: str | None, context: Iterable[str], now: datetime,
                    trigger: str | None = None, limit: int | None = None) -> list[dict[str, Any]]:
    """Up to `limit` products for the customer around the context products, recorded."""
    [answer] = await recommend_many(session, settings, store_id, [(customer_id, context)], now,
                                    trigger, limit)
    return answer
