"""The daemon's wiring and lifecycle: start every part in order, run until SIGTERM/SIGINT,
then drain (stop fetching, finish in-flight events, commit, ack, stop the delivery
pipeline, close) within `daemon.shutdown_grace`.

Start order: embedded nats-server (if configured) -> database schema -> handlers -> NATS
connection, streams and consumer -> delivery pipeline, API, HTTP -> timers, cron, relay,
actors -> intake last, so nothing is fetched before everything that handles it is up ->
the supervisor (daemon/runtime/supervision.py), which watches every part until `stop()`.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import signal
import time
from pathlib import Path
from typing import Any

from sqlalchemy import text

from stormd.config.clock import Clock
from stormd.config.secrets import mask_url
from stormd.config.settings import Settings
from stormd.daemon.bus.broker import connect, ensure_streams, pull_subscription, server_urls
from stormd.daemon.bus.deadletters import DeadLetters
from stormd.daemon.bus.embedded import EmbeddedNats
from stormd.daemon.bus.requests import ApiServer
from stormd.daemon.http.server import HttpServers
from stormd.daemon.runtime import systemd
from stormd.daemon.runtime.actors import ActorSystem
from stormd.daemon.runtime.batching import GroupCommitter
from stormd.daemon.runtime.cron import CronLoop
from stormd.daemon.runtime.intake import Intake
from stormd.daemon.runtime.relay import Relay
from stormd.daemon.runtime.rescoring import RescoreLoop
from stormd.daemon.runtime.scheduler import TimerLoop
from stormd.daemon.runtime.supervision import Supervisor, task_problem
from stormd.handlers.kernel.effects import Effects
from stormd.handlers.kernel.registry import HandlerRegistry
from stormd.handlers.wiring import build_registry
from stormd.plugins.delivery import webhooks
from stormd.plugins.delivery.pipeline import DeliveryPipeline
from stormd.schema.db.engine import make_engine, make_sessionmaker
from stormd.schema.metrics import declare_reactions, declare_series, load_segment_members
from stormd.schema.migrate import create_schema

log = logging.getLogger(__name__)


class Daemon:
    """One stormd process. `start()`/`stop()` for embedding (tests, the demo);
    `run()` for `stormd run`."""

    def __init__(self, settings: Settings, *, clock: Clock | None = None,
                 timer_poll: float = 1.0, serve_http: bool = True,
                 registry: HandlerRegistry | None = None):
        self.settings = settings
        self.clock = clock or Clock()
        self.timer_poll = timer_poll
        self.serve_http = serve_http
        # What reacts to what: the runtime reads this one registry and no other.
        self.registry = registry if registry is not None else build_registry()
        self.running = False
        self.engine = None
        self.embedded: EmbeddedNats | None = None
        self.nats_url: str | None = None
        self.nc = None
        self.http: HttpServers | None = None
        self.supervisor = Supervisor()
        self._watchdog: asyncio.Task | None = None

    async def start(self) -> None:
        try:
            await self._start()
        except BaseException:
            await self._close_connections()
            raise

    async def _start(self) -> None:
        s = self.settings
        data_dir = Path(s.daemon.data_dir)
        data_dir.mkdir(parents=True, exist_ok=True)
        if s.nats.url == "embedded":
            self.embedded = EmbeddedNats(data_dir, s.nats.embedded_port)
            self.nats_url = await self.embedded.start()
        else:
            self.nats_url = s.nats.url
        await create_schema(s.database.url)
        self.engine = make_engine(s.database.url, echo=s.database.echo)
        self.sessionmaker = make_sessionmaker(self.engine)
        declare_series(s)
        declare_reactions(self.registry.reaction_labels())
        await load_segment_members(self.sessionmaker)

        self.nc = await connect(server_urls(self.nats_url))
        self.js = self.nc.jetstream()
        await ensure_streams(self.js, s)
        psub = await pull_subscription(self.js, s)

        self.pipeline = DeliveryPipeline(s, self.sessionmaker, self.clock)
        await self.pipeline.start()
        self.api = ApiServer(self.nc, self.sessionmaker, s, self.clock, self.registry)
        await self.api.start()
        if self.serve_http:
            self.http = HttpServers(s.metrics.listen, s.http.listen, self.readiness,
                                    webhooks.routes(self.pipeline))
            await self.http.start()

        self.timers = TimerLoop(self.sessionmaker, s, self.clock, self.registry,
                                poll=self.timer_poll, after_commit=self._after_commit)
        self.cron = CronLoop(self.sessionmaker, s, self.clock, self.registry,
                             poll=self.timer_poll, owner=self.timers.owner)
        self.relay = Relay(self.js, self.sessionmaker)
        self.rescoring = RescoreLoop(self.sessionmaker, s, self.clock, self.registry,
                                     after_commit=self._after_commit)
        committer = GroupCommitter(self.sessionmaker, s, self.clock, self.registry,
                                   after_commit=self._after_commit)
        self.actors = ActorSystem(
            run_batch=committer.commit, settle=self._settle, batch_size=s.nats.batch_size,
            mailbox_size=s.daemon.mailbox_size, workers=s.daemon.workers,
            max_pending=2 * s.nats.batch_size * s.daemon.workers,
            max_attempts=s.nats.max_deliver,
        )
        self.intake = Intake(psub, s, self.actors, DeadLetters(self.js, s.nats.subject_prefix),
                             self.clock)
        for part in (self.timers, self.cron, self.relay, self.rescoring, self.actors,
                     self.intake):
            part.start()
        self._supervise()
        self.running = True
        # What start-up built (modules, settings, handlers) lives as long as the process:
        # keep it out of every later cyclic-GC pass over the hot path's short-lived objects.
        gc.collect()
        gc.freeze()
        systemd.notify("READY=1")
        self._watchdog = asyncio.create_task(systemd.watchdog_loop(self.alive))
        log.info("stormd running: NATS %s, database %s, handlers for %d event types",
                 mask_url(self.nats_url), mask_url(s.database.url),
                 len(self.registry.event_types()))

    def _supervise(self) -> None:
        """Watch every part that runs on its own (daemon/runtime/supervision.py)."""
        watch = self.supervisor.watch
        for loop in (self.timers, self.cron, self.relay, self.rescoring):
            watch(loop.health, lambda loop=loop: task_problem(loop.task), loop.restart)
        watch(self.intake.health, lambda: task_problem(self.intake.task), self.intake.restart)
        watch(self.pipeline.health, self.pipeline.problem, self.pipeline.revive)
        if self.http is not None:
            http = self.http
            watch(http.health, lambda: None if http.serving() else "not listening",
                  http.restart)
        self.supervisor.start()

    async def _settle(self, delivery, outcome) -> None:
        await self.intake.settle(delivery, outcome)

    def _after_commit(self, committed: list[Effects]) -> None:
        """Wake the timer loop if a transaction scheduled a timer due before its next poll,
        the relay if it staged events out, the re-scoring loop if it queued customers;
        otherwise they keep their own pace (a wake-up costs a pass of queries, and most
        batches schedule timers hours away)."""
        due = [e.earliest_timer for e in committed if e.earliest_timer is not None]
        if due and (min(due) - self.clock.now()).total_seconds() <= self.timers.poll:
            self.timers.wake()
        if any(e.events_out for e in committed):
            self.relay.wake()
        if any(e.rescores_queued for e in committed):
            self.rescoring.wake()

    def alive(self) -> bool:
        return self.nc is not None and self.nc.is_connected

    async def readiness(self) -> dict[str, Any]:
        """/readyz: NATS connected, the database answering, every supervised part up; what
        is down is named (in fixed words: no exception text)."""
        db = True
        try:
            async with self.engine.connect() as conn:
                await conn.execute(text("SELECT 1"))
        except Exception:
            db = False
        nats = self.alive()
        down = self.supervisor.down()
        body: dict[str, Any] = {"ready": nats and db and not down, "nats": nats, "database": db,
                                "components": self.supervisor.readiness()}
        if down:
            body["down"] = down
        return body

    async def stop(self) -> None:
        """Drain and close within `daemon.shutdown_grace`; whatever is not acked by then is
        redelivered to the next process (and absorbed by the inbox if it was committed)."""
        if not self.running:
            return
        self.running = False
        systemd.notify("STOPPING=1")
        deadline = time.monotonic() + self.settings.daemon.shutdown_grace.total_seconds()

        def left() -> float:
            return max(deadline - time.monotonic(), 0.1)

        log.info("draining: %d events in flight", self.actors.pending)
        await self.supervisor.stop()  # parts stopped from here on are meant to stop
        await self.intake.stop()
        if not await self.actors.drain(left()):
            log.warning("shutdown grace ran out with %d events in flight; they will be "
                        "redelivered", self.actors.pending)
            await self.actors.stop()
        await self.intake.close()
        await asyncio.wait_for(self.cron.stop(), left())
        await self.timers.stop()
        await self.rescoring.stop()
        await self.relay.stop()
        await self.api.stop()
        await self.pipeline.stop()
        if self._watchdog is not None:
            self._watchdog.cancel()
        await self._close_connections()
        log.info("stormd stopped")

    async def _close_connections(self) -> None:
        if self.nc is not None:
            try:
                await asyncio.wait_for(self.nc.flush(), 2)  # the last acks
            except Exception:
                pass
            try:
                await self.nc.close()
            except Exception as exc:
                log.debug("closing NATS: %s", exc)
        if self.http is not None:
            await self.http.stop()
        if self.engine is not None:
            await self.engine.dispose()
        if self.embedded is not None:
            await self.embedded.stop()

    async def run(self) -> None:
        """Start, wait for SIGTERM or SIGINT, drain, return. A signal during start-up (say,
        while NATS is still unreachable) abandons the start and returns."""
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        starting = asyncio.create_task(self.start())
        signalled = asyncio.create_task(stop.wait())
        await asyncio.wait({starting, signalled}, return_when=asyncio.FIRST_COMPLETED)
        if not starting.done():
            log.info("signal received during start-up; stopping")
            starting.cancel()
            await asyncio.gather(starting, return_exceptions=True)
            return
        signalled.cancel()
        starting.result()  # a failed start raises here
        await stop.wait()
        log.info("signal received; stopping")
        await self.stop()
