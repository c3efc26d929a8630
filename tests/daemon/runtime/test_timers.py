"""Durable timers and cron: due timers fire once, not before, survive a restart of the
loop, can be cancelled; a cron slot runs once even with two processes."""

from __future__ import annotations

import asyncio
from datetime import timedelta

import pytest
from daemon_helpers import count_rows, utc
from sqlalchemy import select

from stormd.daemon.runtime.cron import CronLoop, next_slot
from stormd.daemon.runtime.scheduler import TimerLoop
from stormd.schema.runtime.cron import CronRun
from stormd.schema.runtime.timers import Timer, cancel_timers, schedule_timers


@pytest.fixture
def fired(handlers) -> list:
    """Every `reminder` timer fired, as (timer, the clock when it ran)."""
    calls: list = []

    @handlers.on_timer("reminder")
    async def remind(ctx, timer):
        calls.append((timer, ctx.now()))

    return calls


def keys(fired: list) -> list[str]:
    return [timer.key for timer, _ in fired]


async def schedule(sessionmaker, clock, key, due_in, kind="reminder", **kw):
    async with sessionmaker() as session, session.begin():
        await schedule_timers(session, store_id="store_1", now=clock.now(), timers=[
            {"key": key, "kind": kind, "due_at": clock.now() + due_in, **kw}])


async def test_a_timer_fires_once_when_due_and_not_before(
    handlers, fired, sessionmaker, clock, settings_factory
):
    await schedule(sessionmaker, clock, "cart:k1:step1", timedelta(hours=1),
                   payload={"step": 1})
    loop = TimerLoop(sessionmaker, settings_factory(), clock, handlers)
    assert await loop.fire_due() == 0
    clock.advance(timedelta(minutes=59))
    assert await loop.fire_due() == 0
    clock.advance(timedelta(minutes=1))
    assert await loop.fire_due() == 1
    assert [(t.key, t.payload, at) for t, at in fired] == [
        ("cart:k1:step1", {"step": 1}, clock.now())]
    assert await loop.fire_due() == 0
    assert await count_rows(sessionmaker, Timer) == 0


async def test_timers_survive_a_restart_and_a_cancelled_one_never_fires(
    handlers, fired, sessionmaker, clock, settings_factory
):
    await schedule(sessionmaker, clock, "keep", timedelta(minutes=5))
    await schedule(sessionmaker, clock, "drop", timedelta(minutes=5))
    async with sessionmaker() as session, session.begin():
        await cancel_timers(session, store_id="store_1", keys=["drop"])
    clock.advance(timedelta(minutes=10))
    restarted = TimerLoop(sessionmaker, settings_factory(), clock, handlers)  # a new process
    await restarted.fire_due()
    assert keys(fired) == ["keep"]


async def test_a_failing_timer_is_kept_and_retried_later_while_others_fire(
    handlers, sessionmaker, clock, settings_factory
):
    calls = []

    @handlers.on_timer("reminder")
    async def remind(ctx, timer):
        calls.append(timer.key)
        if timer.key == "bad" and calls.count("bad") == 1:
            raise RuntimeError("provider down")

    await schedule(sessionmaker, clock, "bad", timedelta(0))
    await schedule(sessionmaker, clock, "good", timedelta(0))
    loop = TimerLoop(sessionmaker, settings_factory(), clock, handlers)
    await loop.fire_due()
    assert sorted(calls) == ["bad", "good"]
    assert await loop.fire_due() == 0  # held back by the retry lease
    clock.advance(timedelta(minutes=1))
    await loop.fire_due()
    assert calls.count("bad") == 2
    assert await count_rows(sessionmaker, Timer) == 0


