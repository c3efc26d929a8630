"""Daemon test fixtures: a daemon running in-process against the fixture nats-server and the
test database, with handlers the test registers (the runtime knows nothing of carts)."""

from __future__ import annotations

from collections import defaultdict

import nats
import pytest

from stormd.daemon.runtime.app import Daemon
from stormd.handlers.kernel.registry import HandlerRegistry
from stormd.schema.db.upsert import insert_for
from stormd.schema.shop.customers import Customer


@pytest.fixture
def handlers():
    """The registry the test's daemons run with: only the handlers it registers here."""
    return HandlerRegistry()


@pytest.fixture
def customer_handler(handlers):
    """A state handler for customer.upserted that upserts the customer row; `calls` counts
    how often it ran per event id. A name of "boom" makes it raise."""
    calls: dict[str, int] = defaultdict(int)

    @handlers.on_event("customer.upserted")
    async def upsert_customer(ctx, event):
        calls[event.id] += 1
        if event.data.name == "boom":
            raise RuntimeError("customer handler exploded")
        stmt = insert_for(ctx.session, Customer).values(
            store_id=event.store_id, customer_id=event.data.customer_id, name=event.data.name,
            updated_at=ctx.now(),
        )
        stmt = stmt.on_conflict_do_update(index_elements=["store_id", "customer_id"],
                                          set_={"name": stmt.excluded.name})
        await ctx.session.execute(stmt)

    return calls


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
async def start_daemon(handlers):
    """Start in-process daemons (stopped at the end of the test)."""
    started: list[Daemon] = []

    async def start(settings, **kw) -> Daemon:
        kw.setdefault("registry", handlers)
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

