"""The HTTP API tests run a whole daemon (the real handlers) and talk to it over HTTP."""

from __future__ import annotations

import pytest
from api_helpers import Api

from stormd.handlers.wiring import build_registry


@pytest.fixture
async def api(daemon_settings, start_daemon):
    """`await api()` -> an Api on a started daemon (settings sections as keyword args)."""
    made: list[Api] = []

    async def start(**sections) -> Api:
        daemon = await start_daemon(daemon_settings(**sections), registry=build_registry())
        host, port = daemon.http.bound["http"]
        made.append(Api(daemon, f"http://{host}:{port}"))
        return made[-1]

    yield start
    for a in made:
        await a.close()
