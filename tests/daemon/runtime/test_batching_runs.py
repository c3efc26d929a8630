"""Batch dispatch on both databases: a round's run of one store and one type goes to a
set-based handler in one call and commits with the batch; a batch handler that raises on
one event's data leaves that event to be retried (and in the end dead-lettered) while
the others of its run commit exactly once; one actor's events are handled in order; the
real set-based handlers give the same rows a run at a time as one event at a time."""

from __future__ import annotations

import json
from collections import Counter
from datetime import timedelta

import pytest
from daemon_helpers import customer, envelope
from sqlalchemy import func, insert, select

from stormd.daemon.runtime import batching
from stormd.daemon.runtime.batching import Delivery, GroupCommitter, Outcome, runs
from stormd.daemon.runtime.rescoring import RescoreLoop
from stormd.handlers.wiring import build_registry
from stormd.schema.db.upsert import upsert_rows
from stormd.schema.marketing.automations import AutomationExecution
from stormd.schema.marketing.messages import EmailEvent, Message
from stormd.schema.marketing.rfm import CustomerLifecycleMetrics
from stormd.schema.marketing.segments import RescoreQueue
from stormd.schema.runtime.inbox import ProcessedEvent
from stormd.schema.runtime.timers import Timer
from stormd.schema.shop.customers import Customer
from stormd.schema.wire.events import parse_event


@pytest.fixture(autouse=True)
def no_time_budget(monkeypatch):
    """Every event of these batches runs, however loaded the machine (the budget that
    puts the rest of a slow batch back has its own test)."""
    monkeypatch.setattr(batching, "BATCH_TIME_BUDGET", 600.0)


def delivery(env: dict) -> Delivery:
    subject = f"stormcom.events.{env['storeId']}.{env['type']}"
    return Delivery(event=parse_event(subject, json.dumps(env).encode(), "stormcom"))


async def count(sessionmaker, stmt) -> list:
    async with sessionmaker() as session:
        return list((await session.execute(stmt)).all())


def record_runs(handlers, fail_on: str | None = None) -> list[list[tuple[str, str]]]:
    """A batch handler for customer.upserted that appends one email_events row per event
    (no unique key: a second application would show as a second row) and records each
    call's (customer, name) pairs; a name equal to `fail_on` makes the call raise after
    writing."""
    calls: list[list[tuple[str, str]]] = []

    @handlers.on_event_batch("customer.upserted")
    async def write_run(ctx, events):
        calls.append([(e.data.customer_id, e.data.name) for e in events])
        await ctx.session.execute(insert(EmailEvent), [{
            "store_id": ctx.store_id, "message_id": e.id, "customer_id": e.data.customer_id,
            "type": "SENT", "url": e.data.name, "occurred_at": e.occurred_at} for e in events])
        if any(e.data.name == fail_on for e in events):
            raise ValueError("bad name in the run")

    return calls


async def test_a_run_goes_to_the_batch_handler_in_one_call_and_commits_every_event(
    handlers, sessionmaker, settings_factory, clock
):
    calls = record_runs(handlers)
    batch = [delivery(customer(f"c{i}", name=f"n{i}")) for i in range(6)]
    committer = GroupCommitter(sessionmaker, settings_factory(), clock, handlers)
    outcomes = await committer.commit([[d] for d in batch])
    assert Counter(outcomes.values()) == {Outcome.PROCESSED: 6}
    assert [len(c) for c in calls] == [6]
    rows = await count(sessionmaker, select(EmailEvent.message_id))
    assert sorted(r[0] for r in rows) == sorted(d.event.id for d in batch)
    claimed = await count(sessionmaker, select(ProcessedEvent.event_id))
    assert {r[0] for r in claimed} == {d.event.id for d in batch}

    again = await committer.commit([[delivery(customer("c9"))], *([d] for d in batch[:3])])
    assert Counter(again.values()) == {Outcome.PROCESSED: 1, Outcome.DUPLICATE: 3}
    assert [len(c) for c in calls] == [6, 1]  # repeats reach no handler
    assert len(await count(sessionmaker, select(EmailEvent.id))) == 7


