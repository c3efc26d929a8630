"""The merchant's side of the provider fakes: a real HTTP server that records what arrives.

It stands in for stormd's webhook and callback endpoints so each fake's outbound calls can be
checked byte for byte, and it answers however a test tells it to.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import aiohttp
import pytest
from aiohttp import web


@dataclass
class Received:
    method: str
    path: str
    query: dict[str, str]
    headers: dict[str, str]
    body: bytes


Reply = Callable[[web.Request, bytes], web.StreamResponse]


class Merchant:
    def __init__(self) -> None:
        self.received: list[Received] = []
        self.reply: Reply = lambda request, body: web.json_response({"ok": True})
        self.base_url = ""
        self._runner: web.AppRunner | None = None

    async def start(self) -> None:
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", self._handle)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        host, port = self._runner.addresses[0][:2]
        self.base_url = f"http://{host}:{port}"

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        body = await request.read()
        self.received.append(Received(request.method, request.path, dict(request.query),
                                      dict(request.headers), body))
        return self.reply(request, body)


@pytest.fixture
async def merchant():
    receiver = Merchant()
    await receiver.start()
    yield receiver
    await receiver.stop()


@pytest.fixture
async def http():
    async with aiohttp.ClientSession() as session:
        yield session


class SettableClock:
    """A clock the test moves by hand (token expiry)."""

    def __init__(self, start: datetime | None = None) -> None:
        self.now = start or datetime(2026, 3, 1, 10, 0, tzinfo=UTC)

    def __call__(self) -> datetime:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += timedelta(seconds=seconds)


@pytest.fixture
def clock():
    return SettableClock()