async def test_claims_go_highest_priority_first_and_a_flood_never_starves_other_kinds(
    handlers, sessionmaker, clock, settings_factory
):
    """A flood of batch-handled timers (carts) is claimed in slices of `batch_claim`,
    highest priority first; other kinds get their own `batch` in the same pass."""
    carts: list[list[str]] = []
    singles: list[str] = []

    @handlers.on_timer_batch("cart.flood")
    async def flood(ctx, fired):
        carts.append([t.key for t in fired])

    @handlers.on_timer("reminder")
    async def remind(ctx, timer):
        singles.append(timer.key)

    for i in range(7):
        await schedule(sessionmaker, clock, f"cart{i}", timedelta(minutes=1),
                       kind="cart.flood", priority=i * 100)
    for i in range(3):
        await schedule(sessionmaker, clock, f"r{i}", timedelta(minutes=1), priority=i)
    clock.advance(timedelta(minutes=2))
    loop = TimerLoop(sessionmaker, settings_factory(), clock, handlers, batch=2, batch_claim=3)
    assert await loop.fire_due() == 5
    assert carts == [["cart6", "cart5", "cart4"]]
    assert singles == ["r2", "r1"]  # fired beside the flood, not after it
    while await loop.fire_due():
        pass
    assert carts[1:] == [["cart3", "cart2", "cart1"], ["cart0"]]
    assert singles == ["r2", "r1", "r0"]
    assert await count_rows(sessionmaker, Timer) == 0


async def test_a_handler_rescheduling_its_own_key_keeps_the_new_timer(
    handlers, sessionmaker, clock, settings_factory
):
    @handlers.on_timer("reminder")
    async def next_step(ctx, timer):
        if timer.payload["step"] < 3:
            await ctx.schedule(timer.key, "reminder", ctx.now() + timedelta(hours=24),
                               {"step": timer.payload["step"] + 1})

    await schedule(sessionmaker, clock, "cart:k1", timedelta(0), payload={"step": 1})
    loop = TimerLoop(sessionmaker, settings_factory(), clock, handlers)
    await loop.fire_due()
    async with sessionmaker() as session:
        timer = (await session.execute(select(Timer))).scalar_one()
    assert timer.payload == {"step": 2}
    assert timer.due_at == clock.now() + timedelta(hours=24)


async def test_two_processes_never_fire_the_same_timer(
    handlers, fired, sessionmaker, clock, settings_factory
):
    for i in range(30):
        await schedule(sessionmaker, clock, f"k{i}", timedelta(0))
    a = TimerLoop(sessionmaker, settings_factory(), clock, handlers, batch=10)
    b = TimerLoop(sessionmaker, settings_factory(), clock, handlers, batch=10)

    for _ in range(3):
        await asyncio.gather(a.fire_due(), b.fire_due())
    assert sorted(keys(fired)) == sorted(f"k{i}" for i in range(30))



async def test_a_claim_that_ran_out_before_firing_is_left_to_its_new_claimer(
    handlers, fired, sessionmaker, clock, settings_factory
):
    await schedule(sessionmaker, clock, "k", timedelta(0))
    a = TimerLoop(sessionmaker, settings_factory(), clock, handlers)
    b = TimerLoop(sessionmaker, settings_factory(), clock, handlers)
    stalled = await a._claim()  # a claims, then stalls past its lease
    clock.advance(timedelta(minutes=2))
    assert await b.fire_due() == 1
    await a.fire(stalled)
    assert keys(fired) == ["k"]


async def test_a_timer_rescheduled_after_its_claim_fires_only_as_rescheduled(
    handlers, fired, sessionmaker, clock, settings_factory
):
    await schedule(sessionmaker, clock, "cart:k1", timedelta(0), payload={"v": 1})
    loop = TimerLoop(sessionmaker, settings_factory(), clock, handlers)
    claimed = await loop._claim()
    await schedule(sessionmaker, clock, "cart:k1", timedelta(hours=1), payload={"v": 2})
    await loop.fire(claimed)  # the cart was updated meanwhile: the old claim does not fire
    assert fired == []
    clock.advance(timedelta(hours=1))
    assert await loop.fire_due() == 1
    assert [(t.key, t.payload) for t, _ in fired] == [("cart:k1", {"v": 2})]


