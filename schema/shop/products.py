"""Products, for rendering carts and for recommendations."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal

from sqlalchemy import Boolean, Index, String
from sqlalchemy.orm import Mapped, mapped_column

from stormd.schema.base import Base


class Product(Base):
    __tablename__ = "products"

    store_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    product_id: Mapped[str] = mapped_column(String(128), primary_key=True)
    name: Mapped[str] = mapped_column(String(300))
    category: Mapped[str | None] = mapped_column(String(120))
    price: Mapped[Decimal]
    image_url: Mapped[str | None] = mapped_column(String(500))
    active: Mapped[bool] = mapped_column(Boolean, default=True)
    updated_at: Mapped[datetime | None]

    __table_args__ = (Index(None, "store_id", "category"),)
