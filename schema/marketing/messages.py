"""The delivery log: every message stormd decides to send, and per-channel detail.

A `Message` row is written in the same transaction as the decision to send it, with a
unique idempotency key; the delivery pipeline then moves it through its statuses. So a
crash between deciding and sending loses nothing, and a redelivery adds nothing.
"""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import Boolean, Index, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from stormd.schema.base import Base, BigId

MESSAGE_STATUSES = (
    "queued", "sending", "sent", "delivered", "read", "failed", "cancelled", "deferred",
)


class Message(Base):
    __tablename__ = "messages"

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    store_id: Mapped[str] = mapped_column(String(64))
    customer_id: Mapped[str | None] = mapped_column(String(128))
    channel: Mapped[str] = mapped_column(String(16))
    provider: Mapped[str | None] = mapped_column(String(64))
    template: Mapped[str | None] = mapped_column(String(120))
    trigger: Mapped[str | None] = mapped_column(String(64))
    campaign_id: Mapped[str | None] = mapped_column(String(64))
    execution_id: Mapped[int | None] = mapped_column(BigId)
    variant: Mapped[str | None] = mapped_column(String(16))
    idempotency_key: Mapped[str] = mapped_column(String(200))
    priority: Mapped[int] = mapped_column(Integer, default=0)  # higher first
    status: Mapped[str] = mapped_column(String(16), default="queued")
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    not_before: Mapped[datetime]
    to_address: Mapped[str | None] = mapped_column(String(320))
    subject: Mapped[str | None] = mapped_column(String(300))
    body: Mapped[str] = mapped_column(Text)
    html: Mapped[str | None] = mapped_column(Text)
    data: Mapped[dict[str, Any] | None]
    marketing: Mapped[bool] = mapped_column(Boolean, default=True)
    segments: Mapped[int | None] = mapped_column(Integer)
    cost: Mapped[Decimal] = mapped_column(default=Decimal(0))
    external_id: Mapped[str | None] = mapped_column(String(200))
    error: Mapped[str | None] = mapped_column(String(500))
    created_at: Mapped[datetime]
    updated_at: Mapped[datetime]
    sent_at: Mapped[datetime | None]

    __table_args__ = (
        Index(None, "idempotency_key", unique=True),
        Index(None, "status", "channel", "priority", "not_before"),
        Index(None, "store_id", "customer_id", "created_at"),
        Index(None, "store_id", "campaign_id"),
        Index(None, "provider", "external_id"),
    )


class EmailEvent(Base):
    """Engagement on an email: SENT, DELIVERED, OPEN, CLICK, BOUNCE, COMPLAINT."""

    __tablename__ = "email_events"

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    store_id: Mapped[str] = mapped_column(String(64))
    message_id: Mapped[str] = mapped_column(String(200))
    customer_id: Mapped[str | None] = mapped_column(String(128))
    campaign_id: Mapped[str | None] = mapped_column(String(64))
    type: Mapped[str] = mapped_column(String(16))
    url: Mapped[str | None] = mapped_column(String(1000))
    reason: Mapped[str | None] = mapped_column(String(500))
    occurred_at: Mapped[datetime]

    __table_args__ = (
        Index(None, "store_id", "campaign_id", "type"),
        Index(None, "store_id", "message_id"),
        Index(None, "store_id", "customer_id", "occurred_at"),
    )


class SmsProvider(Base):
    """A store's account with an SMS gateway: sender id, rate, prepaid credit."""

    __tablename__ = "sms_providers"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    store_id: Mapped[str] = mapped_column(String(64))
    provider: Mapped[str] = mapped_column(String(32))  # sslwireless/banglalink/robi
    sender_id: Mapped[str | None] = mapped_column(String(32))
    credit_balance: Mapped[int] = mapped_column(Integer, default=0)  # in SMS segments
    rate_per_sms: Mapped[Decimal] = mapped_column(default=Decimal("1.00"))
    is_active: Mapped[bool] = mapped_column(Boolean, default=True)
    updated_at: Mapped[datetime]

    __table_args__ = (Index(None, "store_id", "provider", unique=True),)


class SmsLog(Base):
    __tablename__ = "sms_logs"

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    store_id: Mapped[str] = mapped_column(String(64))
    message_id: Mapped[int] = mapped_column(BigId)
    provider: Mapped[str] = mapped_column(String(32))
    campaign_id: Mapped[str | None] = mapped_column(String(64))
    customer_id: Mapped[str | None] = mapped_column(String(128))
    phone_number: Mapped[str] = mapped_column(String(32))
    message: Mapped[str] = mapped_column(Text)
    encoding: Mapped[str] = mapped_column(String(8))
    segments: Mapped[int] = mapped_column(Integer)
    status: Mapped[str] = mapped_column(String(16))  # QUEUED/SENT/DELIVERED/FAILED/REJECTED
    cost: Mapped[Decimal]
    external_id: Mapped[str | None] = mapped_column(String(200))
    error_code: Mapped[str | None] = mapped_column(String(64))
    sent_at: Mapped[datetime | None]
    delivered_at: Mapped[datetime | None]
    created_at: Mapped[datetime]

    __table_args__ = (
        Index(None, "provider", "status"),
        Index(None, "campaign_id"),
        Index(None, "message_id"),
    )


class WhatsAppTemplate(Base):
    """A Meta-approved template; a template not APPROVED is never sent."""

    __tablename__ = "whatsapp_templates"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    store_id: Mapped[str] = mapped_column(String(64))
    name: Mapped[str] = mapped_column(String(120))
    category: Mapped[str] = mapped_column(String(32))  # MARKETING/UTILITY
    language: Mapped[str] = mapped_column(String(8), default="en")
    content: Mapped[str] = mapped_column(Text)
    header_type: Mapped[str | None] = mapped_column(String(16))
    header_content: Mapped[str | None] = mapped_column(Text)
    buttons: Mapped[list[Any] | None]
    status: Mapped[str] = mapped_column(String(16), default="PENDING")
    meta_template_id: Mapped[str | None] = mapped_column(String(64))
    rejection_reason: Mapped[str | None] = mapped_column(String(500))
    created_at: Mapped[datetime]
    updated_at: Mapped[datetime]

    __table_args__ = (Index(None, "store_id", "name", "language", unique=True),)


class WhatsAppMessage(Base):
    __tablename__ = "whatsapp_messages"

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    store_id: Mapped[str] = mapped_column(String(64))
    message_id: Mapped[int] = mapped_column(BigId)
    campaign_id: Mapped[str | None] = mapped_column(String(64))
    customer_id: Mapped[str | None] = mapped_column(String(128))
    template_name: Mapped[str] = mapped_column(String(120))
    phone_number: Mapped[str] = mapped_column(String(32))
    variables: Mapped[dict[str, Any] | None]
    status: Mapped[str] = mapped_column(String(16))  # QUEUED/SENT/DELIVERED/READ/FAILED
    external_id: Mapped[str | None] = mapped_column(String(200))
    cost: Mapped[Decimal] = mapped_column(default=Decimal("0.50"))
    error_code: Mapped[str | None] = mapped_column(String(64))
    sent_at: Mapped[datetime | None]
    delivered_at: Mapped[datetime | None]
    read_at: Mapped[datetime | None]
    created_at: Mapped[datetime]

    __table_args__ = (
        Index(None, "campaign_id"),
        Index(None, "store_id", "customer_id"),
        Index(None, "external_id"),
    )
