"""Campaigns (every channel, despite the seed's name EmailCampaign) and their templates."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import Boolean, Index, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from stormd.schema.base import Base

CAMPAIGN_STATUSES = ("DRAFT", "SCHEDULED", "SENDING", "PAUSED", "SENT", "CANCELLED")


class EmailCampaign(Base):
    __tablename__ = "email_campaigns"

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    store_id: Mapped[str] = mapped_column(String(64))
    name: Mapped[str] = mapped_column(String(200))
    status: Mapped[str] = mapped_column(String(16), default="DRAFT")
    channels: Mapped[list[Any]]
    # "cheapest": each customer gets the cheapest channel they can receive among
    # `channels` (plugins.policy.routing); "listed": the first of `channels` in that order
    routing: Mapped[str] = mapped_column(String(16), default="cheapest",
                                         server_default="cheapest")
    segments: Mapped[list[Any]]
    exclude_segments: Mapped[list[Any] | None]
    template: Mapped[str | None] = mapped_column(String(120))
    content: Mapped[dict[str, Any] | None]
    variables: Mapped[dict[str, Any] | None]
    variants: Mapped[list[Any] | None]
    holdout_percent: Mapped[int] = mapped_column(Integer, default=0)
    discount_percent: Mapped[Decimal | None]
    budget: Mapped[Decimal | None]
    send_mode: Mapped[str] = mapped_column(String(16), default="now")  # now/at/best_time/off_peak
    scheduled_at: Mapped[datetime | None]
    started_at: Mapped[datetime | None]
    finished_at: Mapped[datetime | None]
    audience_size: Mapped[int] = mapped_column(Integer, default=0)
    cost: Mapped[Decimal] = mapped_column(default=Decimal(0))
    created_at: Mapped[datetime]
    updated_at: Mapped[datetime]

    __table_args__ = (Index(None, "store_id", "status"),)


class CampaignTemplate(Base):
    """A reusable template; system ones (store_id NULL) ship with stormd."""

    __tablename__ = "campaign_templates"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    store_id: Mapped[str | None] = mapped_column(String(64))
    slug: Mapped[str] = mapped_column(String(120))
    name: Mapped[str] = mapped_column(String(200))
    type: Mapped[str] = mapped_column(String(32))
    category: Mapped[str] = mapped_column(String(32))  # SEASONAL/PROMOTIONAL/AUTOMATION
    description: Mapped[str | None] = mapped_column(Text)
    default_content: Mapped[dict[str, Any]]
    recommended_discount: Mapped[str | None] = mapped_column(String(32))
    channel_mix: Mapped[list[Any] | None]
    is_system: Mapped[bool] = mapped_column(Boolean, default=False)
    usage_count: Mapped[int] = mapped_column(Integer, default=0)
    created_at: Mapped[datetime]
    updated_at: Mapped[datetime]

    __table_args__ = (
        Index(None, "store_id", "slug", unique=True),
        Index(None, "type", "is_system"),
    )
