"""A store's order history as the CLV models take it, read set-based on either database,
and the fit `stormd clv fit` prints and the nightly run stores.

The data: the store's completed orders placed at or before T. One transaction per customer
per calendar day in the store's time zone (its `timezone`, else `daemon.timezone`); a
day's spend is the sum of that day's completed order totals. Per customer, x = repeat
purchase days, t_x = last purchase day - first, T = as-of day - first, and the mean spend
of the repeat days (the first day left out).

The database does the work: one GROUP BY per customer-day inside one GROUP BY per customer
returns a row per customer (id, first day, last day, days, total cents, first day's
cents), so a million customers are a million integer rows, not their orders. The local
calendar day of an order is computed in SQL exactly, from whole seconds: the zone's UTC
offsets over the last `ZONE_YEARS` years are a CASE on the order time (newest first), the
same on SQLite and PostgreSQL; orders older than that take the oldest offset.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import numpy as np
from sqlalchemy import (
    BigInteger,
    Date,
    Integer,
    bindparam,
    case,
    cast,
    func,
    literal,
    select,
    type_coerce,
)
from sqlalchemy import literal_column as column_named
from sqlalchemy.ext.asyncio import AsyncSession

from stormd.config.settings import Settings
from stormd.handlers.predictions import clv
from stormd.handlers.scoring.features import PART_ROWS, completed_orders, row_parts, sql_cents
from stormd.schema.shop.orders import Order
from stormd.schema.shop.stores import Store

ZONE_YEARS = 30
# The first day's spend rides along a MIN(): day * SPLIT + cents, smallest day first. A
# day's total stays below 10^14 cents (10^12 taka) and day numbers below 90,000 (2216).
SPLIT = 10**14
EPOCH_DATE = date(1970, 1, 1)


def local_day(when: datetime, tz: ZoneInfo) -> int:
    """Days since 1970-01-01 of the calendar date `when` falls on in `tz`."""
    return (when.astimezone(tz).date() - EPOCH_DATE).days


def end_of_day(day: date, tz: ZoneInfo) -> datetime:
    """The last microsecond of a calendar day in `tz` (a bare `--as-of` date means it)."""
    return datetime.combine(day + timedelta(days=1), time(), tz) - timedelta(microseconds=1)


def zone_offsets(tz: ZoneInfo, start: datetime, end: datetime) -> list[tuple[datetime, int]]:
    """(from this instant, UTC offset in seconds) for each stretch of one offset in
    [start, end], oldest first. Days are probed one by one and each change is pinned to
    the second by bisection: zones change offset at most a few times a year."""

    def offset(at: datetime) -> int:
        return int(at.astimezone(tz).utcoffset().total_seconds())

    out = [(start, offset(start))]
    probe = start
    while probe < end:
        following = min(probe + timedelta(days=1), end)
        if offset(following) != out[-1][1]:
            lo, hi = probe, following  # offset(lo) is the old one, offset(hi) the new
            while hi - lo > timedelta(seconds=1):
                mid = lo + (hi - lo) / 2
                mid = mid.replace(microsecond=0)
                if mid <= lo:
                    break
                if offset(mid) == out[-1][1]:
                    lo = mid
                else:
                    hi = mid
            out.append((hi, offset(following)))
        probe = following
    return out


@functools.lru_cache(maxsize=64)
def _offsets(zone: str, end_day: int) -> tuple[tuple[datetime, int], ...]:
    end = datetime.combine(EPOCH_DATE + timedelta(days=end_day + 1), time(), UTC)
    start = end - timedelta(days=365 * ZONE_YEARS)
    return tuple(zone_offsets(ZoneInfo(zone), start, end))


def _day_of_order(dialect: str, offsets: tuple[tuple[datetime, int], ...]) -> Any:
    """The order's local calendar day as days since 1970-01-01, exactly, in SQL."""
    o = Order.__table__.c

    def shift(seconds: int) -> Any:
        return f"{seconds:+d} seconds" if dialect == "sqlite" else seconds

    if len(offsets) == 1:
        by_time: Any = literal(shift(offsets[0][1]))
    else:
        newest_first = list(reversed(offsets))
        by_time = case(*((o.occurred_at >= literal(since, o.occurred_at.type), shift(seconds))
                         for since, seconds in newest_first[:-1]),
                       else_=literal(shift(newest_first[-1][1])))
    if dialect == "sqlite":
        # Stored text 'YYYY-MM-DD HH:MM:SS.ffffff' (UTC): whole seconds, moved to local
        # time by SQLite's date modifier; julianday of a bare date is exact (n + 0.5).
        local = func.date(func.substr(o.occurred_at, 1, 19), by_time)
        return cast(func.julianday(local) - 2440587.5, Integer)
    local = cast(o.occurred_at + func.make_interval(0, 0, 0, 0, 0, 0, by_time), Date)
    return type_coerce(local - literal(EPOCH_DATE, Date), Integer)


