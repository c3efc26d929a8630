"""Learned product neighbours per store: fitted nightly from what was bought together
(handlers/predictions/recommend.py), kept in `product_neighbours`, read by the
recommendation engine (handlers/outreach/recommendations.py) before its rules.

The model reads the completed orders of the last `WINDOW_DAYS` days, one basket an order.
Only warm products (in at least `recommend.MIN_BASKETS` orders) get neighbours; a cold
product has no row, and the rules answer for it. The table holds at most
`predictions.recommendation_neighbours` rows per warm product, replaced whole at each fit
(one transaction), so its size is bounded by the catalogue, not by time.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime, timedelta

import numpy as np
from sqlalchemy import and_, bindparam, delete, select
from sqlalchemy.ext.asyncio import AsyncSession

from stormd.handlers.kernel.context import JobContext
from stormd.handlers.predictions import recommend
from stormd.handlers.scoring.features import PART_ROWS, completed_orders, row_parts
from stormd.schema.db.columnar import write_columns
from stormd.schema.db.inlist import in_values
from stormd.schema.marketing.predictions import ProductNeighbour
from stormd.schema.shop.orders import Order, OrderItem

WINDOW_DAYS = 365
PN = ProductNeighbour.__table__


async def _baskets(session: AsyncSession, store_id: str, as_of: datetime
                   ) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """(basket, product index) rows of the window's completed orders, and the products."""
    o, i = Order.__table__.c, OrderItem.__table__.c
    query = (select(i.order_id, i.product_id)
             .join(Order.__table__, and_(o.store_id == i.store_id, o.order_id == i.order_id))
             .where(completed_orders(bindparam("store", type_=o.store_id.type),
                                     bindparam("as_of", type_=o.occurred_at.type)),
                    o.occurred_at > bindparam("since", type_=o.occurred_at.type)))
    orders: dict[str, int] = {}
    products: dict[str, int] = {}
    basket: list[np.ndarray] = []
    item: list[np.ndarray] = []
    params = {"store": store_id, "as_of": as_of, "since": as_of - timedelta(days=WINDOW_DAYS)}
    async for rows in row_parts(session, query, PART_ROWS, params):
        # Integer codes part by part: no Python int per row outlives its part.
        basket.append(np.fromiter((orders.setdefault(o, len(orders)) for o, _ in rows),
                                  dtype=np.int64, count=len(rows)))
        item.append(np.fromiter((products.setdefault(p, len(products)) for _, p in rows),
                                dtype=np.int64, count=len(rows)))
    orders.clear()
    empty = np.zeros(0, dtype=np.int64)
    return (np.concatenate(basket) if basket else empty,
            np.concatenate(item) if item else empty, list(products))


async def learn_store(job: JobContext, store_id: str, as_of: datetime) -> int:
    """Fit the store's item vectors and replace its neighbour lists; returns how many
    products got neighbours (0: none warm enough, the rules answer for all)."""
    k = job.settings.predictions.recommendation_neighbours
    async with job.sessionmaker() as session:
        basket, item, products = await _baskets(session, store_id, as_of)
    rows: dict[str, list] = {"product_id": [], "rank": [], "neighbour_id": [], "score": []}
    if basket.size:
        model = recommend.fit(basket, item, n_items=len(products), neighbours=k)
        warm = np.flatnonzero(~model.cold)
        top, sim = model.neighbours[warm], model.similarity[warm]
        for row, product in enumerate(warm.tolist()):
            found = top[row] >= 0
            n = int(found.sum())
            rows["product_id"] += [products[product]] * n
            rows["rank"] += list(range(n))
            rows["neighbour_id"] += [products[j] for j in top[row][found].tolist()]
            rows["score"] += sim[row][found].astype(float).tolist()
    async with job.sessionmaker() as session:
        await session.execute(delete(PN).where(PN.c.store_id == store_id))
        await write_columns(session, PN, {"store_id": store_id, **rows},
                            ["store_id", "product_id", "rank"], update=False)
        await session.commit()
    return len(set(rows["product_id"]))


async def learned_neighbours(session: AsyncSession, store_id: str, product_ids: Iterable[str]
                             ) -> dict[str, list[tuple[str, float]]]:
    """Each warm product's neighbours, best first, with their blended score (a product
    without a row is cold or the store has no model: the caller uses the rules)."""
    wanted = list(dict.fromkeys(product_ids))
    if not wanted:
        return {}
    found: dict[str, list[tuple[str, float]]] = {}
    rows = await session.execute(
        select(PN.c.product_id, PN.c.neighbour_id, PN.c.score)
        .where(PN.c.store_id == store_id, in_values(PN.c.product_id, wanted))
        .order_by(PN.c.product_id, PN.c.rank))
    for product_id, neighbour_id, score in rows:
        found.setdefault(product_id, []).append((neighbour_id, float(score)))
    return found
