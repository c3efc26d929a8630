"""Fixtures of the hostile-input corpora: a daemon with the real handlers (the one
`stormd run` starts) on the test database and nats-server, and a JetStream client."""

from __future__ import annotations

import nats
import pytest

from stormd.daemon.runtime.app import Daemon
from stormd.handlers.wiring import build_registry


@pytest.fixture
def daemon_settings(settings_factory, db_url, nats_server):
    def build(**sections):
        base = {
            "nats": {"url": nats_server, "batch_size": 100, "max_deliver": 3},
            "database": {"url": db_url},
            "metrics": {"listen": "127.0.0.1:0"},
            "http": {"listen": "127.0.0.1:0"},
            "daemon": {"shutdown_grace": "10s"},
        }
        for section, values in sections.items():
            base.setdefault(section, {}).update(values)
        return settings_factory(**base)

    return build


@pytest.fixture
async def start_daemon():
    """Start in-process daemons with the real registry (stopped at the end of the test)."""
    started: list[Daemon] = []

    async def start(settings, **kw) -> Daemon:
        kw.setdefault("registry", build_registry())
        d = Daemon(settings, timer_poll=kw.pop("timer_poll", 0.05), **kw)
        await d.start()
        started.append(d)
        return d

    yield start
    for d in started:
        await d.stop()


@pytest.fixture
async def js(nats_server):
    nc = await nats.connect(nats_server)
    yield nc.jetstream()
    await nc.close()
