"""Products: the catalogue carts, messages and recommendations refer to."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from stormd.handlers.kernel.context import HandlerContext
from stormd.handlers.shop.stores import ensure_store
from stormd.schema.db.upsert import upsert_rows
from stormd.schema.shop.products import Product
from stormd.schema.wire.events import Event, ProductUpserted


def product_row(store_id: str, data: ProductUpserted,
                updated_at: datetime | None = None) -> dict[str, Any]:
    row: dict[str, Any] = {
        "store_id": store_id, "product_id": data.product_id, "name": data.name,
        "category": data.category, "price": data.price, "active": data.active,
    }
    if "image_url" in data.model_fields_set:
        row["image_url"] = data.image_url
    if updated_at is not None:
        row["updated_at"] = updated_at
    return row


async def upsert_products(session: AsyncSession, store_id: str,
                          products: Iterable[ProductUpserted],
                          updated_at: datetime | None = None) -> None:
    await upsert_rows(session, Product.__table__,
                      (product_row(store_id, p, updated_at) for p in products),
                      ["store_id", "product_id"])


async def on_product_upserted(ctx: HandlerContext, events: list[Event]) -> None:
    await ensure_store(ctx)
    await upsert_rows(ctx.session, Product.__table__,
                      [product_row(ctx.store_id, e.data, e.occurred_at) for e in events],
                      ["store_id", "product_id"])
