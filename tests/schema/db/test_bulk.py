"""One-parameter IN lists and bulk INSERT … RETURNING, on SQLite and PostgreSQL."""

from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal

from sqlalchemy import delete, select, update

from stormd.schema.db.bulk import insert_returning
from stormd.schema.db.inlist import in_values
from stormd.schema.marketing.automations import AutomationExecution
from stormd.schema.runtime.timers import Timer
from stormd.schema.shop.carts import CartAbandonmentEvent

NOW = datetime(2026, 11, 24, 10, 0, tzinfo=timezone(timedelta(hours=6)))


async def test_in_values_selects_updates_and_deletes_exactly_the_listed_rows(sessionmaker):
    async with sessionmaker() as s:
        s.add_all([Timer(store_id="s", key=f"k{i}", kind="x", due_at=NOW, created_at=NOW)
                   for i in range(10)])
        await s.commit()
        ids = (await s.scalars(select(Timer.id).order_by(Timer.id))).all()
        keys = sorted((await s.scalars(select(Timer.key).where(
            in_values(Timer.key, ["k1", "k3", "nope"])))).all())
        assert keys == ["k1", "k3"]
        assert (await s.scalars(select(Timer.key).where(in_values(Timer.key, [])))).all() == []
        await s.execute(update(Timer).where(in_values(Timer.id, ids[:4])).values(kind="y")
                        .execution_options(synchronize_session=False))
        await s.execute(delete(Timer).where(in_values(Timer.id, ids[8:]), Timer.kind == "x"))
        await s.commit()
        kinds = dict((await s.execute(select(Timer.key, Timer.kind))).all())
    assert kinds == {**{f"k{i}": "y" for i in range(4)}, **{f"k{i}": "x" for i in range(4, 8)}}


async def test_insert_returning_maps_every_row_and_skips_existing_keys(sessionmaker):
    n = 3000  # past one multi-row statement's parameter limit on SQLite
    rows = [{"store_id": "s", "cart_id": f"k{i}", "customer_id": f"c{i}",
             "cart_value": Decimal("1234.50"), "abandoned_at": NOW, "status": "OPEN",
             "next_step": 0, "recovery_attempts": 0, "last_reminder_at": None,
             "recovered_at": None, "order_id": None, "recovered_revenue": None}
            for i in range(n)]
    async with sessionmaker() as s:
        found = dict((c, i) for i, c in await insert_returning(
            s, CartAbandonmentEvent.__table__, rows, ("id", "cart_id")))
        assert len(found) == n and len(set(found.values())) == n
        stored = (await s.execute(select(CartAbandonmentEvent).where(
            CartAbandonmentEvent.id == found["k42"]))).scalar_one()
        assert (stored.cart_id, stored.cart_value, stored.abandoned_at) == (
            "k42", Decimal("1234.50"), NOW)
        # Times written here compare like times written by SQLAlchemy.
        assert await s.scalar(select(CartAbandonmentEvent.id).where(
            CartAbandonmentEvent.abandoned_at >= NOW.astimezone(UTC),
            CartAbandonmentEvent.cart_id == "k7")) == found["k7"]

        def execution(key: str) -> dict:
            return {"store_id": "s", "workflow_id": None, "trigger": "t", "customer_id": "c",
                    "subject_id": key, "idempotency_key": key, "status": "RUNNING",
                    "step": 0, "context": {"cart": key}, "error": None, "created_at": NOW,
                    "updated_at": NOW, "completed_at": None}

        first = await insert_returning(s, AutomationExecution.__table__,
                                       [execution("a"), execution("b")], ("id", "subject_id"),
                                       unique="idempotency_key")
        again = await insert_returning(s, AutomationExecution.__table__,
                                       [execution("b"), execution("c")], ("id", "subject_id"),
                                       unique="idempotency_key")
        await s.commit()
        assert sorted(k for _, k in first) == ["a", "b"]
        assert [k for _, k in again] == ["c"]  # "b" existed: skipped, not duplicated
        context = await s.scalar(select(AutomationExecution.context).where(
            AutomationExecution.idempotency_key == "c"))
    assert context == {"cart": "c"}
