"""The shipped migrations build exactly the models, on SQLite and PostgreSQL."""

from __future__ import annotations

from sqlalchemy import inspect

from stormd.schema import Base
from stormd.schema.migrate import current_revisions, head_revisions, schema_drift, upgrade_database


async def test_migrations_build_exactly_the_models(db_url):
    drift = await schema_drift(db_url)
    assert drift == [], (
        "models and migrations differ; run "
        '`python -m stormd.schema.migrations.autogen "what changed"`:\n'
        + "\n".join(map(repr, drift))
    )


async def test_database_is_at_the_single_head_after_upgrade(db_url):
    heads = head_revisions()
    assert len(heads) == 1, f"migrations have several heads {heads}: run the autogen command"
    assert await current_revisions(db_url) == heads


async def test_upgrade_twice_changes_nothing(db_url, engine):
    await upgrade_database(db_url)
    async with engine.connect() as conn:
        tables = await conn.run_sync(lambda c: set(inspect(c).get_table_names()))
    assert set(Base.metadata.tables) <= tables


async def test_autogen_writes_nothing_while_models_match_migrations(tmp_path):
    from stormd.schema.migrations.autogen import autogenerate

    assert await autogenerate("nothing changed", tmp_path) is None


async def test_downgrade_to_base_and_upgrade_again(db_url, engine):
    """Every revision's downgrade undoes it: from the head to an empty database, then back
    to a schema equal to the models."""
    from alembic import command

    from stormd.schema.migrations import alembic_config

    def tables(sync_conn) -> set[str]:
        return set(inspect(sync_conn).get_table_names()) - {"alembic_version"}

    async with engine.begin() as conn:
        await conn.run_sync(lambda c: command.downgrade(alembic_config(db_url, c), "base"))
    async with engine.connect() as conn:
        assert await conn.run_sync(tables) == set()
    assert await current_revisions(db_url) == ()
    await engine.dispose()  # SQLite: the next connection sees the schema as it is now

    await upgrade_database(db_url)
    assert await current_revisions(db_url) == head_revisions()
    assert await schema_drift(db_url) == []
    async with engine.connect() as conn:
        assert await conn.run_sync(tables) == set(Base.metadata.tables)
