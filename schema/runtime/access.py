"""Who may use the HTTP API and what they did: API keys (kept only as a hash), the audit
log of every write, and the stored replies of requests sent with an `Idempotency-Key`."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import Index, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from stormd.schema.base import Base, BigId


class ApiKey(Base):
    """A key for `Authorization: Bearer`: a store key (store_id set) acts on its store
    alone, an operator key (store_id NULL) on every store. Only the SHA-256 of the secret
    is kept; the key itself is shown once, when created."""

    __tablename__ = "api_keys"

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    store_id: Mapped[str | None] = mapped_column(String(64))
    name: Mapped[str] = mapped_column(String(100))
    secret_hash: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime]
    revoked_at: Mapped[datetime | None]
    last_used_at: Mapped[datetime | None]

    __table_args__ = (Index(None, "store_id"),)


class AuditEntry(Base):
    """One write through the service layer: who (key or command line), what, when, where."""

    __tablename__ = "audit_log"

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    at: Mapped[datetime]
    store_id: Mapped[str | None] = mapped_column(String(64))
    key_id: Mapped[str | None] = mapped_column(String(32))
    actor: Mapped[str] = mapped_column(String(200))
    action: Mapped[str] = mapped_column(String(64))
    target: Mapped[str | None] = mapped_column(String(200))
    detail: Mapped[dict[str, Any] | None]

    __table_args__ = (Index(None, "store_id", "id"), Index(None, "key_id"))


class IdempotentRequest(Base):
    """A request sent with an `Idempotency-Key`: while `status` is 0 it is in flight; then
    the reply is kept so that the same key and body replays it instead of acting twice."""

    __tablename__ = "idempotent_requests"

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    store_id: Mapped[str] = mapped_column(String(64))
    key: Mapped[str] = mapped_column(String(200))
    fingerprint: Mapped[str] = mapped_column(String(64))  # method, path and body, hashed
    status: Mapped[int] = mapped_column(Integer, default=0)
    reply: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime]

    __table_args__ = (Index(None, "store_id", "key", unique=True), Index(None, "created_at"))
