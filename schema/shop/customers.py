"""Customers as stormd knows them: contact, locale, birthday, per-channel consent."""

from __future__ import annotations

from datetime import date, datetime
from typing import Any

from sqlalchemy import Boolean, Date, Index, String
from sqlalchemy.orm import Mapped, mapped_column

from stormd.schema.base import Base


class Customer(Base):
    """One shopper of one store. Consent defaults to opted in until the store says otherwise."""

    __tablename__ = "customers"

    store_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    customer_id: Mapped[str] = mapped_column(String(128), primary_key=True)
    email: Mapped[str | None] = mapped_column(String(320))
    phone: Mapped[str | None] = mapped_column(String(32))
    name: Mapped[str | None] = mapped_column(String(200))
    locale: Mapped[str] = mapped_column(String(8), default="bn")
    birthday: Mapped[date | None] = mapped_column(Date)
    consent_email: Mapped[bool] = mapped_column(Boolean, default=True)
    consent_sms: Mapped[bool] = mapped_column(Boolean, default=True)
    consent_whatsapp: Mapped[bool] = mapped_column(Boolean, default=True)
    consent_push: Mapped[bool] = mapped_column(Boolean, default=True)
    push_tokens: Mapped[list[Any] | None]
    created_at: Mapped[datetime | None]
    updated_at: Mapped[datetime | None]

    __table_args__ = (Index(None, "store_id", "phone"), Index(None, "store_id", "email"))


class DndNumber(Base):
    """A phone number never to be messaged by SMS (the store's do-not-disturb list)."""

    __tablename__ = "dnd_numbers"

    store_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    phone: Mapped[str] = mapped_column(String(32), primary_key=True)
    added_at: Mapped[datetime]


class ImportedCustomer(Base):
    """A customer whose history `stormd import` loaded, and when: the next full refresh of
    a segment treats their entry as a backfill, not as something they just did."""

    __tablename__ = "imported_customers"

    store_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    customer_id: Mapped[str] = mapped_column(String(128), primary_key=True)
    imported_at: Mapped[datetime]