async def test_a_slow_fire_keeps_its_timers_from_a_second_claimer(
    handlers, sessionmaker, clock, settings_factory
):
    entered, release, calls = asyncio.Event(), asyncio.Event(), []

    @handlers.on_timer("slow")
    async def slow(ctx, timer):
        calls.append(timer.key)
        entered.set()
        await release.wait()

    await schedule(sessionmaker, clock, "s", timedelta(0), kind="slow")
    a = TimerLoop(sessionmaker, settings_factory(), clock, handlers)
    b = TimerLoop(sessionmaker, settings_factory(), clock, handlers)
    firing = asyncio.create_task(a.fire_due())
    await entered.wait()
    clock.advance(timedelta(minutes=5))  # a's lease has run out while it is still firing
    asyncio.get_running_loop().call_later(0.3, release.set)
    assert await b.fire_due() == 0  # waits for a's commit (SQLite) or skips the locked row
    assert await firing == 1
    assert calls == ["s"] and await count_rows(sessionmaker, Timer) == 0


def test_cron_slots_are_read_in_the_daemon_timezone():
    from zoneinfo import ZoneInfo

    # 02:00 in Dhaka (UTC+6) is 20:00 UTC the day before.
    assert next_slot("0 2 * * *", utc(2026, 11, 24, 4, 0), ZoneInfo("Asia/Dhaka")) == utc(
        2026, 11, 24, 20, 0)


async def test_a_cron_slot_runs_once_across_two_processes(
    handlers, sessionmaker, clock, settings_factory
):
    runs = []

    @handlers.on_cron("rfm-nightly", lambda s: s.rfm.schedule)
    async def nightly(job):
        runs.append(job.clock.now())

    settings = settings_factory()
    a = CronLoop(sessionmaker, settings, clock, handlers)
    b = CronLoop(sessionmaker, settings, clock, handlers)
    assert await a.tick() == [] and await b.tick() == []  # learn the next slot
    clock.set(utc(2026, 11, 24, 20, 0, 1))
    started = await a.tick() + await b.tick()
    await a.wait_running()
    await b.wait_running()
    assert started == ["rfm-nightly"]
    assert len(runs) == 1
    async with sessionmaker() as session:
        run = (await session.execute(select(CronRun))).scalar_one()
    assert run.slot == utc(2026, 11, 24, 20, 0) and run.finished_at is not None



async def left_by_a_killed_process(sessionmaker, slot, beat):
    """The row a process SIGKILLed in the middle of a job leaves behind: claimed, never
    finished, its heartbeat frozen at `beat`."""
    async with sessionmaker() as session, session.begin():
        session.add(CronRun(job="rfm-nightly", slot=slot, claimed_by="stormd-killed",
                            started_at=beat, heartbeat_at=beat))


@pytest.fixture
def nightly_runs(handlers) -> list:
    runs: list = []

    @handlers.on_cron("rfm-nightly", lambda s: s.rfm.schedule)
    async def nightly(job):
        runs.append(job.clock.now())

    return runs


async def cron_rows(sessionmaker) -> list[CronRun]:
    async with sessionmaker() as session:
        return list((await session.execute(select(CronRun).order_by(CronRun.slot))).scalars())


async def test_a_slot_left_unfinished_by_a_killed_process_is_run_again_once(
    handlers, nightly_runs, sessionmaker, clock, settings_factory
):
    slot = utc(2026, 11, 24, 20, 0)
    await left_by_a_killed_process(sessionmaker, slot, beat=slot)
    a = CronLoop(sessionmaker, settings_factory(), clock, handlers)
    b = CronLoop(sessionmaker, settings_factory(), clock, handlers)
    clock.set(slot + timedelta(minutes=1))  # heartbeat 1 min old: maybe still running
    assert await a.tick() == [] and nightly_runs == []
    clock.set(slot + timedelta(minutes=5))  # no heartbeat for 5 min: the claimer is dead
    started = await a.tick() + await b.tick()
    await a.wait_running()
    await b.wait_running()
    assert started == ["rfm-nightly"] and len(nightly_runs) == 1
    [run] = await cron_rows(sessionmaker)
    assert run.claimed_by == a.owner and run.finished_at is not None and run.error is None
    assert await a.tick() == [] and len(nightly_runs) == 1  # finished: never again


