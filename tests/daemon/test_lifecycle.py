"""`stormd run` as a real process: SIGTERM drains and exits 0; SIGKILL mid-stream then a
restart leaves every event applied exactly once."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time

import nats
import pytest
from daemon_helpers import customer, eventually, processed
from sqlalchemy import func, select

from stormd.schema.customers import Customer

pytestmark = pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
N = 2000


def write_config(tmp_path, nats_url: str, db_url: str, ack_wait: str = "30s") -> str:
    path = tmp_path / "stormd.toml"
    path.write_text(f"""
[daemon]
data_dir = "{tmp_path / 'data'}"
shutdown_grace = "20s"
log_format = "json"
[nats]
url = "{nats_url}"
batch_size = 200
ack_wait = "{ack_wait}"
[database]
url = "{db_url}"
[metrics]
listen = "127.0.0.1:0"
[http]
listen = "127.0.0.1:0"
""")
    return str(path)


def start_stormd(config: str, tmp_path, name: str) -> subprocess.Popen:
    log = open(tmp_path / f"{name}.log", "wb")
    return subprocess.Popen([sys.executable, "-c", "from stormd.daemon.cli import main; main()",
                             "run", "--config", config],
                            stdout=log, stderr=subprocess.STDOUT)


async def publish_customers(url: str, start: int, n: int) -> None:
    nc = await nats.connect(url)
    js = nc.jetstream()
    # Pipelined publishes: the stream exists once the daemon is up.
    futures = [await js.publish_async(
        "stormcom.events.store_1.customer.upserted",
        __import__("json").dumps(customer(f"c{i}", id_=f"evt_c{i}")).encode(),
        headers={"Nats-Msg-Id": f"evt_c{i}"}) for i in range(start, start + n)]
    await asyncio.gather(*futures)
    await nc.close()


async def consumer_state(url: str):
    nc = await nats.connect(url)
    info = await nc.jetstream().consumer_info("STORMD_EVENTS", "stormd")
    await nc.close()
    return info


async def wait_ready(url: str, timeout: float = 20) -> None:
    async def stream_exists():
        nc = await nats.connect(url)
        try:
            await nc.jetstream().consumer_info("STORMD_EVENTS", "stormd")
            return True
        except Exception:
            return False
        finally:
            await nc.close()

    await eventually(stream_exists, timeout=timeout, interval=0.2)


async def customers(sessionmaker) -> int:
    async with sessionmaker() as session:
        return (await session.execute(
            select(func.count()).select_from(Customer).where(Customer.store_id == "store_1")
        )).scalar()


async def test_sigterm_drains_in_flight_work_and_exits_0(
    tmp_path, nats_server, db_url, sessionmaker
):
    config = write_config(tmp_path, nats_server, db_url)
    proc = start_stormd(config, tmp_path, "run")
    try:
        await wait_ready(nats_server)
        await publish_customers(nats_server, 0, N)
        await eventually(lambda: processed(sessionmaker), interval=0.01)
        proc.send_signal(signal.SIGTERM)
        t0 = time.monotonic()
        code = await asyncio.to_thread(proc.wait, 30)
        assert code == 0, (tmp_path / "run.log").read_text()[-3000:]
        assert time.monotonic() - t0 < 20
    finally:
        if proc.poll() is None:
            proc.kill()
    done = await processed(sessionmaker)
    info = await consumer_state(nats_server)
    assert info.num_ack_pending == 0  # nothing taken was left unacked
    assert done + info.num_pending == N  # every event either handled and acked, or waiting
    assert await customers(sessionmaker) == done
    logged = [__import__("json").loads(line) for line in
              (tmp_path / "run.log").read_text().splitlines() if line.strip()]
    assert any(entry["msg"] == "stormd stopped" for entry in logged)  # log_format = "json"


async def test_sigkill_mid_stream_then_restart_applies_every_event_once(
    tmp_path, nats_server, db_url, sessionmaker
):
    # A short ack wait: what the killed process held comes back quickly.
    config = write_config(tmp_path, nats_server, db_url, ack_wait="2s")
    first = start_stormd(config, tmp_path, "first")
    try:
        await wait_ready(nats_server)
        await publish_customers(nats_server, 0, N)
        await eventually(lambda: processed(sessionmaker), interval=0.01)
        os.kill(first.pid, signal.SIGKILL)
        first.wait(10)
    finally:
        if first.poll() is None:
            first.kill()
    assert await processed(sessionmaker) < N
    second = start_stormd(config, tmp_path, "second")
    try:
        await eventually(lambda: _all_done(sessionmaker), timeout=60, interval=0.2)
        second.send_signal(signal.SIGTERM)
        assert await asyncio.to_thread(second.wait, 30) == 0
    finally:
        if second.poll() is None:
            second.kill()
    assert await customers(sessionmaker) == N
    assert await processed(sessionmaker) == N


async def _all_done(sessionmaker) -> bool:
    return await processed(sessionmaker) == N
