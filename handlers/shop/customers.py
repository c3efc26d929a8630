"""Customers: profile and consent as the storefront reports them.

The upsert functions are set-based and shared by the daemon's STATE handlers and
`stormd import`; a field an event leaves out keeps its stored value.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from stormd.config.channels import CHANNELS
from stormd.handlers.kernel.context import HandlerContext
from stormd.handlers.shop.stores import ensure_store
from stormd.schema.db.columnar import epoch_us, write_columns
from stormd.schema.db.upsert import upsert_rows
from stormd.schema.shop.customers import Customer, ImportedCustomer
from stormd.schema.wire.events import CustomerConsentChanged, CustomerUpserted, Event

_PLAIN = ("email", "phone", "name", "locale", "birthday", "created_at", "push_tokens")


def customer_row(store_id: str, data: CustomerUpserted,
                 updated_at: datetime | None = None) -> dict[str, Any]:
    """The columns this payload actually gives (fields it leaves out are not touched)."""
    given = data.model_fields_set
    row: dict[str, Any] = {"store_id": store_id, "customer_id": data.customer_id}
    for name in _PLAIN:
        if name in given:
            row[name] = getattr(data, name)
    if data.consent is not None:
        for channel in CHANNELS:
            value = getattr(data.consent, channel)
            if value is not None:
                row[f"consent_{channel}"] = value
    if updated_at is not None:
        row["updated_at"] = updated_at
    return row


async def upsert_customers(session: AsyncSession, store_id: str,
                           customers: Iterable[CustomerUpserted],
                           updated_at: datetime | None = None) -> None:
    await upsert_rows(session, Customer.__table__,
                      (customer_row(store_id, c, updated_at) for c in customers),
                      ["store_id", "customer_id"])


async def ensure_customers(session: AsyncSession, store_id: str,
                           customer_ids: Iterable[str]) -> None:
    """Known-by-id customers (from orders) exist, without touching stored profiles."""
    await upsert_rows(session, Customer.__table__,
                      [{"store_id": store_id, "customer_id": c} for c in sorted(set(customer_ids))],
                      ["store_id", "customer_id"], update=False)


async def mark_imported(session: AsyncSession, store_id: str, customer_ids: list[str],
                        now: datetime) -> None:
    """These customers' history came by `stormd import` now: their next segment entries
    are a backfill (handlers/scoring/segments.py)."""
    await write_columns(session, ImportedCustomer.__table__, {
        "store_id": store_id, "customer_id": customer_ids, "imported_at": epoch_us(now)},
        ["store_id", "customer_id"], update=True)


def consent_row(store_id: str, change: CustomerConsentChanged,
                updated_at: datetime | None = None) -> dict[str, Any]:
    """The columns an opt-in or opt-out sets (`all` sets every channel)."""
    channels = CHANNELS if change.channel == "all" else (change.channel,)
    row: dict[str, Any] = {"store_id": store_id, "customer_id": change.customer_id}
    row.update({f"consent_{c}": change.opted_in for c in channels})
    if updated_at is not None:
        row["updated_at"] = updated_at
    return row


async def on_customer_upserted(ctx: HandlerContext, events: list[Event]) -> None:
    await ensure_store(ctx)
    await upsert_rows(ctx.session, Customer.__table__,
                      [customer_row(ctx.store_id, e.data, e.occurred_at) for e in events],
                      ["store_id", "customer_id"])


async def on_consent_changed(ctx: HandlerContext, events: list[Event]) -> None:
    """A run's opt-ins and opt-outs (one per customer) in one upsert per channel set."""
    await ensure_store(ctx)
    await upsert_rows(ctx.session, Customer.__table__,
                      [consent_row(ctx.store_id, e.data, e.occurred_at) for e in events],
                      ["store_id", "customer_id"])
