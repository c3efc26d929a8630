"""The store history the CLV models read: calendar days in the store's own time zone,
daylight saving included, computed in SQL the same on SQLite and PostgreSQL."""

from __future__ import annotations

from datetime import UTC, date, datetime
from zoneinfo import ZoneInfo

import pytest
from shop_history import order
from sqlalchemy import delete

from stormd.handlers.predictions.store_fit import (
    end_of_day,
    local_day,
    read_history,
    zone_offsets,
)
from stormd.schema.shop.stores import Store

NEW_YORK = ZoneInfo("America/New_York")
STORE = "ny"


def _at(text: str) -> datetime:
    return datetime.fromisoformat(text)


def test_zone_offsets_pin_each_change_to_the_second():
    stretches = zone_offsets(NEW_YORK, datetime(2026, 1, 1, tzinfo=UTC),
                             datetime(2027, 1, 1, tzinfo=UTC))
    assert stretches == [(datetime(2026, 1, 1, tzinfo=UTC), -5 * 3600),
                         (datetime(2026, 3, 8, 7, 0, tzinfo=UTC), -4 * 3600),
                         (datetime(2026, 11, 1, 6, 0, tzinfo=UTC), -5 * 3600)]
    dhaka = zone_offsets(ZoneInfo("Asia/Dhaka"), datetime(2020, 1, 1, tzinfo=UTC),
                         datetime(2026, 1, 1, tzinfo=UTC))
    assert dhaka == [(datetime(2020, 1, 1, tzinfo=UTC), 6 * 3600)]


def test_a_bare_date_means_the_whole_day_in_the_zone():
    end = end_of_day(date(2026, 3, 7), NEW_YORK)
    assert end.isoformat() == "2026-03-07T23:59:59.999999-05:00"
    assert local_day(end, NEW_YORK) == (date(2026, 3, 7) - date(1970, 1, 1)).days


async def test_orders_fall_on_their_local_days_across_daylight_saving(sessionmaker,
                                                                       settings_factory):
    """a: 23:30 and 00:30 around the spring change are two days, and 23:30 EDT the same
    day as 00:30; b: 23:30 and 00:30 EDT in July are two days (a fixed EST offset would
    make them one); c: 09:00 and 20:00 on one local day, a day apart in UTC, are one."""
    async with sessionmaker() as session:
        session.add(Store(id=STORE, timezone="America/New_York",
                          created_at=_at("2026-01-01T00:00:00+00:00")))
        for n, (customer, at, total) in enumerate([
                ("a", "2026-03-07T23:30:00-05:00", "10.00"),
                ("a", "2026-03-08T00:30:00-05:00", "20.00"),
                ("a", "2026-03-08T23:30:00-04:00", "5.00"),
                ("b", "2026-06-30T23:30:00-04:00", "7.00"),
                ("b", "2026-07-01T00:30:00-04:00", "9.00"),
                ("c", "2026-11-10T09:00:00-05:00", "1.00"),
                ("c", "2026-11-10T20:00:00-05:00", "2.00")]):
            await order(session, f"o{n}", customer, total, _at(at), store=STORE)
        await session.commit()
    as_of = end_of_day(date(2026, 11, 30), NEW_YORK)
    async with sessionmaker() as session:
        history = await read_history(session, settings_factory(), STORE, as_of)
    s = history.summary
    got = {cid: (s.x[i], s.t_x[i], s.T[i], s.mean_repeat_spend[i])
           for i, cid in enumerate(history.customer_ids)}
    assert history.timezone == "America/New_York"
    assert got["a"][:3] == (1, 1, (date(2026, 11, 30) - date(2026, 3, 7)).days)
    assert got["a"][3] == pytest.approx(25.0)  # 20 + 5 on 8 March; the 7th's 10 left out
    assert got["b"][:3] == (1, 1, (date(2026, 11, 30) - date(2026, 6, 30)).days)
    assert got["c"][:3] == (0, 0, 20)
    assert s.history_days == (date(2026, 11, 30) - date(2026, 3, 7)).days


async def test_a_store_without_a_zone_of_its_own_uses_the_daemons(sessionmaker,
                                                                   settings_factory):
    async with sessionmaker() as session:  # no Store row: the orders alone
        await order(session, "o1", "a", "1.00", _at("2026-05-01T23:30:00-04:00"), store="x")
        await order(session, "o2", "a", "1.00", _at("2026-05-02T00:30:00-04:00"), store="x")
        await session.commit()
    async with sessionmaker() as session:
        await session.execute(delete(Store).where(Store.id == "x"))
        await session.commit()
    as_of = _at("2026-05-10T00:00:00+00:00")
    for zone, repeat in [("America/New_York", 1), ("Asia/Dhaka", 0)]:
        async with sessionmaker() as session:
            history = await read_history(session, settings_factory(daemon={"timezone": zone}),
                                         "x", as_of)
        assert (history.timezone, history.summary.x.tolist()) == (zone, [repeat])
