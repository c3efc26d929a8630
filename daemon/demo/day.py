"""`stormd demo`: the embedded daemon plays one storefront day and shows what it did.

A temporary data dir, SQLite and the outbox channel (nothing is sent). The store's history
(customers, products, a year of orders) is imported first, as a store onboarding would;
then one trading day is published through NATS tick by tick while a settable clock follows
the storefront's time, and four more days are fast-forwarded so the durable timers (cart
reminders after 1 h, 24 h, 3 d; welcome and post-purchase steps) and the nightly cron (RFM,
segments, win-back, birthdays) fire. On the second morning the marketer sends a campaign to
the `loyal` segment through the HTTP API (daemon/demo/api.py), and shoppers open and click some of the
e-mails they get. The demo also stands in for the SMS and WhatsApp operators behind the
outbox: it posts signed delivery and read receipts to the daemon's `/webhooks/outbox`, as
the real providers' webhooks would. Hours of storefront time pass in seconds.

The closing report is a list of functions (`REPORTS`), each giving one `Section` (lines
for people, data for `--json`); add one to show more.
"""

from __future__ import annotations

import asyncio
import json
import logging
import random
import secrets
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import nats
from sqlalchemy import case, func, select
from sqlalchemy.ext.asyncio import AsyncSession

from stormd.config.clock import SettableClock
from stormd.config.loader import settings_from_dict
from stormd.daemon.demo import hostile_input, predictions
from stormd.daemon.demo.api import Marketer, keep_running, report_api
from stormd.daemon.demo.automations import anniversary_orders, report_automation_rules
from stormd.daemon.demo.hostile_content import report_hostile_content
from stormd.daemon.demo.section import Section
from stormd.daemon.demo.storefront import Storefront
from stormd.daemon.runtime.app import Daemon
from stormd.schema.db.engine import make_engine, make_sessionmaker
from stormd.schema.metrics import EVENTS, bucket_quantile, event_latency_buckets
from stormd.schema.migrate import create_schema

log = logging.getLogger(__name__)
STORE = "dhaka_bazar"
DAY_START = datetime(2026, 11, 24, 3, 0, tzinfo=UTC)  # 09:00 in Dhaka
TICK = timedelta(minutes=15)
FOLLOW_STEP = timedelta(hours=2)
CAMPAIGN_AT = DAY_START + timedelta(days=1, hours=2)  # the second morning, 11:00 in Dhaka
CAMPAIGN = {"name": "Loyal customers: 10% this week", "channels": ["whatsapp", "email", "sms"],
            "segments": ["loyal"], "template": "win_back", "discountPercent": 10,
            "holdoutPercent": 10}
OPEN_RATE, CLICK_RATE = 0.4, 0.25  # of the e-mails stormd sends; clicks are of the opens
# Receipts the stand-in operators give: the share of messages delivered, and of WhatsApp
# deliveries read (Bangladesh gateways deliver most SMS; WhatsApp is read far more often).
DELIVERED = {"sms": 0.93, "whatsapp": 0.97}
WHATSAPP_READ = 0.7
Line = Callable[[str], None]


def _birthday_today(customer: dict[str, Any], when: datetime) -> dict[str, Any]:
    return {**customer, "birthday": f"1994-{when:%m-%d}"}


async def _import_history(settings, shop: Storefront, work: Path, now: datetime) -> int:
    """Customers, products and past orders through the bulk importer (`stormd import`).
    Every 40th shopper has a birthday on the second day, for the birthday automation, and
    every 50th a first order a year before it, for the anniversary."""
    from stormd.handlers.imports.bulk import import_file

    files = {"customers": [], "products": [], "orders": []}
    files["customers"] = [
        _birthday_today(e["data"], now + timedelta(days=1)) if i % 40 == 0 else e["data"]
        for i, e in enumerate(shop.customer_events(now))]
    files["products"] = [e["data"] for e in shop.catalogue_events(now)]
    latest: dict[str, str] = {}
    created: dict[str, dict[str, Any]] = {}
    for at, env in shop.history(now):
        if env["type"] == "order.created":
            created[env["data"]["orderId"]] = {**env["data"], "occurredAt": at.isoformat()}
        elif env["type"] == "order.status_changed":
            latest[env["data"]["orderId"]] = env["data"]["status"]
    files["orders"] = [{**o, "status": latest.get(oid, o["status"])} for oid, o in created.items()]
    files["orders"] += anniversary_orders(shop.people, now + timedelta(days=1))
    engine = make_engine(settings.database.url)
    sessionmaker = make_sessionmaker(engine)
    try:
        for kind in ("customers", "products", "orders"):
            path = work / f"{kind}.jsonl"
            path.write_text("\n".join(json.dumps(r, ensure_ascii=False) for r in files[kind]))
            await import_file(sessionmaker, kind, path, store=STORE, now=now,
                              timezone=settings.daemon.timezone)
    finally:
        await engine.dispose()
    return len(files["orders"])