@functools.lru_cache(maxsize=64)
def _history_query(dialect: str, offsets: tuple[tuple[datetime, int], ...]) -> Any:
    """Per customer: first day, last day, purchase days, total cents, first day's cents
    (as first day * SPLIT + cents); bound parameters `store` and `as_of`."""
    o = Order.__table__.c
    as_of = bindparam("as_of", type_=o.occurred_at.type)
    days = (select(o.customer_id.label("customer"),
                   _day_of_order(dialect, offsets).label("purchase_day"),
                   cast(func.sum(sql_cents(o.total, dialect)), BigInteger).label("cents"))
            .where(completed_orders(bindparam("store", type_=o.store_id.type), as_of))
            .group_by(o.customer_id, column_named("purchase_day"))
            .subquery())
    d, cents = days.c.purchase_day, days.c.cents
    return (select(days.c.customer, func.min(d), func.max(d), func.count(), func.sum(cents),
                   func.min(cast(d, BigInteger) * SPLIT + cents))
            .group_by(days.c.customer))


@dataclass(frozen=True)
class History:
    """A store's customers with a completed order at or before T, and their summary
    (`summary.customer` indexes `customer_ids`)."""

    customer_ids: list[str]
    summary: clv.Summary
    as_of_day: int
    timezone: str

    def __len__(self) -> int:
        return len(self.customer_ids)


async def store_timezone(session: AsyncSession, settings: Settings, store_id: str) -> str:
    zone = await session.scalar(select(Store.timezone).where(Store.id == store_id))
    return zone or settings.daemon.timezone


async def read_history(session: AsyncSession, settings: Settings, store_id: str,
                       as_of: datetime, unit: str = "days") -> History:
    """The store's summary as of T: one GROUP BY, its rows read in parts straight into
    integer arrays."""
    zone = await store_timezone(session, settings, store_id)
    tz = ZoneInfo(zone)
    as_of_day = local_day(as_of, tz)
    dialect = session.bind.dialect.name
    query = _history_query(dialect, _offsets(zone, as_of_day))
    ids: list[str] = []
    parts: list[np.ndarray] = []
    async for rows in row_parts(session, query, PART_ROWS, {"store": store_id, "as_of": as_of}):
        if rows:
            columns = list(zip(*rows))
            ids.extend(columns[0])
            parts.append(np.array(columns[1:], dtype=np.int64))
    values = np.concatenate(parts, axis=1) if parts else np.zeros((5, 0), dtype=np.int64)
    first, last, n_days, total, packed = values
    first_cents = packed - first * SPLIT
    x = (n_days - 1).astype(np.float64)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean_repeat = np.where(x > 0, (total - first_cents) / 100.0 / x, np.nan)
    unit_days = clv.UNIT_DAYS[unit]
    summary = clv.Summary(
        customer=np.arange(len(ids)), x=x, t_x=(last - first) / unit_days,
        T=(as_of_day - first) / unit_days, mean_repeat_spend=mean_repeat,
        unit_days=unit_days, history_days=int(as_of_day - first.min()) if len(ids) else 0)
    return History(ids, summary, as_of_day, zone)


