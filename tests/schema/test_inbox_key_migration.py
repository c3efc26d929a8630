"""The inbox's key becomes (store_id, event_id) without losing a row, on both databases,
and back."""

from __future__ import annotations

from sqlalchemy import inspect, text

from stormd.schema.migrate import upgrade_database

BEFORE = "cf9d9eddc05e"  # the revision before the inbox was keyed by store


async def _alembic(engine, db_url, verb: str, revision: str) -> None:
    from alembic import command

    from stormd.schema.migrations import alembic_config

    async with engine.begin() as conn:
        await conn.run_sync(lambda c: getattr(command, verb)(alembic_config(db_url, c), revision))
    await engine.dispose()


async def _rows(engine) -> list[tuple]:
    async with engine.connect() as conn:
        return sorted(tuple(r) for r in (await conn.execute(text(
            "SELECT store_id, event_id, type FROM processed_events"))).all())


async def test_existing_rows_are_kept_and_one_id_may_then_serve_two_stores(db_url, engine):
    await _alembic(engine, db_url, "downgrade", BEFORE)
    async with engine.begin() as conn:
        await conn.execute(text(
            "INSERT INTO processed_events (event_id, store_id, type, processed_at) VALUES "
            "('evt-1', 'store_a', 'cart.updated', '2026-11-24 04:00:00'), "
            "('evt-2', 'store_b', 'order.created', '2026-11-24 04:00:00')"))
    await upgrade_database(db_url)
    async with engine.connect() as conn:
        pk = await conn.run_sync(lambda c: inspect(c).get_pk_constraint("processed_events"))
        indexes = await conn.run_sync(lambda c: inspect(c).get_indexes("processed_events"))
    assert pk["constrained_columns"] == ["store_id", "event_id"]
    assert [i["column_names"] for i in indexes] == [["processed_at"]]
    assert await _rows(engine) == [("store_a", "evt-1", "cart.updated"),
                                   ("store_b", "evt-2", "order.created")]
    async with engine.begin() as conn:
        await conn.execute(text(
            "INSERT INTO processed_events (event_id, store_id, type, processed_at) VALUES "
            "('evt-1', 'store_b', 'cart.updated', '2026-11-24 04:00:00')"))
    # Back down: an id in two stores keeps one row, as the old key requires.
    await _alembic(engine, db_url, "downgrade", BEFORE)
    assert [r[1] for r in await _rows(engine)] == ["evt-1", "evt-2"]
    await upgrade_database(db_url)