def _signups(shop: Storefront, start: datetime, n: int) -> list[tuple[datetime, dict[str, Any]]]:
    """New shoppers signing up during the day (the welcome series greets them)."""
    out = []
    for i in range(n):
        at = start + timedelta(hours=1 + i * 12 / max(n, 1))
        person = {**shop.people[i % len(shop.people)], "customerId": f"new{i:03d}",
                  "email": f"new{i}@example.com.bd", "createdAt": at.isoformat()}
        out.append((at, shop.envelope("customer.upserted", at, person)))
    return out


@dataclass
class Player:
    """Publishes the day's events tick by tick, keeping the clock on storefront time and
    letting timers, cron and the delivery pipeline catch up after each tick; listens to
    what stormd publishes on `<prefix>.out.<store>.>` as a storefront would."""

    daemon: Daemon
    clock: SettableClock
    nc: Any
    say: Line
    tick: timedelta = TICK
    follow_step: timedelta = FOLLOW_STEP
    seed: int = 7
    published: int = 0
    engaged: Counter = field(default_factory=Counter)
    out: Counter = field(default_factory=Counter)
    campaign: dict[str, Any] = field(default_factory=dict)
    marketer: Marketer | None = None
    baseline: Counter = field(default_factory=lambda: event_outcomes())
    latency: list = field(default_factory=lambda: event_latency_buckets())
    receipts_url: str | None = None
    webhook_secret: str = ""
    receipts: Counter = field(default_factory=Counter)
    _last_email: int = 0
    _last_receipt: int = 0

    def __post_init__(self) -> None:
        self.js = self.nc.jetstream()
        self.rng = random.Random(self.seed)
        self.prefix = self.daemon.settings.nats.subject_prefix

    async def listen(self) -> None:
        async def count(msg) -> None:
            envelope = json.loads(msg.data)
            change = envelope["data"].get("change") or envelope["data"].get("status")
            self.out[(envelope["type"], change)] += 1

        await self.nc.subscribe(f"{self.prefix}.out.{STORE}.>", cb=count)

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
            subject = f"{self.prefix}.events.{STORE}.{env['type']}"
            acks.append(await self.js.publish_async(
                subject, json.dumps(env, ensure_ascii=False).encode(),
                headers={"Nats-Msg-Id": f"{env['storeId']}:{env['id']}"}))
        await asyncio.gather(*acks)
        self.published += len(envs)

    async def engagement(self, shop: Storefront) -> list[dict[str, Any]]:
        """Shoppers open (and some click) the e-mails stormd sent since the last tick."""
        from stormd.schema.marketing.messages import Message

        async with self.daemon.sessionmaker() as session:
            rows = (await session.execute(
                select(Message.id, Message.customer_id)
                .where(Message.store_id == STORE, Message.channel == "email",
                       Message.status == "sent", Message.id > self._last_email)
                .order_by(Message.id))).all()
        envs, now = [], self.clock.now()
        for message_id, customer in rows:
            self._last_email = message_id
            if self.rng.random() >= OPEN_RATE:
                continue
            kinds = ["email.open"] + (["email.click"] if self.rng.random() < CLICK_RATE else [])
            for kind in kinds:
                self.engaged[kind] += 1
                envs.append(shop.envelope(kind, now, {
                    "messageId": str(message_id), "customerId": customer,
                    **({"url": "https://dhakabazar.example/deal"} if kind == "email.click"
                       else {})}))
        return envs

    async def operator_receipts(self) -> None:
        """The SMS and WhatsApp operators behind the outbox report what became of the
        messages sent since the last tick: one signed request to `/webhooks/outbox`."""
        import aiohttp

        from stormd.plugins import hub_signature
        from stormd.schema.marketing.messages import Message

        if self.receipts_url is None:
            return
        async with self.daemon.sessionmaker() as session:
            rows = (await session.execute(
                select(Message.id, Message.channel, Message.external_id)
                .where(Message.store_id == STORE, Message.channel.in_(DELIVERED),
                       Message.provider == "outbox", Message.status == "sent",
                       Message.id > self._last_receipt)
                .order_by(Message.id))).all()
        if not rows:
            return
        self._last_receipt = rows[-1].id
        at = self.clock.now().isoformat()
        receipts = []
        for row in rows:
            fate = random.Random(f"{self.seed}:{row.id}")  # the same message, the same fate
            delivered = fate.random() < DELIVERED[row.channel]
            status = "delivered" if delivered else "failed"
            if delivered and row.channel == "whatsapp" and fate.random() < WHATSAPP_READ:
                status = "read"
            self.receipts[(row.channel, status)] += 1
            receipts.append({"messageId": row.external_id, "status": status, "at": at,
                             **({"reason": "handset unreachable"} if not delivered else {})})
        body = json.dumps({"id": f"receipts-{self._last_receipt}", "receipts": receipts}).encode()
        async with aiohttp.ClientSession() as http, http.post(
                self.receipts_url, data=body,
                headers={"X-Stormd-Signature": hub_signature(self.webhook_secret, body),
                         "Content-Type": "application/json"}) as resp:
            if resp.status != 200:
                raise RuntimeError(f"/webhooks/outbox answered {resp.status}: "
                                   f"{await resp.text()}")

    async def run_campaign(self) -> None:
        """The marketer's morning: create a campaign for a segment, preview its cost and
        schedule it now, over the HTTP API (the ROI guard may refuse it, which is reported
        as it is)."""
        self.marketer = await Marketer.for_daemon(self.daemon, STORE)
        self.campaign = await self.marketer.run_campaign(CAMPAIGN)

    async def play(self, shop: Storefront, timeline: list[tuple[datetime, dict[str, Any]]],
                   end: datetime) -> None:
        """Short ticks through the trading day, then longer ones until `end`; each tick
        publishes the events that happened by then (and e-mail engagement)."""
        pending = sorted(timeline, key=lambda pair: pair[0])
        tick, i, campaign_done = DAY_START, 0, False
        while tick <= end:
            self.clock.set(tick)
            start = i
            while i < len(pending) and pending[i][0] < tick + self.tick:
                i += 1
            await self.publish([env for _, env in pending[start:i]]
                               + await self.engagement(shop))
            if not campaign_done and tick >= CAMPAIGN_AT:
                await self.run_campaign()
                campaign_done = True
            await self.settle()
            await self.operator_receipts()
            self.progress(tick)
            tick += self.tick if tick < DAY_START + timedelta(hours=16) else self.follow_step

    async def publish_bad(self) -> None:
        """A few broken events from a buggy storefront: they go to the DLQ, nothing stops."""
        await self.js.publish(f"{self.prefix}.events.{STORE}.cart.updated", b"{oops")
        await self.js.publish(f"{self.prefix}.events.{STORE}.cart.teleported",
                              json.dumps({"id": "evt_bad_1", "type": "cart.teleported",
                                          "storeId": STORE, "occurredAt": DAY_START.isoformat(),
                                          "data": {}}).encode())

    def progress(self, tick: datetime) -> None:
        local = tick.astimezone(self.daemon.settings.tz)
        self.say(f"\r  storefront time {local:%a %d %b %H:%M}  events published "
                 f"{self.published:>6}  in flight {self.daemon.actors.pending:>4}")


