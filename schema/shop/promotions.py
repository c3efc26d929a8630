"""Promotions: redeemed codes (AppliedPromotion) and the codes stormd itself issues."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal

from sqlalchemy import Index, String
from sqlalchemy.orm import Mapped, mapped_column

from stormd.schema.base import Base, BigId


class AppliedPromotion(Base):
    """A promotion redeemed on an order; feeds ROI and discount sensitivity."""

    __tablename__ = "applied_promotions"

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    store_id: Mapped[str] = mapped_column(String(64))
    order_id: Mapped[str] = mapped_column(String(128))
    customer_id: Mapped[str] = mapped_column(String(128))
    code: Mapped[str] = mapped_column(String(64))
    discount_type: Mapped[str] = mapped_column(String(16))
    discount_amount: Mapped[Decimal]
    campaign_id: Mapped[str | None] = mapped_column(String(64))
    occurred_at: Mapped[datetime]

    __table_args__ = (
        Index(None, "store_id", "order_id", "code", unique=True),
        Index(None, "store_id", "customer_id"),
        Index(None, "store_id", "campaign_id"),
    )


class DiscountCode(Base):
    """A unique single-use code stormd issued (cart step, win-back, campaign)."""

    __tablename__ = "discount_codes"

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    store_id: Mapped[str] = mapped_column(String(64))
    code: Mapped[str] = mapped_column(String(64))
    customer_id: Mapped[str | None] = mapped_column(String(128))
    percent: Mapped[Decimal]
    trigger: Mapped[str] = mapped_column(String(64))
    cart_id: Mapped[str | None] = mapped_column(String(128))
    campaign_id: Mapped[str | None] = mapped_column(String(64))
    created_at: Mapped[datetime]
    expires_at: Mapped[datetime | None]
    redeemed_at: Mapped[datetime | None]
    order_id: Mapped[str | None] = mapped_column(String(128))

    __table_args__ = (
        Index(None, "store_id", "code", unique=True),
        Index(None, "store_id", "customer_id", "created_at"),
    )
