"""The actor runtime on its own: per-key order, priority between keys, backpressure, and
supervision (restart with backoff, dead letter after N failures)."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime

from stormd.daemon.runtime.actors import ActorSystem
from stormd.daemon.runtime.batching import Delivery, Outcome
from stormd.schema.wire.events import Event, parse_event


def event(key: str, i: int, total: int = 0) -> Event:
    import json

    body = {"id": f"{key}-{i}", "type": "cart.updated", "storeId": "s",
            "occurredAt": datetime(2026, 11, 24, tzinfo=UTC).isoformat(),
            "data": {"cartId": key, "items": [], "total": total}}
    return parse_event("stormcom.events.s.cart.updated", json.dumps(body).encode(), "stormcom")


class Recorder:
    """A batch runner and settle callback that record what the runtime asked for."""

    def __init__(self, fail: set[str] = frozenset()):
        self.batches: list[list[str]] = []
        self.settled: list[tuple[str, Outcome]] = []
        self.fail = set(fail)
        self.gate = asyncio.Event()
        self.gate.set()

    async def run_batch(self, groups):
        await self.gate.wait()
        self.batches.append([d.event.id for g in groups for d in g])
        out = {}
        for g in groups:
            bad = False
            for d in g:
                if bad:
                    out[d] = Outcome.SKIPPED
                elif d.event.id in self.fail:
                    d.error = "boom"
                    out[d] = Outcome.FAILED
                    bad = True
                else:
                    out[d] = Outcome.PROCESSED
        return out

    async def settle(self, d, outcome):
        self.settled.append((d.event.id, outcome))


def system(rec: Recorder, **kw) -> ActorSystem:
    opts = dict(batch_size=100, mailbox_size=100, max_pending=1000, max_attempts=3)
    opts.update(kw)
    return ActorSystem(run_batch=rec.run_batch, settle=rec.settle, **opts)


async def tell(actors, key, i, total=0):
    e = event(key, i, total)
    await actors.tell(Delivery(event=e, priority=total), e.actor_key())


async def test_a_high_value_cart_is_handled_before_a_low_one():
    rec = Recorder()
    rec.gate.clear()
    actors = system(rec, batch_size=1)
    actors.start()
    await tell(actors, "warmup", 0)
    await asyncio.sleep(0.01)  # the worker holds the warm-up batch at the gate
    await tell(actors, "cheap", 1, total=200)
    await tell(actors, "pricey", 1, total=25000)
    await tell(actors, "middling", 1, total=3000)
    rec.gate.set()
    await actors.drain(5)
    assert rec.batches == [["warmup-0"], ["pricey-1"], ["middling-1"], ["cheap-1"]]


async def test_one_keys_events_stay_in_order_while_keys_share_batches():
    rec = Recorder()
    actors = system(rec)
    for i in range(5):
        await tell(actors, "a", i)
        await tell(actors, "b", i)
    actors.start()
    await actors.drain(5)
    done = [eid for eid, _ in rec.settled]
    assert [e for e in done if e.startswith("a")] == [f"a-{i}" for i in range(5)]
    assert len(rec.batches) == 1  # both actors in one group commit


async def test_a_full_mailbox_makes_the_sender_wait_and_drops_nothing():
    rec = Recorder()
    rec.gate.clear()
    actors = system(rec, mailbox_size=2, batch_size=1)
    actors.start()
    for i in range(3):
        await tell(actors, "k", i)  # the first is taken by the worker, two wait
    blocked = asyncio.create_task(tell(actors, "k", 3))
    await asyncio.sleep(0.05)
    assert not blocked.done()
    rec.gate.set()
    await asyncio.wait_for(blocked, 5)
    await actors.drain(5)
    assert [e for e, _ in rec.settled] == ["k-0", "k-1", "k-2", "k-3"]


async def test_a_failing_event_restarts_its_actor_then_is_dead_lettered_after_n_attempts():
    rec = Recorder(fail={"k-0"})
    actors = system(rec, max_attempts=3)
    await tell(actors, "k", 0)
    await tell(actors, "k", 1)
    await tell(actors, "other", 0)
    actors.start()
    await actors.drain(5)
    assert ("k-0", Outcome.FAILED) in rec.settled
    assert sum("k-0" in b for b in rec.batches) == 3
    done = [e for e, o in rec.settled]
    assert done.index("k-0") < done.index("k-1")  # order kept across the restarts
    assert ("other-0", Outcome.PROCESSED) in rec.settled
