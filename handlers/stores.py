"""A Store row exists for every store stormd has heard of (created on first sight)."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy.ext.asyncio import AsyncSession

from stormd.schema.stores import Store
from stormd.schema.upsert import upsert_rows


async def ensure_stores(session: AsyncSession, store_ids: set[str] | list[str],
                        now: datetime) -> None:
    """Insert the stores not yet known; known stores keep their settings untouched."""
    await upsert_rows(session, Store.__table__,
                      [{"id": s, "created_at": now} for s in sorted(set(store_ids))],
                      ["id"], update=False)
