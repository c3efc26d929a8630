"""Order histories for the RFM, criteria and segment tests, written through the same
set-based functions the STATE handlers and `stormd import` use."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal

from stormd.handlers.shop.customers import upsert_customers
from stormd.handlers.shop.orders import apply_order_status, upsert_orders
from stormd.schema.wire.events import CustomerUpserted, OrderCreated

T = datetime(2026, 11, 24, 4, 0, tzinfo=UTC)
DAY = timedelta(days=1)
STORE = "store_1"


async def order(session, order_id: str, customer: str, total: str, at: datetime,
                status: str = "PAID", categories: tuple[str, ...] = ("Clothing",),
                store: str = STORE) -> None:
    items = [{"productId": f"p_{c}", "category": c, "quantity": 1, "unitPrice": "1"}
             for c in categories]
    data = OrderCreated.model_validate({"orderId": order_id, "customerId": customer,
                                        "status": status, "total": total, "items": items})
    await upsert_orders(session, store, [(data, at)])


async def status(session, order_id: str, new_status: str, at: datetime,
                 store: str = STORE) -> None:
    await apply_order_status(session, store, [(order_id, new_status, at)])


async def customer(session, customer_id: str, store: str = STORE, **fields) -> None:
    data = CustomerUpserted.model_validate({"customerId": customer_id, **fields})
    await upsert_customers(session, store, [data], T)


async def scoring_fixture(session) -> None:
    """The hand-computed store of tests/handlers/scoring/test_rfm.py (as of T, window 180 days):

    customer  completed orders (≤ T)            recency freq monetary  R F M  composite
    c1        T-1d 100, T-10d 200                1       2    300.00   3 5 4  39 vip
    c2        T-1d-5h 300                        1       1    300.00   3 2 4  30 loyal
    c3        T-40d 50 (+ CANCELLED T-2d 1000)   40      1     50.00   2 2 2  20 at-risk
    c4        T-200d 500 (+ PAID at T+1h)        200     0      0      1 1 1  10 hibernating
    c6        exactly T, 80                      0       1     80.00   5 2 3  35 loyal
    c7        exactly T-180d, 1000               180     0      0      1 1 1  10 hibernating
    c5 PENDING only, c8 PAID then REFUNDED, c9 no orders: not scored (PROSPECT).
    Accessories were bought on o2 (c1, not their last order), o3 (c2, their last), and on
    orders that do not count: o5 (cancelled) and o7 (after T).
    """
    accessories = ("Accessories",)
    await order(session, "o1", "c1", "100.00", T - DAY)
    await order(session, "o2", "c1", "200.00", T - 10 * DAY, status="DELIVERED",
                categories=accessories)
    await order(session, "o3", "c2", "300.00", T - DAY - timedelta(hours=5), status="DELIVERED",
                categories=("Accessories", "Clothing"))
    await order(session, "o4", "c3", "50.00", T - 40 * DAY, status="SHIPPED")
    await order(session, "o5", "c3", "1000.00", T - 2 * DAY, status="CANCELLED",
                categories=accessories)
    await order(session, "o6", "c4", "500.00", T - 200 * DAY)
    await order(session, "o7", "c4", "999.00", T + timedelta(hours=1), categories=accessories)
    await order(session, "o8", "c5", "70.00", T - 3 * DAY, status="PENDING")
    await order(session, "o9", "c6", "80.00", T)
    await order(session, "o10", "c7", "1000.00", T - 180 * DAY)
    await order(session, "o11", "c8", "400.00", T - 5 * DAY)
    await status(session, "o11", "REFUNDED", T - 4 * DAY)
    await customer(session, "c9")


EXPECTED = {  # customer: (recency_days, frequency, monetary, r, f, m, composite)
    "c1": (1, 2, Decimal("300.00"), 3, 5, 4, 39),
    "c2": (1, 1, Decimal("300.00"), 3, 2, 4, 30),
    "c3": (40, 1, Decimal("50.00"), 2, 2, 2, 20),
    "c4": (200, 0, Decimal("0.00"), 1, 1, 1, 10),
    "c6": (0, 1, Decimal("80.00"), 5, 2, 3, 35),
    "c7": (180, 0, Decimal("0.00"), 1, 1, 1, 10),
}
