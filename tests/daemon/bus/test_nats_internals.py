"""The private parts of nats-py that daemon/bus/pull.py builds on, one test each, against a
real nats-server.

pyproject.toml bounds nats-py above the releases these tests passed on. Before the bound
is raised, run this file against the new release: a failure names the release, the part
that changed and what in stormd relies on it.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from contextlib import contextmanager
from importlib.metadata import version

import nats
import pytest
from nats.aio.subscription import Subscription
from nats.js.client import JetStreamContext
from nats.js.errors import APIError

PULL = "daemon/bus/pull.py"


@contextmanager
def relied_on(what: str, use: str) -> Iterator[None]:
    """Any failure inside becomes one message naming the nats-py release, the part, and
    what the Puller does with it."""
    try:
        yield
    except Exception as exc:
        pytest.fail(f"nats-py {version('nats-py')} no longer has {what}, which {PULL} {use}: "
                    f"check the Puller against this release ({type(exc).__name__}: {exc})",
                    pytrace=False)


@pytest.fixture
async def pull(nats_server):
    nc = await nats.connect(nats_server)
    js = nc.jetstream()
    await js.add_stream(name="INTERNALS", subjects=["internals.>"])
    psub = await js.pull_subscribe("internals.>", durable="guard")
    yield nc, psub
    await nc.close()


async def queued(sub, n: int = 1) -> None:
    for _ in range(200):
        if sub._pending_queue.qsize() >= n:
            return
        await asyncio.sleep(0.01)


async def test_pull_subscription_fields(pull):
    nc, psub = pull
    with relied_on("PullSubscription._sub, ._nc, ._nms and ._deliver (the inbox "
                   "subscription, the client, the next-message subject, the inbox)",
                   "sends its own pull requests with"):
        assert isinstance(psub._sub, Subscription)
        assert psub._nc is nc
        assert psub._nms == "$JS.API.CONSUMER.MSG.NEXT.INTERNALS.guard"
        assert psub._deliver == psub._sub.subject


async def test_subscription_pending_queue_and_size(pull):
    nc, psub = pull
    with relied_on("Subscription._pending_queue and ._pending_size (the asyncio.Queue "
                   "the inbox's messages land in, and the byte count `pending_bytes` "
                   "reports)", "takes messages from, keeping the count as nats-py does"):
        sub = psub._sub
        await nc.publish(psub._deliver, b"hello")
        await queued(sub)
        assert isinstance(sub._pending_queue, asyncio.Queue)
        assert sub._pending_size == sub.pending_bytes == 5
        msg = sub._pending_queue.get_nowait()
        sub._pending_size -= len(msg.data)
        assert msg.data == b"hello" and sub.pending_bytes == 0


async def test_status_messages_are_read_and_raised(pull):
    """A no_wait request on an empty consumer ends with a 404 status message."""
    nc, psub = pull
    with relied_on("JetStreamContext.is_status_msg(msg) and APIError.from_msg(msg) (the "
                   "status code of a message; the error for one)",
                   "ends a request at a 404/408 status and raises other statuses with"):
        request = {"batch": 1, "no_wait": True}
        await nc.publish(psub._nms, json.dumps(request).encode(), psub._deliver)
        await queued(psub._sub)
        msg = psub._sub._pending_queue.get_nowait()
        assert JetStreamContext.is_status_msg(msg) == "404"
        try:
            error = APIError.from_msg(msg)
        except APIError as raised:
            error = raised
        assert isinstance(error, APIError) and error.code == 404
