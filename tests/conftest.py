"""Fixtures for real services: a database of each kind, a nats-server, a settable clock.

PostgreSQL comes from $STORMD_TEST_PG_URL; each test gets its own database cloned from a
template, so tests (and developers running them side by side) never share rows. Under
CI=true a missing PostgreSQL is a failure, not a skip.
"""

from __future__ import annotations

import asyncio
import os
import uuid
from datetime import UTC, datetime
from pathlib import Path

import pytest
from sqlalchemy.engine import make_url

from stormd.config.clock import SettableClock
from stormd.config.loader import settings_from_dict
from stormd.daemon.bus.nats_server import start_nats_server, wait_until_listening
from stormd.schema.db.engine import make_engine, make_sessionmaker
from stormd.schema.migrate import create_schema

PG_ENV = "STORMD_TEST_PG_URL"


def _pg_admin_url() -> str | None:
    return os.environ.get(PG_ENV)


async def _pg_execute(url: str, *statements: str) -> None:
    import asyncpg

    u = make_url(url)
    conn = await asyncpg.connect(
        host=u.host or "127.0.0.1", port=u.port or 5432, user=u.username or "postgres",
        password=u.password, database=u.database or "postgres",
    )
    try:
        for sql in statements:
            await conn.execute(sql)
    finally:
        await conn.close()


def _with_database(url: str, name: str) -> str:
    return make_url(url).set(database=name).render_as_string(hide_password=False)


@pytest.fixture(scope="session")
def pg_template():
    """A PostgreSQL database with the schema, cloned per test; None without PostgreSQL."""
    admin = _pg_admin_url()
    if not admin:
        if os.environ.get("CI") == "true":
            pytest.fail(f"{PG_ENV} is not set and CI=true: PostgreSQL tests cannot be skipped")
        yield None
        return
    name = f"stormd_tpl_{os.getpid()}_{uuid.uuid4().hex[:6]}"
    try:
        asyncio.run(_pg_execute(admin, f'CREATE DATABASE "{name}"'))
    except OSError as exc:
        if os.environ.get("CI") == "true":
            pytest.fail(f"PostgreSQL at {PG_ENV} is unreachable: {exc}")
        yield None
        return
    asyncio.run(create_schema(_with_database(admin, name)))
    yield name
    asyncio.run(_pg_execute(admin, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


@pytest.fixture(params=["sqlite", "postgresql"])
def db_url(request, tmp_path):
    """A fresh, migrated database URL of each kind (the test runs once per kind)."""
    if request.param == "sqlite":
        url = f"sqlite+aiosqlite:///{tmp_path / 'stormd.db'}"
        asyncio.run(create_schema(url))
        yield url
        return
    template = request.getfixturevalue("pg_template")
    if template is None:
        pytest.skip(f"{PG_ENV} not set")
    admin = _pg_admin_url()
    name = f"stormd_t_{uuid.uuid4().hex[:12]}"
    asyncio.run(_pg_execute(admin, f'CREATE DATABASE "{name}" TEMPLATE "{template}"'))
    yield _with_database(admin, name)
    asyncio.run(_pg_execute(admin, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


@pytest.fixture
def sqlite_url(tmp_path):
    url = f"sqlite+aiosqlite:///{tmp_path / 'stormd.db'}"
    asyncio.run(create_schema(url))
    return url


@pytest.fixture
async def engine(db_url):
    eng = make_engine(db_url)
    yield eng
    await eng.dispose()


@pytest.fixture
def sessionmaker(engine):
    return make_sessionmaker(engine)


@pytest.fixture
def clock():
    return SettableClock(datetime(2026, 11, 24, 4, 0, tzinfo=UTC))


@pytest.fixture
def settings_factory(tmp_path):
    """Settings built like the daemon builds them, with the test's data dir and overrides."""

    def build(overrides: dict | None = None, **sections):
        data = {"daemon": {"data_dir": str(tmp_path / "data")}}
        for section, values in {**(overrides or {}), **sections}.items():
            data.setdefault(section, {}).update(values)
        return settings_from_dict(data)

    return build


@pytest.fixture
def nats_server(tmp_path):
    """A real nats-server with JetStream on a free loopback port; yields its URL."""
    proc, url = start_nats_server(Path(tmp_path) / "nats")
    try:
        wait_until_listening(url)
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except Exception:
            proc.kill()


@pytest.fixture
def registry():
    """The handlers that react in a test: the daemon's own registry (a test may add a
    handler to it, or override this fixture with a registry of its own)."""
    from stormd.handlers.wiring import build_registry

    return build_registry()


@pytest.fixture
def handle_event(sessionmaker, clock, settings_factory, registry):
    """Deliver one contract event through `registry` in its own committed transaction, as
    the daemon does.

    `await handle_event("order.created", {...}, at=datetime)`; returns the parsed Event.
    """
    import json

    from stormd.handlers.kernel.context import HandlerContext
    from stormd.schema.wire.events import parse_event

    settings = settings_factory()
    prefix = settings.nats.subject_prefix

    async def handle(type_: str, data: dict, *, at: datetime | None = None,
                     store: str = "store_1", event_id: str | None = None):
        when = at or clock.now()
        envelope = {"id": event_id or f"evt_{uuid.uuid4().hex}", "type": type_,
                    "storeId": store, "occurredAt": when.isoformat(), "data": data}
        event = parse_event(f"{prefix}.events.{store}.{type_}",
                            json.dumps(envelope, default=str).encode(), prefix)
        async with sessionmaker() as session:
            await registry.dispatch_event(
                HandlerContext(session, settings, clock, store, registry=registry), event)
            await session.commit()
        return event

    return handle