@dataclass(frozen=True)
class StoreFit:
    """Both fits of one store as of T, or the reason there are none."""

    store_id: str
    as_of: datetime
    unit: str
    history: History
    reason: str | None = None
    bgnbd: clv.BgNbdFit | None = None
    gamma_gamma: clv.GammaGammaFit | None = None

    @property
    def warnings(self) -> list[str]:
        found = list(self.bgnbd.warnings) if self.bgnbd else []
        if self.gamma_gamma:
            found += self.gamma_gamma.warnings
        elif self.bgnbd:
            found.append("no Gamma-Gamma fit: fewer than two repeat buyers with a positive "
                         "spend; no predicted value")
        return found

    def to_json(self) -> dict[str, Any]:
        """What `stormd clv fit --json` prints: the parameters, log-likelihoods, what the
        optimiser said and the independence check, or `error` with the reason."""
        s = self.history.summary
        out: dict[str, Any] = {
            "store": self.store_id, "asOf": self.as_of.isoformat(),
            "asOfDay": (EPOCH_DATE + timedelta(days=self.history.as_of_day)).isoformat(),
            "timezone": self.history.timezone, "unit": self.unit,
            "customers": s.customers, "repeatBuyers": s.repeat_buyers,
            "historyDays": s.history_days,
        }
        if self.reason:
            return {**out, "error": self.reason, "notEnoughHistory": True}
        bg = self.bgnbd
        out["bgnbd"] = {"r": bg.r, "alpha": bg.alpha, "a": bg.a, "b": bg.b,
                        "logLikelihood": bg.log_likelihood, "customers": bg.customers,
                        "convergence": _convergence(bg.convergence)}
        gg = self.gamma_gamma
        out["gammaGamma"] = None if gg is None else {
            "p": gg.p, "q": gg.q, "gamma": gg.gamma, "customers": gg.customers,
            "logLikelihood": gg.log_likelihood, "meanSpend": gg.mean_spend,
            "convergence": _convergence(gg.convergence),
            "independence": {"correlation": gg.correlation,
                             "limit": clv.MAX_INDEPENDENCE_CORRELATION,
                             "holds": abs(gg.correlation) <= clv.MAX_INDEPENDENCE_CORRELATION}}
        out["warnings"] = self.warnings
        return out


def _convergence(c: clv.Convergence) -> dict[str, Any]:
    return {"converged": c.success, "iterations": c.iterations, "message": c.message}


def fit_history(store_id: str, as_of: datetime, unit: str, history: History,
                settings: Settings) -> StoreFit:
    """BG/NBD and Gamma-Gamma by maximum likelihood, or the "not enough history" reason."""
    s = history.summary
    p = settings.predictions
    reason = clv.not_enough_history(s, min_repeat_buyers=p.min_repeat_buyers,
                                    min_history_days=p.min_history_days)
    if reason:
        return StoreFit(store_id, as_of, unit, history, reason)
    bg = clv.fit_bgnbd(s.x, s.t_x, s.T)
    try:
        gg: clv.GammaGammaFit | None = clv.fit_gamma_gamma(s.x, s.mean_repeat_spend)
    except ValueError:
        gg = None
    return StoreFit(store_id, as_of, unit, history, None, bg, gg)


async def fit_store(session: AsyncSession, settings: Settings, store_id: str, as_of: datetime,
                    unit: str = "days") -> StoreFit:
    """Read the store's history as of T and fit it (what `stormd clv fit` prints)."""
    history = await read_history(session, settings, store_id, as_of, unit)
    return fit_history(store_id, as_of, unit, history, settings)
