"""daemon/bus/pull.py against a real nats-server: a fetch returns only once the server has
ended its pull request, so after it nothing more arrives that JetStream counts as
delivered to us (what a stopping intake relies on to leave nothing unacked)."""

from __future__ import annotations

import asyncio
import time

import nats
import pytest

from stormd.daemon.bus.pull import Puller


@pytest.fixture
async def consumer(nats_server):
    nc = await nats.connect(nats_server)
    js = nc.jetstream()
    await js.add_stream(name="PULL", subjects=["pull.>"])
    psub = await js.pull_subscribe("pull.>", durable="pull")
    yield js, psub
    await nc.close()


async def fetched_then_settled(puller: Puller, batch: int) -> list:
    """Fetch, ack, and check that nothing more comes for that request."""
    msgs = await puller.fetch(batch)
    for msg in msgs:
        await msg.ack()
    await asyncio.sleep(0.1)  # what the server still sent would be here by now
    assert puller.leftovers() == []
    return msgs


async def test_a_backlog_comes_in_full_batches_and_nothing_after_a_fetch(consumer):
    js, psub = consumer
    for i in range(1000):
        await js.publish_async("pull.x", str(i).encode())
    await js.publish_async_completed()
    puller = Puller(psub, wait=0.05)
    sizes = [len(await fetched_then_settled(puller, 200)) for _ in range(6)]
    assert sizes == [200, 200, 200, 200, 200, 0]
    info = await js.consumer_info("PULL", "pull")
    assert (info.num_ack_pending, info.num_pending, info.delivered.consumer_seq) == (0, 0, 1000)


async def test_a_trickle_is_fetched_as_it_comes_and_nothing_is_delivered_between_fetches(
    consumer
):
    js, psub = consumer

    async def trickle():
        for i in range(60):
            await js.publish("pull.x", str(i).encode())
            await asyncio.sleep(0.01)

    publisher = asyncio.create_task(trickle())
    puller = Puller(psub, wait=0.05)
    got = 0
    while not publisher.done() or got < 60:
        t0 = time.monotonic()
        got += len(await fetched_then_settled(puller, 200))
        assert time.monotonic() - t0 < 1.5  # ended by the server, not a client timer
    info = await js.consumer_info("PULL", "pull")
    assert got == 60 and info.num_ack_pending == 0 and info.num_pending == 0


async def test_a_process_stalled_mid_fetch_still_ends_with_the_request(consumer):
    """The client's clock runs out before its request is even written (the process was
    descheduled): the fetch still waits for the server's answer, and after it nothing
    more arrives. (nats-py's own fetch times out here and its 200 messages arrive later,
    delivered but unseen.)"""
    js, psub = consumer
    for i in range(400):
        await js.publish_async("pull.x", str(i).encode())
    await js.publish_async_completed()
    puller = Puller(psub, wait=0.05)
    for _ in range(2):
        fetch = asyncio.create_task(puller.fetch(200))
        await asyncio.sleep(0)  # the request is handed to the connection...
        time.sleep(0.3)  # ...and the process stalls before it is written
        msgs = await fetch
        assert len(msgs) == 200
        for msg in msgs:
            await msg.ack()
        await asyncio.sleep(0.1)
        assert puller.leftovers() == []
    info = await js.consumer_info("PULL", "pull")
    assert info.num_ack_pending == 0 and info.num_pending == 0
