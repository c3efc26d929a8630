"""A Store row exists for every store stormd has heard of (created on first sight)."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy.ext.asyncio import AsyncSession

from stormd.schema.stores import Store
from stormd.schema.upsert import upsert_rows

_ENSURED = "stormd.stores_ensured"  # session.info: (root transaction, store ids ensured in it)


async def ensure_stores(session: AsyncSession, store_ids: set[str] | list[str],
                        now: datetime) -> None:
    """Insert the stores not yet known; known stores keep their settings untouched.

    Every STATE handler of a group-commit batch calls this for the same store: within one
    transaction the insert is issued once (not again after it ran outside a savepoint, so
    a rolled-back savepoint never hides a missing row; a new transaction starts afresh)."""
    root = session.sync_session.get_transaction()
    held = session.info.get(_ENSURED)
    ensured: set[str] = held[1] if held is not None and held[0] is root else set()
    todo = sorted(set(store_ids) - ensured)
    if not todo:
        return
    await upsert_rows(session, Store.__table__, [{"id": s, "created_at": now} for s in todo],
                      ["id"], update=False)
    if root is not None and not session.in_nested_transaction():
        session.info[_ENSURED] = (root, ensured | set(todo))
