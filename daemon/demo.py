"""`stormd demo`: the embedded daemon plays one storefront day and shows what it did.

A temporary data dir, SQLite and the outbox channel (nothing is sent). The store's history
(customers, products, six months of orders) is imported first, as a store onboarding would;
then one trading day is published through NATS tick by tick while a settable clock follows
the storefront's time, and four more days are fast-forwarded so the durable timers (cart
reminders after 1 h, 24 h, 3 d; welcome and upsell steps) and the nightly cron (RFM,
segments) fire. Hours of storefront time pass in seconds.

The closing report is a list of functions (`REPORTS`); add one to show more.
"""

from __future__ import annotations

import asyncio
import json
import logging
import tempfile
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import nats
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession
from stormd.config.loader import settings_from_dict
from stormd.daemon.app import Daemon
from stormd.daemon.clock import SettableClock
from stormd.daemon.storefront import Storefront
from stormd.schema.engine import make_engine, make_sessionmaker
from stormd.schema.migrate import create_schema

log = logging.getLogger(__name__)
STORE = "dhaka_bazar"
DAY_START = datetime(2026, 11, 24, 3, 0, tzinfo=UTC)  # 09:00 in Dhaka
TICK = timedelta(minutes=10)
Line = Callable[[str], None]


async def _import_history(settings, shop: Storefront, work: Path, now: datetime) -> int:
    """Customers, products and past orders through the bulk importer (`stormd import`)."""
    from stormd.handlers.bulk_import import import_file

    files = {"customers": [], "products": [], "orders": []}
    files["customers"] = [e["data"] for e in shop.customer_events(now)]
    files["products"] = [e["data"] for e in shop.catalogue_events(now)]
    latest: dict[str, str] = {}
    created: dict[str, dict[str, Any]] = {}
    for at, env in shop.history(now):
        if env["type"] == "order.created":
            created[env["data"]["orderId"]] = {**env["data"], "occurredAt": at.isoformat()}
        elif env["type"] == "order.status_changed":
            latest[env["data"]["orderId"]] = env["data"]["status"]
    files["orders"] = [{**o, "status": latest.get(oid, o["status"])} for oid, o in created.items()]
    engine = make_engine(settings.database.url)
    sessionmaker = make_sessionmaker(engine)
    try:
        for kind in ("customers", "products", "orders"):
            path = work / f"{kind}.jsonl"
            path.write_text("\n".join(json.dumps(r, ensure_ascii=False) for r in files[kind]))
            await import_file(sessionmaker, kind, path, store=STORE, now=now)
    finally:
        await engine.dispose()
    return len(files["orders"])


