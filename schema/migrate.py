"""Bringing a database to the current schema."""

from __future__ import annotations

from stormd.schema import Base
from stormd.schema.engine import make_engine


async def create_schema(url: str) -> None:
    """Create every table (to be replaced by running the Alembic migrations)."""
    engine = make_engine(url)
    async with engine.begin() as conn:
        await conn.run_sync(Base.metadata.create_all)
    await engine.dispose()
