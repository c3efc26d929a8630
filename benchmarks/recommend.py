"""Benchmark: learned item-to-item recommendations vs the rule engine's rules.

    python benchmarks/recommend.py [--customers 6000] [--items 1500] [--needs 150]
                                   [--seed 1]

Uses the synthetic store, the rule baseline and the held-out-last-order evaluation of
tests/handlers/predictions/test_recommend.py (loaded from that file, so what is printed
is what the test asserts): products in categories and, across categories, in "needs"
that customers shop for; each customer's last order held out, their previous order the
context, four products recommended, a hit when one of them is in the held-out order.
Prints hit-rate@4 of the learned model (alone, and with the rules where it is silent),
of the rules, and the time to fit the model (co-occurrence, SVD, neighbour lists).

Figures (2 cores shared, load 3.3-3.5): default store (6,000 customers, 1,500 products):
learned 0.406, rules 0.301, fit 0.7 s; seed 2: 0.391 vs 0.292. 60,000 customers, 15,000
products, 1,500 needs: learned 0.401, rules 0.382, fit 21.4 s (256 dimensions), 797 MiB.
The direct term alone (normalised co-purchase, no SVD) scored 0.392 on both stores, the
SVD alone 0.383 / 0.376-0.389: most of the gain over the rules is damping best sellers in
the co-purchase counts; the vectors add one to two points.
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import resource
import sys
import time
from pathlib import Path

TESTS = Path(__file__).resolve().parents[1] / "tests/handlers/predictions/test_recommend.py"


def _load_store_module():
    spec = importlib.util.spec_from_file_location("synthetic_recommend_store", TESTS)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up while defining
    spec.loader.exec_module(module)
    return module


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--customers", type=int, default=6000)
    parser.add_argument("--items", type=int, default=1500)
    parser.add_argument("--needs", type=int, default=150)
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    store_module = _load_store_module()

    started = time.perf_counter()
    store = store_module.synthetic_store(customers=args.customers, items=args.items,
                                         needs=args.needs, seed=args.seed)
    print(f"store: {args.customers:,} customers, {args.items:,} products, "
          f"{len(set(store.basket.tolist())):,} orders, {store.item.size:,} order lines "
          f"(built in {time.perf_counter() - started:.1f} s); load {os.getloadavg()[0]:.1f}")
    result = store_module.evaluate(store)
    print(f"hit-rate@4 on {result['customers']:,} held-out last orders:")
    print(f"  learned, rules where it is silent  {result['learned']:.3f}")
    print(f"  learned alone                      {result['learned_only']:.3f} "
          f"(silent for {result['silent']:.1%} of contexts; {result['cold_items']:.1%} of "
          f"products cold)")
    print(f"  rules (co-purchased, then category best sellers)  {result['rules']:.3f}")
    print(f"fit: {result['fit_seconds']:.2f} s; peak memory "
          f"{resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MiB")


if __name__ == "__main__":
    main()
