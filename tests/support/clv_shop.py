"""A store whose shoppers behave as BG/NBD and Gamma-Gamma assume, for the predictions
tests: written through the same set-based functions as the order and customer handlers.

Customers arrive over `days` before T; each buys on arrival, then after exponential gaps
at a personal rate (gamma-distributed: about one purchase in 60 days on average) and after
every purchase leaves for good with a personal probability (beta, mean 0.2). Spend per
order is gamma with a personal scale (mean about 1,500 taka). Every shopper has an e-mail
address and consents, so campaigns reach them.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import numpy as np

from stormd.handlers.shop.customers import upsert_customers
from stormd.handlers.shop.orders import upsert_orders
from stormd.schema.wire.events import CustomerUpserted, OrderCreated

T = datetime(2026, 11, 24, 4, 0, tzinfo=UTC)  # 10:00 in Dhaka, inside every send window


def simulate(customers: int, days: int, seed: int) -> list[tuple[str, float, float]]:
    """(customer id, days before T, amount) per order."""
    rng = np.random.default_rng(seed)
    rate = rng.gamma(0.8, 1 / 48.0, customers)
    drop = rng.beta(0.8, 3.2, customers)
    nu = rng.gamma(3.5, 1 / 625.0, customers)
    out = []
    for c in range(customers):
        at = rng.uniform(0, days)  # days after the store's first day
        while at < days:
            out.append((f"c{c:04d}", days - at, round(float(rng.gamma(6.0, 1 / nu[c])), 2)))
            if len(out) > 1 and rng.random() < drop[c]:
                break
            at += rng.exponential(1 / rate[c])
    return out


async def clv_store(session, store: str, customers: int = 600, days: int = 540,
                    seed: int = 3, products: tuple[str, ...] = ("p1",)) -> list[str]:
    """Write the simulated store (orders PAID, placed before T); returns its customer ids."""
    rng = np.random.default_rng(seed + 1)
    orders = []
    for n, (customer, before, amount) in enumerate(simulate(customers, days, seed)):
        product = products[int(rng.integers(len(products)))]
        data = OrderCreated.model_validate({
            "orderId": f"o{n:05d}", "customerId": customer, "status": "PAID",
            "total": f"{amount:.2f}",
            "items": [{"productId": product, "category": "Clothing", "quantity": 1,
                       "unitPrice": f"{amount:.2f}"}]})
        orders.append((data, T - timedelta(days=before, minutes=1)))
    await upsert_orders(session, store, orders)
    ids = sorted({data.customer_id for data, _ in orders})
    await upsert_customers(session, store, [CustomerUpserted.model_validate({
        "customerId": cid, "email": f"{cid}@mail.example.bd", "name": f"Shopper {cid}",
        "locale": "en"}) for cid in ids], T)
    return ids
