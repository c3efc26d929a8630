"""`stormd run` as a real process: SIGTERM drains and exits 0; SIGKILL mid-stream then a
restart leaves every event applied exactly once.

The tests wait for the daemon's own READY=1 (sd_notify, what systemd waits for), not for a
guessed start-up time: on a loaded machine importing and starting stormd can take longer
than any fixed budget, and a consumer that exists says nothing about the rest of start-up.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import subprocess
import sys
import time

import nats
import pytest
from daemon_helpers import customer, eventually, processed
from sqlalchemy import func, select

from stormd.schema.shop.customers import Customer

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


class Stormd:
    """`stormd run` in a child process, with the socket it reports READY=1 on."""

    def __init__(self, config: str, tmp_path, name: str):
        self.log_path = tmp_path / f"{name}.log"
        self.notify = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.notify.bind(str(tmp_path / f"{name}.notify"))
        self.notify.setblocking(False)
        with open(self.log_path, "wb") as log:
            self.proc = subprocess.Popen(
                [sys.executable, "-c", "from stormd.daemon.cli.main import main; main()",
                 "run", "--config", config],
                stdout=log, stderr=subprocess.STDOUT,
                env={**os.environ, "NOTIFY_SOCKET": str(tmp_path / f"{name}.notify")})

    def log(self) -> str:
        return self.log_path.read_text()[-3000:]

    async def ready(self, timeout: float = 300) -> None:
        """Wait for READY=1; fail at once if the process exits first. The timeout only
        bounds a hung start: a loaded machine is waited for."""
        loop = asyncio.get_running_loop()
        deadline = time.monotonic() + timeout
        while True:
            try:
                if await asyncio.wait_for(loop.sock_recv(self.notify, 64), 0.2) == b"READY=1":
                    return
            except TimeoutError:
                pass
            assert self.proc.poll() is None, f"stormd exited ({self.proc.returncode}) " \
                f"before READY=1:\n{self.log()}"
            assert time.monotonic() < deadline, f"no READY=1 within {timeout}s:\n{self.log()}"

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)
        self.notify.close()


async def publish_customers(url: str, start: int, n: int) -> None:
    nc = await nats.connect(url)
    js = nc.jetstream()
    # Pipelined publishes: the stream exists once the daemon is up.
    futures = [await js.publish_async(
        "stormcom.events.store_1.customer.upserted",
        json.dumps(customer(f"c{i}", id_=f"evt_c{i}")).encode(),
        headers={"Nats-Msg-Id": f"evt_c{i}"}) for i in range(start, start + n)]
    await asyncio.gather(*futures)
    await nc.close()


async def consumer_state(url: str):
    nc = await nats.connect(url)
    info = await nc.jetstream().consumer_info("STORMD_EVENTS", "stormd")
    await nc.close()
    return info


async def customers(sessionmaker) -> int:
    async with sessionmaker() as session:
        return (await session.execute(
            select(func.count()).select_from(Customer).where(Customer.store_id == "store_1")
        )).scalar()


async def test_sigterm_drains_in_flight_work_and_exits_0(
    tmp_path, nats_server, db_url, sessionmaker
):
    config = write_config(tmp_path, nats_server, db_url)
    stormd = Stormd(config, tmp_path, "run")
    try:
        await stormd.ready()
        await publish_customers(nats_server, 0, N)
        await eventually(lambda: processed(sessionmaker), timeout=120, interval=0.01)
        stormd.proc.send_signal(signal.SIGTERM)
        t0 = time.monotonic()
        code = await asyncio.to_thread(stormd.proc.wait, 30)
        assert code == 0, stormd.log()
        assert time.monotonic() - t0 < 20
    finally:
        stormd.close()
    done = await processed(sessionmaker)
    info = await consumer_state(nats_server)
    assert info.num_ack_pending == 0  # nothing taken was left unacked
    assert done + info.num_pending == N  # every event either handled and acked, or waiting
    assert await customers(sessionmaker) == done
    logged = [json.loads(line) for line in stormd.log_path.read_text().splitlines()
              if line.strip()]
    assert any(entry["msg"] == "stormd stopped" for entry in logged)  # log_format = "json"


async def test_sigkill_mid_stream_then_restart_applies_every_event_once(
    tmp_path, nats_server, db_url, sessionmaker
):
    # A short ack wait: what the killed process held comes back quickly.
    config = write_config(tmp_path, nats_server, db_url, ack_wait="2s")
    first = Stormd(config, tmp_path, "first")
    try:
        await first.ready()
        await publish_customers(nats_server, 0, N)
        await eventually(lambda: processed(sessionmaker), timeout=120, interval=0.01)
        os.kill(first.proc.pid, signal.SIGKILL)
        first.proc.wait(10)
    finally:
        first.close()
    assert await processed(sessionmaker) < N
    second = Stormd(config, tmp_path, "second")
    try:
        await second.ready()
        await eventually(lambda: _all_done(sessionmaker), timeout=120, interval=0.2)
        second.proc.send_signal(signal.SIGTERM)
        assert await asyncio.to_thread(second.proc.wait, 30) == 0, second.log()
    finally:
        second.close()
    assert await customers(sessionmaker) == N
    assert await processed(sessionmaker) == N


async def _all_done(sessionmaker) -> bool:
    return await processed(sessionmaker) == N
