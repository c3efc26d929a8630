"""Supervision that cannot be silent: a part of the running daemon that is broken (its
table gone) or killed (its task cancelled, its server closed) is shown down on /readyz
(503 naming it) and in `stormd_component_up`, counted in
`stormd_component_restarts_total`, and comes back by itself once it can; meanwhile the
other parts go on."""

from __future__ import annotations

import asyncio

import httpx
import pytest
from daemon_helpers import customer, eventually, processed, publish
from prometheus_client import REGISTRY
from sqlalchemy import text

from stormd.schema.metrics import COMPONENTS

# The supervision does not depend on the database kind; breaking a part by renaming its
# table is simplest on SQLite.
SQLITE_ONLY = pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)


def restarts(component: str) -> float:
    return REGISTRY.get_sample_value("stormd_component_restarts_total",
                                     {"component": component}) or 0.0


def up(component: str) -> float | None:
    return REGISTRY.get_sample_value("stormd_component_up", {"component": component})


async def readyz(d) -> tuple[int, dict]:
    host, port = d.http.bound["http"]
    async with httpx.AsyncClient() as client:
        resp = await client.get(f"http://{host}:{port}/readyz")
    return resp.status_code, resp.json()


async def rename(sessionmaker, old: str, new: str) -> None:
    async with sessionmaker() as session, session.begin():
        await session.execute(text(f"ALTER TABLE {old} RENAME TO {new}"))


@SQLITE_ONLY
async def test_every_part_is_declared_up_and_its_restarts_counted_from_zero(
        daemon_settings, start_daemon):
    await start_daemon(daemon_settings())
    for component in COMPONENTS:
        assert up(component) == 1, component
        assert REGISTRY.get_sample_value("stormd_component_restarts_total",
                                         {"component": component}) is not None, component


@SQLITE_ONLY
@pytest.mark.parametrize("component, table", [
    ("timers", "timers"),
    ("cron", "cron_runs"),
    ("relay", "outbound_events"),
    ("rescoring", "rescore_queue"),
    ("pipeline", "messages"),
])
async def test_a_part_whose_table_is_gone_is_down_on_readyz_and_comes_back(
        daemon_settings, start_daemon, sessionmaker, component, table):
    d = await start_daemon(daemon_settings())
    assert (await readyz(d))[0] == 200
    before = restarts(component)
    await rename(sessionmaker, table, f"{table}_away")

    async def down() -> bool:
        status, body = await readyz(d)
        return status == 503 and component in body.get("down", {})

    await eventually(down, timeout=15)
    status, body = await readyz(d)
    assert body["components"][component] is False and body["nats"] and body["database"]
    assert "SELECT" not in str(body["down"])  # why, in fixed words: no SQL
    assert up(component) == 0 and restarts(component) > before
    await rename(sessionmaker, f"{table}_away", table)

    async def ready() -> bool:
        return (await readyz(d))[0] == 200

    await eventually(ready, timeout=20)
    assert up(component) == 1


@SQLITE_ONLY
@pytest.mark.parametrize("component", ["intake", "timers", "cron", "relay", "rescoring"])
async def test_a_part_whose_task_is_killed_is_restarted(
        daemon_settings, start_daemon, customer_handler, js, sessionmaker, component):
    d = await start_daemon(daemon_settings())
    part = d.intake if component == "intake" else getattr(d, component)
    before = restarts(component)
    part.task.cancel()
    await eventually(lambda: restarts(component) > before, timeout=5)
    await eventually(lambda: part.task is not None and not part.task.done(), timeout=10)
    await eventually(lambda: up(component) == 1, timeout=10)
    assert (await readyz(d))[0] == 200
    await publish(js, customer(f"after-{component}"))  # events still flow
    await eventually(lambda: _processed_is(sessionmaker, 1), timeout=15)


@SQLITE_ONLY
async def test_a_closed_http_server_listens_again_on_its_port(daemon_settings, start_daemon):
    d = await start_daemon(daemon_settings())
    bound = d.http.bound["http"]
    before = restarts("http")
    await d.http.stop()  # as if the listener had died
    await eventually(lambda: restarts("http") > before, timeout=5)
    await eventually(d.http.serving, timeout=10)
    assert d.http.bound["http"] == bound
    assert (await readyz(d))[0] == 200


@SQLITE_ONLY
async def test_a_part_that_keeps_failing_backs_off(daemon_settings, start_daemon, sessionmaker):
    """Failures in a row wait longer each time (capped): a broken part is not retried in
    a tight loop that would flood the log."""
    d = await start_daemon(daemon_settings())
    before = restarts("timers")
    await rename(sessionmaker, "timers", "timers_away")
    await asyncio.sleep(1.5)
    failures = restarts("timers") - before
    # poll 0.05 s doubling: 0.05 + 0.1 + 0.2 + 0.4 + 0.8 > 1.5 s, so about five, not thirty.
    assert 2 <= failures <= 7, failures
    assert d.timers.health.failures == failures
    await rename(sessionmaker, "timers_away", "timers")


async def _processed_is(sessionmaker, n: int) -> bool:
    return await processed(sessionmaker) == n
