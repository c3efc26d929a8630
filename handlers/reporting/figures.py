"""What every KPI family shares: the figures' shape, rates, and how a KPI is shown."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from decimal import Decimal
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

# store -> KPI name -> value; a family of KPIs computes these for the stores it is given.
Figures = dict[str, dict[str, Any]]
KpiSource = Callable[[AsyncSession, list[str]], Awaitable[Figures]]


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
