"""A whole daemon in a thread of its own (its own event loop), for tests that drive it from
synchronous code: schemathesis and hypothesis call the HTTP API with `requests`."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Coroutine
from dataclasses import dataclass
from typing import Any

from stormd.daemon.runtime.app import Daemon
from stormd.handlers.wiring import build_registry


@dataclass
class LiveDaemon:
    daemon: Daemon
    loop: asyncio.AbstractEventLoop
    thread: threading.Thread

    @property
    def url(self) -> str:
        host, port = self.daemon.http.bound["http"]
        return f"http://{host}:{port}"

    def run(self, coro: Coroutine) -> Any:
        """Run a coroutine on the daemon's loop and wait for its result."""
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(300)

    @classmethod
    def start(cls, settings) -> LiveDaemon:
        loop = asyncio.new_event_loop()
        thread = threading.Thread(target=loop.run_forever, name="live-daemon", daemon=True)
        thread.start()
        live = cls(Daemon(settings, registry=build_registry(), timer_poll=0.2), loop, thread)
        live.run(live.daemon.start())
        return live

    def stop(self) -> None:
        try:
            self.run(self.daemon.stop())
        finally:
            self.loop.call_soon_threadsafe(self.loop.stop)
            self.thread.join(30)