async def test_a_dead_slot_overtaken_by_a_later_one_is_closed_not_rerun(
    handlers, nightly_runs, sessionmaker, clock, settings_factory
):
    old, new = utc(2026, 11, 23, 20, 0), utc(2026, 11, 24, 20, 0)
    await left_by_a_killed_process(sessionmaker, old, beat=old)
    async with sessionmaker() as session, session.begin():
        session.add(CronRun(job="rfm-nightly", slot=new, claimed_by="stormd-other",
                            started_at=new, heartbeat_at=new, finished_at=new))
    loop = CronLoop(sessionmaker, settings_factory(), clock, handlers)
    clock.set(new + timedelta(hours=1))
    assert await loop.tick() == [] and nightly_runs == []
    abandoned, finished = await cron_rows(sessionmaker)
    assert abandoned.finished_at == clock.now() and "abandoned" in abandoned.error
    assert finished.claimed_by == "stormd-other" and finished.error is None


async def test_a_long_job_keeps_its_slot_by_its_heartbeat(
    handlers, sessionmaker, clock, settings_factory
):
    release, runs = asyncio.Event(), []

    @handlers.on_cron("rfm-nightly", lambda s: s.rfm.schedule)
    async def slow_nightly(job):
        runs.append(job.clock.now())
        await release.wait()

    a = CronLoop(sessionmaker, settings_factory(), clock, handlers)
    b = CronLoop(sessionmaker, settings_factory(), clock, handlers)
    a.heartbeat = 0.02
    assert await a.tick() == [] and await b.tick() == []
    clock.set(utc(2026, 11, 24, 20, 0, 1))
    assert await a.tick() == ["rfm-nightly"]
    clock.set(utc(2026, 11, 24, 20, 30))  # half an hour into the job: it is still beating
    for _ in range(100):
        [run] = await cron_rows(sessionmaker)
        if run.heartbeat_at == clock.now():
            break
        await asyncio.sleep(0.02)
    assert run.heartbeat_at == clock.now()
    assert await b.tick() == []  # alive: not taken over
    release.set()
    await a.wait_running()
    [run] = await cron_rows(sessionmaker)
    assert len(runs) == 1 and run.claimed_by == a.owner and run.finished_at is not None


async def test_a_failing_timer_reaction_is_recorded_while_the_state_handler_keeps_its_work(
    handlers, sessionmaker, clock, settings_factory
):
    """A kind's reaction fails (not the database): what its state handler did is kept, the
    timer counts as fired, the execution it carries turns FAILED; another reaction and the
    other timers of the batch go on."""
    from sqlalchemy import insert

    from stormd.schema.marketing.automations import AutomationExecution
    from stormd.schema.shop.customers import Customer

    @handlers.on_timer_batch("nudge")
    async def keep(ctx, fired):
        await ctx.session.execute(insert(Customer), [
            {"store_id": ctx.store_id, "customer_id": f.key} for f in fired])

    @handlers.react_to_timer_batch("nudge", name="nudger")
    async def nudge(ctx, fired):
        if any(f.key == "bad" for f in fired):
            raise ValueError("cannot nudge")

    sent: list[str] = []

    @handlers.react_to_timer_batch("nudge", name="counter")
    async def count(ctx, fired):
        sent.extend(f.key for f in fired)

    async with sessionmaker() as session, session.begin():
        session.add(AutomationExecution(
            id=7, store_id="store_1", trigger="nudger", customer_id="bad", subject_id="bad",
            idempotency_key="nudge:bad", status="WAITING", step=0, created_at=clock.now(),
            updated_at=clock.now()))
    await schedule(sessionmaker, clock, "good", timedelta(minutes=1), kind="nudge")
    await schedule(sessionmaker, clock, "bad", timedelta(minutes=1), kind="nudge",
                   payload={"executionId": 7})
    clock.advance(timedelta(minutes=2))
    assert await TimerLoop(sessionmaker, settings_factory(), clock, handlers).fire_due() == 2
    async with sessionmaker() as session:
        assert set((await session.scalars(select(Customer.customer_id))).all()) == {
            "good", "bad"}
        execution = await session.get(AutomationExecution, 7)
    assert (execution.status, execution.error) == ("FAILED", "ValueError: cannot nudge")
    assert sorted(sent) == ["bad", "good"]
    assert await count_rows(sessionmaker, Timer) == 0  # fired: not retried
