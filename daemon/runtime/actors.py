"""Keyed actors: one mailbox per cart, customer, order, … (`Event.actor_key()`).

An actor's events are handled strictly in order, one batch at a time; different actors
share each group-commit batch (and, with `daemon.workers` > 1, run in concurrent batches).
Mailboxes are bounded: when one is full, or the runtime holds `max_pending` events in
total, `tell` waits — intake slows down, nothing is dropped.

Ready actors are served by priority (the value of the event at the head of the mailbox: a
high-value cart before a low one), then first come first served.

Supervision: when an actor's event fails, the actor is restarted — its unhandled events
go back to the front of its mailbox and it sleeps with exponential backoff before trying
again. An event that has failed `max_attempts` times is dead-lettered with its error and
the actor carries on with the next one. A batch the database could not take (BLOCKED:
locked past busy_timeout, unreachable) backs off the same way without counting against
its events.
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
import logging
from collections import deque
from collections.abc import Awaitable, Callable

from stormd.daemon.runtime.batching import Delivery, Outcome
from stormd.schema.metrics import ACTOR_RESTARTS, MAILBOX_DEPTH

log = logging.getLogger(__name__)

RunBatch = Callable[[list[list[Delivery]]], Awaitable[dict[Delivery, Outcome]]]
Settle = Callable[[Delivery, Outcome], Awaitable[None]]
BACKOFF_BASE = 0.05
BACKOFF_MAX = 5.0


def actor_kind(key: str) -> str:
    """`store:cart:123` -> `cart` (the bounded label of the mailbox-depth metric)."""
    parts = key.split(":", 2)
    return parts[1] if len(parts) > 2 else "other"


_depth_gauges: dict[str, object] = {}


def _depth_gauge(kind: str):
    gauge = _depth_gauges.get(kind)
    if gauge is None:
        gauge = _depth_gauges[kind] = MAILBOX_DEPTH.labels(kind)
    return gauge


class Actor:
    __slots__ = ("busy", "depth", "failures", "key", "kind", "mailbox", "queued", "waking")

    def __init__(self, key: str):
        self.key = key
        self.kind = actor_kind(key)
        self.depth = _depth_gauge(self.kind)
        self.mailbox: deque[Delivery] = deque()
        self.busy = False  # its events are in a running batch
        self.queued = False  # it is in the ready heap
        self.failures = 0  # consecutive failed attempts (drives the restart backoff)
        self.waking: asyncio.TimerHandle | None = None  # restart backoff in progress


class ActorSystem:
    def __init__(
        self, *, run_batch: RunBatch, settle: Settle, batch_size: int, mailbox_size: int,
        max_pending: int, max_attempts: int, workers: int = 1,
    ):
        self.run_batch = run_batch
        self.settle = settle
        self.batch_size = batch_size
        self.mailbox_size = mailbox_size
        self.max_pending = max_pending
        self.max_attempts = max_attempts
        self.workers = workers
        self._actors: dict[str, Actor] = {}
        self._ready: list[tuple[int, int, Actor]] = []
        self._seq = itertools.count()
        self._wake = asyncio.Event()
        self._space = asyncio.Event()  # set whenever events leave a mailbox
        self._idle = asyncio.Event()
        self._idle.set()
        self.pending = 0
        self._tasks: list[asyncio.Task] = []
        self._stopping = False

    def start(self) -> None:
        self._tasks = [asyncio.create_task(self._work(), name=f"actors-{i}")
                       for i in range(self.workers)]

    async def tell(self, delivery: Delivery, key: str) -> None:
        """Put an event in its actor's mailbox, waiting while the mailbox or the runtime
        is full (backpressure)."""
        actor = self._actors.get(key)
        if actor is None:
            actor = self._actors[key] = Actor(key)
        while len(actor.mailbox) >= self.mailbox_size or self.pending >= self.max_pending:
            self._space.clear()
            await self._space.wait()
            self._actors.setdefault(key, actor)
        actor.mailbox.append(delivery)
        self.pending += 1
        self._idle.clear()
        actor.depth.inc()
        self._make_ready(actor)

    def _make_ready(self, actor: Actor) -> None:
        if actor.busy or actor.queued or actor.waking is not None or not actor.mailbox:
            return
        actor.queued = True
        heapq.heappush(self._ready, (-actor.mailbox[0].priority, next(self._seq), actor))
        self._wake.set()

    def _restart(self, actor: Actor) -> None:
        actor.waking = None
        self._make_ready(actor)

    def _take(self) -> list[tuple[Actor, list[Delivery]]]:
        taken: list[tuple[Actor, list[Delivery]]] = []
        room = self.batch_size
        while self._ready and room > 0:
            _, _, actor = heapq.heappop(self._ready)
            actor.queued = False
            n = min(room, len(actor.mailbox))
            group = [actor.mailbox.popleft() for _ in range(n)]
            actor.busy = True
            room -= n
            taken.append((actor, group))
        self._space.set()
        return taken

    async def _work(self) -> None:
        while True:
            if not self._ready:
                if self._stopping and self.pending == 0:
                    return
                self._wake.clear()
                await self._wake.wait()
                continue
            taken = self._take()
            try:
                outcomes = await self.run_batch([group for _, group in taken])
            except Exception as exc:  # never lose a batch: treat it as failed
                log.exception("batch runner raised")
                outcomes = {d: Outcome.FAILED for _, g in taken for d in g}
                for d in outcomes:
                    d.error, d.reason = f"{type(exc).__name__}: {exc}", type(exc).__name__
            for actor, group in taken:
                await self._finish(actor, group, outcomes)
            self._space.set()
            if self.pending == 0:
                self._idle.set()
                if self._stopping:
                    self._wake.set()  # let the other workers see the end of the drain

    async def _finish(self, actor: Actor, group: list[Delivery], outcomes: dict) -> None:
        retry: list[Delivery] = []
        for d in group:
            outcome = outcomes.get(d, Outcome.FAILED)
            if outcome in (Outcome.SKIPPED, Outcome.BLOCKED):
                retry.append(d)
                continue
            if outcome is Outcome.FAILED:
                d.attempts += 1
                if d.attempts < self.max_attempts:
                    retry.append(d)
                    continue
                log.error("event %s %s failed %d times; dead-lettering: %s",
                          d.event.type, d.event.id, d.attempts, d.error)
            self.pending -= 1
            actor.depth.dec()
            await self.settle(d, outcome)
        actor.busy = False
        if retry:
            actor.mailbox.extendleft(reversed(retry))
        failed = any(outcomes.get(d) in (Outcome.FAILED, Outcome.BLOCKED) for d in group)
        if failed:
            actor.failures += 1
            ACTOR_RESTARTS.labels(actor.kind).inc()
            delay = min(BACKOFF_BASE * 2 ** (actor.failures - 1), BACKOFF_MAX)
            if actor.mailbox:
                actor.waking = asyncio.get_running_loop().call_later(delay, self._restart, actor)
                return
        else:
            actor.failures = 0
        if actor.mailbox:
            self._make_ready(actor)
        elif self._actors.get(actor.key) is actor and actor.waking is None:
            del self._actors[actor.key]  # idle actors cost nothing: made again on demand

    async def drain(self, timeout: float | None = None) -> bool:
        """Handle every queued event, then stop the workers; False if `timeout` ran out."""
        self._stopping = True
        self._wake.set()
        try:
            await asyncio.wait_for(asyncio.gather(*self._tasks), timeout)
            return True
        except TimeoutError:
            return False

    async def wait_idle(self) -> None:
        await self._idle.wait()

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        for actor in self._actors.values():
            if actor.waking is not None:
                actor.waking.cancel()

    def depth(self) -> int:
        return self.pending
