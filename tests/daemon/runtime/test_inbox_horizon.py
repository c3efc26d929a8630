"""Through a running daemon: day after day the inbox stays bounded by the dedupe horizon,
and a replay inside the horizon is still absorbed (its effects happen once)."""

from __future__ import annotations

from datetime import timedelta

from daemon_helpers import customer, eventually, processed, publish
from sqlalchemy import func, select

from stormd.handlers.upkeep import inbox
from stormd.schema.runtime.cron import CronRun


async def test_the_inbox_stays_bounded_and_absorbs_replays_inside_the_horizon(
        daemon_settings, start_daemon, customer_handler, handlers, js, sessionmaker, clock):
    handlers.on_cron("inbox.prune", lambda s: inbox.SCHEDULE)(inbox.prune_inbox)
    d = await start_daemon(daemon_settings(nats={"dedupe_horizon": "2d"}), clock=clock)
    sent: list[list[dict]] = []
    sizes = []
    for day in range(6):
        if day:
            clock.advance(timedelta(days=1))
            before = await _prune_runs(sessionmaker)
            await eventually(lambda b=before: _prune_ran_after(sessionmaker, b), timeout=10)
        batch = [customer(f"d{day}c{i}") for i in range(10)]
        for env in batch:
            await publish(js, env)
        sent.append(batch)
        total = 10 * len(sent)
        await eventually(lambda n=total: _handled(customer_handler, n))
        sizes.append(await processed(sessionmaker))
    # Rows live 2 days (the clock stands still within a day, so the day before yesterday's
    # are exactly 2 days old at the prune and stay): bounded at three days' events, where
    # without pruning the sixth day would hold sixty.
    assert sizes == [10, 20, 30, 30, 30, 30], sizes

    # Yesterday's event again, with a new Nats-Msg-Id (past JetStream's window): absorbed.
    replay = sent[-2][0]
    await publish(js, replay, msg_id="replayed-later")
    await publish(js, customer("marker", id_="evt_marker"))
    await eventually(lambda: customer_handler.get("evt_marker") == 1)
    assert customer_handler[replay["id"]] == 1
    assert d.running


async def _prune_runs(sessionmaker) -> int:
    async with sessionmaker() as session:
        return await session.scalar(select(func.count()).select_from(CronRun).where(
            CronRun.job == "inbox.prune", CronRun.finished_at.is_not(None)))


async def _prune_ran_after(sessionmaker, before: int) -> bool:
    return await _prune_runs(sessionmaker) > before


def _handled(calls: dict, n: int) -> bool:
    return len(calls) >= n
