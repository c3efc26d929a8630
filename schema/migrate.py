"""Bringing a database to the current schema: the Alembic migrations, run in-process."""

from __future__ import annotations

from typing import Any

from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from alembic.script import ScriptDirectory

from stormd.schema import Base
from stormd.schema.db.engine import make_engine
from stormd.schema.migrations import alembic_config


async def upgrade_database(url: str, revision: str = "heads") -> tuple[str, ...]:
    """Create or upgrade the database at `url` to `revision`; returns the revisions it is
    at afterwards. Safe to run on an up-to-date database (does nothing)."""
    engine = make_engine(url)
    try:
        async with engine.begin() as conn:
            await conn.run_sync(lambda c: command.upgrade(alembic_config(url, c), revision))
            return await conn.run_sync(_current)
    finally:
        await engine.dispose()


async def create_schema(url: str) -> None:
    """Every table of the current models, made by running the migrations (what the daemon
    and the test fixtures call)."""
    await upgrade_database(url)


async def current_revisions(url: str) -> tuple[str, ...]:
    engine = make_engine(url)
    try:
        async with engine.connect() as conn:
            return await conn.run_sync(_current)
    finally:
        await engine.dispose()


def head_revisions() -> tuple[str, ...]:
    return tuple(ScriptDirectory.from_config(alembic_config("sqlite://")).get_heads())


async def schema_drift(url: str) -> list[Any]:
    """What differs between the database at `url` and the models (Alembic's diff list);
    empty when the migrations produce exactly the models."""
    engine = make_engine(url)
    try:
        async with engine.connect() as conn:
            return await conn.run_sync(
                lambda c: compare_metadata(
                    MigrationContext.configure(c, opts={"compare_type": True}), Base.metadata
                )
            )
    finally:
        await engine.dispose()


def _current(sync_conn) -> tuple[str, ...]:
    return tuple(MigrationContext.configure(sync_conn).get_current_heads())
