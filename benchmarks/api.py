"""Benchmark: the HTTP API of a running daemon while it ingests events.

    python benchmarks/api.py [--customers 100000] [--events-per-second 200] [--db URL]

Set-up (not timed): a store of N customers (lifecycle rows with orders and RFM, all in
one segment), a year of delivery log, abandoned carts, automation executions and e-mail
engagement for the KPIs, a campaign to the whole segment over SMS then e-mail, and a
store key; the embedded daemon (NATS and SQLite, or --db) serves the API. A publisher
sends customer and cart events through NATS the whole time, so every figure is taken
while the daemon ingests.

Timed, through real HTTP with the key: list and get requests (one at a time: p50, p99,
requests/s; then 8 at once: requests/s), a segment preview over the N customers, a
campaign preview over the N-customer audience, the KPIs per day, week and month over a
year. Targets: list and get p99 under 50 ms; a preview of 100,000 customers under 2 s.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing
import os
import random
import statistics
import tempfile
import time
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import httpx
import nats
from sqlalchemy import insert, text

from stormd.config.clock import Clock
from stormd.config.loader import settings_from_dict
from stormd.daemon.runtime.app import Daemon
from stormd.handlers.access.keys import create_key
from stormd.handlers.kernel.context import JobContext
from stormd.handlers.kernel.service import Actor, Call
from stormd.schema.db.engine import make_engine, make_sessionmaker
from stormd.schema.marketing.automations import AutomationExecution
from stormd.schema.marketing.messages import EmailEvent, Message
from stormd.schema.marketing.rfm import CustomerLifecycleMetrics
from stormd.schema.marketing.segments import CustomerSegment, CustomerSegmentMember
from stormd.schema.migrate import create_schema
from stormd.schema.shop.carts import CartAbandonmentEvent
from stormd.schema.shop.customers import Customer
from stormd.schema.shop.stores import Store

STORE = "bench"
CHUNK = 10_000


async def seed(url: str, n: int, now: datetime) -> None:
    """The store, its customers and a year of history (plain inserts, not timed)."""
    rng = random.Random(7)
    engine = make_engine(url)
    sessionmaker = make_sessionmaker(engine)
    year = [now - timedelta(seconds=rng.randrange(365 * 86400)) for _ in range(n)]
    async with sessionmaker() as s:
        s.add(Store(id=STORE, name="Bench Bazar", created_at=now - timedelta(days=400)))
        seg = CustomerSegment(store_id=STORE, slug="everyone", name="Everyone", criteria={},
                              builtin=False, member_count=n, created_at=now, updated_at=now,
                              refreshed_at=now)
        s.add(seg)
        await s.flush()
        for lo in range(0, n, CHUNK):
            rows = range(lo, min(n, lo + CHUNK))
            await s.execute(insert(Customer), [{
                "store_id": STORE, "customer_id": f"cust{i:07d}", "email": f"c{i}@mail.bd",
                "phone": f"+88017{i:08d}", "name": f"Customer {i}",
                "locale": "bn" if i % 3 else "en", "consent_email": True,
                "consent_sms": i % 5 != 0, "consent_whatsapp": True, "consent_push": False,
                "created_at": now, "updated_at": now} for i in rows])
            await s.execute(insert(CustomerLifecycleMetrics), [{
                "store_id": STORE, "customer_id": f"cust{i:07d}",
                "stage": ("NEW", "ACTIVE", "CHURNED")[i % 3], "churn_risk": (i % 10) / 10,
                "orders_count": i % 7, "orders_total": Decimal(500 * (i % 7)),
                "first_order_at": year[i] - timedelta(days=30), "last_order_at": year[i],
                "recency_days": (now - year[i]).days, "frequency": i % 7,
                "monetary": Decimal(500 * (i % 7)), "r": 1 + i % 5, "f": 1 + (i // 5) % 5,
                "m": 1 + (i // 25) % 5, "composite": 10 + i % 41, "as_of": now} for i in rows])
            await s.execute(insert(CustomerSegmentMember), [{
                "store_id": STORE, "segment_id": seg.id, "customer_id": f"cust{i:07d}",
                "entered_at": now} for i in rows])
            await s.execute(insert(Message), [{
                "store_id": STORE, "customer_id": f"cust{i:07d}", "channel": "sms",
                "provider": "outbox", "template": "win_back", "trigger": "win_back",
                "idempotency_key": f"bench:{i}", "status": "sent", "not_before": year[i],
                "body": "Salam", "cost": Decimal("0.35"), "segments": 1, "created_at": year[i],
                "updated_at": year[i], "sent_at": year[i], "marketing": True, "priority": 0,
                "attempts": 1} for i in rows])
            if lo % (5 * CHUNK) == 0:  # a fifth as many carts, executions, e-mail events
                await s.execute(insert(CartAbandonmentEvent), [{
                    "store_id": STORE, "cart_id": f"cart{i}", "customer_id": f"cust{i:07d}",
                    "cart_value": Decimal(1500), "abandoned_at": year[i],
                    "status": "RECOVERED" if i % 4 == 0 else "ENDED",
                    "recovered_revenue": Decimal(1500) if i % 4 == 0 else None}
                    for i in range(lo, min(n, lo + 2 * CHUNK))])
                await s.execute(insert(AutomationExecution), [{
                    "store_id": STORE, "trigger": "win_back", "customer_id": f"cust{i:07d}",
                    "idempotency_key": f"bench:x:{i}", "status": "COMPLETED", "step": 1,
                    "created_at": year[i], "updated_at": year[i]}
                    for i in range(lo, min(n, lo + 2 * CHUNK))])
                await s.execute(insert(EmailEvent), [{
                    "store_id": STORE, "message_id": str(i), "customer_id": f"cust{i:07d}",
                    "type": ("SENT", "OPEN", "CLICK")[i % 3], "occurred_at": year[i]}
                    for i in range(lo, min(n, lo + 2 * CHUNK))])
        await s.commit()
    async with engine.connect() as conn:
        await conn.execute(text("ANALYZE"))
        await conn.commit()
    await engine.dispose()


async def publisher(url: str, rate: float, stop, sent_box) -> None:
    """Customer and cart events at about `rate` a second until `stop` is set (run in a
    process of its own, as a storefront would be); the count goes to `sent_box`."""
    nc = await nats.connect(url)
    js = nc.jetstream()
    sent, started = 0, time.monotonic()
    try:
        while not stop.is_set():
            i = sent
            kind, data = (("customer.upserted", {"customerId": f"live{i}", "name": f"Live {i}"})
                          if i % 2 else
                          ("cart.updated", {"cartId": f"livecart{i}", "customerId": f"live{i - 1}",
                                            "items": [{"productId": "p1", "quantity": 1,
                                                       "unitPrice": "900"}]}))
            env = {"id": f"bench-{i}", "type": kind, "storeId": STORE,
                   "occurredAt": datetime.now(UTC).isoformat(), "data": data}
            await js.publish(f"stormcom.events.{STORE}.{kind}", json.dumps(env).encode(),
                             headers={"Nats-Msg-Id": f"{STORE}:bench-{i}"})
            sent += 1
            ahead = sent / rate - (time.monotonic() - started)
            if ahead > 0:
                await asyncio.sleep(ahead)
    finally:
        await nc.close()
        sent_box.value = sent


def publish_process(url: str, rate: float, stop, sent_box) -> None:
    asyncio.run(publisher(url, rate, stop, sent_box))


async def loop_lag(lags: list[float], stop: asyncio.Event) -> None:
    """How late the daemon's event loop wakes a 10 ms sleep: the time it spends blocked."""
    while not stop.is_set():
        started = time.perf_counter()
        await asyncio.sleep(0.01)
        lags.append(time.perf_counter() - started - 0.01)


