"""Several stormd processes on one NATS and one database (CONTRACT: they share the work):
each daemon here has its own engine, connections and owner id, as a process would. A due
timer fires once, a cron slot runs once, a queued message is sent once; and one daemon with
`daemon.workers` > 1 (concurrent group-commit batches) applies every event once."""

from __future__ import annotations

import asyncio
import json
from collections import Counter
from datetime import UTC, datetime, timedelta

from daemon_helpers import count_rows, eventually, processed, utc
from sqlalchemy import func, select

from stormd.daemon.demo.storefront import mixed_events
from stormd.daemon.runtime.app import Daemon
from stormd.plugins.delivery.enqueue import MessageRequest, enqueue_message
from stormd.schema.marketing.messages import Message
from stormd.schema.metrics import MESSAGES
from stormd.schema.runtime.cron import CronRun
from stormd.schema.runtime.timers import Timer, schedule_timers
from stormd.schema.shop.orders import Order


async def test_a_due_timer_fires_once_across_two_daemons(
    daemon_settings, start_daemon, handlers, sessionmaker
):
    fired: Counter[str] = Counter()

    @handlers.on_timer("reminder")
    async def remind(ctx, timer):
        fired[timer.key] += 1
        await asyncio.sleep(0)  # let the other daemon run meanwhile

    now = datetime.now(UTC)
    async with sessionmaker() as session, session.begin():
        await schedule_timers(session, store_id="store_1", now=now, timers=[
            {"key": f"cart:{i}", "kind": "reminder", "due_at": now - timedelta(seconds=1)}
            for i in range(300)])
    settings = daemon_settings()
    await start_daemon(settings)
    await start_daemon(settings)
    await eventually(lambda: _no_timers_left(sessionmaker), timeout=60)
    assert len(fired) == 300
    assert set(fired.values()) == {1}


async def _no_timers_left(sessionmaker) -> bool:
    return await count_rows(sessionmaker, Timer) == 0


async def test_a_cron_slot_runs_once_across_two_daemons(
    daemon_settings, start_daemon, handlers, sessionmaker, clock
):
    runs: list[datetime] = []

    @handlers.on_cron("nightly", lambda s: "0 2 * * *")  # 02:00 in daemon.timezone
    async def nightly(job):
        runs.append(job.clock.now())
        await asyncio.sleep(0.1)  # still running when the other daemon looks

    settings = daemon_settings(daemon={"timezone": "Asia/Dhaka"})
    a = await start_daemon(settings, clock=clock)
    b = await start_daemon(settings, clock=clock)
    await eventually(lambda: a.cron._next and b.cron._next)  # both know the next slot
    for day in range(2):
        clock.set(utc(2026, 11, 24 + day, 20, 0, 1))  # 02:00:01 in Dhaka
        await eventually(lambda n=day + 1: len(runs) == n)
        # Both loops have moved past the slot: neither runs it again.
        await eventually(lambda: a.cron._next["nightly"] > clock.now()
                         and b.cron._next["nightly"] > clock.now())
        await a.cron.wait_running()
        await b.cron.wait_running()
    assert len(runs) == 2
    async with sessionmaker() as session:
        slots = (await session.execute(select(CronRun.slot, CronRun.finished_at)
                                        .order_by(CronRun.slot))).all()
    assert [s for s, _ in slots] == [utc(2026, 11, 24, 20), utc(2026, 11, 25, 20)]
    assert all(finished is not None for _, finished in slots)


async def test_queued_messages_are_sent_once_by_two_daemons(
    daemon_settings, start_daemon, handlers, sessionmaker
):
    n = 200
    now = datetime.now(UTC)
    async with sessionmaker() as session, session.begin():
        for i in range(n):
            await enqueue_message(session, MessageRequest(
                store_id="store_1", customer_id=None, channel="email",
                to_address=f"shopper{i}@example.com", subject="Order update",
                body="Your order has shipped", idempotency_key=f"multi-{i}",
                marketing=False), now)  # transactional: no quiet hours in the way
    sent = MESSAGES.labels("email", "outbox", "sent")
    before = sent._value.get()
    settings = daemon_settings(delivery={"poll_interval": "50ms", "batch_size": 20})
    await start_daemon(settings)
    await start_daemon(settings)
    await eventually(lambda: _all_sent(sessionmaker, n), timeout=60)
    async with sessionmaker() as session:
        attempts = (await session.execute(
            select(Message.attempts, func.count()).group_by(Message.attempts))).all()
    assert dict(attempts) == {1: n}  # each claimed once
    assert sent._value.get() - before == n  # and its outcome recorded once


async def _all_sent(sessionmaker, n: int) -> bool:
    async with sessionmaker() as session:
        return (await session.execute(select(func.count()).select_from(Message)
                                      .where(Message.status == "sent"))).scalar() == n


async def test_concurrent_batches_apply_every_event_once(daemon_settings, js, sessionmaker):
    """`daemon.workers` = 4 with the real handlers and a storefront's mixed events."""
    envelopes = list(mixed_events(1500, datetime(2026, 11, 20, tzinfo=UTC), "store_w"))
    daemon = Daemon(daemon_settings(daemon={"workers": 4}, nats={"batch_size": 50}),
                    timer_poll=0.05)
    await daemon.start()
    try:
        for env in envelopes:
            await js.publish(f"stormcom.events.store_w.{env['type']}",
                             json.dumps(env).encode(), headers={"Nats-Msg-Id": env["id"]})
        await eventually(lambda: _processed_is(sessionmaker, len(envelopes)), timeout=120)
    finally:
        await daemon.stop()
    assert (await js.stream_info("STORMD_DLQ")).state.messages == 0  # no batch gave up
    orders = {e["data"]["orderId"] for e in envelopes if e["type"] == "order.created"}
    async with sessionmaker() as session:
        stored = (await session.execute(select(func.count()).select_from(Order)
                                        .where(Order.store_id == "store_w"))).scalar()
    assert stored == len(orders)


async def _processed_is(sessionmaker, n: int) -> bool:
    return await processed(sessionmaker) == n
