"""Request/reply on `<prefix>.api.<name>`: JSON in, JSON out, routed to
`registry.request_handlers()[name]` with a JobContext. Errors reply `{"error": "..."}`.
A queue group spreads requests over every stormd process."""

from __future__ import annotations

import json
import logging
from datetime import date, datetime
from decimal import Decimal
from typing import Any

from nats.aio.client import Client

from stormd.config.clock import Clock
from stormd.config.settings import Settings
from stormd.daemon.runtime.batching import describe
from stormd.handlers.kernel.context import JobContext
from stormd.handlers.kernel.registry import HandlerRegistry

log = logging.getLogger(__name__)


def _json_default(value: Any) -> Any:
    if isinstance(value, Decimal):
        return str(value)
    if isinstance(value, (datetime, date)):
        return value.isoformat()
    raise TypeError(f"cannot serialise {type(value).__name__}")


def encode(data: Any) -> bytes:
    return json.dumps(data, default=_json_default, ensure_ascii=False).encode()


class ApiServer:
    def __init__(self, nc: Client, sessionmaker: Any, settings: Settings, clock: Clock,
                 registry: HandlerRegistry):
        self.nc = nc
        self.prefix = f"{settings.nats.subject_prefix}.api."
        self.queue = f"{settings.nats.consumer}-api"
        self.registry = registry
        self.ctx = JobContext(sessionmaker=sessionmaker, settings=settings, clock=clock,
                              registry=registry)
        self._sub = None

    async def start(self) -> None:
        self._sub = await self.nc.subscribe(f"{self.prefix}>", queue=self.queue, cb=self._on_request)

    async def stop(self) -> None:
        if self._sub is not None:
            await self._sub.drain()

    async def answer(self, name: str, body: bytes) -> dict:
        handler = self.registry.request_handlers().get(name)
        if handler is None:
            return {"error": f"unknown api {name!r}"}
        try:
            request = json.loads(body) if body.strip() else {}
        except ValueError as exc:
            return {"error": f"request is not JSON: {exc}"}
        if not isinstance(request, dict):
            return {"error": "request must be a JSON object"}
        try:
            return await handler(self.ctx, request)
        except Exception as exc:
            log.warning("api %s failed: %s", name, describe(exc))
            return {"error": describe(exc)}

    async def _on_request(self, msg) -> None:
        name = msg.subject[len(self.prefix):]
        reply = await self.answer(name, msg.data)
        if msg.reply:
            try:
                await msg.respond(encode(reply))
            except Exception as exc:  # a reply that cannot be encoded or sent
                await msg.respond(encode({"error": describe(exc)}))
