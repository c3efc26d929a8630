"""A Store row exists for every store stormd has heard of (created on first sight)."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy.ext.asyncio import AsyncSession

from stormd.schema.db.transaction_memo import transaction_memo
from stormd.schema.db.upsert import upsert_rows
from stormd.schema.shop.stores import Store

_ENSURED = "stormd.stores_ensured"  # transaction_memo: store id -> None once inserted


async def ensure_stores(session: AsyncSession, store_ids: set[str] | list[str],
                        now: datetime) -> None:
    """Insert the stores not yet known; known stores keep their settings untouched.

    Every STATE handler of a group-commit batch calls this for the same store: within one
    transaction the insert is issued once (not again after it ran outside a savepoint, so
    a rolled-back savepoint never hides a missing row; a new transaction starts afresh)."""
    ensured = transaction_memo(session, _ENSURED)
    todo = sorted(set(store_ids) - ensured.keys())
    if not todo:
        return
    await upsert_rows(session, Store.__table__, [{"id": s, "created_at": now} for s in todo],
                      ["id"], update=False)
    ensured.update(dict.fromkeys(todo))