async def test_a_batch_handler_failing_on_one_event_commits_the_rest_exactly_once(
    handlers, sessionmaker, settings_factory, clock
):
    calls = record_runs(handlers, fail_on="boom")
    good = [delivery(customer(f"ok{i}", name=f"n{i}")) for i in range(4)]
    bad = delivery(customer("bad", name="boom"))
    behind = delivery(customer("bad", name="after the bad one"))  # same actor, later
    groups = [[good[0]], [good[1]], [bad, behind], [good[2]], [good[3]]]
    committer = GroupCommitter(sessionmaker, settings_factory(), clock, handlers)
    outcomes = await committer.commit(groups)

    assert [outcomes[d] for d in good] == [Outcome.PROCESSED] * 4
    assert outcomes[bad] is Outcome.FAILED and bad.error == "ValueError: bad name in the run"
    assert outcomes[behind] is Outcome.SKIPPED  # the actor's order holds: retried after it
    assert len(calls[0]) == 5  # the whole run first, then the careful rerun one by one
    assert all(len(c) == 1 for c in calls[1:])
    rows = Counter(r[0] for r in await count(sessionmaker, select(EmailEvent.message_id)))
    assert rows == {d.event.id: 1 for d in good}
    claimed = {r[0] for r in await count(sessionmaker, select(ProcessedEvent.event_id))}
    assert claimed == {d.event.id for d in good}

    # Not marked processed: the retry runs it again (and fails again, towards the DLQ),
    # while its good neighbours are absorbed as duplicates.
    retry = await committer.commit([[bad, behind], [good[0]]])
    assert retry[bad] is Outcome.FAILED and retry[behind] is Outcome.SKIPPED
    assert retry[good[0]] is Outcome.DUPLICATE
    assert len(await count(sessionmaker, select(EmailEvent.id))) == 4


async def test_two_events_of_one_actor_in_one_batch_run_in_order_the_later_wins(
    handlers, sessionmaker, settings_factory, clock
):
    calls = record_runs(handlers)

    @handlers.on_event_batch("customer.upserted")
    async def keep_name(ctx, events):
        # A set-based upsert: had one call held both events of c1, the row alone might
        # not tell; `calls` does.
        await upsert_rows(ctx.session, Customer.__table__, [
            {"store_id": ctx.store_id, "customer_id": e.data.customer_id, "name": e.data.name}
            for e in events], ["store_id", "customer_id"])

    first, later = delivery(customer("c1", name="First")), delivery(customer("c1", name="Later"))
    others = [delivery(customer(f"o{i}")) for i in range(3)]
    committer = GroupCommitter(sessionmaker, settings_factory(), clock, handlers)
    outcomes = await committer.commit([[others[0]], [first, later], [others[1]], [others[2]]])
    assert Counter(outcomes.values()) == {Outcome.PROCESSED: 5}
    assert all(len({cid for cid, _ in call}) == len(call) for call in calls)
    seen = [name for call in calls for cid, name in call if cid == "c1"]
    assert seen == ["First", "Later"]
    [(name,)] = await count(sessionmaker, select(Customer.name).where(
        Customer.customer_id == "c1"))
    assert name == "Later"