class Player:
    """Publishes the day's events tick by tick, keeping the clock on storefront time and
    letting timers, cron and the delivery pipeline catch up after each tick."""

    def __init__(self, daemon: Daemon, clock: SettableClock, js, say: Line,
                 tick: timedelta = TICK, follow_step: timedelta = timedelta(hours=1)):
        self.tick = tick
        self.follow_step = follow_step
        self.daemon = daemon
        self.clock = clock
        self.js = js
        self.say = say
        self.published = 0
        self.baseline = event_outcomes()

    async def drained(self) -> None:
        s = self.daemon.settings.nats
        while True:
            info = await self.js.consumer_info(s.stream, s.consumer)
            if info.num_pending == 0 and info.num_ack_pending == 0:
                return
            await asyncio.sleep(0.01)

    async def settle(self) -> None:
        """Fire due timers and cron slots, deliver queued messages, publish events out."""
        await self.drained()
        while await self.daemon.timers.fire_due():
            pass
        await self.daemon.cron.tick()
        await self.daemon.cron.wait_running()
        while await self.daemon.timers.fire_due():
            pass
        run_once = getattr(self.daemon.pipeline, "run_once", None)
        if run_once is not None:
            await run_once()
        await self.daemon.relay.flush()

    async def publish(self, envs: list[dict[str, Any]]) -> None:
        acks = []
        for env in envs:
            subject = f"{self.daemon.settings.nats.subject_prefix}.events.{STORE}.{env['type']}"
            acks.append(await self.js.publish_async(
                subject, json.dumps(env, ensure_ascii=False).encode(),
                headers={"Nats-Msg-Id": env["id"]}))
        await asyncio.gather(*acks)
        self.published += len(envs)

    async def play(self, timeline: list[tuple[datetime, dict[str, Any]]], end: datetime) -> None:
        """Short ticks (ten minutes) through the trading day, then longer ones (an hour)
        until `end`; each tick publishes the events that happened by then."""
        pending = sorted(timeline, key=lambda pair: pair[0])
        tick, i = DAY_START, 0
        while tick <= end:
            self.clock.set(tick)
            start = i
            while i < len(pending) and pending[i][0] < tick + self.tick:
                i += 1
            await self.publish([env for _, env in pending[start:i]])
            await self.settle()
            self.progress(tick)
            tick += self.tick if tick < DAY_START + timedelta(hours=16) else self.follow_step

    async def publish_bad(self) -> None:
        """A few broken events from a buggy storefront: they go to the DLQ, nothing stops."""
        prefix = self.daemon.settings.nats.subject_prefix
        await self.js.publish(f"{prefix}.events.{STORE}.cart.updated", b"{oops")
        await self.js.publish(f"{prefix}.events.{STORE}.cart.teleported",
                              json.dumps({"id": "evt_bad_1", "type": "cart.teleported",
                                          "storeId": STORE, "occurredAt": DAY_START.isoformat(),
                                          "data": {}}).encode())

    def progress(self, tick: datetime) -> None:
        local = tick.astimezone(self.daemon.settings.tz)
        self.say(f"\r  storefront time {local:%a %d %b %H:%M}  events published "
                 f"{self.published:>6}  in flight {self.daemon.actors.pending:>4}")


# --- the report: each function returns (title, lines); add yours to REPORTS -------------

Report = Callable[[AsyncSession, Player], Awaitable[tuple[str, list[str]]]]


def event_outcomes() -> Counter:
    """stormd_events_total summed by outcome (process-wide, so the demo reports deltas)."""
    from stormd.daemon.metrics import EVENTS

    counts: Counter = Counter()
    for metric in EVENTS.collect():
        for sample in metric.samples:
            if sample.name.endswith("_total"):
                counts[sample.labels["outcome"]] += int(sample.value)
    return counts


async def report_events(session: AsyncSession, player: Player) -> tuple[str, list[str]]:
    counts = event_outcomes() - player.baseline
    return "Events", [f"published {player.published}, processed {counts['processed']}, "
                      f"duplicates {counts['duplicate']}, rejected to the DLQ "
                      f"{counts['rejected']}, dead-lettered {counts['dead_lettered']}"]


async def report_messages(session: AsyncSession, player: Player) -> tuple[str, list[str]]:
    from stormd.schema.messages import Message

    rows = (await session.execute(
        select(Message.channel, Message.trigger, Message.status, func.count())
        .where(Message.store_id == STORE)
        .group_by(Message.channel, Message.trigger, Message.status)
        .order_by(Message.channel, Message.trigger)
    )).all()
    return "Messages in the outbox (channel, trigger, status)", [
        f"{c:<9} {t or '-':<22} {s:<10} {n}" for c, t, s, n in rows] or ["(none)"]


