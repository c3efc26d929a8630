"""The KPIs as the API (`/kpis?from=&to=&bucket=`) and `stormd kpis` see them: the
figures of a period, and the same figures per day, week or month of it. Buckets follow
the store's time zone (a day is its midnight to midnight, a week starts on Monday, a
month on the 1st); a series is at most 400 buckets."""

from __future__ import annotations

from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any, Literal
from zoneinfo import ZoneInfo

from pydantic import BaseModel, ConfigDict, Field
from pydantic.alias_generators import to_camel

from stormd.handlers.kernel.service import Call, Invalid, require_store
from stormd.handlers.outreach.queue import store_profile
from stormd.handlers.reporting.figures import Period, Periods
from stormd.handlers.reporting.kpis import compute_kpis, kpi_series

Bucket = Literal["day", "week", "month"]
MAX_BUCKETS = 400
DEFAULT_SPAN = {"day": timedelta(days=30), "week": timedelta(weeks=12),
                "month": timedelta(days=365)}
# A KPI is a number; a few are a line of text (what predictions rest on).
Value = int | float | Decimal | str | None


class _Model(BaseModel):
    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True)


class KpiPoint(_Model):
    start: datetime
    end: datetime
    kpis: dict[str, Value]


class Kpis(_Model):
    store_id: str
    timezone: str
    start: datetime | None = Field(alias="from", description="null: since the beginning.")
    end: datetime = Field(alias="to")
    kpis: dict[str, Value] = Field(description="The KPIs over the whole period.")
    bucket: Bucket | None
    series: list[KpiPoint] | None = Field(description="The KPIs per bucket, when asked for.")


def _floor(at: datetime, bucket: Bucket, tz: ZoneInfo) -> datetime:
    local = at.astimezone(tz)
    day = datetime(local.year, local.month, local.day, tzinfo=tz)
    if bucket == "week":
        day -= timedelta(days=day.weekday())
    elif bucket == "month":
        day = day.replace(day=1)
    return day


def _next(at: datetime, bucket: Bucket, tz: ZoneInfo) -> datetime:
    if bucket == "month":
        year, month = (at.year + 1, 1) if at.month == 12 else (at.year, at.month + 1)
        return datetime(year, month, 1, tzinfo=tz)
    step = timedelta(days=7 if bucket == "week" else 1)
    naive = at.replace(tzinfo=None) + step  # wall-clock step: a day is a local day
    return naive.replace(tzinfo=tz)


def bucket_bounds(start: datetime, end: datetime, bucket: Bucket, tz: ZoneInfo
                  ) -> list[datetime]:
    """Bucket edges from the bucket holding `start` to the first edge at or after `end`."""
    bounds = [_floor(start, bucket, tz)]
    while bounds[-1] < end:
        bounds.append(_next(bounds[-1], bucket, tz))
        if len(bounds) > MAX_BUCKETS + 1:
            raise Invalid(f"bucket: from {start.isoformat()} to {end.isoformat()} is more than "
                          f"{MAX_BUCKETS} {bucket}s; ask for a shorter period or larger buckets")
    return bounds


async def store_kpis(call: Call, store_id: str, start: datetime | None = None,
                     end: datetime | None = None, bucket: Bucket | None = None) -> Kpis:
    """The store's KPIs from `start` (default: the beginning, or with a bucket 30 days, 12
    weeks or a year back) to `end` (default now), and per bucket when one is given."""
    end = end or call.now()
    if bucket is not None and start is None:
        start = end - DEFAULT_SPAN[bucket]
    if start is not None and start >= end:
        raise Invalid(f"from ({start.isoformat()}) must be before to ({end.isoformat()})")
    async with call.reading() as session:
        await require_store(session, store_id)
        tz = (await store_profile(session, call.settings, store_id)).tz
        [totals] = await compute_kpis(session, store_id, Period(start, end))
        series = None
        if bucket is not None:
            assert start is not None
            bounds = bucket_bounds(start, end, bucket, tz)
            periods = Periods.between(bounds)
            figures = (await kpi_series(session, [store_id], periods))[store_id]
            series = [KpiPoint(start=p.start, end=p.end, kpis=f)
                      for p, f in zip(periods.items, figures)]
    totals.pop("store")
    return Kpis(store_id=store_id, timezone=str(tz), start=start, end=end, kpis=totals,
                bucket=bucket, series=series)


async def all_kpis(call: Call, store_id: str | None = None, start: datetime | None = None,
                   end: datetime | None = None) -> list[dict[str, Any]]:
    """`stormd kpis`: one row per store (or the one given) for a period (all time)."""
    async with call.reading() as session:  # a store never heard of has zeros to show
        return await compute_kpis(session, store_id, Period(start, end))
