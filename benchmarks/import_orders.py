"""How fast `stormd import orders` loads history into SQLite (target: >= 100,000 orders/s).

    python benchmarks/import_orders.py [N] [--format jsonl|csv|both] [--items K]

Generates N orders (default 1,000,000; K items each, default 2) as JSON Lines and/or CSV
in a temporary folder, imports each into a fresh SQLite database through the real
import path, and prints orders/s (and the item and history rows written).
"""

from __future__ import annotations

import argparse
import asyncio
import csv
import json
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

from stormd.handlers.bulk_import import import_file
from stormd.schema.engine import make_engine, make_sessionmaker
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
        result = await import_file(make_sessionmaker(engine), "orders", path, store=None,
                                   now=datetime.now(UTC))
    finally:
        await engine.dispose()
    print(f"{path.suffix[1:]:>5}: {result.rows:,} orders in {result.seconds:.2f}s = "
          f"{result.rows_per_second:,.0f} orders/s")


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
