"""The inbox forgets events past `nats.dedupe_horizon`, a chunk at a time, on both
databases; the horizon must be longer than JetStream's duplicate window."""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy import func, insert, select

from stormd.config.errors import ConfigError
from stormd.handlers.kernel.context import JobContext
from stormd.handlers.upkeep import inbox
from stormd.handlers.wiring import build_registry
from stormd.schema.runtime.inbox import ProcessedEvent


async def rows(sessionmaker) -> set[tuple[str, str]]:
    async with sessionmaker() as session:
        return set((await session.execute(
            select(ProcessedEvent.store_id, ProcessedEvent.event_id))).all())


async def test_rows_past_the_horizon_go_and_the_rest_stay(sessionmaker, settings_factory, clock,
                                                          monkeypatch):
    settings = settings_factory(nats={"dedupe_horizon": "3d"})
    now = clock.now()
    async with sessionmaker() as session, session.begin():
        await session.execute(insert(ProcessedEvent), [
            {"store_id": store, "event_id": f"e{day}", "type": "cart.updated",
             "processed_at": now - timedelta(days=day, minutes=1)}
            for day in range(8) for store in ("s1", "s2")])
    monkeypatch.setattr(inbox, "CHUNK", 3)  # several chunks, each its own transaction
    job = JobContext(sessionmaker=sessionmaker, settings=settings, clock=clock)
    assert await inbox.prune_inbox(job) == 10  # days 3..7 of both stores
    assert await rows(sessionmaker) == {(s, f"e{d}") for d in range(3) for s in ("s1", "s2")}
    assert await inbox.prune_inbox(job) == 0


def test_the_prune_is_a_cron_job_of_the_daemon():
    schedule, job = build_registry().cron_jobs()["inbox.prune"]
    assert job is inbox.prune_inbox and schedule(None) == "7 * * * *"


@pytest.mark.parametrize("nats, reason", [
    ({"dedupe_horizon": "2m"}, "nats.dedupe_horizon: must be longer than nats.duplicate_window"),
    ({"dedupe_horizon": "1h", "duplicate_window": "2h"}, "longer than nats.duplicate_window (2h)"),
])
def test_a_horizon_inside_the_duplicate_window_is_refused(settings_factory, nats, reason):
    with pytest.raises(ConfigError) as refused:
        settings_factory(nats=nats)
    assert reason in str(refused.value)


def test_the_default_horizon_is_the_stream_s_age(settings_factory):
    n = settings_factory().nats
    assert n.dedupe_horizon == n.stream_max_age == timedelta(days=7)


async def test_many_rows_are_pruned_in_bounded_chunks(sessionmaker, settings_factory, clock):
    settings = settings_factory(nats={"dedupe_horizon": "1d"})
    old = clock.now() - timedelta(days=2)
    async with sessionmaker() as session, session.begin():
        await session.execute(insert(ProcessedEvent), [
            {"store_id": "s1", "event_id": f"e{i}", "type": "t", "processed_at": old}
            for i in range(inbox.CHUNK * 2 + 17)])
    job = JobContext(sessionmaker=sessionmaker, settings=settings, clock=clock)
    assert await inbox.prune_inbox(job) == inbox.CHUNK * 2 + 17
    async with sessionmaker() as session:
        assert await session.scalar(select(func.count()).select_from(ProcessedEvent)) == 0
