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
