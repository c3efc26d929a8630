"""Helpers for the HTTP API tests: a running daemon's API, keys made through the service
layer (as `stormd keys create` makes them), and clients carrying them."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import httpx

from stormd.handlers.access.keys import create_key
from stormd.handlers.kernel.context import JobContext
from stormd.handlers.kernel.service import Actor, Call


@dataclass
class Api:
    daemon: Any
    url: str
    clients: list[httpx.AsyncClient] = field(default_factory=list)

    @property
    def job(self) -> JobContext:
        d = self.daemon
        return JobContext(d.sessionmaker, d.settings, d.clock, d.registry)

    @property
    def operator_call(self) -> Call:
        return Call(self.job, Actor.command_line())

    async def key(self, store: str | None, name: str | None = None) -> str:
        return (await create_key(self.operator_call, store, name)).key

    def client(self, key: str | None = None, **headers: str) -> httpx.AsyncClient:
        if key is not None:
            headers["Authorization"] = f"Bearer {key}"
        client = httpx.AsyncClient(base_url=self.url, headers=headers, timeout=60)
        self.clients.append(client)
        return client

    async def store_client(self, store: str) -> httpx.AsyncClient:
        return self.client(await self.key(store))

    async def close(self) -> None:
        for client in self.clients:
            await client.aclose()


def problem_of(reply: httpx.Response, status: int) -> dict[str, Any]:
    """The problem+json body of a refusal with `status` (asserting its shape)."""
    assert reply.status_code == status, (reply.status_code, reply.text)
    assert reply.headers["content-type"].startswith("application/problem+json"), reply.headers
    body = reply.json()
    assert body["status"] == status and body["title"] and body["detail"], body
    return body
