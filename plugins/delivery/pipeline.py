"""The delivery pipeline: claims due `Message` rows and sends them through providers.

    claim (status sending + lease, committed)  ->  send-time checks (plugins/delivery/compliance.py)
      -> per-channel priority queue -> provider chosen by circuit breaker, in the order of
         `[channels]` -> token bucket + concurrency -> plugin's stormd_send
      -> outcome (sent / retry with backoff / failed / cancelled) written in batches with
         SmsLog / WhatsAppMessage / EmailEvent rows and a `message.status` event.

The row is `sending` before the provider is called and `sent` after, so a kill in between
leaves it to be claimed again when its lease ends (plugins/delivery/claims.py). Permanent errors
and exhausted retries end as `failed` with the error logged: nothing is dropped silently.

The daemon constructs it, `await start()`, and `await stop()` on shutdown (drains
in-flight sends). Tests and tools call `await run_once()` to deliver what is due now.
A failing claim or record is never silent: `health` shows the pipeline down (logged,
counted, /readyz) and the claims back off until one works; the daemon's supervisor
restarts a task of the pipeline that ended (`problem`, `revive`).
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections import Counter
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

import aiohttp

from stormd.config.clock import Clock
from stormd.config.settings import Settings
from stormd.plugins import CHANNELS, PermanentError, RetryableError, sms_info
from stormd.plugins.delivery.breaker import HALF_OPEN, CircuitBreaker
from stormd.plugins.delivery.claims import (
    Outcome,
    any_due,
    claim_due,
    mark_calling,
    record_outcomes,
    refund_credit,
    reserve_credit,
)
from stormd.plugins.delivery.compliance import Ready, prepare
from stormd.plugins.delivery.manager import ChannelPlugins, Provider, load_plugins
from stormd.plugins.delivery.ratelimit import TokenBucket
from stormd.plugins.policy.preferences import preferences_key
from stormd.schema.db.write_lock import write_session
from stormd.schema.metrics import MESSAGES, ComponentHealth

log = logging.getLogger("stormd.delivery")

FLUSH_EVERY = 0.05  # seconds between outcome batches


class DeliveryPipeline:
    def __init__(self, settings: Settings, sessionmaker: Any, clock: Clock, *,
                 plugins: ChannelPlugins | None = None, rng: random.Random | None = None):
        self.settings = settings
        self.sessionmaker = sessionmaker
        self.clock = clock
        self.plugins = plugins
        self.rng = rng or random.Random()
        self.http: aiohttp.ClientSession | None = None
        self.breakers: dict[str, CircuitBreaker] = {}
        self._buckets: dict[str, TokenBucket | None] = {}
        self._limits: dict[str, asyncio.Semaphore] = {}
        self._queues: dict[str, asyncio.PriorityQueue] = {}
        self._routes: dict[str, list[Provider]] = {}
        self._marks: list[tuple[int, str, asyncio.Future]] = []
        self._outcomes: list[Outcome] = []
        # One writer at a time: on SQLite, competing write transactions in one process
        # only meet in the busy handler's sleeps.
        self._write_lock = asyncio.Lock()
        self._tasks: list[asyncio.Task] = []
        self._stopping = asyncio.Event()
        self._wake = asyncio.Event()
        self._key = b""
        self.health = ComponentHealth("pipeline", log)
        self._claimer: asyncio.Task | None = None
        self._flusher: asyncio.Task | None = None
        self._workers: dict[asyncio.Task, asyncio.PriorityQueue] = {}

    # -- lifecycle ---------------------------------------------------------------

    async def ready(self) -> None:
        """Load the plugins and open the HTTP client (done by start() and run_once())."""
        if self.plugins is None:
            self.plugins = load_plugins(self.settings)
        if self.http is None:
            self.http = aiohttp.ClientSession(
                timeout=aiohttp.ClientTimeout(total=30),
                # Provider APIs set no cookies worth keeping; a jar is per-request work.
                cookie_jar=aiohttp.DummyCookieJar(),
                connector=aiohttp.TCPConnector(limit=0, limit_per_host=0))
            self._key = preferences_key(self.settings)

    async def start(self) -> None:
        """Begin sending due queued messages."""
        await self.ready()
        log.info("delivery: channel plugins loaded: %s", self.plugins.describe())
        self._stopping.clear()
        for channel in CHANNELS:
            providers = self.plugins.for_channel(self.settings, channel)
            workers = max((p.concurrency for p in providers), default=1)
            queue: asyncio.PriorityQueue = asyncio.PriorityQueue()
            self._queues[channel] = queue
            for _ in range(workers):
                self._add_worker(queue, channel)
        self._claimer = asyncio.create_task(self._claim_loop(), name="delivery-claim")
        self._flusher = asyncio.create_task(self._flush_loop(), name="delivery-flush")
        self.health.started()

    def _add_worker(self, queue: asyncio.PriorityQueue, channel: str) -> None:
        task = asyncio.create_task(self._worker(queue), name=f"send-{channel}")
        self._tasks.append(task)
        self._workers[task] = queue

    def problem(self) -> BaseException | str | None:
        """Why a task of the pipeline is no longer running (None while all run)."""
        if self._stopping.is_set() or self._claimer is None:
            return None
        for task in (self._claimer, self._flusher, *self._workers):
            if task is not None and task.done():
                if task.cancelled():
                    return f"task {task.get_name()} was cancelled"
                return task.exception() or f"task {task.get_name()} ended"
        return None

    def revive(self) -> None:
        """Start again every task of the pipeline that ended."""
        if self._stopping.is_set():
            return
        if self._claimer is not None and self._claimer.done():
            self._claimer = asyncio.create_task(self._claim_loop(), name="delivery-claim")
        if self._flusher is not None and self._flusher.done():
            self._flusher = asyncio.create_task(self._flush_loop(), name="delivery-flush")
        for task, queue in list(self._workers.items()):
            if task.done():
                del self._workers[task]
                self._tasks.remove(task)
                self._add_worker(queue, task.get_name().removeprefix("send-"))

    async def stop(self) -> None:
        """Stop taking new work, finish in-flight sends, record them, return."""
        self._stopping.set()
        self._wake.set()
        if self._tasks:
            await asyncio.gather(self._claimer, return_exceptions=True)
            grace = self.settings.daemon.shutdown_grace.total_seconds()
            try:
                await asyncio.wait_for(
                    asyncio.gather(*(q.join() for q in self._queues.values())), grace)
            except TimeoutError:
                log.warning("delivery: stopped with sends unfinished; their leases will "
                            "expire and they will be sent again")
            for task in [*self._tasks, self._flusher]:
                task.cancel()
            await asyncio.gather(*self._tasks, self._flusher, return_exceptions=True)
            self._tasks = []
            self._workers.clear()
        await self.flush()
        if self.http is not None:
            await self.http.close()
            self.http = None

    def wake(self) -> None:
        """Claim now rather than at the next poll (e.g. right after queuing urgent work)."""
        self._wake.set()

    async def run_once(self, limit: int | None = None) -> int:
        """Claim what is due now, send it all, record the outcomes; returns how many."""
        await self.ready()
        ready = await self._claim(limit or self.settings.delivery.batch_size)
        await asyncio.gather(*(self._deliver(item) for item in ready))
        await self.flush()
        return len(ready)

    # -- claiming ----------------------------------------------------------------

    async def _claim(self, limit: int) -> list[Ready]:
        now = self.clock.now()
        async with self.sessionmaker() as session:
            if not await any_due(session, now):
                return []
        async with self._write_lock, write_session(self.sessionmaker) as session:
            claimed, in_doubt = await claim_due(session, now, self.settings.delivery.lease,
                                                limit)
        if not claimed:
            return []
        ended = [self._unknown_outcome(m, in_doubt[m.id]) for m in claimed
                 if m.id in in_doubt and not self._idempotent(in_doubt[m.id])]
        doubtful = {o.message.id for o in ended}
        async with self.sessionmaker() as session:
            ready, refused = await prepare(session, self.settings, self._key,
                                           [m for m in claimed if m.id not in doubtful], now)
        ended += refused
        for outcome in ended:
            log.info("delivery: message %s %s: %s", outcome.message.id, outcome.status,
                     outcome.error)
        self._outcomes.extend(ended)
        return ready

    def _idempotent(self, name: str) -> bool:
        provider = self.plugins.providers.get(name)
        return provider is not None and provider.info.idempotent

    def _unknown_outcome(self, m: Any, provider: str) -> Outcome:
        return Outcome(m, "failed", provider=provider, error=(
            f"outcome unknown: stormd stopped while {provider} was being called, and "
            f"{provider} cannot de-duplicate, so the message is not sent again"))

    async def _mark_calling(self, message_id: int, provider: str) -> None:
        """Group-commit the before-call marks of every send starting in this tick."""
        future = asyncio.get_running_loop().create_future()
        self._marks.append((message_id, provider, future))
        if len(self._marks) == 1:  # the first of this tick starts the commit
            self._mark_task = asyncio.create_task(self._commit_marks())
        await future

    async def _commit_marks(self) -> None:
        async with self._write_lock:
            batch, self._marks = self._marks, []
            try:
                async with write_session(self.sessionmaker) as session:
                    await mark_calling(session, [(i, p) for i, p, _ in batch])
            except Exception as exc:  # noqa: BLE001 - handed to every waiting send
                for *_, future in batch:
                    future.set_exception(exc)
                return
        for *_, future in batch:
            future.set_result(None)

    async def _claim_loop(self) -> None:
        batch = self.settings.delivery.batch_size
        poll = self.settings.delivery.poll_interval.total_seconds()
        while not self._stopping.is_set():
            waiting = sum(q.qsize() for q in self._queues.values())
            claimed = 0
            if waiting < batch // 2:
                try:
                    ready = await self._claim(batch - waiting)
                    self.health.ok()
                except Exception as exc:  # a database hiccup must not end delivery
                    backoff = self.health.failed(exc, base=poll)
                    try:  # wake-ups do not cut the backoff short
                        await asyncio.wait_for(self._stopping.wait(), backoff)
                    except TimeoutError:
                        pass
                    continue
                for item in ready:
                    m = item.message
                    self._queues[m.channel].put_nowait((-m.priority, m.id, item))
                claimed = len(ready)
            self._wake.clear()
            timeout = 0.01 if claimed or waiting >= batch // 2 else poll
            try:
                await asyncio.wait_for(self._wake.wait(), timeout)
            except TimeoutError:
                pass

    async def _worker(self, queue: asyncio.PriorityQueue) -> None:
        while True:
            _, _, item = await queue.get()
            try:
                await self._deliver(item)
            except Exception:
                log.exception("delivery: message %s could not be handled",
                              item.message.id)
            finally:
                queue.task_done()

    # -- sending -----------------------------------------------------------------

    def _route(self, channel: str) -> list[Provider]:
        if channel not in self._routes:
            self._routes[channel] = self.plugins.for_channel(self.settings, channel)
        return self._routes[channel]

    def breaker(self, name: str) -> CircuitBreaker:
        if name not in self.breakers:
            d = self.settings.delivery
            self.breakers[name] = CircuitBreaker(d.breaker_failures, d.breaker_cooldown)
        return self.breakers[name]

    def _limit(self, provider: Provider) -> tuple[asyncio.Semaphore, TokenBucket | None]:
        if provider.name not in self._limits:
            self._limits[provider.name] = asyncio.Semaphore(provider.concurrency)
            self._buckets[provider.name] = (TokenBucket(provider.rate_limit, provider.burst)
                                            if provider.rate_limit > 0 else None)
        return self._limits[provider.name], self._buckets[provider.name]

    async def _choose(self, item: Ready) -> tuple[Provider | None, datetime | None]:
        """The first provider of the channel that is usable now, else when to try again."""
        now = self.clock.now()
        reopen: datetime | None = None
        for provider in self._route(item.message.channel):
            if provider.name in item.skip_providers:
                continue
            breaker = self.breaker(provider.name)
            if not breaker.allows(now):
                at = breaker.reopens_at()
                reopen = at if reopen is None or (at and at < reopen) else reopen
                continue
            if breaker.state == HALF_OPEN:
                health = await self.plugins.call(provider, "stormd_health",
                                                 config=provider.config, http=self.http)
                if health is not None and not health.ok:
                    log.info("delivery: %s still unhealthy: %s", provider.name, health.detail)
                    breaker.failed(now)
                    reopen = breaker.reopens_at()
                    continue
            return provider, None
        return None, reopen

    async def _deliver(self, item: Ready) -> None:
        while True:
            provider, reopen = await self._choose(item)
            if provider is None:
                self._outcomes.append(self._no_provider(item, reopen))
                break
            outcome = await self._send_via(provider, item)
            if outcome is not None:
                self._outcomes.append(outcome)
                break
            item.skip_providers.add(provider.name)  # no credit there: next provider

    def _no_provider(self, item: Ready, reopen: datetime | None) -> Outcome:
        m = item.message
        if item.skip_providers:
            return Outcome(m, "failed", error="no SMS credit left with "
                           + ", ".join(sorted(item.skip_providers)))
        if reopen is None:
            return Outcome(m, "failed", error=f"no provider configured for {m.channel}")
        return Outcome(m, "queued", not_before=reopen, count_attempt=False,
                       error="every provider's circuit is open")

    async def _send_via(self, provider: Provider, item: Ready) -> Outcome | None:
        m, out = item.message, item.outgoing
        segments, encoding, rate = None, None, None
        if m.channel == "sms":
            info = sms_info(out.body)
            segments, encoding = info.segments, info.encoding
        if m.channel == "sms" and provider.name in item.metered:
            async with self._write_lock, self.sessionmaker() as session, session.begin():
                allowed, rate = await reserve_credit(session, m.store_id, provider.name,
                                                     segments)
            if not allowed:
                self.breaker(provider.name).released()
                log.warning("delivery: store %s has no SMS credit left with %s",
                            m.store_id, provider.name)
                return None
        cost = await self.plugins.call(provider, "stormd_estimate_cost", message=out,
                                       config=provider.config)
        if provider.info.list_price:
            rate = getattr(self.settings.campaigns.message_cost, m.channel)
        if rate is not None:
            cost = rate * (segments or 1)
        result = Outcome(m, "sent", provider=provider.name, cost=Decimal(cost or 0),
                         segments=segments, encoding=encoding, reached_provider=True,
                         to=out.to, body=out.body if out.body != m.body else None)
        semaphore, bucket = self._limit(provider)
        breaker = self.breaker(provider.name)
        try:
            async with semaphore:
                if not provider.info.idempotent:
                    await self._mark_calling(m.id, provider.name)
                if bucket is not None:
                    await bucket.acquire()
                external_id = await self.plugins.call(provider, "stormd_send", message=out,
                                                      config=provider.config, http=self.http)
            if not external_id:
                raise PermanentError(f"{provider.name} returned no message id")
        except RetryableError as exc:
            breaker.failed(self.clock.now())
            self._retry_or_fail(result, exc, exc.retry_after)
        except PermanentError as exc:
            breaker.released()
            result.status, result.error, result.error_code = "failed", str(exc), exc.code
        except Exception as exc:  # a plugin bug: logged with its traceback, retried
            log.exception("delivery: plugin %s raised unexpectedly", provider.name)
            breaker.failed(self.clock.now())
            self._retry_or_fail(result, exc, None)
        else:
            breaker.succeeded()
            result.external_id = str(external_id)
            return result
        if rate is not None and segments:
            async with self._write_lock, self.sessionmaker() as session, session.begin():
                await refund_credit(session, m.store_id, provider.name, segments)
        if result.status == "failed":
            log.warning("delivery: message %s via %s failed: %s", m.id, provider.name,
                        result.error)
        return result

    def _retry_or_fail(self, result: Outcome, exc: Exception, retry_after: float | None):
        m, d = result.message, self.settings.delivery
        code = getattr(exc, "code", None)
        result.error, result.error_code, result.cost = f"{exc}", code, Decimal(0)
        if m.attempts >= d.max_attempts:
            result.status = "failed"
            result.error = f"gave up after {m.attempts} attempts: {exc}"
            return
        result.status, result.reached_provider = "queued", False
        result.not_before = self.clock.now() + self.backoff(m.attempts, retry_after)

    def backoff(self, attempt: int, retry_after: float | None = None) -> timedelta:
        """Exponential backoff with "equal jitter": half the step fixed, half random, never
        sooner than the provider's Retry-After."""
        d = self.settings.delivery
        step = min(d.retry_max.total_seconds(),
                   d.retry_base.total_seconds() * 2 ** (attempt - 1))
        seconds = step / 2 + self.rng.uniform(0, step / 2)
        return timedelta(seconds=max(seconds, retry_after or 0))

    # -- recording ---------------------------------------------------------------

    async def _flush_loop(self) -> None:
        while True:
            await asyncio.sleep(FLUSH_EVERY)
            try:
                await self.flush()
            except Exception as exc:  # the outcomes stay gathered for the next flush
                await asyncio.sleep(self.health.failed(exc, base=FLUSH_EVERY))

    async def flush(self) -> None:
        """Write the outcomes gathered so far in one transaction."""
        async with self._write_lock:
            batch, self._outcomes = self._outcomes, []
            if not batch:
                return
            try:
                async with write_session(self.sessionmaker) as session:
                    await record_outcomes(session, batch, self.clock.now(),
                                          self.settings.nats.subject_prefix)
            except Exception:
                self._outcomes[:0] = batch
                raise
        counts = Counter((o.message.channel, o.provider or "none", o.counted_as) for o in batch)
        for (channel, provider, status), n in counts.items():
            MESSAGES.labels(channel=channel, provider=provider, status=status).inc(n)
