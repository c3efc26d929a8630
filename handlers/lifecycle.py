"""Lifecycle stage and churn risk per customer (CONTRACT §5), kept with the features the
segment criteria read (handlers/criteria.py), one row per customer of the store.

Stage as of T: PROSPECT with no completed order; NEW with exactly one, placed at most
`lifecycle.new_max_days` whole days before T; CHURNED when the last completed order is
more than `lifecycle.churned_after_days` whole days before T; ACTIVE otherwise.

Churn risk, in 0..1: how long the customer has been silent measured in their own usual
gap between orders. With d the whole days since the last completed order and h the mean
days between their completed orders (for a one-order customer, `new_max_days`), clamped to
[7, churned_after_days] days: risk = 1 - 2^(-d / h). It is 0 right after an order, 0.5 when
they have been silent one usual gap, 0.75 at two; PROSPECTs (nothing to lose yet) have 0.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime, timedelta
from typing import Any

import numpy as np
from sqlalchemy import Integer, exists, literal, null, select
from sqlalchemy.ext.asyncio import AsyncSession
from stormd.config.settings import LifecycleSettings
from stormd.handlers.features import (
    EPOCH,
    ID_CHUNK,
    US_PER_DAY,
    Aggregates,
    cents_to_decimal,
    completed_orders,
    epoch_us,
    store_customers_query,
    whole_days,
)
from stormd.handlers.rfm import Scores
from stormd.schema.base import Money, UtcDateTime
from stormd.schema.orders import Order
from stormd.schema.rfm import CustomerLifecycleMetrics
from stormd.schema.upsert import insert_for

STAGES = ("PROSPECT", "NEW", "ACTIVE", "CHURNED")
MIN_GAP_DAYS = 7
UPSERT_BATCH = 50_000

LM = CustomerLifecycleMetrics.__table__
_UPDATED = [c.name for c in LM.columns if c.name not in ("store_id", "customer_id")]


def stages(agg: Aggregates, as_of: datetime, s: LifecycleSettings) -> np.ndarray:
    """Stage of each customer in `agg` (all have at least one completed order)."""
    days = whole_days(epoch_us(as_of), agg.last_us)
    new = (agg.orders_count == 1) & (days <= s.new_max_days)
    churned = days > s.churned_after_days
    return np.where(new, "NEW", np.where(churned, "CHURNED", "ACTIVE"))


def churn_risk(agg: Aggregates, as_of: datetime, s: LifecycleSettings) -> np.ndarray:
    days = whole_days(epoch_us(as_of), agg.last_us).astype(np.float64)
    spans = (agg.last_us - agg.first_us) / US_PER_DAY
    gaps = np.where(agg.orders_count > 1, spans / np.maximum(agg.orders_count - 1, 1),
                    float(s.new_max_days))
    half_life = np.clip(gaps, MIN_GAP_DAYS, max(MIN_GAP_DAYS, s.churned_after_days))
    return np.round(1.0 - np.exp2(-np.maximum(days, 0) / half_life), 4)


def _when(us: int) -> datetime:
    return EPOCH + timedelta(microseconds=us)


def _upsert(session: AsyncSession):
    stmt = insert_for(session, LM)
    return stmt.on_conflict_do_update(
        index_elements=["store_id", "customer_id"],
        set_={name: stmt.excluded[name] for name in _UPDATED},
    )


async def upsert_buyers(
    session: AsyncSession, store_id: str, as_of: datetime, agg: Aggregates,
    scores: Scores | None, s: LifecycleSettings,
) -> None:
    """Write the rows of customers with completed orders (RFM columns empty without scores)."""
    if not len(agg):
        return
    stage = stages(agg, as_of, s).tolist()
    risk = churn_risk(agg, as_of, s).tolist()
    recency = whole_days(epoch_us(as_of), agg.last_us).tolist()
    none = [None] * len(agg)
    r, f, m, comp = ((x.tolist() for x in (scores.r, scores.f, scores.m, scores.composite))
                     if scores is not None else (none, none, none, none))
    stmt = _upsert(session)
    batch: list[dict[str, Any]] = []
    rows = zip(agg.customer_ids, stage, risk, agg.orders_count.tolist(),
               agg.orders_total_cents.tolist(), agg.first_us.tolist(), agg.last_us.tolist(),
               recency, agg.frequency.tolist(), agg.monetary_cents.tolist(), r, f, m, comp)
    for cid, st, rk, cnt, tot, first, last, rec, freq, mon, r_, f_, m_, c_ in rows:
        batch.append({
            "store_id": store_id, "customer_id": cid, "stage": st, "churn_risk": rk,
            "orders_count": cnt, "orders_total": cents_to_decimal(tot),
            "first_order_at": _when(first), "last_order_at": _when(last),
            "recency_days": rec, "frequency": freq, "monetary": cents_to_decimal(mon),
            "r": r_, "f": f_, "m": m_, "composite": c_, "as_of": as_of,
        })
        if len(batch) >= UPSERT_BATCH:
            await session.execute(stmt, batch)
            batch = []
    if batch:
        await session.execute(stmt, batch)


async def upsert_prospects(
    session: AsyncSession, store_id: str, as_of: datetime,
    customer_ids: Iterable[str] | None = None,
) -> None:
    """Every known customer without a completed order at T becomes (or stays) PROSPECT.

    One INSERT ... SELECT ... ON CONFLICT, optionally limited to some customers.
    """
    chunks: list[list[str] | None] = [None]
    if customer_ids is not None:
        ids = list(customer_ids)
        chunks = [ids[i:i + ID_CHUNK] for i in range(0, len(ids), ID_CHUNK)]
    for chunk in chunks:
        await session.execute(_prospects_statement(session, store_id, as_of, chunk))


def _prospects_statement(session: AsyncSession, store_id: str, as_of: datetime,
                         customer_ids: list[str] | None):
    known = store_customers_query(store_id, customer_ids)
    o = Order.__table__.c
    has_order = exists().where(completed_orders(store_id, as_of), o.customer_id == known.c.customer_id)
    values = {
        "store_id": literal(store_id), "customer_id": known.c.customer_id,
        "stage": literal("PROSPECT"), "churn_risk": literal(0.0),
        "orders_count": literal(0, Integer), "orders_total": literal(0, Money),
        "first_order_at": null(), "last_order_at": null(), "recency_days": null(),
        "frequency": null(), "monetary": null(), "r": null(), "f": null(), "m": null(),
        "composite": null(), "as_of": literal(as_of, UtcDateTime()),
    }
    stmt = insert_for(session, LM).from_select(list(values), select(*values.values()).where(~has_order))
    return stmt.on_conflict_do_update(
        index_elements=["store_id", "customer_id"],
        set_={name: stmt.excluded[name] for name in _UPDATED},
    )