async def test_real_set_based_handlers_take_runs_of_engagement_consent_and_sign_ups(
    sessionmaker, settings_factory, clock
):
    registry = build_registry()
    settings = settings_factory()
    committer = GroupCommitter(sessionmaker, settings, clock, registry)
    now = clock.now()
    # Sign-ups first: customers a run of email events and consent changes refer to.
    signups = [delivery(envelope("customer.upserted", {
        "customerId": f"new{i}", "name": f"New {i}", "email": f"new{i}@mail.bd",
        "createdAt": (now - timedelta(hours=2)).isoformat()})) for i in range(3)]
    old = delivery(envelope("customer.upserted", {
        "customerId": "old", "name": "Old", "email": "old@mail.bd",
        "createdAt": "2025-01-01T00:00:00+06:00"}))
    outcomes = await committer.commit([[d] for d in [*signups, old]])
    assert set(outcomes.values()) == {Outcome.PROCESSED}
    executions = await count(sessionmaker, select(
        AutomationExecution.customer_id, AutomationExecution.status).where(
        AutomationExecution.trigger == "welcome"))
    assert sorted(c for c, _ in executions) == ["new0", "new1", "new2"]
    timers = await count(sessionmaker, select(Timer.key).where(Timer.kind == "automation.welcome"))
    assert sorted(k for (k,) in timers) == [f"welcome:new{i}:{n}" for i in range(3)
                                          for n in (1, 2)]
    first = await count(sessionmaker, select(Message.customer_id).where(
        Message.trigger == "welcome"))
    assert sorted(c for (c,) in first) == ["new0", "new1", "new2"]

    # One stormd message id lends its customer and campaign; a foreign id stays as given.
    async with sessionmaker() as session:
        message_id = await session.scalar(select(Message.id).where(
            Message.customer_id == "new1"))
        await session.execute(Message.__table__.update().where(Message.id == message_id)
                              .values(campaign_id="cmp_1"))
        await session.commit()
    opens = [delivery(envelope("email.open", {"messageId": str(message_id)})),
             delivery(envelope("email.open", {"messageId": "ext-42", "customerId": "new2"}))]
    consents = [delivery(envelope("customer.consent_changed",
                                  {"customerId": "new0", "channel": "sms", "optedIn": False})),
                delivery(envelope("customer.consent_changed",
                                  {"customerId": "old", "channel": "all", "optedIn": False})),
                delivery(envelope("customer.consent_changed",
                                  {"customerId": "stranger", "channel": "email",
                                   "optedIn": False}))]
    outcomes = await committer.commit([[d] for d in [*opens, *consents]])
    assert set(outcomes.values()) == {Outcome.PROCESSED}
    engaged = await count(sessionmaker, select(
        EmailEvent.message_id, EmailEvent.customer_id, EmailEvent.campaign_id, EmailEvent.type))
    assert sorted(engaged) == sorted([(str(message_id), "new1", "cmp_1", "OPEN"),
                                      ("ext-42", "new2", None, "OPEN")])
    consent = {r[0]: r[1:] for r in await count(sessionmaker, select(
        Customer.customer_id, Customer.consent_email, Customer.consent_sms,
        Customer.consent_whatsapp, Customer.consent_push))}
    assert consent["new0"] == (True, False, True, True)
    assert consent["old"] == (False, False, False, False)
    assert consent["stranger"][0] is False  # an opt-out is never forgotten
    assert consent["new1"] == (True, True, True, True)
    assert (await count(sessionmaker, select(func.count()).select_from(ProcessedEvent))) == [(9,)]


def test_runs_follow_each_actor_in_order_with_few_runs():
    up = [delivery(customer(f"c{i}")) for i in range(4)]
    consent = [delivery(envelope("customer.consent_changed",
                                 {"customerId": f"c{i}", "channel": "sms", "optedIn": False}))
               for i in range(3)]
    # one group per actor (customer c0 … c3), in the order the actors were taken
    groups = [[up[0], consent[0]], [consent[1]], [up[2], consent[2]], [up[3]]]
    got = list(runs(groups))
    # Taking the k-th event of every group in turn would need three runs here.
    assert got == [[up[0], up[2], up[3]], [consent[0], consent[1], consent[2]]]
    assert sorted(map(id, (d for r in got for d in r))) == sorted(
        map(id, (d for g in groups for d in g)))
    assert list(runs([])) == [] and list(runs([[up[0]]])) == [[up[0]]]


async def test_a_database_locked_past_busy_timeout_blocks_the_batch_without_using_attempts(
    handlers, db_url, settings_factory, clock
):
    """Another connection holds SQLite's write lock longer than the daemon's busy timeout
    (a long nightly job): the batch is retried with backoff until the lock is released,
    and no event is dead-lettered for it however many attempts that took."""
    if not db_url.startswith("sqlite"):
        pytest.skip("SQLite's single write lock")
    import asyncio
    import sqlite3

    from sqlalchemy.ext.asyncio import create_async_engine

    from stormd.daemon.runtime.actors import ActorSystem
    from stormd.schema.db.engine import make_sessionmaker

    calls = record_runs(handlers)
    engine = create_async_engine(db_url, connect_args={"timeout": 0.1})  # busy_timeout 100 ms
    committer = GroupCommitter(make_sessionmaker(engine), settings_factory(), clock, handlers)
    settled: list[tuple[str, Outcome, str | None]] = []

    async def settle(d, outcome):
        settled.append((d.event.id, outcome, d.error))

    actors = ActorSystem(run_batch=committer.commit, settle=settle, batch_size=100,
                         mailbox_size=100, max_pending=1000, max_attempts=2)
    holder = sqlite3.connect(db_url.split("///", 1)[1], isolation_level=None)
    holder.execute("BEGIN IMMEDIATE")
    try:
        batch = [delivery(customer(f"c{i}", name=f"n{i}")) for i in range(3)]
        blocked = await committer.commit([[d] for d in batch])
        assert set(blocked.values()) == {Outcome.BLOCKED}
        assert "database is locked" in batch[0].error
        actors.start()
        for d in batch:
            await actors.tell(d, d.event.actor_key())
        await asyncio.sleep(1.0)  # several attempts, more than max_attempts
        assert settled == []
    finally:
        holder.rollback()
        holder.close()
    await asyncio.wait_for(actors.wait_idle(), 15)
    await actors.stop()
    await engine.dispose()
    assert sorted((i, o) for i, o, _ in settled) == sorted(
        (d.event.id, Outcome.PROCESSED) for d in batch)
    assert [len(c) for c in calls] == [3]  # handlers ran once, when the lock was free
    rows = Counter(r[0] for r in await count(committer.sessionmaker,
                                             select(EmailEvent.message_id)))
    assert rows == {d.event.id: 1 for d in batch}


