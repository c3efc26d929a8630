"""The daemon's HTTP side (aiohttp): `/metrics` on `metrics.listen`; `/healthz` (alive),
`/readyz` (NATS connected, the database answering and every supervised part up; 503
naming what is down) and the provider webhooks (`plugins.delivery.webhooks.routes`) on
`http.listen`. When both listen on the same address, one server carries every route.

The daemon's supervisor watches `serving()` and, should a listener close, `restart()`s
the servers on the ports they had."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web

from stormd.schema.metrics import ComponentHealth, exposition

log = logging.getLogger(__name__)


def split_listen(listen: str) -> tuple[str, int]:
    host, _, port = listen.rpartition(":")
    return host.strip("[]") or "127.0.0.1", int(port)


async def _metrics(_: web.Request) -> web.Response:
    body, content_type = exposition()
    return web.Response(body=body, headers={"Content-Type": content_type})


async def _healthz(_: web.Request) -> web.Response:
    return web.json_response({"status": "ok"})


class HttpServers:
    def __init__(self, metrics_listen: str, http_listen: str,
                 readiness: Callable[[], Awaitable[dict[str, Any]]], extra_routes: list):
        self.metrics_listen = metrics_listen
        self.http_listen = http_listen
        self.readiness = readiness
        self.extra_routes = extra_routes
        self._runners: list[web.AppRunner] = []
        self.bound: dict[str, tuple[str, int]] = {}
        self.health = ComponentHealth("http")

    async def _readyz(self, _: web.Request) -> web.Response:
        try:
            checks = await asyncio.wait_for(self.readiness(), 5)
        except Exception as exc:
            checks = {"ready": False, "error": type(exc).__name__}
            log.warning("readiness check failed: %s", exc)
        ok = bool(checks.get("ready"))
        return web.json_response({**checks, "ready": ok}, status=200 if ok else 503)

    def _app(self, *, metrics: bool, main: bool) -> web.Application:
        app = web.Application()
        if metrics:
            app.router.add_get("/metrics", _metrics)
        if main:
            app.router.add_get("/healthz", _healthz)
            app.router.add_get("/readyz", self._readyz)
            app.add_routes(self.extra_routes)
        return app

    async def _serve(self, listen: str, app: web.Application, name: str) -> None:
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        host, port = self.bound.get(name) or split_listen(listen)  # a restart keeps its port
        site = web.TCPSite(runner, host, port)
        await site.start()
        bound = runner.addresses[0] if runner.addresses else (host, port)
        self.bound[name] = (bound[0], bound[1])
        self._runners.append(runner)
        log.info("%s listening on http://%s:%d", name, bound[0], bound[1])

    async def start(self) -> None:
        if self.metrics_listen == self.http_listen:
            await self._serve(self.http_listen, self._app(metrics=True, main=True), "http")
            self.bound["metrics"] = self.bound["http"]
            return
        await self._serve(self.metrics_listen, self._app(metrics=True, main=False), "metrics")
        await self._serve(self.http_listen, self._app(metrics=False, main=True), "http")

    def serving(self) -> bool:
        """Every listener still accepting connections."""
        return bool(self._runners) and all(runner.addresses for runner in self._runners)

    async def restart(self) -> None:
        """Close what is left and listen again on the same ports."""
        await self.stop()
        await self.start()

    async def stop(self) -> None:
        for runner in self._runners:
            await runner.cleanup()
        self._runners.clear()