# --- the report: each function returns a Section; add yours to REPORTS ------------------


Report = Callable[[AsyncSession, Player], Awaitable[Section]]


def event_outcomes() -> Counter:
    """stormd_events_total summed by outcome (process-wide, so the demo reports deltas)."""
    counts: Counter = Counter()
    for metric in EVENTS.collect():
        for sample in metric.samples:
            if sample.name.endswith("_total"):
                counts[sample.labels["outcome"]] += int(sample.value)
    return counts


def _money(value: Any) -> str:
    return f"BDT {Decimal(value or 0):,.2f}"


def _plain(value: Any) -> Any:
    return str(value) if isinstance(value, Decimal) else value


async def report_events(session: AsyncSession, player: Player) -> Section:
    counts = event_outcomes() - player.baseline
    out = Counter()
    for (type_, _), n in player.out.items():
        out[type_] += n
    now = event_latency_buckets()
    p50, p99 = (bucket_quantile(player.latency, now, q) * 1000 for q in (0.5, 0.99))
    data = {"published": player.published, "processed": counts["processed"],
            "duplicates": counts["duplicate"], "rejected": counts["rejected"],
            "deadLettered": counts["dead_lettered"], "published_out": dict(out),
            "handledWithinMs": {"p50": p50, "p99": p99}}
    return Section("events", "Events through NATS", [
        f"in:  published {player.published}, processed {counts['processed']}, duplicates "
        f"{counts['duplicate']}, rejected to the DLQ {counts['rejected']}, dead-lettered "
        f"{counts['dead_lettered']}",
        f"     receipt to committed: p50 <= {p50:g} ms, p99 <= {p99:g} ms "
        "(stormd_event_seconds buckets)",
        "out: " + (", ".join(f"{t} {n}" for t, n in sorted(out.items())) or "-")
        + f"   (on {player.prefix}.out.{STORE}.>)",
    ], data)


