"""A Store row exists for every store stormd has heard of (created on first sight, in the
daemon's time zone, `daemon.timezone`, until the store says otherwise)."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy.ext.asyncio import AsyncSession

from stormd.handlers.kernel.context import HandlerContext
from stormd.schema.db.upsert import upsert_rows
from stormd.schema.shop.stores import Store

_ENSURED = "stores_ensured"  # facts of the transaction: store id -> None once inserted


async def insert_stores(session: AsyncSession, store_ids: set[str] | list[str],
                        now: datetime, timezone: str) -> None:
    """Insert the stores not yet known, in `timezone`; known stores keep their settings
    untouched."""
    await upsert_rows(session, Store.__table__,
                      [{"id": s, "created_at": now, "timezone": timezone}
                       for s in sorted(set(store_ids))],
                      ["id"], update=False)


async def ensure_store(ctx: HandlerContext) -> None:
    """`insert_stores` for the context's store, once a transaction.

    Every state handler of a group-commit batch calls this for the same store: the insert
    is issued once (not again after it ran outside a savepoint, so a rolled-back savepoint
    never hides a missing row; a new transaction starts afresh)."""
    ensured = ctx.remembered(_ENSURED)
    if ctx.store_id not in ensured:
        await insert_stores(ctx.session, [ctx.store_id], ctx.now(),
                            ctx.settings.daemon.timezone)
        ensured[ctx.store_id] = None
