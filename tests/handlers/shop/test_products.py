"""product.upserted keeps the catalogue current."""

from __future__ import annotations

from decimal import Decimal

import stormd.handlers.shop.products  # noqa: F401  (registers the STATE handler)
from stormd.schema import Product


async def test_product_is_stored_then_updated(handle_event, sessionmaker):
    await handle_event("product.upserted", {"productId": "p1", "name": "Panjabi",
                                            "category": "Clothing", "price": "1450.50"})
    await handle_event("product.upserted", {"productId": "p1", "name": "Panjabi (silk)",
                                            "category": "Clothing", "price": 1600,
                                            "active": False})
    async with sessionmaker() as s:
        p = await s.get(Product, ("store_1", "p1"))
    assert (p.name, p.category, p.price, p.active) == (
        "Panjabi (silk)", "Clothing", Decimal("1600.00"), False)


async def test_new_product_is_active_with_exact_price(handle_event, sessionmaker):
    await handle_event("product.upserted", {"productId": "p2", "name": "Saree",
                                            "category": "Clothing", "price": "2999.99"})
    async with sessionmaker() as s:
        p = await s.get(Product, ("store_1", "p2"))
    assert p.active is True and p.price == Decimal("2999.99")
