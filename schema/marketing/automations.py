"""Automation workflows and each execution of one for one customer (the automation log)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import Boolean, Index, Integer, String
from sqlalchemy.orm import Mapped, mapped_column

from stormd.schema.base import Base, BigId

EXECUTION_STATUSES = ("PENDING", "RUNNING", "WAITING", "COMPLETED", "FAILED", "SKIPPED", "CANCELLED")


class AutomationWorkflow(Base):
    __tablename__ = "automation_workflows"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    store_id: Mapped[str] = mapped_column(String(64))
    trigger: Mapped[str] = mapped_column(String(64))  # abandoned_cart/churn_risk/vip/...
    name: Mapped[str] = mapped_column(String(200))
    enabled: Mapped[bool] = mapped_column(Boolean, default=True)
    config: Mapped[dict[str, Any] | None]
    created_at: Mapped[datetime]
    updated_at: Mapped[datetime]

    __table_args__ = (Index(None, "store_id", "trigger", unique=True),)


class AutomationExecution(Base):
    """One run of a trigger for one customer; the idempotency key is
    customer + trigger + date bucket, unique, so a race never runs it twice."""

    __tablename__ = "automation_executions"

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    store_id: Mapped[str] = mapped_column(String(64))
    workflow_id: Mapped[int | None] = mapped_column(Integer)
    trigger: Mapped[str] = mapped_column(String(64))
    customer_id: Mapped[str | None] = mapped_column(String(128))
    subject_id: Mapped[str | None] = mapped_column(String(128))  # cart, order, segment…
    idempotency_key: Mapped[str] = mapped_column(String(200))
    status: Mapped[str] = mapped_column(String(16), default="PENDING")
    step: Mapped[int] = mapped_column(Integer, default=0)
    context: Mapped[dict[str, Any] | None]
    error: Mapped[str | None] = mapped_column(String(500))
    created_at: Mapped[datetime]
    updated_at: Mapped[datetime]
    completed_at: Mapped[datetime | None]

    __table_args__ = (
        Index(None, "idempotency_key", unique=True),
        Index(None, "store_id", "trigger", "status"),
        Index(None, "store_id", "customer_id", "trigger", "created_at"),
    )
