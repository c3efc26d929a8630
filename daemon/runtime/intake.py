"""Intake: fetch from the durable pull consumer, validate, dead-letter rejects, hand valid
events to their actors, and ack each message after its batch has committed.

The path reads in one direction: subject -> `parse_event` -> actor mailbox -> group commit
-> ack. A reject never blocks the events behind it: it is dead-lettered and acked on the
spot. A redelivery of an event still in flight joins it (acked together: in flight and in
the inbox an event is known by its store and id), and the database inbox absorbs repeats
beyond the JetStream dedupe window.

The limits of docs/events.md are checked by `parse_event`, before any handler, against
the daemon's clock at receipt. Nothing a message holds can end the intake task: a parse
that raises anything unexpected is dead-lettered too. A failed fetch marks intake down
(`health`) until one works; should the task end all the same, the daemon's supervisor
restarts it (`restart`).
"""

from __future__ import annotations

import asyncio
import logging
import time
from datetime import datetime
from decimal import Decimal
from typing import Any

from stormd.config.clock import Clock
from stormd.config.settings import Settings
from stormd.daemon.bus.deadletters import DeadLetters
from stormd.daemon.bus.pull import Puller, RequestLost
from stormd.daemon.runtime.actors import ActorSystem
from stormd.daemon.runtime.batching import Delivery, Outcome
from stormd.schema.metrics import EVENT_SECONDS, ComponentHealth, event_counter
from stormd.schema.wire.events import Event, EventRejected, parse_event, subject_parts

log = logging.getLogger(__name__)
# A fetch returns what is available at once, else the first events to come within this
# wait (a pull request's `expires`): short, so that stopping never waits long for the end
# of the last request, while a backlog still comes in full batches.
FETCH_WAIT = 0.05


def event_priority(event: Event) -> int:
    """Mailbox priority: the money at stake (cart or order total, whole units)."""
    total = getattr(event.data, "total", None)
    return int(total) if isinstance(total, Decimal) else 0


