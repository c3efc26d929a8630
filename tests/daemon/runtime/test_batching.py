"""Group commit on both databases: a batch mixing new and already-applied events applies
only the new ones; a handler that wrote and then raised leaves nothing behind while the
rest of its batch commits."""

from __future__ import annotations

import json
from collections import Counter

from daemon_helpers import customer
from sqlalchemy import select

from stormd.daemon.runtime import batching
from stormd.daemon.runtime.batching import Delivery, GroupCommitter, Outcome
from stormd.schema.shop.customers import Customer
from stormd.schema.wire.events import parse_event


def delivery(env: dict) -> Delivery:
    subject = f"stormcom.events.{env['storeId']}.{env['type']}"
    return Delivery(event=parse_event(subject, json.dumps(env).encode(), "stormcom"))


async def test_a_batch_mixing_new_and_seen_events_applies_only_the_new(
    handlers, customer_handler, sessionmaker, settings_factory, clock, monkeypatch
):
    monkeypatch.setattr(batching, "BATCH_TIME_BUDGET", 600.0)  # all of it, however loaded
    envs = [customer(f"c{i}", id_=f"evt_mix_{i}") for i in range(8)]
    committer = GroupCommitter(sessionmaker, settings_factory(), clock, handlers)
    first = await committer.commit([[delivery(e)] for e in envs[:5]])
    second = await committer.commit([[delivery(e)] for e in envs[3:]])
    assert Counter(first.values()) == {Outcome.PROCESSED: 5}
    assert Counter(second.values()) == {Outcome.PROCESSED: 3, Outcome.DUPLICATE: 2}
    assert all(customer_handler[e["id"]] == 1 for e in envs)


async def test_a_handler_that_wrote_then_raised_leaves_no_trace(
    handlers, sessionmaker, settings_factory, clock, monkeypatch
):
    monkeypatch.setattr(batching, "BATCH_TIME_BUDGET", 600.0)  # all of it, however loaded

    @handlers.on_event("customer.upserted")
    async def write_then_maybe_fail(ctx, event):
        ctx.session.add(Customer(store_id=event.store_id, customer_id=event.data.customer_id,
                                 name=event.data.name))
        await ctx.session.flush()
        if event.data.name == "boom":
            raise ValueError("after writing")

    committer = GroupCommitter(sessionmaker, settings_factory(), clock, handlers)
    # The second failure happens in the careful rerun, inside its own SAVEPOINT.
    batch = [delivery(customer("ok1")), delivery(customer("bad", name="boom")),
             delivery(customer("ok2")), delivery(customer("bad2", name="boom"))]
    outcomes = await committer.commit([[d] for d in batch])
    assert [outcomes[d] for d in batch] == [
        Outcome.PROCESSED, Outcome.FAILED, Outcome.PROCESSED, Outcome.FAILED]
    assert batch[1].error == batch[3].error == "ValueError: after writing"
    async with sessionmaker() as session:
        ids = set((await session.execute(select(Customer.customer_id))).scalars())
    assert ids == {"ok1", "ok2"}
    again = await committer.commit([[batch[1]]])  # not marked processed: can be retried
    assert again[batch[1]] is Outcome.FAILED


async def test_a_batch_out_of_time_puts_the_rest_back_unclaimed(
    handlers, sessionmaker, settings_factory, clock, monkeypatch
):
    import asyncio

    monkeypatch.setattr(batching, "BATCH_TIME_BUDGET", 0.05)
    ran = []

    @handlers.on_event("customer.upserted")
    async def slow(ctx, event):
        ran.append(event.data.customer_id)
        await asyncio.sleep(0.03)

    committer = GroupCommitter(sessionmaker, settings_factory(), clock, handlers)
    batch = [delivery(customer(f"c{i}")) for i in range(5)]
    outcomes = await committer.commit([[d] for d in batch])
    done = [d for d in batch if outcomes[d] is Outcome.PROCESSED]
    rest = [d for d in batch if outcomes[d] is Outcome.SKIPPED]
    assert done and rest and len(done) + len(rest) == 5
    while rest:  # the next batches take the rest: run, not taken for duplicates
        again = await committer.commit([[d] for d in rest])
        assert Outcome.DUPLICATE not in again.values()
        rest = [d for d in rest if again[d] is Outcome.SKIPPED]
    assert sorted(ran) == [f"c{i}" for i in range(5)]
