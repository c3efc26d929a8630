"""Pull requests whose end is seen, not guessed.

nats-py's `fetch` returns when its own timer runs out, while the server may still be
serving that pull request; and a PING/PONG after it proves nothing, because the server's
consumer sends a request's messages from another goroutine than the one answering PING
(measured on nats-server 2.15: in 4 of 15 tries all 200 messages of a request arrived
after the PONG). A stopping intake then cannot know whether more messages, which JetStream
already counts as ours, are on their way: they would sit unacked until `ack_wait`.

Here every request is `{batch, expires, no_wait}`: the server answers with up to `batch`
messages and, unless the batch was filled, one status that ends it (404: no more
messages, 408: expired; 409: consumer trouble). `fetch` returns at that end, so once it has
returned nothing more can come for it.

This is stormd's one module using nats-py's private parts (the pull subscription's `_sub`,
`_nc`, `_nms`, `_deliver`; the subscription's `_pending_queue` and `_pending_size`):
tests/daemon/bus/test_nats_internals.py checks each against the installed release.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

from nats.js.client import JetStreamContext
from nats.js.errors import APIError

# Without an answer this long after a request's expiry, the request was lost with a
# connection (the server answers every request): give it up and send another.
GIVE_UP = 5.0
_ENDS = ("404", "408")
_HEARTBEAT = "100"


class RequestLost(Exception):
    """No answer to a pull request within its expiry plus GIVE_UP."""


class Puller:
    def __init__(self, psub: Any, wait: float):
        self.sub = psub._sub  # the pull subscription's inbox, as nats-py's fetch uses it
        self.nc = psub._nc
        self.next_subject = psub._nms
        self.inbox = psub._deliver
        self.wait = wait
        self.open = False  # a request is out and its end not seen

    async def fetch(self, batch: int) -> list[Any]:
        """Up to `batch` messages: those available now, else the first to come within
        `wait`; returns when the server has ended the request."""
        request = {"batch": batch, "expires": int(self.wait * 1e9), "no_wait": True}
        await self.nc.publish(self.next_subject, json.dumps(request).encode(), self.inbox)
        self.open = True
        msgs: list[Any] = []
        while len(msgs) < batch:
            msg = self._take() or await self._next()
            status = JetStreamContext.is_status_msg(msg)
            if not status:
                msgs.append(msg)
            elif status in _ENDS:
                break
            elif status != _HEARTBEAT:
                self.open = False
                raise APIError.from_msg(msg)
        self.open = False
        return msgs

    def _take(self) -> Any | None:
        queue = self.sub._pending_queue
        if queue.empty():
            return None
        msg = queue.get_nowait()
        self.sub._pending_size -= len(msg.data)
        return msg

    async def _next(self) -> Any:
        queue = self.sub._pending_queue
        try:
            msg = await asyncio.wait_for(queue.get(), self.wait + GIVE_UP)
        except TimeoutError:
            raise RequestLost from None
        self.sub._pending_size -= len(msg.data)
        return msg

    def leftovers(self) -> list[Any]:
        """Messages already received but not fetched (only after a request was given up
        or cut short): status messages dropped."""
        msgs = []
        while (msg := self._take()) is not None:
            if not JetStreamContext.is_status_msg(msg):
                msgs.append(msg)
        return msgs
