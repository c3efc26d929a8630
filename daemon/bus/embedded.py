"""The embedded nats-server (`nats.url = "embedded"`): a supervised child process.

JetStream on, store under `daemon.data_dir/nats`, loopback only, on the port
`nats.embedded_port` (4222) and no other: storefronts are configured for that port, so if
it is taken start-up fails with one line saying so (a server moved to another port would
take events nobody publishes to). 0 asks for any free port (tests, the demo). If the child
dies it is started again on the same port (clients reconnect); it is stopped on exit. The
URL is written to `data_dir/nats.url` while it runs, for tools that publish to it.
"""

from __future__ import annotations

import asyncio
import logging
import socket
import subprocess
from pathlib import Path

from stormd.daemon.bus.nats_server import free_port, start_nats_server

log = logging.getLogger(__name__)
HOST = "127.0.0.1"


def _port_is_free(port: int) -> bool:
    with socket.socket() as s:
        try:
            s.bind((HOST, port))
        except OSError:
            return False
    return True


async def _wait_listening(port: int, timeout: float = 10.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        try:
            _, writer = await asyncio.open_connection(HOST, port)
            writer.close()
            return
        except OSError:
            if asyncio.get_running_loop().time() > deadline:
                raise TimeoutError(f"embedded nats-server on port {port} did not start") from None
            await asyncio.sleep(0.05)


class PortTaken(RuntimeError):
    """The configured port of the embedded server is in use."""


class EmbeddedNats:
    def __init__(self, data_dir: Path, port: int = 4222):
        self.store_dir = data_dir / "nats"
        self.url_file = data_dir / "nats.url"
        if port and not _port_is_free(port):
            raise PortTaken(
                f"nats.embedded_port {port} is already in use on {HOST} (another nats-server "
                f"or stormd?); stop it, set nats.embedded_port to a free port, or point "
                f"nats.url at the server that is there")
        self.port = port or free_port()
        self.url = f"nats://{HOST}:{self.port}"
        self._proc: subprocess.Popen | None = None
        self._supervisor: asyncio.Task | None = None
        self.restarts = 0

    async def start(self) -> str:
        await self._spawn()
        self.url_file.write_text(self.url + "\n")
        self._supervisor = asyncio.create_task(self._supervise(), name="embedded-nats")
        log.info("embedded nats-server listening on %s (store %s)", self.url, self.store_dir)
        return self.url

    async def _spawn(self) -> None:
        self._proc, _ = start_nats_server(self.store_dir, port=self.port, host=HOST,
                                          die_with_parent=True)
        await _wait_listening(self.port)

    async def _supervise(self) -> None:
        backoff = 0.2
        while True:
            await asyncio.sleep(0.5)
            if self._proc is None or self._proc.poll() is None:
                backoff = 0.2
                continue
            log.warning("embedded nats-server exited (status %s); restarting",
                        self._proc.returncode)
            await asyncio.sleep(backoff)
            backoff = min(backoff * 2, 10.0)
            try:
                await self._spawn()
                self.restarts += 1
                log.info("embedded nats-server restarted on %s", self.url)
            except (OSError, TimeoutError) as exc:
                log.error("embedded nats-server failed to restart: %s", exc)

    def kill(self) -> None:
        """Kill the child abruptly, as a crash would (the supervisor starts it again)."""
        if self._proc is not None:
            self._proc.kill()

    async def stop(self) -> None:
        if self._supervisor is not None:
            self._supervisor.cancel()
            await asyncio.gather(self._supervisor, return_exceptions=True)
        if self._proc is not None and self._proc.poll() is None:
            self._proc.terminate()
            try:
                await asyncio.to_thread(self._proc.wait, 10)
            except subprocess.TimeoutExpired:
                self._proc.kill()
        self.url_file.unlink(missing_ok=True)
