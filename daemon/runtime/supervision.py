"""Supervision that cannot be silent: every part of the daemon that runs on its own (the
intake task, the timer, cron, relay and re-scoring loops, the delivery pipeline, the HTTP
server) is watched, and a part that fails is logged, counted
(`stormd_component_restarts_total{component}`), shown down (`stormd_component_up` 0 and
/readyz 503 naming it) and restarted after a backoff that grows while it keeps failing.

Two kinds of failure reach the same `ComponentHealth`: a part reports its own failed
passes or fetches (and its next good one), and the supervisor's check sees a part that
stopped altogether (its task ended or was cancelled, the server stopped listening) and
restarts it. No exception a message, a row or a bug raises can leave a part stopped
while /healthz and /readyz say all is well.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from stormd.schema.metrics import ComponentHealth

log = logging.getLogger(__name__)
CHECK_EVERY = 0.25  # seconds between checks of the parts
RESTART_BASE = 0.1  # the first restart's backoff, seconds (it doubles, to ComponentHealth.CAP)

Problem = BaseException | str | None


def task_problem(task: asyncio.Task | None) -> Problem:
    """Why a part's task is no longer running (None while it runs)."""
    if task is None or not task.done():
        return None
    if task.cancelled():
        return "its task was cancelled"
    exc = task.exception()
    return exc if exc is not None else "its task ended"


@dataclass
class _Part:
    health: ComponentHealth
    problem: Callable[[], Problem]
    restart: Callable[[], Awaitable[None] | None]
    restart_at: float | None = None


class Supervisor:
    def __init__(self, check_every: float = CHECK_EVERY):
        self.check_every = check_every
        self.parts: dict[str, _Part] = {}
        self._task: asyncio.Task | None = None

    def watch(self, health: ComponentHealth, problem: Callable[[], Problem],
              restart: Callable[[], Awaitable[None] | None]) -> None:
        """Watch a part: `problem()` says why it stopped (None while it runs), `restart()`
        starts it again."""
        self.parts[health.component] = _Part(health, problem, restart)
        health.started()

    def start(self) -> None:
        self._task = asyncio.create_task(self._monitor(), name="supervisor")

    async def stop(self) -> None:
        """Stop watching (before the parts are stopped on purpose)."""
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
            self._task = None

    def readiness(self) -> dict[str, bool]:
        return {name: part.health.up for name, part in self.parts.items()}

    def down(self) -> dict[str, str]:
        """The parts that are down and why, in fixed words (no exception text)."""
        return {name: part.health.reason or "down" for name, part in self.parts.items()
                if not part.health.up}

    async def _monitor(self) -> None:
        while True:
            await asyncio.sleep(self.check_every)
            try:
                await self.check()
            except Exception:  # the watcher must outlive anything it watches
                log.exception("supervisor: checking the parts failed")

    async def check(self) -> None:
        """One round: notice stopped parts, restart those whose backoff is over."""
        for part in self.parts.values():
            now = time.monotonic()
            if part.restart_at is None:
                problem = part.problem()
                if problem is not None:
                    delay = part.health.failed(problem, base=RESTART_BASE, traceback=True)
                    part.restart_at = now + delay
                continue
            if now < part.restart_at:
                continue
            part.restart_at = None
            try:
                started = part.restart()
                if inspect.isawaitable(started):
                    await started
            except Exception as exc:
                part.restart_at = now + part.health.failed(exc, base=RESTART_BASE)
                continue
            part.health.started()
            log.warning("%s restarted", part.health.component)
