"""Stores: the tenant every other row belongs to."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import String
from sqlalchemy.orm import Mapped, mapped_column

from stormd.schema.base import Base


class Store(Base):
    """A merchant's store; created on its first event, tuned by the admin API."""

    __tablename__ = "stores"

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    name: Mapped[str | None] = mapped_column(String(200))
    timezone: Mapped[str] = mapped_column(String(64), default="Asia/Dhaka")
    currency: Mapped[str] = mapped_column(String(3), default="BDT")
    sender_id: Mapped[str | None] = mapped_column(String(32))
    min_roi: Mapped[Decimal] = mapped_column(default=Decimal(10))
    monthly_budget: Mapped[Decimal | None]
    # The rest of the profile `store.upserted` and the API's /settings carry.
    locale: Mapped[str | None] = mapped_column(String(8))
    shop_url: Mapped[str | None] = mapped_column(String(500))
    sender_ids: Mapped[dict[str, Any] | None]  # {sms, email, whatsapp}
    created_at: Mapped[datetime]
    updated_at: Mapped[datetime | None]
