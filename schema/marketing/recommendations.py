"""Recommendations stormd generated, kept for attribution and to avoid repeats."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import Index, String
from sqlalchemy.orm import Mapped, mapped_column

from stormd.schema.base import Base, BigId


class RecommendationEvent(Base):
    __tablename__ = "recommendation_events"

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    store_id: Mapped[str] = mapped_column(String(64))
    customer_id: Mapped[str | None] = mapped_column(String(128))
    context_product_id: Mapped[str | None] = mapped_column(String(128))
    strategy: Mapped[str] = mapped_column(String(32))  # same_category/co_purchased
    products: Mapped[list[Any]]
    trigger: Mapped[str | None] = mapped_column(String(64))
    created_at: Mapped[datetime]

    __table_args__ = (Index(None, "store_id", "customer_id", "created_at"),)
