"""Carts, their items, and the abandonment record that tracks a recovery."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal

from sqlalchemy import Index, Integer, String
from sqlalchemy.orm import Mapped, mapped_column

from stormd.schema.base import Base, BigId

CART_STATUSES = ("ACTIVE", "ABANDONED", "CONVERTED", "CLEARED", "RECOVERED")


class Cart(Base):
    __tablename__ = "carts"

    store_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    cart_id: Mapped[str] = mapped_column(String(128), primary_key=True)
    customer_id: Mapped[str | None] = mapped_column(String(128))
    status: Mapped[str] = mapped_column(String(16), default="ACTIVE")
    total: Mapped[Decimal]
    currency: Mapped[str] = mapped_column(String(3), default="BDT")
    created_at: Mapped[datetime]
    updated_at: Mapped[datetime]
    order_id: Mapped[str | None] = mapped_column(String(128))

    __table_args__ = (Index(None, "store_id", "customer_id", "updated_at"),)


class CartItem(Base):
    __tablename__ = "cart_items"

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    store_id: Mapped[str] = mapped_column(String(64))
    cart_id: Mapped[str] = mapped_column(String(128))
    product_id: Mapped[str] = mapped_column(String(128))
    name: Mapped[str | None] = mapped_column(String(300))
    category: Mapped[str | None] = mapped_column(String(120))
    quantity: Mapped[int] = mapped_column(Integer)
    unit_price: Mapped[Decimal]
    image_url: Mapped[str | None] = mapped_column(String(500))

    __table_args__ = (Index(None, "store_id", "cart_id"),)


class CartAbandonmentEvent(Base):
    """One abandonment of a cart and what the recovery workflow did about it."""

    __tablename__ = "cart_abandonment_events"

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    store_id: Mapped[str] = mapped_column(String(64))
    cart_id: Mapped[str] = mapped_column(String(128))
    customer_id: Mapped[str | None] = mapped_column(String(128))
    cart_value: Mapped[Decimal]
    abandoned_at: Mapped[datetime]
    status: Mapped[str] = mapped_column(String(16), default="OPEN")  # OPEN/RECOVERED/ENDED/CANCELLED
    next_step: Mapped[int] = mapped_column(Integer, default=0)
    recovery_attempts: Mapped[int] = mapped_column(Integer, default=0)
    last_reminder_at: Mapped[datetime | None]
    recovered_at: Mapped[datetime | None]
    order_id: Mapped[str | None] = mapped_column(String(128))
    recovered_revenue: Mapped[Decimal | None]

    __table_args__ = (
        Index(None, "store_id", "cart_id"),
        Index(None, "store_id", "customer_id", "last_reminder_at"),
        Index(None, "store_id", "recovered_at"),
    )