def _stats(name: str, seconds: list[float], wall: float) -> dict:
    ms = sorted(s * 1000 for s in seconds)
    p99 = ms[min(len(ms) - 1, int(len(ms) * 0.99))]
    row = {"what": name, "n": len(ms), "p50_ms": statistics.median(ms), "p99_ms": p99,
           "rps": len(ms) / wall}
    print(f"  {name:<46} n={row['n']:>4}  p50 {row['p50_ms']:8.1f} ms  p99 {p99:8.1f} ms  "
          f"{row['rps']:8.1f} req/s")
    return row


async def timed(client: httpx.AsyncClient, name: str, method: str, path: str, n: int,
                body=None, concurrency: int = 1) -> dict:
    seconds: list[float] = []

    async def one(i: int) -> None:
        started = time.perf_counter()
        reply = await client.request(method, path.format(i=i), json=body)
        seconds.append(time.perf_counter() - started)
        if reply.status_code >= 400:
            raise RuntimeError(f"{name}: {reply.status_code} {reply.text[:300]}")

    wall = time.perf_counter()
    if concurrency == 1:
        for i in range(n):
            await one(i)
    else:
        queue = list(range(n))

        async def worker() -> None:
            while queue:
                await one(queue.pop())

        await asyncio.gather(*(worker() for _ in range(concurrency)))
    return _stats(name, seconds, time.perf_counter() - wall)