async def test_stores_are_ensured_once_a_transaction_and_never_lost_to_a_rollback(
    sessionmaker, settings_factory, clock
):
    from stormd.handlers.kernel.context import HandlerContext
    from stormd.handlers.shop.stores import ensure_store
    from stormd.schema.shop.stores import Store

    settings = settings_factory()
    async with sessionmaker() as session:
        async with session.begin():
            ctx = HandlerContext(session, settings, clock, "s1")
            nested = await session.begin_nested()
            await ensure_store(ctx.savepoint())
            await nested.rollback()  # the savepoint's insert is gone: s1 is not remembered
            await ensure_store(ctx)
            await ensure_store(ctx.for_store("s2"))
            await ensure_store(ctx.for_store("s2"))
        async with session.begin():
            await ensure_store(HandlerContext(session, settings, clock, "s3"))
            await session.rollback()
        async with session.begin():  # a new transaction: its own effects, so again
            await ensure_store(HandlerContext(session, settings, clock, "s3"))
    ids = await count(sessionmaker, select(Store.id))
    assert sorted(i for (i,) in ids) == ["s1", "s2", "s3"]


async def test_a_batch_rescores_its_customers_once_with_every_event_of_it_applied(
    sessionmaker, settings_factory, clock
):
    """Re-scoring is put off past the batch: its customers are queued once (not once a
    run of each type) and the re-scoring loop's pass writes lifecycle rows that count
    every order of the batch, including a status change in a later run of it, and a
    customer only named by that change."""
    registry = build_registry()
    settings = settings_factory()
    committer = GroupCommitter(sessionmaker, settings, clock, registry)
    item = [{"productId": "p1", "quantity": 1, "unitPrice": "500"}]
    batch = [
        [delivery(envelope("order.created", {"orderId": "o1", "customerId": "a",
                                             "status": "PAID", "total": "500", "items": item})),
         delivery(envelope("order.status_changed", {"orderId": "o1", "status": "CANCELLED"}))],
        [delivery(envelope("order.created", {"orderId": "o2", "customerId": "b",
                                             "status": "PAID", "total": "700", "items": item}))],
        [delivery(envelope("order.created", {"orderId": "o3", "customerId": "b",
                                             "status": "DELIVERED", "total": "300",
                                             "items": item}))],
    ]
    assert len(list(runs(batch))) == 2  # the creations, then the status change
    outcomes = await committer.commit(batch)
    assert set(outcomes.values()) == {Outcome.PROCESSED}
    lifecycle = select(CustomerLifecycleMetrics.customer_id,
                       CustomerLifecycleMetrics.orders_count,
                       CustomerLifecycleMetrics.orders_total)
    assert await count(sessionmaker, lifecycle) == []  # not in the events' transaction
    queued = await count(sessionmaker, select(RescoreQueue.customer_id))
    assert sorted(c for (c,) in queued) == ["a", "b"]

    assert await RescoreLoop(sessionmaker, settings, clock, registry).rescore_queued() == 2
    rows = await count(sessionmaker, lifecycle)
    assert {c: (n, int(total)) for c, n, total in rows} == {"a": (0, 0), "b": (2, 1000)}
    assert await count(sessionmaker, select(RescoreQueue.customer_id)) == []