class Intake:
    def __init__(self, psub: Any, settings: Settings, actors: ActorSystem, dead: DeadLetters,
                 clock: Clock | None = None):
        self.psub = psub
        self.clock = clock or Clock()
        self.health = ComponentHealth("intake", cap=5.0)  # NATS back: fetching within 5 s
        self.puller = Puller(psub, FETCH_WAIT)
        self.settings = settings
        self.prefix = settings.nats.subject_prefix
        self.actors = actors
        self.dead = dead
        self.max_attempts = settings.nats.max_deliver
        self.inflight: dict[tuple[str, str], Delivery] = {}  # by (store, event id)
        self._stop = asyncio.Event()
        self._task: asyncio.Task | None = None
        self._keepalive: asyncio.Task | None = None
        self.fetching = False

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="intake")
        self._keepalive = asyncio.create_task(self._keep_alive(), name="intake-keepalive")
        self.health.started()

    @property
    def task(self) -> asyncio.Task | None:
        return self._task

    def restart(self) -> None:
        """Fetch again after the task ended unexpectedly (events in flight stay in flight)."""
        if not self._stop.is_set():
            self._task = asyncio.create_task(self._run(), name="intake")

    async def stop(self) -> None:
        """Stop fetching (in-flight events are left to the actors' drain).

        The last fetch returns when the server has ended its pull request (daemon/bus/pull.py),
        so nothing more that JetStream counts as ours can arrive after it. Only if that
        request was lost with a connection can messages be waiting in the subscription:
        they are taken in and drained too, not left unacked until `ack_wait`."""
        self._stop.set()
        if self._task is not None:  # a fetch lasts FETCH_WAIT + pull.GIVE_UP at the most
            await asyncio.gather(self._task, return_exceptions=True)
        received = time.monotonic()
        for msg in self.puller.leftovers():
            await self._accept(msg, received)

    async def close(self) -> None:
        """After the drain: stop telling JetStream that events are still being worked on."""
        self._keepalive.cancel()
        await asyncio.gather(self._keepalive, return_exceptions=True)

    async def _keep_alive(self) -> None:
        """Events waiting behind slow handlers or a restarting actor are still ours: tell
        JetStream (`+WPI`, in progress) well within `ack_wait` so it neither redelivers
        them nor counts deliveries towards the dead-letter limit."""
        every = max(self.settings.nats.ack_wait.total_seconds() / 3, 0.5)
        while True:
            await asyncio.sleep(every)
            for delivery in list(self.inflight.values()):
                for msg in delivery.msgs:
                    try:
                        await msg.in_progress()
                    except Exception as exc:  # acked meanwhile, or disconnected
                        log.debug("in_progress failed: %s", exc)

    async def _run(self) -> None:
        batch = self.settings.nats.batch_size
        while not self._stop.is_set():
            room = self.actors.max_pending - self.actors.pending
            if room <= 0:
                await asyncio.sleep(0.001)
                continue
            try:
                self.fetching = True
                msgs = await self.puller.fetch(min(batch, room))
            except RequestLost:
                log.debug("a pull request got no answer; sending another")
                continue
            except Exception as exc:  # disconnected, server restarting, ...
                if self._stop.is_set():
                    break
                self.fetching = False
                await asyncio.sleep(self.health.failed(exc))
                continue
            self.health.ok()
            received = time.monotonic()
            at = self.clock.now() if msgs else None
            for msg in msgs:
                await self._accept(msg, received, at)

    async def _accept(self, msg: Any, received: float, at: datetime | None = None
                      ) -> None:
        try:
            event = parse_event(msg.subject, msg.data, self.prefix, at or self.clock.now())
        except EventRejected as rej:
            await self._dead_letter(msg, rej.reason, rej.store_id, rej.type, "rejected")
            return
        except Exception as exc:  # a parser bug must not end intake: the event is kept
            log.exception("could not read the event on %s", msg.subject)
            store, type_ = subject_parts(msg.subject, self.prefix)
            await self._dead_letter(msg, f"could not be read ({type(exc).__name__})",
                                    store, type_, "rejected")
            return
        key = (event.store_id, event.id)
        same = self.inflight.get(key)
        if same is not None:
            same.msgs.append(msg)
            return
        delivered = _delivered(msg)
        if delivered > 2 * self.max_attempts:  # processes keep dying on it: a poison pill
            await self._dead_letter(
                msg, f"delivered {delivered} times without being handled",
                event.store_id, event.type, "dead_lettered",
            )
            return
        # Earlier deliveries count as attempts, but a redelivered event always gets one more
        # run: it may have been applied already (the inbox then acks it as a duplicate).
        attempts = min(delivered - 1, self.max_attempts - 1)
        d = Delivery(event=event, msgs=[msg], received=received, attempts=attempts,
                     priority=event_priority(event))
        self.inflight[key] = d
        await self.actors.tell(d, event.actor_key())

    async def _dead_letter(self, msg: Any, reason: str, store: str | None, type_: str | None,
                           outcome: str) -> None:
        try:
            await self.dead.publish(msg, reason, store, type_)
        except Exception as exc:  # NATS trouble: leave it unacked, it comes back
            log.warning("could not dead-letter %s (%s); it will be redelivered", msg.subject, exc)
            return
        event_counter(type_, outcome).inc()
        await _ack(msg)

    async def settle(self, d: Delivery, outcome: Outcome) -> None:
        """Called by the actors once a delivery's fate is committed: ack it (after
        dead-lettering it if it failed for good)."""
        self.inflight.pop((d.event.store_id, d.event.id), None)
        if outcome is Outcome.FAILED:
            for msg in d.msgs[:1]:
                why = f"handling failed {max(d.attempts, 1)} times: {d.reason or 'error'}"
                await self._dead_letter(msg, why, d.event.store_id, d.event.type,
                                        "dead_lettered")
            for msg in d.msgs[1:]:
                await _ack(msg)
            return
        event_counter(d.event.type, outcome.value).inc()
        if outcome is Outcome.PROCESSED:
            EVENT_SECONDS.observe(time.monotonic() - d.received)
        for msg in d.msgs:
            await _ack(msg)


def _delivered(msg: Any) -> int:
    try:
        return msg.metadata.num_delivered or 1
    except Exception:
        return 1


async def _ack(msg: Any) -> None:
    try:
        await msg.ack()
    except Exception as exc:  # lost ack: JetStream redelivers, the inbox absorbs it
        log.debug("ack failed: %s", exc)
