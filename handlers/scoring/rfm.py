"""RFM scoring exactly as docs/scoring.md defines it, and the snapshot run that records it.

Quintile mode: with n customers scored and below(v) the number whose value is strictly
worse, score = 1 + floor(5 * below(v) / n). The run also records, per dimension, the four
inclusive bounds that reproduce those scores (`Bounds`), so that a customer re-scored
between runs (handlers/scoring/segments.py, on their next order) lands exactly where the run
would place them. The "thresholds" mode uses configured bounds of the same shape.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any

import numpy as np
from sqlalchemy import bindparam, delete, func, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from stormd.config.settings import RfmSettings, RfmThresholds
from stormd.handlers.scoring.features import Aggregates, whole_days
from stormd.schema.db.columnar import cents_to_decimal, epoch_us, write_columns
from stormd.schema.marketing.rfm import CustomerRFMSnapshot, RfmRun

log = logging.getLogger("stormd.rfm")

# Dimension -> True when a larger value is better (recency: fewer days is better).
LARGER_IS_BETTER = {"recency_days": False, "frequency": True, "monetary": True}


@dataclass(frozen=True)
class Bounds:
    """Four inclusive bounds per dimension: a score is 1 + the bounds a value reaches.

    recency_days reaches a bound when value <= bound; frequency and monetary when
    value >= bound. Monetary bounds are integer cents.
    """

    recency_days: tuple[int, ...]
    frequency: tuple[int, ...]
    monetary_cents: tuple[int, ...]

    def to_json(self) -> dict[str, Any]:
        return {
            "recency_days": list(self.recency_days),
            "frequency": list(self.frequency),
            "monetary": [str(cents_to_decimal(c)) for c in self.monetary_cents],
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Bounds:
        return cls(
            recency_days=tuple(int(v) for v in data["recency_days"]),
            frequency=tuple(int(v) for v in data["frequency"]),
            monetary_cents=tuple(int(Decimal(str(v)) * 100) for v in data["monetary"]),
        )

    @classmethod
    def from_thresholds(cls, t: RfmThresholds) -> Bounds:
        """Configured cut points; fractional day/order bounds round to the integers they mean."""
        return cls(
            recency_days=tuple(math.floor(v) for v in t.recency_days),
            frequency=tuple(math.ceil(v) for v in t.frequency),
            monetary_cents=tuple(math.ceil(Decimal(str(v)) * 100) for v in t.monetary),
        )


def quintile_scores(values: np.ndarray, larger_is_better: bool) -> np.ndarray:
    """score = 1 + floor(5 * below(v) / n); ties share a score."""
    n = len(values)
    if n == 0:
        return np.zeros(0, dtype=np.int64)
    ordered = np.sort(values)
    if larger_is_better:
        below = np.searchsorted(ordered, values, side="left")
    else:
        below = n - np.searchsorted(ordered, values, side="right")
    return 1 + (5 * below) // n


def quintile_bounds(values: np.ndarray, larger_is_better: bool) -> tuple[int, ...]:
    """The inclusive bounds that reproduce `quintile_scores` for integer values.

    Score >= k iff below(v) >= b_k = ceil((k-1) n / 5). For larger-is-better that is
    v > (b_k-th smallest value), i.e. v >= it + 1; for recency, v <= (b_k-th largest) - 1.
    """
    n = len(values)
    if n == 0:
        return ()
    ordered = np.sort(values)
    needed = [-(-(k - 1) * n // 5) for k in range(2, 6)]
    if larger_is_better:
        return tuple(int(ordered[b - 1]) + 1 for b in needed)
    return tuple(int(ordered[n - b]) - 1 for b in needed)


def bounded_scores(values: np.ndarray, bounds: tuple[int, ...], larger_is_better: bool) -> np.ndarray:
    """1 + the number of bounds each value reaches."""
    values = np.asarray(values, dtype=np.int64)
    if not bounds:
        return np.ones(len(values), dtype=np.int64)
    b = np.asarray(bounds, dtype=np.int64)
    if larger_is_better:
        return 1 + (values[:, None] >= b[None, :]).sum(axis=1)
    return 1 + (values[:, None] <= b[None, :]).sum(axis=1)


@dataclass
class Scores:
    recency_days: np.ndarray
    r: np.ndarray
    f: np.ndarray
    m: np.ndarray
    composite: np.ndarray
    bounds: Bounds

    def part(self, rows: slice) -> Scores:
        return Scores(self.recency_days[rows], self.r[rows], self.f[rows], self.m[rows],
                      self.composite[rows], self.bounds)


def score(agg: Aggregates, as_of: datetime, settings: RfmSettings,
          bounds: Bounds | None = None) -> Scores:
    """Score customers: by quintiles of this population, or by given/configured bounds."""
    recency = whole_days(epoch_us(as_of), agg.last_us)
    dims = {"recency_days": recency, "frequency": agg.frequency, "monetary": agg.monetary_cents}
    if bounds is None and settings.mode == "quintile":
        scores = {d: quintile_scores(v, LARGER_IS_BETTER[d]) for d, v in dims.items()}
        bounds = Bounds(*(quintile_bounds(v, LARGER_IS_BETTER[d]) for d, v in dims.items()))
    else:
        bounds = bounds or Bounds.from_thresholds(settings.thresholds)
        cuts = dict(zip(dims, (bounds.recency_days, bounds.frequency, bounds.monetary_cents)))
        scores = {d: bounded_scores(v, cuts[d], LARGER_IS_BETTER[d]) for d, v in dims.items()}
    w = settings.weights
    r, f, m = scores["recency_days"], scores["frequency"], scores["monetary"]
    return Scores(recency, r, f, m, w.r * r + w.f * f + w.m * m, bounds)


async def start_run(session: AsyncSession, store_id: str, as_of: datetime, mode: str,
                    now: datetime) -> int:
    run = RfmRun(store_id=store_id, as_of=as_of, mode=mode, status="RUNNING", started_at=now)
    session.add(run)
    await session.flush()
    return run.id


async def verify_snapshot(session: AsyncSession, run_id: int, store_id: str, population: int,
                          now: datetime) -> tuple[str, int]:
    """The completeness guardrail: the run is OK only if the snapshot rows in the table
    equal the scored population; the outcome is recorded on the run."""
    rows = int(await session.scalar(
        select(func.count()).select_from(CustomerRFMSnapshot)
        .where(CustomerRFMSnapshot.store_id == store_id, CustomerRFMSnapshot.run_id == run_id)
    ) or 0)
    status = "OK" if rows == population else "FAILED"
    await session.execute(
        update(RfmRun).where(RfmRun.id == run_id).values(
            status=status, population=population, rows=rows, finished_at=now,
            error=None if status == "OK" else f"snapshot has {rows} rows, population is {population}",
        )
    )
    return status, rows


async def record_bounds(session: AsyncSession, run_id: int, bounds: Bounds) -> None:
    await session.execute(
        update(RfmRun).where(RfmRun.id == run_id).values(cut_points=bounds.to_json()))


async def insert_snapshot_rows(session: AsyncSession, run_id: int, store_id: str,
                               as_of: datetime, agg: Aggregates, s: Scores) -> None:
    """One CustomerRFMSnapshot per scored customer (callers may write it in slices)."""
    await write_columns(session, CustomerRFMSnapshot.__table__, {
        "store_id": store_id, "run_id": run_id, "customer_id": agg.customer_ids,
        "as_of": epoch_us(as_of), "recency_days": s.recency_days, "frequency": agg.frequency,
        "monetary": agg.monetary_cents, "r": s.r, "f": s.f, "m": s.m, "composite": s.composite,
    }, ["store_id", "run_id", "customer_id"], update=False)


async def latest_ok_run(session: AsyncSession, store_id: str) -> RfmRun | None:
    """The run whose bounds re-score customers between runs."""
    return await session.scalar(
        select(RfmRun).where(RfmRun.store_id == store_id, RfmRun.status == "OK")
        .order_by(RfmRun.as_of.desc(), RfmRun.id.desc()).limit(1)
    )


_LATEST_CUT_POINTS = (
    select(RfmRun.cut_points)
    .where(RfmRun.store_id == bindparam("store"), RfmRun.status == "OK")
    .order_by(RfmRun.as_of.desc(), RfmRun.id.desc()).limit(1))


async def latest_bounds(session: AsyncSession, store_id: str) -> Bounds | None:
    """The bounds of the store's latest OK run (None before any): one column, no ORM
    object, by a statement built once, as real-time re-scoring asks on every event run."""
    cut_points = await session.scalar(_LATEST_CUT_POINTS, {"store": store_id})
    return Bounds.from_json(cut_points) if cut_points else None


async def mark_failed(session: AsyncSession, run_id: int, error: str, now: datetime) -> None:
    await session.execute(
        update(RfmRun).where(RfmRun.id == run_id)
        .values(status="FAILED", error=error[:500], finished_at=now)
    )


async def runs_to_prune(session: AsyncSession, store_id: str, keep: int) -> list[int]:
    """The store's runs older than its `keep` latest, whose snapshot rows go."""
    result = await session.scalars(
        select(RfmRun.id).where(RfmRun.store_id == store_id)
        .order_by(RfmRun.id.desc()).offset(keep))
    return list(result)


async def prune_snapshot_slice(session: AsyncSession, store_id: str, run_id: int,
                               limit: int) -> int:
    """Delete up to `limit` snapshot rows of one run; returns how many went."""
    snap = CustomerRFMSnapshot.__table__
    some = (select(snap.c.id).where(snap.c.store_id == store_id, snap.c.run_id == run_id)
            .limit(limit).scalar_subquery())
    result = await session.execute(delete(snap).where(snap.c.id.in_(some)))
    return int(result.rowcount or 0)
