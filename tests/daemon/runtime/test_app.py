"""The running daemon's surfaces: health, API request/reply, timers
firing within a second, the embedded nats-server supervised."""

from __future__ import annotations

import json
import time
from datetime import timedelta

import httpx
import nats
import pytest
from daemon_helpers import customer, eventually, publish

# The runtime path under test does not depend on the database kind (the inbox and
# group commit are covered on both by the other tests): SQLite only, to keep the suite fast.
SQLITE_ONLY = pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)


@SQLITE_ONLY
async def test_health_endpoints_report_live_and_ready(daemon_settings, start_daemon):
    d = await start_daemon(daemon_settings())
    host, port = d.http.bound["http"]
    async with httpx.AsyncClient() as client:
        live = await client.get(f"http://{host}:{port}/healthz")
        ready = await client.get(f"http://{host}:{port}/readyz")
    assert live.status_code == 200
    assert ready.status_code == 200
    parts = ("intake", "timers", "cron", "relay", "rescoring", "pipeline", "http")
    assert ready.json() == {"ready": True, "nats": True, "database": True,
                            "components": dict.fromkeys(parts, True)}


@SQLITE_ONLY
async def test_api_requests_are_answered_as_json(
    daemon_settings, start_daemon, handlers, nats_server
):
    @handlers.on_request("echo")
    async def echo(job, request):
        return {"you_said": request["say"], "at": job.clock.now()}

    @handlers.on_request("fail")
    async def fail(job, request):
        raise ValueError("no such segment 'vipp'")

    await start_daemon(daemon_settings())
    nc = await nats.connect(nats_server)
    try:
        ok = json.loads((await nc.request("stormcom.api.echo", b'{"say": "salam"}', 5)).data)
        bad = json.loads((await nc.request("stormcom.api.fail", b"{}", 5)).data)
        unknown = json.loads((await nc.request("stormcom.api.nope", b"{}", 5)).data)
        not_json = json.loads((await nc.request("stormcom.api.echo", b"{", 5)).data)
    finally:
        await nc.close()
    assert ok["you_said"] == "salam"
    assert bad == {"error": "ValueError: no such segment 'vipp'"}
    assert "unknown api 'nope'" in unknown["error"]
    assert "not JSON" in not_json["error"]


@SQLITE_ONLY
async def test_a_timer_scheduled_by_a_handler_fires_within_a_second_of_due(
    daemon_settings, start_daemon, handlers, js
):
    fired = []

    @handlers.on_event("customer.upserted")
    async def later(ctx, event):
        await ctx.schedule(f"welcome:{event.data.customer_id}", "welcome",
                           ctx.now() + timedelta(seconds=0.5))

    @handlers.on_timer("welcome")
    async def welcome(ctx, timer):
        fired.append((timer.key, time.monotonic()))

    await start_daemon(daemon_settings(), timer_poll=1.0)
    published = time.monotonic()
    await publish(js, customer("t1"))
    await eventually(lambda: fired, timeout=5)
    assert fired[0][0] == "welcome:t1"
    assert fired[0][1] - published < 0.5 + 1.0


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
async def test_the_embedded_nats_server_is_restarted_when_it_dies(
    settings_factory, db_url, start_daemon, customer_handler, sessionmaker
):
    settings = settings_factory(nats={"url": "embedded", "embedded_port": 0},
                                database={"url": db_url}, metrics={"listen": "127.0.0.1:0"},
                                http={"listen": "127.0.0.1:0"})
    d = await start_daemon(settings)
    assert d.embedded is not None
    d.embedded.kill()
    await eventually(lambda: d.embedded.restarts == 1, timeout=10)
    nc = await nats.connect(d.nats_url)
    await publish(nc.jetstream(), customer("after-restart"))
    await nc.close()

    async def landed():
        from daemon_helpers import processed
        return await processed(sessionmaker) == 1

    await eventually(landed, timeout=15)


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
async def test_the_embedded_nats_server_keeps_its_configured_port_and_says_where(
    settings_factory, db_url, start_daemon, tmp_path
):
    from stormd.daemon.bus.nats_server import free_port

    port = free_port()
    settings = settings_factory(nats={"url": "embedded", "embedded_port": port},
                                database={"url": db_url}, metrics={"listen": "127.0.0.1:0"},
                                http={"listen": "127.0.0.1:0"})
    d = await start_daemon(settings)
    assert d.nats_url == f"nats://127.0.0.1:{port}"
    url_file = tmp_path / "data" / "nats.url"
    assert url_file.read_text().strip() == d.nats_url  # where storefronts connect


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
async def test_a_taken_embedded_port_fails_start_up_with_one_clear_line(
    settings_factory, db_url, tmp_path
):
    """A server moved to another port would take events no storefront publishes to."""
    import socket
    import subprocess

    from stormd.daemon.bus.embedded import PortTaken
    from stormd.daemon.runtime.app import Daemon

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        settings = settings_factory(nats={"url": "embedded", "embedded_port": port},
                                    database={"url": db_url}, metrics={"listen": "127.0.0.1:0"},
                                    http={"listen": "127.0.0.1:0"})
        with pytest.raises(PortTaken, match=f"nats.embedded_port {port} is already in use"):
            await Daemon(settings).start()
        config = tmp_path / "stormd.toml"
        config.write_text(f'[daemon]\ndata_dir = "{tmp_path / "cli"}"\n'
                          f'[nats]\nembedded_port = {port}\n'
                          f'[database]\nurl = "{db_url}"\n')
        proc = subprocess.run(["stormd", "run", "--config", str(config)], capture_output=True,
                              text=True, timeout=60, check=False)
    assert proc.returncode == 1
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and f"nats.embedded_port {port} is already in use" in lines[0], lines
