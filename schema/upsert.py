"""INSERT … ON CONFLICT for whichever database the session talks to."""

from __future__ import annotations

from typing import Any

from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncSession


def insert_for(session: AsyncSession | Any, table: Any):
    """A dialect `insert()` offering `on_conflict_do_update` / `on_conflict_do_nothing`."""
    bind = session.bind if hasattr(session, "bind") else session
    name = bind.dialect.name
    if name == "postgresql":
        return postgresql.insert(table)
    if name == "sqlite":
        return sqlite.insert(table)
    raise NotImplementedError(f"stormd supports SQLite and PostgreSQL, not {name}")
