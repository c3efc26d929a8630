"""The daemon's HTTP side: ASGI apps (FastAPI) served by uvicorn inside the daemon's own
event loop. `http.listen` carries the API, the webhooks, health and the docs; `/metrics`
is served there too when `metrics.listen` is the same address, else on a listener of its
own.

Each server binds its socket at start (a taken port stops start-up with a clear error).
The daemon's supervisor (daemon/runtime/supervision.py) watches `serving()` and, should a
server end while the daemon runs, `restart()`s them on the addresses they had. The daemon
owns the process's signals; uvicorn's own signal handling is switched off.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
from collections.abc import Iterator
from typing import Any

import uvicorn

from stormd.schema.metrics import ComponentHealth

log = logging.getLogger(__name__)


def split_listen(listen: str) -> tuple[str, int]:
    host, _, port = listen.rpartition(":")
    return host.strip("[]") or "127.0.0.1", int(port)


def bind(listen: str) -> socket.socket:
    """A listening socket for `host:port` (port 0: any free port)."""
    host, port = split_listen(listen)
    family, kind, proto, _, address = socket.getaddrinfo(
        host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)[0]
    sock = socket.socket(family, kind, proto)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(address)
        sock.listen(2048)
        sock.setblocking(False)
    except OSError:
        sock.close()
        raise
    return sock


class _Server(uvicorn.Server):
    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        """The daemon handles SIGTERM/SIGINT (it drains, then stops this server)."""
        yield


class AppServer:
    """One ASGI app on one address, as a supervised task of the running loop."""

    def __init__(self, app: Any, listen: str, name: str):
        self.app, self.listen, self.name = app, listen, name
        self.address: tuple[str, int] | None = None
        self._server: _Server | None = None
        self._task: asyncio.Task | None = None
        self._stopping = False

    def _config(self) -> uvicorn.Config:
        return uvicorn.Config(self.app, log_level="warning", access_log=False, lifespan="off",
                              proxy_headers=False, server_header=False, date_header=True,
                              timeout_graceful_shutdown=5)

    async def start(self) -> None:
        """Bind and serve; returns once the server accepts connections."""
        sock = bind(self.listen if self.address is None else
                    f"[{self.address[0]}]:{self.address[1]}")
        host, port = sock.getsockname()[:2]
        self.address = (host, port)
        self._server = _Server(self._config())
        self._task = asyncio.create_task(self._server.serve(sockets=[sock]),
                                         name=f"http:{self.name}")
        self._task.add_done_callback(self._ended)
        while not self._server.started:
            if self._task.done():
                self._task.result()  # raises what stopped it
                raise RuntimeError(f"{self.name} server ended during start-up")
            await asyncio.sleep(0.01)
        log.info("%s listening on http://%s:%d", self.name, host, port)

    def _ended(self, task: asyncio.Task) -> None:
        if not self._stopping:  # the supervisor notices (`serving`) and restarts it
            error = None if task.cancelled() else task.exception()
            log.error("%s server stopped unexpectedly (%s)", self.name, error or "no error")

    @property
    def serving(self) -> bool:
        return self._task is not None and not self._task.done()

    async def stop(self) -> None:
        self._stopping = True
        if self._task is not None:
            self._task.remove_done_callback(self._ended)
        if self._server is None or self._task is None:
            return
        self._server.should_exit = True
        try:
            await asyncio.wait_for(asyncio.shield(self._task), 10)
        except (TimeoutError, Exception):
            self._server.force_exit = True
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)


class HttpServers:
    """The main app on `http.listen` and, when `metrics.listen` differs, the metrics app on
    its own; `bound` maps "http" and "metrics" to the address each is served on."""

    def __init__(self, metrics_listen: str, http_listen: str, main_app: Any,
                 metrics_app: Any | None):
        self.metrics_listen, self.http_listen = metrics_listen, http_listen
        self.main_app, self.metrics_app = main_app, metrics_app
        self.servers: list[AppServer] = []
        self.bound: dict[str, tuple[str, int]] = {}
        self.health = ComponentHealth("http")

    @property
    def shared(self) -> bool:
        return self.metrics_listen == self.http_listen

    async def start(self) -> None:
        main = AppServer(self.main_app, self.http_listen, "http")
        await main.start()
        self.servers.append(main)
        self.bound["http"] = main.address
        if self.shared or self.metrics_app is None:
            self.bound["metrics"] = main.address
            return
        metrics = AppServer(self.metrics_app, self.metrics_listen, "metrics")
        await metrics.start()
        self.servers.append(metrics)
        self.bound["metrics"] = metrics.address

    def serving(self) -> bool:
        """Every server still running."""
        return bool(self.servers) and all(server.serving for server in self.servers)

    async def restart(self) -> None:
        """Stop what is left and serve again on the same addresses."""
        listens = {"http": self.http_listen, "metrics": self.metrics_listen}
        await self.stop()
        for name, (host, port) in self.bound.items():
            listens[name] = f"[{host}]:{port}"
        self.http_listen, self.metrics_listen = listens["http"], listens["metrics"]
        await self.start()

    async def stop(self) -> None:
        for server in reversed(self.servers):
            await server.stop()
        self.servers.clear()
