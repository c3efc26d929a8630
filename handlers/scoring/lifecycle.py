"""Lifecycle stage and churn risk per customer (docs/scoring.md), kept with the features the
segment criteria read (handlers/scoring/criteria.py), one row per customer of the store. A row only
moves forward in time: a nightly run as of T never overwrites what a later event wrote.

Stage as of T: PROSPECT with no completed order; NEW with exactly one, placed at most
`lifecycle.new_max_days` whole days before T; CHURNED when the last completed order is
more than `lifecycle.churned_after_days` whole days before T; ACTIVE otherwise. E-mail
engagement holds off churn: a customer who opened (or clicked) an e-mail at most
`lifecycle.engaged_within_days` whole days before T is CHURNED only once the last order is
more than `lifecycle.engaged_churned_after_days` whole days old.

Beside the stage each row keeps the e-mail engagement the criteria read
(`engagement.lastOpenDays`, `engagement.openRate`): the last open, and the e-mails sent in
the `lifecycle.engagement_window_days` before T with how many of them were opened
(handlers/scoring/features.py `engagement`).

Churn risk, in 0..1: how long the customer has been silent measured in their own usual
gap between orders. With d the whole days since the last completed order and h the mean
days between their completed orders (for a one-order customer, `new_max_days`), clamped to
[7, churned_after_days] days: risk = 1 - 2^(-d / h). It is 0 right after an order, 0.5 when
they have been silent one usual gap, 0.75 at two; PROSPECTs (nothing to lose yet) have 0.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from typing import Any

import numpy as np
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from stormd.config.settings import LifecycleSettings
from stormd.handlers.scoring.features import (
    ID_CHUNK,
    US_PER_DAY,
    Aggregates,
    Engagement,
    first_column,
    whole_days,
)
from stormd.handlers.scoring.rfm import Scores
from stormd.schema.db.columnar import epoch_us, write_columns
from stormd.schema.marketing.rfm import CustomerLifecycleMetrics
from stormd.schema.shop.customers import Customer

STAGES = ("PROSPECT", "NEW", "ACTIVE", "CHURNED")
MIN_GAP_DAYS = 7

LM = CustomerLifecycleMetrics.__table__


def stages(agg: Aggregates, as_of: datetime, s: LifecycleSettings,
           last_open_us: np.ndarray | None = None) -> np.ndarray:
    """Stage of each customer in `agg` (all have at least one completed order), with
    their last e-mail opens (epoch us, -1 for none) when known."""
    days = whole_days(epoch_us(as_of), agg.last_us)
    new = (agg.orders_count == 1) & (days <= s.new_max_days)
    churned = days > s.churned_after_days
    if last_open_us is not None and s.engaged_within_days > 0:
        engaged = (last_open_us >= 0) & (
            whole_days(epoch_us(as_of), last_open_us) <= s.engaged_within_days)
        churned &= ~engaged | (days > s.engaged_churned_after_days)
    return np.where(new, "NEW", np.where(churned, "CHURNED", "ACTIVE"))


def engagement_columns(customer_ids: list[str], found: dict[str, Engagement] | None
                       ) -> dict[str, Any]:
    """The lifecycle columns of e-mail engagement for these customers (none without
    `found`: the columns are then left as they are)."""
    if found is None:
        return {}
    none = Engagement()
    rows = [found.get(c, none) for c in customer_ids]
    return {"last_open_at": [e.last_open_us for e in rows],
            "emails_sent": [e.sent for e in rows], "emails_opened": [e.opened for e in rows]}


def _last_opens(customer_ids: list[str], found: dict[str, Engagement] | None
                ) -> np.ndarray | None:
    if found is None:
        return None
    return np.array([(e.last_open_us if (e := found.get(c)) and e.last_open_us is not None
                      else -1) for c in customer_ids], dtype=np.int64)


def churn_risk(agg: Aggregates, as_of: datetime, s: LifecycleSettings) -> np.ndarray:
    days = whole_days(epoch_us(as_of), agg.last_us).astype(np.float64)
    spans = (agg.last_us - agg.first_us) / US_PER_DAY
    gaps = np.where(agg.orders_count > 1, spans / np.maximum(agg.orders_count - 1, 1),
                    float(s.new_max_days))
    half_life = np.clip(gaps, MIN_GAP_DAYS, max(MIN_GAP_DAYS, s.churned_after_days))
    return np.round(1.0 - np.exp2(-np.maximum(days, 0) / half_life), 4)


async def upsert_buyers(
    session: AsyncSession, store_id: str, as_of: datetime, agg: Aggregates,
    scores: Scores | None, s: LifecycleSettings,
    found: dict[str, Engagement] | None = None,
) -> None:
    """Write the rows of customers with completed orders (RFM columns empty without scores;
    e-mail engagement from `found`, the store's or these customers' whole engagement)."""
    if not len(agg):
        return
    none = np.full(len(agg), None, dtype=object)
    await write_columns(session, LM, {
        "store_id": store_id, "customer_id": agg.customer_ids,
        "stage": stages(agg, as_of, s, _last_opens(agg.customer_ids, found)),
        "churn_risk": churn_risk(agg, as_of, s),
        **engagement_columns(agg.customer_ids, found),
        "orders_count": agg.orders_count, "orders_total": agg.orders_total_cents,
        "first_order_at": agg.first_order_at(), "last_order_at": agg.last_order_at(),
        "recency_days": whole_days(epoch_us(as_of), agg.last_us), "frequency": agg.frequency,
        "monetary": agg.monetary_cents,
        "r": scores.r if scores else none, "f": scores.f if scores else none,
        "m": scores.m if scores else none, "composite": scores.composite if scores else none,
        "as_of": epoch_us(as_of),
    }, ["store_id", "customer_id"], update=True, keep_newer="as_of")


async def upsert_prospects(
    session: AsyncSession, store_id: str, as_of: datetime, buyers: Iterable[str],
    customer_ids: Iterable[str] | None = None, found: dict[str, Engagement] | None = None,
) -> None:
    """Every customer of the store (optionally: of `customer_ids`) who is not among the
    `buyers` scored at T becomes, or stays, PROSPECT. The store's customers are its
    customer records: the customer and order handlers and the importer make one for
    every buyer."""
    scored = set(buyers)
    query = select(Customer.customer_id).where(Customer.store_id == store_id)
    if customer_ids is None:
        prospects = [c for c in await first_column(session, query) if c not in scored]
    else:
        # Re-scoring: only customers without a completed order need their record looked up.
        ids, prospects = [c for c in dict.fromkeys(customer_ids) if c not in scored], []
        for start in range(0, len(ids), ID_CHUNK):
            chunk = ids[start:start + ID_CHUNK]
            prospects.extend(await session.scalars(query.where(Customer.customer_id.in_(chunk))))
    await write_columns(session, LM, {
        "store_id": store_id, "customer_id": prospects, "stage": "PROSPECT",
        "churn_risk": 0.0, "orders_count": 0, "orders_total": 0, "first_order_at": None,
        "last_order_at": None, "recency_days": None, "frequency": None, "monetary": None,
        "r": None, "f": None, "m": None, "composite": None, "as_of": epoch_us(as_of),
        **engagement_columns(prospects, found),
    }, ["store_id", "customer_id"], update=True, keep_newer="as_of")
