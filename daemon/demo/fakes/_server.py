"""What every provider fake shares: a local aiohttp server and a record of its outbound calls.

Each fake listens on 127.0.0.1 on a port the OS picks, keeps its state in memory for the test
or the demo to read, and calls the merchant back (webhooks, the customer's browser returning
from a payment page) the way the real provider does. Every such call is kept as a `Delivery`
so a test can check what arrived, byte for byte, and what the merchant answered.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import aiohttp
from aiohttp import web

Clock = Callable[[], datetime]


def utc_now() -> datetime:
    return datetime.now(UTC)


@dataclass
class Delivery:
    """One HTTP call a fake made to the merchant, and the merchant's answer."""

    method: str
    url: str
    body: bytes
    headers: dict[str, str]
    status: int | None = None
    response_headers: dict[str, str] = field(default_factory=dict)
    response_body: bytes = b""
    error: str | None = None

    @property
    def ok(self) -> bool:
        return self.status is not None and 200 <= self.status < 300

    def json(self) -> Any:
        return json.loads(self.body)


def compact_json(payload: Any) -> bytes:
    """The bytes a provider puts on the wire; signatures are computed over exactly these."""
    return json.dumps(payload, separators=(",", ":"), ensure_ascii=False).encode()


class FakeServer:
    """Base of the fakes: `async with Fake(...) as fake:` or `await fake.start()` / `stop()`."""

    def __init__(self, *, clock: Clock | None = None, host: str = "127.0.0.1", port: int = 0):
        self.clock: Clock = clock or utc_now
        self.deliveries: list[Delivery] = []
        self.base_url = ""
        self._host = host
        self._port = port
        self._runner: web.AppRunner | None = None
        self._session: aiohttp.ClientSession | None = None
        self._background: set[asyncio.Task[Any]] = set()
        self.app = web.Application()
        self.setup_routes(self.app.router)

    def setup_routes(self, router: web.UrlDispatcher) -> None:  # pragma: no cover - abstract
        raise NotImplementedError

    async def start(self) -> str:
        """Start listening; returns the base URL (http://127.0.0.1:<port>)."""
        if self._runner is not None:
            return self.base_url
        runner = web.AppRunner(self.app, access_log=None)
        await runner.setup()
        site = web.TCPSite(runner, self._host, self._port)
        await site.start()
        host, port = runner.addresses[0][:2]
        self._runner = runner
        self._session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10))
        self.base_url = f"http://{host}:{port}"
        return self.base_url

    async def stop(self) -> None:
        await self.drain()
        if self._session is not None:
            await self._session.close()
            self._session = None
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def __aenter__(self):
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    def later(self, coro: Coroutine[Any, Any, Any]) -> None:
        """Run a call to the merchant after the current response, as providers do: a webhook
        about an order never arrives inside the request that created it."""
        task = asyncio.get_running_loop().create_task(coro)
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    async def drain(self) -> None:
        """Wait until every call started with `later` has been made."""
        while self._background:
            await asyncio.gather(*self._background, return_exceptions=True)

    async def call_merchant(
        self,
        method: str,
        url: str,
        *,
        body: bytes = b"",
        headers: dict[str, str] | None = None,
        follow_redirects: bool = False,
    ) -> Delivery:
        """Make one call to the merchant and record it; a failure is recorded, never raised.

        Providers do not stop because a merchant's endpoint is down, so neither does a fake.
        """
        delivery = Delivery(method=method, url=url, body=body, headers=dict(headers or {}))
        self.deliveries.append(delivery)
        if self._session is None:
            delivery.error = "the fake is not started"
            return delivery
        try:
            async with self._session.request(
                method, url, data=body or None, headers=delivery.headers,
                allow_redirects=follow_redirects,
            ) as response:
                delivery.status = response.status
                delivery.response_headers = dict(response.headers)
                delivery.response_body = await response.read()
        except (aiohttp.ClientError, TimeoutError, OSError) as exc:
            delivery.error = f"{type(exc).__name__}: {exc}"
        return delivery


async def read_json(request: web.Request) -> Any:
    """The request body as JSON, or None when it is missing or malformed."""
    raw = await request.read()
    if not raw:
        return None
    try:
        return json.loads(raw)
    except ValueError:
        return None
