"""The skeleton the daemon's background loops share (timers, cron, the outbox relay,
re-scoring): one task that runs a pass, sleeps until the pass's chosen delay is over or
`wake()` is called, and ends after the pass in progress when `stop()` is called.

A failing pass is never silent: it is logged, counted and shown down
(`ComponentHealth`: the `stormd_component_up` gauge and /readyz), and the next pass
comes after a backoff that grows while passes keep failing; the first pass that works
shows the loop up again. Should the task itself end (a bug outside a pass), the
daemon's supervisor (daemon/runtime/supervision.py) restarts it with `restart()`."""

from __future__ import annotations

import asyncio
import logging

from stormd.schema.metrics import ComponentHealth

log = logging.getLogger(__name__)


class SupervisedLoop:
    """Subclasses give `name`, `poll` and `run_pass()`, which returns the seconds to wait
    before the next pass (0: at once)."""

    name = "loop"
    # After a wake-up, wait this much more: a burst of wake-ups (commits) shares one pass.
    coalesce = 0.0

    def __init__(self, poll: float):
        self.poll = poll
        self.health = ComponentHealth(self.name)
        self._wake = asyncio.Event()
        self._stop = asyncio.Event()
        self._task: asyncio.Task | None = None

    async def run_pass(self) -> float:
        raise NotImplementedError

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name=self.name)
        self.health.started()

    def restart(self) -> None:
        """Start the loop's task again after it ended unexpectedly."""
        if not self._stop.is_set():
            self.start()

    @property
    def task(self) -> asyncio.Task | None:
        return self._task

    def wake(self) -> None:
        self._wake.set()

    async def stop(self) -> None:
        """Finish the pass in progress, then end the loop."""
        self._stop.set()
        self._wake.set()
        if self._task is not None:
            await asyncio.gather(self._task, return_exceptions=True)

    async def _run(self) -> None:
        while not self._stop.is_set():
            # Cleared before the pass, so a wake-up during it (a commit that scheduled a
            # nearer timer, staged an event) brings the next pass at once, not after `poll`.
            self._wake.clear()
            try:
                delay = await self.run_pass()
                self.health.ok()
            except Exception as exc:
                # Wake-ups do not cut a backoff short: commits keep coming while it lasts.
                backoff = self.health.failed(exc, base=self.poll)
                try:
                    await asyncio.wait_for(self._stop.wait(), backoff)
                except TimeoutError:
                    pass
                continue
            if delay > 0 and not self._stop.is_set():
                await self._sleep(delay)

    async def _sleep(self, seconds: float) -> None:
        try:
            await asyncio.wait_for(self._wake.wait(), seconds)
        except TimeoutError:
            return
        if self.coalesce and not self._stop.is_set():
            await asyncio.sleep(self.coalesce)