async def report_carts(session: AsyncSession, player: Player) -> Section:
    from stormd.handlers.carts.recovery import TRIGGER
    from stormd.schema.marketing.messages import Message
    from stormd.schema.shop.carts import CartAbandonmentEvent as Ab

    abandoned, recovered, revenue = (await session.execute(
        select(func.count(), func.coalesce(func.sum(case((Ab.status == "RECOVERED", 1),
                                                         else_=0)), 0),
               func.coalesce(func.sum(Ab.recovered_revenue), 0))
        .where(Ab.store_id == STORE))).one()
    steps = (await session.execute(
        select(Message.template, Message.channel, func.count())
        .where(Message.store_id == STORE, Message.trigger == TRIGGER)
        .group_by(Message.template, Message.channel).order_by(Message.template))).all()
    rate = f" ({recovered / abandoned:.0%})" if abandoned else ""
    data = {"abandoned": abandoned, "recovered": int(recovered),
            "recoveredRevenue": str(Decimal(revenue).quantize(Decimal("0.01"))),
            "reminders": [{"template": t, "channel": c, "messages": n} for t, c, n in steps]}
    return Section("carts", "Abandoned carts", [
        f"abandoned {abandoned}, recovered {recovered}{rate}, recovered revenue "
        f"{_money(revenue)}",
        "reminders: " + (" · ".join(f"{t} by {c} {n}" for t, c, n in steps) or "none"),
    ], data)


async def report_examples(session: AsyncSession, player: Player) -> Section:
    """One rendered cart reminder in Bengali and one in English, as the outbox holds them."""
    from stormd.handlers.carts.recovery import TRIGGER
    from stormd.schema.marketing.messages import Message
    from stormd.schema.shop.customers import Customer

    lines, data = [], []
    for locale in ("bn", "en"):
        row = (await session.execute(
            select(Message.channel, Message.template, Message.to_address, Message.subject,
                   Message.body)
            .join(Customer, (Customer.store_id == Message.store_id)
                  & (Customer.customer_id == Message.customer_id))
            .where(Message.store_id == STORE, Message.trigger == TRIGGER,
                   Customer.locale == locale)
            .order_by(Message.channel != "whatsapp", Message.id).limit(1))).first()
        if row is None:
            continue
        channel, template, to, subject, body = row
        data.append({"locale": locale, "channel": channel, "template": template, "to": to,
                     "subject": subject, "body": body})
        lines.append(f"[{locale}] {template} by {channel} to {to}"
                     + (f" — {subject}" if subject else ""))
        lines += [f"    {text}" for text in body.strip().splitlines()[:6] if text.strip()]
    return Section("examples", "Example messages (rendered, in the outbox)",
                   lines or ["(none)"], data)


async def report_segments(session: AsyncSession, player: Player) -> Section:
    from stormd.schema.marketing.rfm import RfmRun
    from stormd.schema.marketing.segments import CustomerSegment

    runs = (await session.execute(
        select(RfmRun.as_of, RfmRun.population).where(RfmRun.store_id == STORE,
                                                      RfmRun.finished_at.is_not(None))
        .order_by(RfmRun.as_of))).all()
    sizes = (await session.execute(
        select(CustomerSegment.slug, CustomerSegment.member_count)
        .where(CustomerSegment.store_id == STORE).order_by(CustomerSegment.slug))).all()
    moves = {change: n for (type_, change), n in player.out.items()
             if type_ == "customer.segmented"}
    tz = player.daemon.settings.tz
    data = {"rfmRuns": [{"asOf": at.isoformat(), "scored": n} for at, n in runs],
            "sizes": dict(sizes), "segmentedEvents": moves}
    return Section("segments", "RFM and segments", [
        f"RFM runs {len(runs)} (nightly cron): "
        + (", ".join(f"{at.astimezone(tz):%a %H:%M} scored {n}" for at, n in runs) or "none"),
        "sizes: " + (", ".join(f"{slug} {n}" for slug, n in sizes) or "none"),
        f"customer.segmented published: entered {moves.get('entered', 0)}, "
        f"exited {moves.get('exited', 0)}",
    ], data)