async def main(args: argparse.Namespace) -> None:
    tmp = tempfile.TemporaryDirectory()
    work = Path(tmp.name)
    url = args.db or f"sqlite+aiosqlite:///{work / 'bench.db'}"
    now = datetime.now(UTC).replace(microsecond=0)
    await create_schema(url)
    t0 = time.perf_counter()
    await seed(url, args.customers, now)
    print(f"seeded {args.customers:,} customers and a year of history in "
          f"{time.perf_counter() - t0:.1f}s")
    settings = settings_from_dict({
        "daemon": {"data_dir": str(work / "data"), "log_level": "WARNING"},
        "nats": {"url": "embedded", "embedded_port": 0}, "database": {"url": url},
        "metrics": {"listen": "127.0.0.1:0"}, "http": {"listen": "127.0.0.1:0"}})
    daemon = Daemon(settings, clock=Clock())
    await daemon.start()
    stop, sent = multiprocessing.Event(), multiprocessing.Value("i", 0)
    feeding = multiprocessing.Process(target=publish_process, args=(
        daemon.nats_url, args.events_per_second, stop, sent), daemon=True)
    if args.events_per_second > 0:
        feeding.start()
    lags: list[float] = []
    lag_stop = asyncio.Event()
    lagging = asyncio.create_task(loop_lag(lags, lag_stop))
    try:
        job = JobContext(daemon.sessionmaker, settings, daemon.clock, daemon.registry)
        key = (await create_key(Call(job, Actor.command_line()), STORE, "bench")).key
        host, port = daemon.http.bound["http"]
        base = f"/api/v1/stores/{STORE}"
        async with httpx.AsyncClient(base_url=f"http://{host}:{port}", timeout=120,
                                     headers={"Authorization": f"Bearer {key}"}) as client:
            made = await client.post(f"{base}/campaigns", json={
                "name": "Victory Day", "channels": ["sms", "email"], "segments": ["everyone"],
                "template": "victory_day", "discountPercent": 16, "holdoutPercent": 10})
            cid = made.json()["id"]
            await asyncio.sleep(1)  # the publisher is under way
            rows = []
            print(f"while the daemon ingests about {args.events_per_second:.0f} events/s:")
            n = args.requests
            rows.append(await timed(client, "list segments", "GET", f"{base}/segments", n))
            rows.append(await timed(client, "list campaigns", "GET", f"{base}/campaigns", n))
            rows.append(await timed(client, "list messages (page of 50)", "GET",
                                    f"{base}/messages", n))
            rows.append(await timed(client, "get segment", "GET", f"{base}/segments/everyone", n))
            rows.append(await timed(client, "get campaign", "GET", f"{base}/campaigns/{cid}", n))
            rows.append(await timed(client, "get customer (picture)", "GET",
                                    f"{base}/customers/cust{{i:07d}}", n))
            rows.append(await timed(client, "list messages, 8 at once", "GET",
                                    f"{base}/messages", n, concurrency=8))
            rows.append(await timed(client, "get customer, 8 at once", "GET",
                                    f"{base}/customers/cust{{i:07d}}", n, concurrency=8))
            rows.append(await timed(
                client, f"segment preview over {args.customers:,}", "POST",
                f"{base}/segments/preview", args.heavy,
                {"criteria": {"all": [{"orders.count": {"gte": 2}},
                                      {"rfm.composite": {"gte": 20}}]}, "sample": 10}))
            rows.append(await timed(
                client, f"campaign preview, {args.customers:,} audience", "POST",
                f"{base}/campaigns/{cid}/preview", max(2, args.heavy // 2), {}))
            year = {"from": (now - timedelta(days=365)).isoformat(), "to": now.isoformat()}
            for bucket in ("day", "week", "month"):
                query = "&".join(f"{k}={v.replace('+', '%2B')}" for k, v in year.items())
                rows.append(await timed(client, f"KPIs per {bucket} over a year", "GET",
                                        f"{base}/kpis?{query}&bucket={bucket}", args.heavy))
    finally:
        lag_stop.set()
        await lagging
        stop.set()
        if feeding.is_alive():
            feeding.join(30)
        events = sent.value
        await daemon.stop()
        tmp.cleanup()
    lag = sorted(lags)
    print(f"event loop lag (a 10 ms sleep woken late): p50 {lag[len(lag) // 2] * 1000:.1f} ms, "
          f"p99 {lag[int(len(lag) * 0.99)] * 1000:.1f} ms, max {lag[-1] * 1000:.0f} ms")
    quick = [r for r in rows if r["what"].startswith(("list", "get"))]
    heavy = [r for r in rows if "preview" in r["what"]]
    print(f"{events} events published during the run; load average "
          f"{', '.join(f'{x:.2f}' for x in os.getloadavg())} on {os.cpu_count()} cores")
    print(f"list/get p99 worst {max(r['p99_ms'] for r in quick):.1f} ms (target 50 ms); "
          f"previews p99 worst {max(r['p99_ms'] for r in heavy) / 1000:.2f} s (target 2 s)")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--customers", type=int, default=100_000)
    parser.add_argument("--events-per-second", type=float, default=200)
    parser.add_argument("--requests", type=int, default=200, help="per list/get figure")
    parser.add_argument("--heavy", type=int, default=6, help="per preview/KPI figure")
    parser.add_argument("--db", default=None, help="database URL (default: a temp SQLite)")
    asyncio.run(main(parser.parse_args()))
