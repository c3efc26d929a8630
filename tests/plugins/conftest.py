"""Fixtures for the delivery tests: queuing messages the way handlers do, and pipelines."""

from __future__ import annotations

import asyncio
import itertools
import json
from urllib.parse import parse_qsl

import pytest
from aiohttp import web
from sqlalchemy import select

from stormd.plugins.delivery.enqueue import MessageRequest, enqueue_message
from stormd.plugins.delivery.pipeline import DeliveryPipeline
from stormd.schema.marketing.messages import Message

_keys = itertools.count(1)


@pytest.fixture
def queue(sessionmaker, clock):
    """`await queue(channel=..., to_address=..., ...)` queues one message; returns its key."""

    async def add(**fields) -> str:
        fields.setdefault("store_id", "store_1")
        fields.setdefault("customer_id", None)
        fields.setdefault("channel", "sms")
        fields.setdefault("to_address", "+8801711000001")
        fields.setdefault("body", "Your cart is waiting")
        fields.setdefault("idempotency_key", f"test-{next(_keys)}")
        async with sessionmaker() as session, session.begin():
            await enqueue_message(session, MessageRequest(**fields), clock.now())
        return fields["idempotency_key"]

    return add


@pytest.fixture
def messages(sessionmaker):
    """`await messages()`: every Message row, by id."""

    async def read() -> list[Message]:
        async with sessionmaker() as session:
            return list((await session.scalars(select(Message).order_by(Message.id))).all())

    return read


@pytest.fixture
async def pipelines(sessionmaker, clock):
    """`pipelines(settings, **kw)` builds a DeliveryPipeline, stopped after the test."""
    made: list[DeliveryPipeline] = []

    def build(settings, **kw) -> DeliveryPipeline:
        pipeline = DeliveryPipeline(settings, sessionmaker, clock, **kw)
        made.append(pipeline)
        return pipeline

    yield build
    for pipeline in made:
        await pipeline.stop()


class FakeProvider:
    """A local HTTP server speaking a provider's wire format, scripted per test.

    `reply(status, body, headers)` queues answers (the last one repeats); every request is
    kept in `requests` as (path, headers, body bytes). With `dedupe_header`, a repeated
    value of that header gets the first answer again and is not counted in `delivered`,
    as Resend does with Idempotency-Key.
    """

    def __init__(self, dedupe_header: str | None = None):
        self.requests: list[tuple[str, dict, bytes]] = []
        self.delivered: list[bytes] = []
        self.answers: list[tuple[int, str, dict]] = [(200, "{}", {})]
        self.dedupe_header = dedupe_header
        self.seen: dict[str, tuple[int, str, dict]] = {}
        self.by_content: list[tuple[bytes, tuple[int, str, dict]]] = []
        self.delay = 0.0
        self.released = asyncio.Event()  # set to cut a delay short
        self.url = ""

    def reply(self, status: int, body, headers: dict | None = None) -> None:
        text = body if isinstance(body, str) else json.dumps(body)
        self.answers = [(status, text, headers or {})]

    def then(self, status: int, body, headers: dict | None = None) -> None:
        text = body if isinstance(body, str) else json.dumps(body)
        self.answers.append((status, text, headers or {}))

    def reply_when(self, needle: str, status: int, body, headers: dict | None = None) -> None:
        """Answer requests whose body contains `needle` (e.g. a recipient) this way, so one
        run can meet several answers whatever order the sends arrive in."""
        text = body if isinstance(body, str) else json.dumps(body)
        self.by_content.append((needle.encode(), (status, text, headers or {})))

    def json(self, i: int = -1) -> dict:
        return json.loads(self.requests[i][2])

    def form(self, i: int = -1) -> dict:
        return dict(parse_qsl(self.requests[i][2].decode()))

    async def handle(self, request: web.Request) -> web.Response:
        body = await request.read()
        self.requests.append((request.path_qs, dict(request.headers), body))
        if self.delay:
            try:
                await asyncio.wait_for(self.released.wait(), self.delay)
            except TimeoutError:
                pass
        key = request.headers.get(self.dedupe_header) if self.dedupe_header else None
        matched = [answer for needle, answer in self.by_content if needle in body]
        if key is not None and key in self.seen:
            status, text, headers = self.seen[key]
        elif matched:
            status, text, headers = matched[0]
        else:
            status, text, headers = self.answers[0]
            if len(self.answers) > 1:
                self.answers.pop(0)
            if status < 300:
                self.delivered.append(body)
                if key is not None:
                    self.seen[key] = (status, text, headers)
        return web.Response(status=status, text=text, headers=headers,
                            content_type="application/json" if text[:1] in "{[" else "text/xml"
                            if text.startswith("<") else "text/plain")


@pytest.fixture
async def fake_provider():
    """`await fake_provider(dedupe_header=None)` starts a FakeProvider on a free port."""
    runners: list[web.AppRunner] = []
    fakes: list[FakeProvider] = []

    async def start(dedupe_header: str | None = None) -> FakeProvider:
        fake = FakeProvider(dedupe_header)
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", fake.handle)
        runner = web.AppRunner(app)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        port = site._server.sockets[0].getsockname()[1]
        fake.url = f"http://127.0.0.1:{port}"
        runners.append(runner)
        fakes.append(fake)
        return fake

    yield start
    for fake in fakes:
        fake.released.set()
    for runner in runners:
        await runner.cleanup()