async def report_carts(session: AsyncSession, player: Player) -> tuple[str, list[str]]:
    from stormd.schema.carts import Cart, CartAbandonmentEvent

    carts = dict((await session.execute(
        select(Cart.status, func.count()).where(Cart.store_id == STORE).group_by(Cart.status)
    )).all())
    abandoned = dict((await session.execute(
        select(CartAbandonmentEvent.status, func.count())
        .where(CartAbandonmentEvent.store_id == STORE).group_by(CartAbandonmentEvent.status)
    )).all())
    return "Carts", [
        "carts by status: " + (", ".join(f"{k} {v}" for k, v in sorted(carts.items())) or "-"),
        f"abandoned {sum(abandoned.values())}, recovered {abandoned.get('RECOVERED', 0)}"
        + ("" if not abandoned else " (" + ", ".join(f"{k} {v}" for k, v in
                                                     sorted(abandoned.items())) + ")"),
    ]


async def report_segments(session: AsyncSession, player: Player) -> tuple[str, list[str]]:
    from stormd.schema.segments import CustomerSegment

    rows = (await session.execute(
        select(CustomerSegment.slug, CustomerSegment.member_count)
        .where(CustomerSegment.store_id == STORE).order_by(CustomerSegment.slug)
    )).all()
    return "Segments", [f"{slug:<20} {n}" for slug, n in rows] or ["(none)"]


async def report_kpis(session: AsyncSession, player: Player) -> tuple[str, list[str]]:
    from stormd.handlers.kpis import compute_kpis

    rows = await compute_kpis(session, STORE)
    lines = []
    for row in rows:
        for name, value in row.items():
            if name != "store":
                shown = "-" if value is None else (
                    f"{value:.1%}" if isinstance(value, float) and value <= 1 else value)
                lines.append(f"{name:<32} {shown}")
    return "KPIs", lines or ["(none)"]


REPORTS: list[Report] = [report_events, report_messages, report_carts, report_segments,
                         report_kpis]


async def run_demo(customers: int = 300, seed: int = 7, say: Line = print,
                   tick: timedelta = TICK, follow_step: timedelta = timedelta(hours=1)) -> None:
    started = time.perf_counter()
    # The one-line progress display is for a terminal; a captured `say` gets the report only.
    progress: Line = ((lambda s: print(s, end="", flush=True)) if say is print
                      else (lambda s: None))
    with tempfile.TemporaryDirectory(prefix="stormd-demo-") as tmp:
        work = Path(tmp)
        settings = settings_from_dict({
            "daemon": {"data_dir": str(work / "data"), "log_level": "WARNING"},
            "nats": {"url": "embedded", "embedded_port": 0},
            "database": {"url": f"sqlite+aiosqlite:///{work / 'stormd.db'}"},
            "metrics": {"listen": "127.0.0.1:0"}, "http": {"listen": "127.0.0.1:0"},
        })
        shop = Storefront(store_id=STORE, customers=customers, seed=seed)
        say(f"stormd demo: store {STORE}, {customers} customers, {len(shop.products)} products")
        await create_schema(settings.database.url)
        orders = await _import_history(settings, shop, work, DAY_START)
        say(f"  imported history: {customers} customers, {orders} orders over six months")
        clock = SettableClock(DAY_START)
        daemon = Daemon(settings, clock=clock, timer_poll=0.05, serve_http=False)
        await daemon.start()
        nc = await nats.connect(daemon.nats_url)
        try:
            player = Player(daemon, clock, nc.jetstream(), progress, tick, follow_step)
            await player.publish_bad()
            day = shop.day(DAY_START)
            say(f"  playing one storefront day: {len(day)} events, then four days of timers")
            await player.play(day, DAY_START + timedelta(days=4, hours=16))
            progress("\r" + " " * 78 + "\r")
            async with daemon.sessionmaker() as session:
                for report in REPORTS:
                    try:
                        title, lines = await report(session, player)
                    except Exception as exc:  # a report must not hide the others
                        title, lines = report.__name__, [f"unavailable: {exc}"]
                    say(f"\n{title}")
                    for line in lines:
                        say(f"  {line}")
        finally:
            await nc.close()
            await daemon.stop()
    say(f"\ndemo finished in {time.perf_counter() - started:.0f}s of real time")