async def report_campaign(session: AsyncSession, player: Player) -> Section:
    c = player.campaign
    if not c or "error" in c:
        return Section("campaign", "Campaign", [f"not sent: {c.get('error', 'not run')}"], c)
    p, r = c.get("preview", {}), c.get("results", {})
    lines = [f"\"{CAMPAIGN['name']}\" to segment {', '.join(CAMPAIGN['segments'])} "
             f"(template {CAMPAIGN['template']}, {CAMPAIGN['discountPercent']}% codes, "
             f"{CAMPAIGN['holdoutPercent']}% holdout)"]
    if p:
        lines.append(f"preview: audience {p['audience']}, holdout {p['holdout']}, reach "
                     f"{p['reach']} ({', '.join(f'{k} {v}' for k, v in sorted(p['byChannel'].items()))}), "
                     f"cost {_money(p['cost'])}, expected revenue {_money(p['expectedRevenue'])}"
                     + (f", expected ROI {p['expectedRoi']}:1" if p.get("expectedRoi") else ""))
    if r:
        variants = r.get("variants", [])
        held = r.get("holdout") or {}
        lines.append(f"sent {sum(v['sent'] for v in variants)}, "
                     f"opened {sum(v['opened'] for v in variants)}, "
                     f"clicked {sum(v['clicked'] for v in variants)}, "
                     f"converted {sum(v['converted'] for v in variants)} "
                     f"(holdout {held.get('sent', 0)} kept back, converted "
                     f"{held.get('converted', 0)}); attributed orders {r['orders']}, revenue "
                     f"{_money(r['revenue'])}, cost {_money(r['cost'])}, ROI {r['roi'] or '-'}")
    status = c.get("status") or c.get("campaign", {}).get("status")
    lines.append(f"status {status}")
    return Section("campaign", "Campaign", lines, c)


async def report_automations(session: AsyncSession, player: Player) -> Section:
    from stormd.schema.marketing.automations import AutomationExecution as Ex

    rows = (await session.execute(
        select(Ex.trigger, Ex.status, func.count()).where(Ex.store_id == STORE)
        .group_by(Ex.trigger, Ex.status).order_by(Ex.trigger, Ex.status))).all()
    by_trigger: dict[str, dict[str, int]] = {}
    for trigger, status, n in rows:
        by_trigger.setdefault(trigger, {})[status] = n
    return Section("automations", "Automations (executions by status)", [
        f"{trigger:<16} " + ", ".join(f"{s} {n}" for s, n in statuses.items())
        for trigger, statuses in by_trigger.items()] or ["(none)"], by_trigger)


async def report_messages(session: AsyncSession, player: Player) -> Section:
    from stormd.schema.marketing.messages import Message

    rows = (await session.execute(
        select(Message.channel, Message.provider, Message.status, func.count(),
               func.coalesce(func.sum(Message.cost), 0))
        .where(Message.store_id == STORE)
        .group_by(Message.channel, Message.provider, Message.status)
        .order_by(Message.channel, Message.provider, Message.status))).all()
    data = [{"channel": c, "provider": p, "status": s, "messages": n, "cost": str(cost)}
            for c, p, s, n, cost in rows]
    lines = [f"{c:<9} {p or '-':<9} {s:<10} {n:>5}" for c, p, s, n, _ in rows] or ["(none)"]
    if rows:
        lines.append("(the outbox channel records every message and sends nothing; "
                     "`stormd messages` lists them)")
    if player.receipts:
        lines.append("receipts posted to /webhooks/outbox by the stand-in operators: " + " · ".join(
            f"{channel} {status} {n}" for (channel, status), n in sorted(player.receipts.items())))
    return Section("messages", "Messages (channel, provider, status)", lines, data)


