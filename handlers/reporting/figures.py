"""What every KPI family shares: the periods it reports on, the figures' shape, rates, and
how a KPI is shown.

A family is a `KpiSource`: given the session, the stores and the `Periods` (one period,
or the consecutive buckets of a series), it returns each store's figures for each period,
in order. A family that can group its rows by period in SQL does so with
`Periods.bucket(column)` (one query however many buckets); one that computes a single
period at a time is wrapped with `per_period`.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import and_, case, literal, true
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.sql import ColumnElement

# store -> KPI name -> value: one period's figures.
Figures = dict[str, dict[str, Any]]
# store -> one dict of figures per period, in the periods' order.
SeriesFigures = dict[str, list[dict[str, Any]]]


@dataclass(frozen=True)
class Period:
    """[start, end): either bound may be open (None)."""

    start: datetime | None = None
    end: datetime | None = None

    def holds(self, column: Any) -> ColumnElement[bool]:
        bounds = []
        if self.start is not None:
            bounds.append(column >= self.start)
        if self.end is not None:
            bounds.append(column < self.end)
        return and_(*bounds) if bounds else true()


@dataclass(frozen=True)
class Periods:
    """Consecutive periods: `bounds` are their n+1 edges (the first's start and every
    end), or one period open at either side (all time: `Periods.whole()`)."""

    items: tuple[Period, ...]

    @classmethod
    def whole(cls, period: Period | None = None) -> Periods:
        return cls((period or Period(),))

    @classmethod
    def between(cls, bounds: list[datetime]) -> Periods:
        return cls(tuple(Period(a, b) for a, b in zip(bounds, bounds[1:])))

    def __len__(self) -> int:
        return len(self.items)

    @property
    def span(self) -> Period:
        return Period(self.items[0].start, self.items[-1].end)

    def bucket(self, column: Any) -> ColumnElement[int]:
        """The index of the period a timestamp falls in (rows must be within `span`): a
        balanced tree of CASEs, so each row is compared about log2(n) times."""

        def tree(lo: int, hi: int) -> Any:
            if hi - lo == 1:
                return literal(lo)
            mid = (lo + hi) // 2
            return case((column < self.items[mid].start, tree(lo, mid)), else_=tree(mid, hi))

        return tree(0, len(self.items))


KpiSource = Callable[[AsyncSession, list[str], Periods], Awaitable[SeriesFigures]]
OnePeriod = Callable[[AsyncSession, list[str], Period], Awaitable[Figures]]


def per_period(family: OnePeriod) -> KpiSource:
    """A KPI source from a family that computes one period at a time."""

    async def source(session: AsyncSession, stores: list[str], periods: Periods
                     ) -> SeriesFigures:
        out: SeriesFigures = {s: [] for s in stores}
        for period in periods.items:
            figures = await family(session, stores, period)
            for store in stores:
                out[store].append(figures.get(store, {}))
        return out

    source.__name__ = getattr(family, "__name__", "source")
    return source


def rate(numerator: int | Decimal, denominator: int | Decimal) -> float | None:
    return round(float(numerator) / float(denominator), 4) if denominator else None


def show_kpi(name: str, value: Any) -> str:
    """A KPI as people read it: rates in %, the uplift in percentage points, money in taka,
    ROI as revenue per taka spent; "-" when there is nothing to compute it from."""
    if value is None:
        return "-"
    if name.endswith("_rate"):
        return f"{value * 100:.1f} %"
    if name.endswith("_uplift"):
        return f"{value * 100:+.1f} pts"
    if name.endswith(("_revenue", "_cost", "_attribution")):
        return f"৳{value:,.2f}"
    if name.endswith("_roi"):
        return f"{value:,.2f}:1"
    return str(value)
