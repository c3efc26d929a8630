"""How fast `stormd import orders` loads history into SQLite (target: >= 100,000 orders/s).

    python benchmarks/import_orders.py [N] [--format jsonl|csv|both] [--items K]

Generates N orders (default 1,000,000; K items each, default 2; 100,000 distinct buyers) as
JSON Lines and/or CSV in a temporary folder, imports each into a fresh SQLite database
through the real import path (`import_file`, one transaction), and prints orders/s and
rows/s (rows written to orders, order_items, order_status_history and customers: 4.1 an
order here), wall and per CPU-second of all threads, the CPU of the parsing (main) thread
and of the driver's (aiosqlite) thread, and the max RSS.

Measured 2026-12-01 on the shared 2-core machine, 1,000,000 orders, old (before this
session) and new code alternated (other sessions' tests and benchmarks ran beside it; wall
swings with them, CPU much less; rows = the 4.1 million rows written):
                      load   orders/s   rows/s    orders/CPU-s  rows/CPU-s  max RSS
  jsonl  before       2.3    36,700     150,500   40,100        164,000     205 MB
         after        2.6    53,200     218,000   56,200        230,300     217 MB
         before       2.1    41,400     169,800   41,100        168,600     205 MB
         after        1.8    62,500     256,200   57,100        234,000     216 MB
  csv    before       3.0    35,400     145,000   38,100        156,300     205 MB
         after        3.0    49,500     203,000   52,200        213,800     215 MB
At load 1.8 the new code's wall time (16.0 s) was below its CPU time (17.5 s): the parsing
and the writes overlapped; the old code's never did (tonight's quiet-machine run: 27.4 s
wall for 27.6 CPU-s). Earlier runs at load 3.8-4.4: 20,100 -> 32,300-32,700 orders/s wall.

What changed (with the figure where a step was measured alone): rows go to SQLite 1,000
a statement (multi-row VALUES; raw sqlite3, 1M orders: 18.0 -> 16.7 CPU-s); when the file
at least doubles the orders or items table, their three non-unique indexes are dropped in
the import's transaction and built after the last row (16.7 -> 13.2 CPU-s raw), with an
8 MB cache so the sort's buffer stays small; a money string is checked once (parsing and
building 200k orders 1.06 -> 0.90 CPU-s); sorting by the order id alone; 1 MiB file reads
and a 0.5 ms GIL switch interval while loading (the driver's thread takes the GIL back
after every statement step and waited up to 5 ms for it each time; with one statement a
row the parsing and the writes hardly overlapped: the old code's quiet-machine run took
27.4 s wall for 27.6 CPU-s).

Where a million orders' time goes now: the parsing thread 7.6-7.7 CPU-s from JSON Lines,
9.1 from CSV (reading, the hand checks and tuples ~4.5 s; sorting, flattening and driving
the writes the rest); the driver's thread 10.0-10.1 CPU-s (11-12 at higher load). SQLite
alone, fed the same tuples by raw sqlite3, needs 12.4-13.4 CPU-s: new buyers 1.3, orders
2.1, items 3.4, status history 1.3, the status recompute 1.1, building the three deferred
indexes 1.7, commit 1.0-1.8 (the checkpoint that copies the ~500 MB WAL into the
database). So 100,000 orders/s is out of reach with this schema on this machine: even with
the parsing fully beside it on the other core, the driver's thread alone is ~10 s a
million, and the index builds and the commit (~3-4 s) run after the last row is parsed.
Not worth it, measured: PRAGMA synchronous=OFF (no CPU gained; WAL with NORMAL does not
sync at commit, only at the checkpoint, and OFF risks a corrupt database on power loss), a
256 MB page cache (5-8 % less CPU at 200k orders for ~190 MB more RSS), PRAGMA threads for
the index sort (no gain), the rows as one JSON parameter through json_each (GIL-free, but
SQLite's CPU +25 %). Next steps would change the schema: WITHOUT ROWID orders (one B-tree
less per order), items and history keyed without their surrogate ids, partial indexes on
customers' email and phone (a buyer known only by id pays for two NULL entries).

2026-12-01, a slower machine (the same plain NATS consumer 1.8x slower than on the
machine above), load 0.6-0.9, JSON Lines, 1,000,000 orders: 35,300 and 33,500 orders/s
(145,000 and 137,500 rows/s), 32-34 CPU-s (parsing thread 13.0-13.2 s, driver thread
19.0-21.2 s): the one-hand-off SQLite driver (schema/db/sqlite_driver.py) changes nothing
here, the import already makes one statement a thousand rows.

PostgreSQL (not measured by this script): 50,000 orders at load 6 went from 2,076 to 3,746
orders/s with COPY into a staging table and one upsert per batch and table.
"""

