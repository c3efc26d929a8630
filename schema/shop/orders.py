"""Orders, their items and status history. A *completed* order's latest status is
PAID, SHIPPED or DELIVERED (docs/events.md)."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import Index, Integer, String
from sqlalchemy.orm import Mapped, mapped_column

from stormd.schema.base import Base, BigId

ORDER_STATUSES = ("PENDING", "PAID", "SHIPPED", "DELIVERED", "CANCELLED", "REFUNDED")
COMPLETED_STATUSES = ("PAID", "SHIPPED", "DELIVERED")


class Order(Base):
    __tablename__ = "orders"

    store_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    order_id: Mapped[str] = mapped_column(String(128), primary_key=True)
    customer_id: Mapped[str] = mapped_column(String(128))
    cart_id: Mapped[str | None] = mapped_column(String(128))
    status: Mapped[str] = mapped_column(String(16))
    total: Mapped[Decimal]
    currency: Mapped[str] = mapped_column(String(3), default="BDT")
    promotion_codes: Mapped[list[Any] | None]
    occurred_at: Mapped[datetime]
    status_changed_at: Mapped[datetime | None]

    __table_args__ = (
        Index(None, "store_id", "customer_id", "occurred_at"),
        Index(None, "store_id", "cart_id"),
    )


class OrderItem(Base):
    __tablename__ = "order_items"

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    store_id: Mapped[str] = mapped_column(String(64))
    order_id: Mapped[str] = mapped_column(String(128))
    line_no: Mapped[int] = mapped_column(Integer)
    product_id: Mapped[str] = mapped_column(String(128))
    name: Mapped[str | None] = mapped_column(String(300))
    category: Mapped[str | None] = mapped_column(String(120))
    quantity: Mapped[int] = mapped_column(Integer)
    unit_price: Mapped[Decimal]

    __table_args__ = (
        Index(None, "store_id", "order_id", "line_no", unique=True),
        Index(None, "store_id", "product_id"),
    )


class OrderStatusChange(Base):
    """Every status an order went through, in storefront time."""

    __tablename__ = "order_status_history"

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    store_id: Mapped[str] = mapped_column(String(64))
    order_id: Mapped[str] = mapped_column(String(128))
    status: Mapped[str] = mapped_column(String(16))
    occurred_at: Mapped[datetime]

    # Unique so that replaying an event or re-importing a file adds no second entry.
    __table_args__ = (Index(None, "store_id", "order_id", "occurred_at", "status", unique=True),)
