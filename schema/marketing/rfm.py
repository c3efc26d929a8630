"""RFM runs, their per-customer snapshots, and each customer's lifecycle metrics."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import Float, Index, Integer, String
from sqlalchemy.orm import Mapped, mapped_column

from stormd.schema.base import Base, BigId


class RfmRun(Base):
    """One scoring run of one store as of an instant; keeps the cut points it used so that
    real-time re-scoring between runs places a customer exactly as the run would."""

    __tablename__ = "rfm_runs"

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    store_id: Mapped[str] = mapped_column(String(64))
    as_of: Mapped[datetime]
    mode: Mapped[str] = mapped_column(String(16), default="quintile")
    status: Mapped[str] = mapped_column(String(16), default="RUNNING")  # RUNNING/OK/FAILED
    population: Mapped[int] = mapped_column(Integer, default=0)
    rows: Mapped[int] = mapped_column(Integer, default=0)
    cut_points: Mapped[dict[str, Any] | None]
    started_at: Mapped[datetime]
    finished_at: Mapped[datetime | None]
    error: Mapped[str | None] = mapped_column(String(500))

    __table_args__ = (Index(None, "store_id", "as_of"),)


class CustomerRFMSnapshot(Base):
    __tablename__ = "customer_rfm_snapshots"

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    store_id: Mapped[str] = mapped_column(String(64))
    run_id: Mapped[int] = mapped_column(BigId)
    customer_id: Mapped[str] = mapped_column(String(128))
    as_of: Mapped[datetime]
    recency_days: Mapped[int] = mapped_column(Integer)
    frequency: Mapped[int] = mapped_column(Integer)
    monetary: Mapped[Decimal]
    r: Mapped[int] = mapped_column(Integer)
    f: Mapped[int] = mapped_column(Integer)
    m: Mapped[int] = mapped_column(Integer)
    composite: Mapped[int] = mapped_column(Integer)

    __table_args__ = (
        Index(None, "store_id", "run_id", "customer_id", unique=True),
        Index(None, "store_id", "customer_id"),
    )


class CustomerLifecycleMetrics(Base):
    """A customer's current stage and churn risk, plus the features criteria read."""

    __tablename__ = "customer_lifecycle_metrics"

    store_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    customer_id: Mapped[str] = mapped_column(String(128), primary_key=True)
    stage: Mapped[str] = mapped_column(String(16))  # PROSPECT/NEW/ACTIVE/CHURNED
    churn_risk: Mapped[float] = mapped_column(Float, default=0.0)
    orders_count: Mapped[int] = mapped_column(Integer, default=0)
    orders_total: Mapped[Decimal] = mapped_column(default=Decimal(0))
    first_order_at: Mapped[datetime | None]
    last_order_at: Mapped[datetime | None]
    recency_days: Mapped[int | None] = mapped_column(Integer)
    frequency: Mapped[int | None] = mapped_column(Integer)
    monetary: Mapped[Decimal | None]
    r: Mapped[int | None] = mapped_column(Integer)
    f: Mapped[int | None] = mapped_column(Integer)
    m: Mapped[int | None] = mapped_column(Integer)
    composite: Mapped[int | None] = mapped_column(Integer)
    # E-mail engagement as of `as_of`: the last open (or click), and the e-mails sent in
    # the engagement window with how many of them were opened.
    last_open_at: Mapped[datetime | None]
    emails_sent: Mapped[int | None] = mapped_column(Integer)
    emails_opened: Mapped[int | None] = mapped_column(Integer)
    as_of: Mapped[datetime]

    __table_args__ = (Index(None, "store_id", "stage"), Index(None, "store_id", "composite"))