async def report_kpis(session: AsyncSession, player: Player) -> Section:
    from stormd.handlers.reporting.figures import show_kpi
    from stormd.handlers.reporting.kpis import compute_kpis

    rows = await compute_kpis(session, STORE)
    lines = [f"{name:<32} {show_kpi(name, value)}"
             for row in rows for name, value in row.items() if name != "store"]
    data = {k: _plain(v) for k, v in rows[0].items()} if rows else {}
    return Section("kpis", "KPIs (stormd kpis)", lines or ["(none)"], data)


REPORTS: list[Report] = [report_events, report_carts, report_examples, report_segments,
                         report_campaign, report_automations, report_messages, report_kpis,
                         predictions.report_predictions,
                         report_hostile_content, report_api,  # type: ignore[list-item]
                         report_automation_rules]
REPORTS.append(hostile_input.report_hostile)  # last: it publishes the hostile events it reports


async def _report(daemon: Daemon, player: Player) -> list[Section]:
    if player.marketer is not None:
        await player.marketer.results(player.campaign)
    sections = []
    async with daemon.sessionmaker() as session:
        for report in REPORTS:
            try:
                sections.append(await report(session, player))
            except Exception as exc:  # a report must not hide the others
                log.exception("demo report %s", report.__name__)
                sections.append(Section(report.__name__, report.__name__,
                                        [f"unavailable: {exc}"], None))
    return sections


def _show(sections: list[Section], say: Line) -> None:
    for section in sections:
        say(f"\n{section.title}")
        for line in section.lines:
            say(f"  {line}")


async def run_demo(customers: int = 300, seed: int = 7, say: Line = print,
                   tick: timedelta = TICK, follow_step: timedelta = FOLLOW_STEP,
                   progress: Line | None = None, keep: bool = False) -> dict[str, Any]:
    """Play the demo; `say` gets the report lines, `progress` the one-line display (by
    default on a terminal only). Returns the report's data (what `--json` prints). With
    `keep`, the daemon serves the demo store after the report until SIGINT/SIGTERM."""
    started = time.perf_counter()
    if progress is None:
        on_terminal = say is print and sys.stdout.isatty()
        progress = (lambda s: print(s, end="", flush=True)) if on_terminal else (lambda s: None)
    secret = secrets.token_hex(16)
    with tempfile.TemporaryDirectory(prefix="stormd-demo-") as tmp:
        work = Path(tmp)
        settings = settings_from_dict({
            "daemon": {"data_dir": str(work / "data"), "log_level": "WARNING"},
            "nats": {"url": "embedded", "embedded_port": 0},
            "database": {"url": f"sqlite+aiosqlite:///{work / 'stormd.db'}"},
            "metrics": {"listen": "127.0.0.1:0"}, "http": {"listen": "127.0.0.1:0"},
            "providers": {"outbox": {"webhook_secret": secret}},
        })
        shop = Storefront(store_id=STORE, customers=customers, seed=seed)
        say(f"stormd demo: store {STORE}, {customers} customers, {len(shop.products)} products,"
            " delivering to the outbox channel (nothing is sent)")
        await create_schema(settings.database.url)
        orders = await _import_history(settings, shop, work, DAY_START)
        say(f"  imported history: {customers} customers, {orders} orders over a year")
        clock = SettableClock(DAY_START)
        daemon = Daemon(settings, clock=clock, timer_poll=0.05)
        await daemon.start()
        nc = await nats.connect(daemon.nats_url)
        try:
            host, port = daemon.http.bound["http"]
            player = Player(daemon, clock, nc, progress, tick, follow_step, seed,
                            receipts_url=f"http://{host}:{port}/webhooks/outbox",
                            webhook_secret=secret)
            await player.listen()
            await player.publish_bad()
            day = shop.day(DAY_START) + _signups(shop, DAY_START, max(customers // 30, 2))
            say(f"  playing one storefront day ({len(day)} events) through NATS, then four "
                "days of timers and nightly jobs; a campaign on the second morning")
            await player.play(shop, day, DAY_START + timedelta(days=4, hours=16))
            progress("\r" + " " * 78 + "\r")
            sections = await _report(daemon, player)
            if keep:
                _show(sections, say)
                await keep_running(daemon, STORE, player.marketer, say)
        finally:
            await nc.close()
            await daemon.stop()
    if not keep:
        _show(sections, say)
    seconds = time.perf_counter() - started
    say(f"\ndemo finished in {seconds:.0f}s of real time")
    return {"store": STORE, "customers": customers, "seed": seed,
            **{s.key: s.data for s in sections}, "seconds": round(seconds, 1)}
