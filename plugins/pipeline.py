"""The delivery pipeline: takes queued `Message` rows and sends them through providers.

Interface the daemon wires (app.py): construct, `await start()`, `await stop()` (drain).
The channels issue fills this in.
"""

from __future__ import annotations

from typing import Any

from stormd.config.settings import Settings
from stormd.daemon.clock import Clock


class DeliveryPipeline:
    def __init__(self, settings: Settings, sessionmaker: Any, clock: Clock):
        self.settings = settings
        self.sessionmaker = sessionmaker
        self.clock = clock

    async def start(self) -> None:
        """Begin sending due queued messages."""

    async def stop(self) -> None:
        """Stop taking new work, finish in-flight sends, return."""
