"""Predicted customer value: each store's fits, each customer's latest predictions, and
the learned product neighbours that recommendations use."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import Float, Index, Integer, String
from sqlalchemy.orm import Mapped, mapped_column

from stormd.schema.base import Base, BigId


class ClvFit(Base):
    """One fit of BG/NBD and Gamma-Gamma for one store as of an instant: the parameters,
    log-likelihoods, what the optimiser said and the independence check, or the reason
    the store could not be fitted (`NOT_ENOUGH_HISTORY`, `FAILED`) and no numbers."""

    __tablename__ = "clv_fits"

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    store_id: Mapped[str] = mapped_column(String(64))
    rfm_run_id: Mapped[int | None] = mapped_column(BigId)
    as_of: Mapped[datetime]
    unit: Mapped[str] = mapped_column(String(8), default="days")
    status: Mapped[str] = mapped_column(String(24))  # OK / NOT_ENOUGH_HISTORY / FAILED
    reason: Mapped[str | None] = mapped_column(String(500))
    customers: Mapped[int] = mapped_column(Integer, default=0)
    repeat_buyers: Mapped[int] = mapped_column(Integer, default=0)
    history_days: Mapped[int] = mapped_column(Integer, default=0)
    r: Mapped[float | None] = mapped_column(Float)
    alpha: Mapped[float | None] = mapped_column(Float)
    a: Mapped[float | None] = mapped_column(Float)
    b: Mapped[float | None] = mapped_column(Float)
    log_likelihood: Mapped[float | None] = mapped_column(Float)
    p: Mapped[float | None] = mapped_column(Float)
    q: Mapped[float | None] = mapped_column(Float)
    gamma: Mapped[float | None] = mapped_column(Float)
    gg_customers: Mapped[int | None] = mapped_column(Integer)
    gg_log_likelihood: Mapped[float | None] = mapped_column(Float)
    correlation: Mapped[float | None] = mapped_column(Float)  # frequency vs spend
    convergence: Mapped[dict[str, Any] | None]
    warnings: Mapped[list[Any] | None]
    annual_discount: Mapped[float] = mapped_column(Float, default=0.0)
    churn_horizon_days: Mapped[int] = mapped_column(Integer, default=90)
    predicted_90d: Mapped[Decimal | None]  # the store's predicted revenue, summed
    predicted_365d: Mapped[Decimal | None]
    started_at: Mapped[datetime]
    seconds: Mapped[float | None] = mapped_column(Float)

    __table_args__ = (Index(None, "store_id", "as_of"),)


class CustomerPrediction(Base):
    """A customer's latest predictions (one row per customer of a fitted store), written
    by the fit `fit_id`; horizons in days."""

    __tablename__ = "customer_predictions"

    store_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    customer_id: Mapped[str] = mapped_column(String(128), primary_key=True)
    fit_id: Mapped[int] = mapped_column(BigId)
    as_of: Mapped[datetime]
    p_alive: Mapped[float] = mapped_column(Float)
    churn_probability: Mapped[float] = mapped_column(Float)
    expected_30d: Mapped[float] = mapped_column(Float)
    expected_90d: Mapped[float] = mapped_column(Float)
    expected_365d: Mapped[float] = mapped_column(Float)
    clv_90d: Mapped[Decimal | None]
    clv_365d: Mapped[Decimal | None]


class ProductNeighbour(Base):
    """A product's learned neighbours (bought with it, or with what is bought with it),
    best first: the store's latest model, replaced whole at each fit."""

    __tablename__ = "product_neighbours"

    store_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    product_id: Mapped[str] = mapped_column(String(128), primary_key=True)
    rank: Mapped[int] = mapped_column(Integer, primary_key=True)
    neighbour_id: Mapped[str] = mapped_column(String(128))
    score: Mapped[float] = mapped_column(Float)
