"""Benchmark: the nightly CLV run for one large store (summary, both fits, every score),
in memory, and with --db the whole nightly predictions step on SQLite (read, fit, score,
write every customer's predictions).

    python benchmarks/clv.py [--customers 1000000] [--years 3] [--seed 7]
                             [--annual-discount 0.1] [--db [PATH]]

Set-up (not timed): a simulated store whose customers behave as BG/NBD assumes, so the
fit has a known answer to come back to. Customers arrive uniformly over --years; each buys
on day one, then after exponential gaps at a personal rate (gamma-distributed across
customers, mean one purchase in about 75 days) and after every purchase leaves for good
with a personal probability (beta-distributed, mean 0.2). Spend per transaction is gamma
with a personal scale (Gamma-Gamma, mean about 1,500 taka); one purchase in twenty is
split into two orders on the same day, which the summary must merge back.
Timed:
  summary   transactions (customer, day, amount) -> x, t_x, T, mean repeat spend (days);
  fit       BG/NBD and Gamma-Gamma by maximum likelihood;
  score     expected purchases in 30/90/365 days, P(alive), predicted CLV for 90/365 days
            (discounted at --annual-discount a year, monthly steps).
With --db (set-up not timed: the simulated orders written straight into a fresh SQLite
file, as benchmarks/rfm.py does, at noon in Dhaka on their day), timed:
  nightly   handlers/predictions/nightly.py predict_store: the store's history read in SQL
            (one row per customer, local days), both fits, every score, and one
            customer_predictions row per customer upserted in committed slices, plus the
            fit row; the step's own stages are printed.
Targets (2 cores): all three < 60 s for 1,000,000 customers, peak memory < 2 GiB; with
--db the same for the whole step, database write included.
Prints wall and CPU seconds per step (on a shared machine CPU seconds are what compares),
the fitted parameters next to the simulated ones, and the peak RSS.

Figures (2 cores shared with other sessions; 1,000,000 customers, 4.63 M orders, integer
customer ids, 10 % yearly discount): load 1.5: summary 1.4 s, fit 6.6 s (BG/NBD 17
iterations), score 1.9 s, total 9.9 s, peak 572 MiB; load 3.1: total 9.4 s (1.5 / 6.0 /
1.9), 572 MiB. Fitted r 0.811, alpha 62.4, a 0.794, b 3.16 for simulated 0.8, 60, 0.8,
3.2. String customer ids ("cust-0000123") make the summary 5.3 s, object arrays 11 s:
map ids to integer codes first where they come from a query.
With --db (2026-12-05, 1,000,000 customers, 4.63 M orders, SQLite; load 2.4): nightly
29.7 s wall, 28.6 s CPU (read 16.5, fit 7.1, score 1.8, write 4.2), peak 799 MiB; run again
on the same file (the rows now upserted over the night before's), load 2.5: 37.8 s wall,
31.3 s CPU (read 24.2, fit 7.3, score 1.8, write 4.5), 785 MiB. 100,000 customers: 3.1 s.
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing
import os
import resource
import sqlite3
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from datetime import UTC, datetime
from pathlib import Path

import numpy as np

from stormd.handlers.predictions import clv

TRUE = {"r": 0.8, "alpha": 60.0, "a": 0.8, "b": 3.2, "p": 6.0, "q": 3.5, "gamma": 625.0}


def simulate(customers: int, years: float, seed: int):
    """(customer, day, amount) rows, as-of day, as a BG/NBD + Gamma-Gamma store would."""
    rng = np.random.default_rng(seed)
    span = years * 365.0
    birth = rng.uniform(0.0, span, customers)
    rate = rng.gamma(TRUE["r"], 1.0 / TRUE["alpha"], customers)
    drop = rng.beta(TRUE["a"], TRUE["b"], customers)
    nu = rng.gamma(TRUE["q"], 1.0 / TRUE["gamma"], customers)
    who, when = [np.arange(customers)], [birth]
    active = np.arange(customers)
    now = birth.copy()
    while active.size:
        # Everyone still active may leave right after their last purchase...
        active = active[rng.random(active.size) >= drop[active]] if len(when) > 1 else active
        # ...and the rest buy again after an exponential gap, unless that falls past as-of.
        now_a = now[active] + rng.exponential(1.0, active.size) / rate[active]
        inside = now_a < span
        active, now_a = active[inside], now_a[inside]
        now[active] = now_a
        who.append(active)
        when.append(now_a)
    customer = np.concatenate(who)
    day = np.floor(np.concatenate(when)).astype(np.int64)
    amount = rng.gamma(TRUE["p"], 1.0 / nu[customer])
    split = rng.random(customer.size) < 0.05  # two orders on one day
    share = rng.uniform(0.2, 0.8, int(split.sum()))
    first = amount.copy()
    first[split] *= share
    customer = np.concatenate([customer, customer[split]])
    day = np.concatenate([day, day[split]])
    amount = np.concatenate([first, amount[split] * (1.0 - share)])
    return customer, day, np.round(amount, 2), int(np.floor(span))


def _timed(label: str, fn, *args, **kwargs):
    wall, cpu = time.perf_counter(), time.process_time()
    result = fn(*args, **kwargs)
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    print(f"{label:<8} {wall:6.2f} s wall, {cpu:6.2f} s CPU")
    return result, wall


NOON_DHAKA_US = 6 * 3600 * 1_000_000  # 12:00 at +06:00 is 06:00 UTC
AS_OF_DAY = np.datetime64("2026-11-24")


def populate(path: Path, customer: np.ndarray, day: np.ndarray, amount: np.ndarray,
             as_of: int) -> None:
    """The orders into a fresh SQLite file (PAID, at noon in Dhaka on their day)."""
    base = (AS_OF_DAY - as_of).astype("datetime64[us]")
    stamps = np.datetime_as_string(base + day.astype("timedelta64[D]")
                                   + np.timedelta64(NOON_DHAKA_US, "us"), unit="us")
    conn = sqlite3.connect(path)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=OFF")
    conn.executemany(
        "INSERT INTO orders (store_id, order_id, customer_id, status, total, currency, "
        "occurred_at, status_changed_at) VALUES ('store_1', ?, ?, 'PAID', ?, 'BDT', ?, ?)",
        ((f"o{i}", f"c{c}", t, at.replace("T", " "), at.replace("T", " "))
         for i, (c, t, at) in enumerate(zip(customer.tolist(), amount.tolist(),
                                            stamps.tolist()))))
    conn.commit()
    conn.close()


def _setup(path: Path, customers: int, years: float, seed: int) -> tuple[int, int]:
    customer, day, amount, as_of = simulate(customers, years, seed)
    populate(path, customer, day, amount, as_of)
    return as_of, int(customer.size)


async def nightly(path: Path, as_of: int, annual_discount: float) -> None:
    from stormd.config.clock import SettableClock
    from stormd.config.loader import settings_from_dict
    from stormd.handlers.kernel.context import JobContext
    from stormd.handlers.predictions.nightly import predict_store
    from stormd.schema.db.engine import make_engine, make_sessionmaker

    when = datetime(2026, 11, 24, 17, 59, tzinfo=UTC)  # 23:59 in Dhaka on the as-of day
    engine = make_engine(f"sqlite+aiosqlite:///{path}")
    settings = settings_from_dict({"predictions": {"annual_discount": annual_discount}})
    job = JobContext(make_sessionmaker(engine), settings, SettableClock(when))
    try:
        wall, cpu = time.perf_counter(), time.process_time()
        report = await predict_store(job, "store_1", when)
        wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    finally:
        await engine.dispose()
    print(f"nightly  {wall:6.2f} s wall, {cpu:6.2f} s CPU: {report.status}, "
          f"{report.customers:,} customers; stages (wall s) "
          + ", ".join(f"{k} {v:.2f}" for k, v in report.stages.items())
          + "; predicted revenue " + ", ".join(f"{d} d {v:,}" for d, v in
                                               report.predicted.items()))
    usage = resource.getrusage(resource.RUSAGE_SELF)
    print(f"total timed {wall:.1f} s wall (target < 60 s); peak memory "
          f"{usage.ru_maxrss / 1024:.0f} MiB (target < 2048 MiB); load "
          f"{os.getloadavg()[0]:.1f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--customers", type=int, default=1_000_000)
    parser.add_argument("--years", type=float, default=3.0)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--annual-discount", type=float, default=0.1)
    parser.add_argument("--db", nargs="?", const="", default=None, type=str,
                        help="the whole nightly step on SQLite (PATH, default a temp file)")
    args = parser.parse_args()

    if args.db is not None:
        from stormd.schema.migrate import create_schema

        path = Path(args.db) if args.db else Path(tempfile.mkdtemp(prefix="stormd-clv-")) / "b.db"
        asyncio.run(create_schema(f"sqlite+aiosqlite:///{path}"))
        t0 = time.perf_counter()

        # In a child process, so that the peak memory printed is the step's own.
        with ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("fork")) as pool:
            as_of, orders = pool.submit(_setup, path, args.customers, args.years,
                                        args.seed).result()
        print(f"set-up: {args.customers:,} customers, {orders:,} orders in "
              f"{time.perf_counter() - t0:.1f} s ({path}); load {os.getloadavg()[0]:.1f}")
        asyncio.run(nightly(path, as_of, args.annual_discount))
        return

    t0 = time.perf_counter()
    customer, day, amount, as_of = simulate(args.customers, args.years, args.seed)
    print(f"simulated {args.customers:,} customers, {customer.size:,} orders in "
          f"{time.perf_counter() - t0:.1f} s (not timed); load {os.getloadavg()[0]:.1f}")

    summary, w1 = _timed("summary", clv.summarise, customer, day, amount, as_of_day=as_of)
    del customer, day, amount
    print(f"         {summary.customers:,} customers, {summary.repeat_buyers:,} repeat buyers, "
          f"{int(summary.x.sum()):,} repeat days; "
          f"{clv.not_enough_history(summary) or 'enough history'}")

    def fit():
        return (clv.fit_bgnbd(summary.x, summary.t_x, summary.T),
                clv.fit_gamma_gamma(summary.x, summary.mean_repeat_spend))

    (bg, gg), w2 = _timed("fit", fit)
    print(f"         BG/NBD r={bg.r:.3f} alpha={bg.alpha:.2f} a={bg.a:.3f} b={bg.b:.3f} "
          f"(simulated {TRUE['r']}, {TRUE['alpha']}, {TRUE['a']}, {TRUE['b']}); "
          f"LL {bg.log_likelihood:,.1f}; {bg.convergence.iterations} iterations, "
          f"{'converged' if bg.convergence.success else bg.convergence.message}")
    print(f"         Gamma-Gamma p={gg.p:.2f} q={gg.q:.2f} gamma={gg.gamma:.1f} "
          f"(simulated {TRUE['p']}, {TRUE['q']}, {TRUE['gamma']}) on {gg.customers:,}; "
          f"corr(x, spend) {gg.correlation:+.3f}; warnings: {list(bg.warnings + gg.warnings)}")

    scores, w3 = _timed("score", clv.score, bg, gg, summary,
                        annual_discount=args.annual_discount)
    revenue = {h: float(v.sum()) for h, v in scores.clv.items()}
    print("         expected purchases 30/90/365 d: "
          + ", ".join(f"{float(scores.expected[h].sum()):,.0f}" for h in (30, 90, 365))
          + f"; mean P(alive) {float(scores.p_alive.mean()):.3f}; predicted revenue "
          + ", ".join(f"{h} d {v:,.0f}" for h, v in revenue.items()))

    usage = resource.getrusage(resource.RUSAGE_SELF)
    total = w1 + w2 + w3
    print(f"total timed {total:.1f} s wall (target < 60 s); peak memory "
          f"{usage.ru_maxrss / 1024:.0f} MiB (target < 2048 MiB); load "
          f"{os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
