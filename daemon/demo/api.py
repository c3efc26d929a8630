"""The demo's marketer, over the HTTP API: a store key made as `stormd keys create` makes
it, the campaign created and scheduled through `/api/v1` (schedule with an
Idempotency-Key, sent twice: the second is a replay), and the report's "HTTP API" section
(requests made, statuses, the replay, what the audit log recorded)."""

from __future__ import annotations

import json
import uuid
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import aiohttp

from stormd.handlers.access.keys import create_key
from stormd.handlers.kernel.context import JobContext
from stormd.handlers.kernel.service import Actor, Call


@dataclass
class Marketer:
    """An HTTP client of one store's API with its own key."""

    base: str
    store: str
    key: str = ""
    statuses: Counter = field(default_factory=Counter)
    replayed: int = 0

    @classmethod
    async def for_daemon(cls, daemon: Any, store: str) -> Marketer:
        host, port = daemon.http.bound["http"]
        job = JobContext(daemon.sessionmaker, daemon.settings, daemon.clock, daemon.registry)
        made = await create_key(Call(job, Actor.command_line()), store, "demo marketer")
        return cls(f"http://{host}:{port}", store, made.key)

    async def call(self, method: str, path: str, body: Any = None,
                   headers: dict[str, str] | None = None) -> tuple[int, dict[str, Any]]:
        url = f"{self.base}/api/v1/stores/{self.store}{path}"
        sent = {"Authorization": f"Bearer {self.key}", **(headers or {})}
        async with aiohttp.ClientSession() as http, http.request(
                method, url, json=body, headers=sent) as resp:
            self.statuses[resp.status] += 1
            if resp.headers.get("Idempotent-Replayed") == "true":
                self.replayed += 1
            text = await resp.text()
            return resp.status, (json.loads(text) if text else {})

    async def run_campaign(self, spec: dict[str, Any]) -> dict[str, Any]:
        """Create, preview and schedule now; the result as the report shows it."""
        status, created = await self.call("POST", "/campaigns", spec)
        if status != 201:
            return {"error": created.get("detail", f"HTTP {status}")}
        cid = created["id"]
        await self.call("POST", f"/campaigns/{cid}/preview", {})
        once = {"Idempotency-Key": f"schedule-{uuid.uuid4().hex}"}
        status, scheduled = await self.call("POST", f"/campaigns/{cid}/schedule",
                                            {"sendMode": "now"}, once)
        await self.call("POST", f"/campaigns/{cid}/schedule", {"sendMode": "now"}, once)
        if status != 200:
            return {"id": cid, "error": scheduled.get("detail", f"HTTP {status}")}
        return {"id": cid, **scheduled}

    async def results(self, campaign: dict[str, Any]) -> None:
        """The campaign's results and final status, read back through the API."""
        if not campaign.get("id"):
            return
        _, got = await self.call("GET", f"/campaigns/{campaign['id']}/results")
        campaign["results"] = got.get("results", {})
        campaign["status"] = got.get("campaign", {}).get("status")


@dataclass
class Section:
    """One section of the demo's report (the shape of day.py's own)."""

    key: str
    title: str
    lines: list[str]
    data: Any


async def report_api(session, player) -> Section:
    marketer: Marketer | None = player.marketer
    if marketer is None:
        return Section("api", "HTTP API", ["(not used)"], None)
    _, audit = await marketer.call("GET", "/audit", None)
    actions = Counter(e["action"] for e in audit.get("items", []))
    calls = sum(marketer.statuses.values())
    data = {"requests": calls, "statuses": {str(k): v for k, v in marketer.statuses.items()},
            "replayed": marketer.replayed, "audited": dict(actions)}
    return Section("api", "HTTP API (the marketer's campaign)", [
        f"{calls} requests with a store key to {marketer.base}/api/v1/stores/{marketer.store}: "
        + ", ".join(f"{n}x {code}" for code, n in sorted(marketer.statuses.items())),
        f"schedule sent twice with one Idempotency-Key: replayed {marketer.replayed}, "
        "scheduled once",
        "audit log: " + (", ".join(f"{a} {n}" for a, n in sorted(actions.items())) or "empty"),
    ], data)


async def keep_running(daemon: Any, store: str, marketer: Marketer | None,
                       say: Any) -> None:
    """`stormd demo --keep`: leave the daemon serving the demo store until SIGINT/SIGTERM,
    with the API's address and a key for it."""
    import asyncio
    import signal

    marketer = marketer or await Marketer.for_daemon(daemon, store)
    say(f"\nstormd keeps running with the demo store {store}:\n"
        f"  API   {marketer.base}/api/v1/stores/{store}   (docs: {marketer.base}/docs)\n"
        f"  key   {marketer.key}\n"
        f"  e.g.  curl -H 'Authorization: Bearer {marketer.key}' "
        f"{marketer.base}/api/v1/stores/{store}/segments\n"
        "Ctrl-C stops it (the demo's data goes with it).")
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    try:
        await stop.wait()
    finally:
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(sig)