from __future__ import annotations

import argparse
import asyncio
import csv
import json
import os
import resource
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

from stormd.handlers.imports.bulk import import_file
from stormd.schema.db.engine import make_engine, make_sessionmaker
from stormd.schema.migrate import upgrade_database

STATUSES = ("PAID", "DELIVERED", "SHIPPED", "PENDING", "CANCELLED")
START = datetime(2026, 1, 1, tzinfo=UTC)


def orders(n: int, items: int):
    for i in range(n):
        yield {
            "storeId": "store_1", "orderId": f"o{i}", "customerId": f"c{i % 100_000}",
            "status": STATUSES[i % len(STATUSES)], "total": f"{(i % 5000) + 100}.50",
            "occurredAt": (START + timedelta(seconds=17 * i)).isoformat(),
            "items": [{"productId": f"p{(i + k) % 2000}", "quantity": 1 + k,
                       "unitPrice": "50.25"} for k in range(items)],
        }


def write_jsonl(path: Path, n: int, items: int) -> None:
    with path.open("w") as fh:
        for order in orders(n, items):
            fh.write(json.dumps(order, separators=(",", ":")) + "\n")


def write_csv(path: Path, n: int, items: int) -> None:
    columns = ["storeId", "orderId", "customerId", "status", "total", "occurredAt", "items"]
    with path.open("w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(columns)
        for o in orders(n, items):
            o["items"] = json.dumps(o["items"], separators=(",", ":"))
            writer.writerow([o[c] for c in columns])


async def run(path: Path, workdir: Path) -> None:
    url = f"sqlite+aiosqlite:///{workdir / (path.stem + '.db')}"
    await upgrade_database(url)
    engine = make_engine(url)
    try:
        cpu, main_cpu = time.process_time(), time.thread_time()
        result = await import_file(make_sessionmaker(engine), "orders", path, store=None,
                                   now=datetime.now(UTC))
        cpu, main_cpu = time.process_time() - cpu, time.thread_time() - main_cpu
        async with engine.connect() as conn:
            stored = {t: (await conn.exec_driver_sql(f"SELECT count(*) FROM {t}")).scalar()
                      for t in ("orders", "order_items", "order_status_history", "customers")}
    finally:
        await engine.dispose()
    assert stored == result.written, (stored, result.written)  # a fresh database
    rows = sum(result.written.values())
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // 1024
    print(f"{path.suffix[1:]:>5}: {result.rows:,} orders ({rows:,} rows: {result.written}) in "
          f"{result.seconds:.2f}s at load {os.getloadavg()[0]:.1f}: "
          f"{result.rows_per_second:,.0f} orders/s, {result.written_per_second:,.0f} rows/s; "
          f"per CPU-s {result.rows / cpu:,.0f} orders, {rows / cpu:,.0f} rows (CPU {cpu:.1f}s: "
          f"parsing thread {main_cpu:.1f}s, driver thread {cpu - main_cpu:.1f}s); max RSS {rss} MB")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("n", nargs="?", type=int, default=1_000_000)
    parser.add_argument("--format", choices=("jsonl", "csv", "both"), default="both")
    parser.add_argument("--items", type=int, default=2)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        for fmt, writer in (("jsonl", write_jsonl), ("csv", write_csv)):
            if args.format not in (fmt, "both"):
                continue
            path = work / f"orders.{fmt}"
            started = time.perf_counter()
            writer(path, args.n, args.items)
            print(f"{fmt:>5}: generated {args.n:,} orders in {time.perf_counter() - started:.1f}s")
            asyncio.run(run(path, work))


if __name__ == "__main__":
    main()
