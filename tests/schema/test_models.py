from datetime import datetime, timedelta, timezone
from decimal import Decimal

from sqlalchemy import select

from stormd.schema import Order


async def test_order_round_trips_money_exactly_and_time_as_utc(sessionmaker):
    placed = datetime(2026, 11, 24, 10, 0, tzinfo=timezone(timedelta(hours=6)))
    async with sessionmaker() as session:
        session.add(Order(store_id="s1", order_id="o1", customer_id="c1", status="PAID",
                          total=Decimal("1234.56"), occurred_at=placed))
        await session.commit()
    async with sessionmaker() as session:
        order = (await session.execute(select(Order))).scalar_one()
    assert order.total == Decimal("1234.56")
    assert order.occurred_at == placed
    assert order.occurred_at.tzinfo is not None
